"""The demo knowledge base: a SYNTHETIC cohort loaded, embedded, linked, tracked and queried end
to end (``lesionkg demo``). It sits above every layer: it drives the synthetic generators, the
ETL, the model and the graph operations."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lesionkg.core.errors import ModelError
from lesionkg.db.driver import Driver, run_statement
from lesionkg.etl.bulk import load_deeplesion

if TYPE_CHECKING:
    from lesionkg.db.queries import QueryResult

#: Demo patients are numbered from here so they never collide with real DeepLesion patient ids
#: (DeepLesion has 4,427 patients, numbered from 1).
DEMO_FIRST_PATIENT = 900001


@dataclass(frozen=True, slots=True)
class DemoTraining:
    """The demo's small model: 32-pixel crops (1 and 3 mm/pixel) and 8 sequences per step keep
    training to a couple of minutes on two CPU cores (see README, "The triplet network")."""

    steps: int = 40
    sequences_per_batch: int = 8
    crop_px: int = 32
    spacings_mm: tuple[float, ...] = (1.0, 3.0)


DEMO_TRAINING = DemoTraining()


def _demo_model(
    csv_path: Path, images: Path, model_dir: Path, seed: int, progress: bool
) -> tuple[str, str]:
    """Train (or find already trained) the demo's small model; its sha256 and a summary line."""
    from lesionkg.model.training import TrainConfig, train_from_csv
    from lesionkg.model.transforms import CropSpec, InputConfig

    size = DEMO_TRAINING.crop_px
    config = TrainConfig(
        seed=seed,
        steps=DEMO_TRAINING.steps,
        sequences_per_batch=DEMO_TRAINING.sequences_per_batch,
        checkpoint_every=10,
        input=InputConfig(
            tuple(
                CropSpec(size, mm, "box" if i == 0 else "crop")
                for i, mm in enumerate(DEMO_TRAINING.spacings_mm)
            )
        ),
    )
    result = train_from_csv(csv_path, images, model_dir, config, progress=progress)
    line = (
        f"Triplet network: {result.steps} steps on {result.lesions} train/val lesions "
        f"({size}-pixel crops, random start) in {result.seconds:.0f} s, final loss "
        f"{result.final_loss:.3f} -> {model_dir}"
    )
    return result.sha256, line


def _retrieval_line(driver: Driver, database: str) -> str:
    from lesionkg.core.metrics import type_precision_at_k
    from lesionkg.graph.embedding import read_embeddings

    held_out = read_embeddings(driver, database, split="test")
    labelled = held_out.types != -1
    if labelled.sum() < 10 or len(set(held_out.patients)) < 3:
        return "Too few held-out (test split) lesions to score retrieval."
    ours = type_precision_at_k(held_out.vectors, held_out.types, held_out.patients, k=5)
    where = type_precision_at_k(held_out.location, held_out.types, held_out.patients, k=5)
    sample = " (a small sample: see bench/embedding_quality.py)" if labelled.sum() < 100 else ""
    return (
        f"Type precision@5 on the {int(labelled.sum())} held-out (test split) lesions, other "
        f"patients only: triplet embedding {ours:.3f}, location-only baseline {where:.3f}{sample}"
    )


def _graph_lines(
    driver: Driver,
    database: str,
    index_dir: Path,
    *,
    embedded: bool,
    first_patient: str | None,
    pairs: Path | None,
    progress: bool,
) -> list[str]:
    """Link, match, and show a patient's tracks, response, similar patients and lesions."""
    from lesionkg.core.response import describe_response
    from lesionkg.db.queries import QueryResult, format_result
    from lesionkg.graph.cohort import (
        patient_response,
        patient_tracks,
        similar_lesions,
        similar_patients,
    )
    from lesionkg.graph.matching import evaluate_matching, match_graph
    from lesionkg.graph.similarity import link_graph

    def table(rows: list[dict]) -> str:
        columns = list(rows[0]) if rows else []
        return format_result(QueryResult(columns, [list(r.values()) for r in rows]), "table")

    lines = []
    spaces = ["cues", "triplet"] if embedded else ["cues"]
    for space in spaces:
        linked = link_graph(
            driver, space=space, k=10, index_dir=index_dir, database=database, progress=progress
        )
        lines.append(
            f"Linked {linked.lesions} lesions in the {space} space ({linked.dim}-D): "
            f"{linked.edges} SIMILAR_TO edges, hnswlib ef {linked.ef} (recall@10 "
            f"{linked.recall_at_10:.3f}); {linked.predicted_types} unlabelled lesions got a "
            "predicted type"
        )
    matched = match_graph(driver, database=database, progress=progress)
    lines.append(
        f"Matched {matched.lesions} lesions of {matched.patients} patients into {matched.tracks} "
        f"tracks ({matched.multi_tracks} followed over two or more volumes)"
    )
    if pairs is not None:
        scores = evaluate_matching(driver, pairs, database=database)
        lines.append(
            f"Tracks against the generator's true tracks ({scores.pairs} same-lesion pairs, "
            f"lesionkg evaluate matching --pairs {pairs}): recall {scores.ours.recall:.3f}, "
            f"precision {scores.ours.precision:.3f}; the Hungarian location baseline "
            f"{scores.baseline.recall:.3f} / {scores.baseline.precision:.3f}"
        )
    picked = run_statement(
        driver,
        database,
        "demo/tracked_patient",
        "picking a tracked patient",
        read=True,
        first_patient=first_patient,
    )
    if not picked:
        return lines
    patient = picked[0]["patient_id"]
    tracks = patient_tracks(driver, patient, database=database)
    lines += ["", f"== Tracks of patient {patient}  (lesionkg tracks {patient}) ==", table(tracks)]
    report = patient_response(driver, patient, database=database)
    lines += [
        "",
        f"== RECIST-style response of patient {patient}  (lesionkg response {patient}) ==",
        describe_response(report),
    ]
    lines += [
        "",
        f"== Patients most similar to {patient}  (lesionkg similar-patients {patient} -k 5) ==",
        table(similar_patients(driver, patient, k=5, space="cues", database=database)),
    ]
    if tracks:
        lesion = tracks[0]["lesion_ids"][0]
        lines += [
            "",
            f"== Lesions of other patients like {lesion}, cues space  "
            f"(lesionkg similar {lesion} -k 5) ==",
            table(similar_lesions(driver, lesion, k=5, space="cues", database=database)),
        ]
    return lines


def _etl_lines(
    driver: Driver, database: str, out: Path, seed: int, model: Path | None, progress: bool
) -> list[str]:
    """Import a small SYNTHETIC PACS export (JSON Lines with key slices and tracking UIDs) with
    ``etl``, embedding the new lesions with the demo's ``model`` when there is one."""
    from lesionkg.etl.importer import EtlOptions, run_etl
    from lesionkg.synthetic.bookmarks import write_synthetic_bookmarks

    folder = out / "pacs-export"
    write_synthetic_bookmarks(
        folder,
        patients=8,
        seed=seed + 1,
        first_patient_index=DEMO_FIRST_PATIENT + 50000,
        tracking_uids=True,
        images=True,
    )
    summary = run_etl(
        driver,
        [folder],
        database=database,
        options=EtlOptions(model_dir=model, index_dir=out / "index"),
        progress=progress,
    )
    shown = f" --model {model}" if model is not None else ""
    return [
        "",
        f"== New PACS bookmarks, a SYNTHETIC export  (lesionkg etl {folder}{shown}) ==",
        summary.describe(),
    ]


def build_demo(
    driver: Driver,
    database: str,
    *,
    out_dir: str | Path = "demo-out",
    data: str | Path | None = None,
    images: str | Path | None = None,
    patients: int = 60,
    seed: int = 7,
    train: bool = True,
    progress: bool = True,
) -> str:
    """Build a demo knowledge base and return a text report of a few query results.

    Without ``data`` a SYNTHETIC DeepLesion-format cohort with CT images is generated in
    ``out_dir`` (labelled synthetic in its file names, its metadata file and on every node as
    ``dataset``). When images are there (generated, or ``images`` for ``data``) and ``train`` is
    true, a small triplet network is trained on the train and val splits (``out_dir/model``;
    re-running finds it) and every lesion is embedded.
    """
    from lesionkg.db.queries import format_result, run_named
    from lesionkg.synthetic.cohort import write_synthetic_dl_info, write_synthetic_pairs

    out = Path(out_dir)
    lines = []
    synthetic = data is None
    if data is None:
        cohort = write_synthetic_dl_info(
            out,
            patients=patients,
            seed=seed,
            first_patient_index=DEMO_FIRST_PATIENT,
            images=True,
            progress=progress,
        )
        csv_path, images = cohort.csv_path, out
        run_statement(
            driver,
            database,
            "demo/delete_demo_cohort",
            "deleting the earlier demo cohort",
            first_patient=f"{DEMO_FIRST_PATIENT:06d}",
        )
        lines.append(
            f"SYNTHETIC demo cohort (not real patients): {cohort.patients} patients, "
            f"{cohort.studies} studies, {cohort.lesions} lesions, {cohort.images} CT slices "
            f"in {out}"
        )
    else:
        csv_path = Path(data)
    summary = load_deeplesion(driver, csv_path, database=database, images=images, progress=progress)
    lines.append(summary.describe())
    queries = list(DEMO_QUERIES)
    trained_model: Path | None = None
    if images is not None and train:
        from lesionkg.graph.embedding import embed_graph

        try:
            _, trained = _demo_model(Path(csv_path), Path(images), out / "model", seed, progress)
        except ModelError as exc:
            trained = None
            lines.append(f"The triplet network was not trained: {exc}")
        if trained is not None:
            trained_model = out / "model"
            embedded = embed_graph(
                driver, out / "model", database=database, images=Path(images), progress=progress
            )
            lines += [
                trained,
                f"Embedded {embedded.embedded} of {embedded.lesions} lesions (1408-D, "
                f"Lesion.embedding) in {embedded.seconds:.0f} s",
                _retrieval_line(driver, database),
            ]
    else:
        lines.append("No images: the triplet network was not trained (see --images).")
    lines += _graph_lines(
        driver,
        database,
        out / "index",
        embedded=images is not None and train,
        first_patient=f"{DEMO_FIRST_PATIENT:06d}" if synthetic else None,
        pairs=write_synthetic_pairs(cohort) if synthetic else None,
        progress=progress,
    )
    if synthetic:
        lines += _etl_lines(driver, database, out, seed, trained_model, progress)
    queries.append(_size_query(run_named(driver, database, "type_distribution", {})))
    first = run_named(driver, database, "largest_lesions_per_patient", {"limit": "1"})
    if first.rows:
        patient = str(first.rows[0][0])
        queries.append(
            (f"Timeline of patient {patient}", "patient_timeline", {"patient_id": patient})
        )
    if images is not None and train:
        picked = run_statement(driver, database, "demo/query_lesion", "picking a lesion", read=True)
        if picked:
            lesion = picked[0]["lesion_id"]
            queries.append(
                (
                    f"Lesions of other patients most similar to {lesion}",
                    "similar_by_embedding",
                    {"lesion_id": lesion, "k": "5"},
                )
            )
    for title, name, params in queries:
        shown = " ".join(f"--param {k}={v}" for k, v in params.items())
        lines += [
            "",
            f"== {title}  (lesionkg query {f'{name} {shown}'.rstrip()}) ==",
            format_result(run_named(driver, database, name, params), "table"),
        ]
    lines += [
        "",
        'Explore further: lesionkg query --list; lesionkg cypher "MATCH ..."; '
        "Neo4j Browser (see README).",
    ]
    return "\n".join(lines)


#: What the demo shows after loading: (title, query name, parameters).
DEMO_QUERIES: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("Lesions per coarse type", "type_distribution", {}),
    ("Studies with the most lesions", "studies_with_most_lesions", {"limit": "5"}),
    ("Largest lesion of each patient", "largest_lesions_per_patient", {"limit": "5"}),
)


def _size_query(types: QueryResult) -> tuple[str, str, dict[str, str]]:
    """The size query for the graph at hand: the most frequent labelled type from ``longer than
    its median`` (a fixed "liver, 30 mm" shows nothing on a small SYNTHETIC cohort); liver and 30
    mm when nothing is labelled."""
    labelled = [r for r in types.as_dicts() if r.get("code") is not None]
    if not labelled:
        return "Liver lesions of 30 mm or more", "lesions_by_type_and_size", _SIZE_PARAMS
    top = max(labelled, key=lambda r: (r["lesions"], -r["code"]))
    median = top.get("median_long_axis_mm")
    min_mm = math.floor(float(median)) if median is not None else 0
    params = {"coarse_type": str(top["code"]), "min_mm": str(min_mm), "limit": "5"}
    title = f"{str(top['name']).capitalize()} lesions of {min_mm} mm or more"
    return title, "lesions_by_type_and_size", params


_SIZE_PARAMS = {"coarse_type": "4", "min_mm": "30", "limit": "5"}
