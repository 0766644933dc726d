"""End-to-end operations the CLI calls: load a DeepLesion CSV, build the demo knowledge base.

Each function takes the caller's ``driver`` and ``database``; the CLI opens one driver per command.
"""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from neo4j import Driver
from tqdm import tqdm

from lesionkg.errors import InvalidInputError, LesionKGError, ModelError
from lesionkg.graph import NODE_LABELS, WriteCounts, apply_schema, write_lesions
from lesionkg.loaders.deeplesion import RejectedRow, parse_dl_info, write_rejects
from lesionkg.loaders.images import find_key_slice
from lesionkg.records import LesionRecord
from lesionkg.statements import statement

DEFAULT_BATCH = 5000
#: concurrent write transactions; two keep both cores of a small machine busy (see bench/)
DEFAULT_WRITERS = 2


@dataclass
class LoadSummary:
    """What one ``load deeplesion`` run did."""

    source: str
    dataset: str = "DeepLesion"
    rows: int = 0
    lesions_written: int = 0
    rejected: int = 0
    rejects_file: str | None = None
    created: dict[str, int] = field(default_factory=lambda: dict.fromkeys(NODE_LABELS, 0))
    existing: dict[str, int] = field(default_factory=lambda: dict.fromkeys(NODE_LABELS, 0))
    images_found: int | None = None
    images_missing: int | None = None
    seconds: float = 0.0
    #: seconds of the write phase alone (the validation pass before it excluded)
    write_seconds: float = 0.0

    @property
    def lesions_per_s(self) -> float:
        return self.lesions_written / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        write_rate = self.lesions_written / self.write_seconds if self.write_seconds > 0 else 0.0
        return {
            **asdict(self),
            "lesions_per_s": round(self.lesions_per_s, 1),
            "write_lesions_per_s": round(write_rate, 1),
        }

    def describe(self) -> str:
        """A few lines for people: what was read, created, already there, rejected."""
        lines = [
            f"{self.source} ({self.dataset}): {self.rows} rows, {self.lesions_written} lesions "
            f"written in {self.seconds:.1f} s ({self.lesions_per_s:,.0f} lesions/s)"
        ]
        for label in NODE_LABELS:
            lines.append(
                f"  {label:<8} created {self.created[label]:>8}   "
                f"already present {self.existing[label]:>8}"
            )
        if self.images_found is not None:
            lines.append(
                f"  key-slice images found for {self.images_found} lesions, "
                f"missing for {self.images_missing}"
            )
        if self.rejected:
            lines.append(f"  {self.rejected} rows rejected; reasons in {self.rejects_file}")
        return "\n".join(lines)


def _bar(desc: str, total: int | None, progress: bool) -> tqdm:
    return tqdm(
        total=total,
        desc=desc,
        unit=" rows",
        unit_scale=True,
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
        mininterval=0.5,
    )


def _batches(
    items: Iterator[LesionRecord], size: int, *, by_patient: bool
) -> Iterator[list[LesionRecord]]:
    """Batches of ``size`` records; with ``by_patient``, cut where the patient changes.

    DeepLesion files are sorted by patient, so concurrent batches cut that way never write the
    same Patient or Study node and do not wait on each other's locks (unsorted input still works:
    lock waits and deadlocks are retried by the driver's managed transactions). A batch never
    exceeds twice ``size``.
    """
    batch: list[LesionRecord] = []
    for item in items:
        if len(batch) >= size and (
            not by_patient or item.patient_id != batch[-1].patient_id or len(batch) >= 2 * size
        ):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def load_deeplesion(
    driver: Driver,
    csv_path: str | Path,
    *,
    database: str = "neo4j",
    images: str | Path | None = None,
    skip_invalid: bool = False,
    rejects_path: str | Path | None = None,
    dataset: str | None = None,
    batch_size: int = DEFAULT_BATCH,
    writers: int = DEFAULT_WRITERS,
    progress: bool = True,
) -> LoadSummary:
    """Load a DeepLesion ``DL_info.csv`` into the graph, streaming, in UNWIND batches.

    Without ``skip_invalid`` the whole file is validated first and nothing is written if any row
    is invalid (:class:`InvalidInputError` lists every problem). With it, valid rows are written
    in one pass and the rejected ones go, with their reasons, to ``rejects_path`` (default
    ``<csv name>.rejects.csv`` in the working directory). Loading the same file again changes
    nothing: ids are derived from content and every write is a MERGE. ``batch_size`` lesions go
    in one transaction; ``writers`` transactions run at once (``1, 1`` is one row per
    transaction, the benchmark's baseline).
    """
    csv_path = Path(csv_path)
    if batch_size < 1 or writers < 1:
        raise LesionKGError(f"batch size and writers must be at least 1: {batch_size}, {writers}")
    images_root = Path(images) if images is not None else None
    if images_root is not None and not images_root.is_dir():
        raise LesionKGError(f"--images {images_root}: not a directory")
    summary = LoadSummary(source=str(csv_path), dataset=dataset or dataset_of(csv_path))
    started = time.perf_counter()

    total = None
    if not skip_invalid:
        total = _validate(csv_path, progress)

    apply_schema(driver, database)
    rejected: list[RejectedRow] = []
    seen_patients: set[str] = set()
    seen_studies: set[str] = set()
    counts = WriteCounts()

    in_flight: deque[tuple[Future, int]] = deque()

    def records() -> Iterator[LesionRecord]:
        try:
            for item in parse_dl_info(csv_path):
                summary.rows += 1
                if isinstance(item, RejectedRow):
                    rejected.append(item)
                else:
                    yield item
        except InvalidInputError as exc:
            # Only with skip_invalid can a broken file be met after batches were written (the
            # validation pass finds it first otherwise): say how much is already in the graph.
            while in_flight:
                _collect(in_flight.popleft(), counts, summary, bar)
            raise InvalidInputError(exc.problems, written=summary.lesions_written) from exc

    write_started = time.perf_counter()
    # Worker threads write batches while the main thread parses the next ones: Neo4j runs one
    # transaction per core and the parser keeps going. At most `writers` + 1 batches are held.
    with (
        _bar("loading", total, progress) as bar,
        ThreadPoolExecutor(max_workers=writers) as pool,
    ):
        for batch in _batches(records(), batch_size, by_patient=writers > 1):
            paths = None
            if images_root is not None:
                found = [find_key_slice(images_root, r.file_name) for r in batch]
                paths = [str(p.resolve()) if p else None for p in found]
                hits = sum(p is not None for p in paths)
                summary.images_found = (summary.images_found or 0) + hits
                summary.images_missing = (summary.images_missing or 0) + len(batch) - hits
            for rec in batch:
                seen_patients.add(rec.patient_id)
                seen_studies.add(rec.study_id)
            if len(in_flight) >= writers:
                _collect(in_flight.popleft(), counts, summary, bar)
            future = pool.submit(
                write_lesions, driver, database, batch, paths, dataset=summary.dataset
            )
            in_flight.append((future, len(batch)))
        while in_flight:
            _collect(in_flight.popleft(), counts, summary, bar)
    summary.write_seconds = time.perf_counter() - write_started

    summary.rejected = len(rejected)
    if rejected:
        out = Path(rejects_path) if rejects_path else Path.cwd() / f"{csv_path.stem}.rejects.csv"
        write_rejects(out, rejected)
        summary.rejects_file = str(out)
    summary.created = dict(counts.created)
    distinct = {
        "Patient": len(seen_patients),
        "Study": len(seen_studies),
        "Lesion": summary.lesions_written,
    }
    summary.existing = {label: distinct[label] - counts.created[label] for label in NODE_LABELS}
    summary.seconds = time.perf_counter() - started
    return summary


def _collect(
    submitted: tuple[Future, int], counts: WriteCounts, summary: LoadSummary, bar: tqdm
) -> None:
    future, size = submitted
    counts.add(future.result())  # re-raises the writer's error here, which stops the load
    summary.lesions_written += size
    bar.update(size)


def dataset_of(csv_path: Path) -> str:
    """'synthetic' when a SYNTHETIC metadata file sits beside the CSV, else 'DeepLesion'."""
    return "synthetic" if marks_synthetic(csv_path.with_suffix(".json")) else "DeepLesion"


def marks_synthetic(meta: Path) -> bool:
    """Whether ``meta`` is a generator's metadata file saying ``"synthetic": true``."""
    if meta.is_file():
        try:
            return json.loads(meta.read_text()).get("synthetic") is True
        except (ValueError, AttributeError, OSError):
            pass
    return False


def _validate(csv_path: Path, progress: bool) -> int:
    """Parse the whole file once; raise with every problem, else return the row count."""
    problems = []
    rows = 0
    with _bar("validating", None, progress) as bar:
        for item in parse_dl_info(csv_path):
            rows += 1
            if isinstance(item, RejectedRow):
                problems.extend(item.problems)
            if rows % 10000 == 0:
                bar.update(10000)
        bar.update(rows % 10000)
    if problems:
        raise InvalidInputError(problems)
    return rows


#: Demo patients are numbered from here so they never collide with real DeepLesion patient ids
#: (DeepLesion has 4,427 patients, numbered from 1).
DEMO_FIRST_PATIENT = 900001

#: What the demo shows after loading: (title, query name, parameters).
DEMO_QUERIES: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("Lesions per coarse type", "type_distribution", {}),
    ("Studies with the most lesions", "studies_with_most_lesions", {"limit": "5"}),
    ("Largest lesion of each patient", "largest_lesions_per_patient", {"limit": "5"}),
    (
        "Liver lesions of 30 mm or more",
        "lesions_by_type_and_size",
        {"coarse_type": "4", "min_mm": "30", "limit": "5"},
    ),
)


#: The demo's small model: 32-pixel crops (1 and 3 mm/pixel) and 8 sequences per step keep
#: training to a couple of minutes on two CPU cores (see README, "The triplet network").
DEMO_TRAINING = {"steps": 40, "sequences_per_batch": 8, "crop_px": 32, "spacings_mm": (1.0, 3.0)}


def _demo_model(
    csv_path: Path, images: Path, model_dir: Path, seed: int, progress: bool
) -> tuple[str, str]:
    """Train (or find already trained) the demo's small model; its sha256 and a summary line."""
    from lesionkg.model.training import TrainConfig, train_from_csv
    from lesionkg.model.transforms import CropSpec, InputConfig

    size = DEMO_TRAINING["crop_px"]
    config = TrainConfig(
        seed=seed,
        steps=DEMO_TRAINING["steps"],
        sequences_per_batch=DEMO_TRAINING["sequences_per_batch"],
        checkpoint_every=10,
        input=InputConfig(
            tuple(
                CropSpec(size, mm, "box" if i == 0 else "crop")
                for i, mm in enumerate(DEMO_TRAINING["spacings_mm"])
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
    from lesionkg.embedding import read_embeddings
    from lesionkg.evaluation import type_precision_at_k

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
    from lesionkg.cohort import patient_response, patient_tracks, similar_lesions, similar_patients
    from lesionkg.linking import link_graph
    from lesionkg.queries import QueryResult, format_result
    from lesionkg.response import describe_response
    from lesionkg.tracking import evaluate_matching, match_graph

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
    picked, _, _ = driver.execute_query(
        statement("demo_tracked_patient"), first_patient=first_patient, database_=database
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
    from lesionkg.etl import EtlOptions, run_etl
    from lesionkg.loaders.synthetic import write_synthetic_bookmarks

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
    from lesionkg.loaders.synthetic import write_synthetic_dl_info, write_synthetic_pairs
    from lesionkg.queries import format_result, run_named

    out = Path(out_dir)
    lines = []
    synthetic = data is None
    if synthetic:
        cohort = write_synthetic_dl_info(
            out,
            patients=patients,
            seed=seed,
            first_patient_index=DEMO_FIRST_PATIENT,
            images=True,
            progress=progress,
        )
        data, images = cohort.csv_path, out
        driver.execute_query(
            statement("delete_demo_cohort"),
            first_patient=f"{DEMO_FIRST_PATIENT:06d}",
            database_=database,
        )
        lines.append(
            f"SYNTHETIC demo cohort (not real patients): {cohort.patients} patients, "
            f"{cohort.studies} studies, {cohort.lesions} lesions, {cohort.images} CT slices "
            f"in {out}"
        )
    summary = load_deeplesion(driver, data, database=database, images=images, progress=progress)
    lines.append(summary.describe())
    queries = list(DEMO_QUERIES)
    trained_model: Path | None = None
    if images is not None and train:
        from lesionkg.embedding import embed_graph

        try:
            _, trained = _demo_model(Path(data), Path(images), out / "model", seed, progress)
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
    first = run_named(driver, database, "largest_lesions_per_patient", {"limit": "1"})
    if first.rows:
        patient = str(first.rows[0][0])
        queries.append(
            (f"Timeline of patient {patient}", "patient_timeline", {"patient_id": patient})
        )
    if images is not None and train:
        picked, _, _ = driver.execute_query(statement("demo_query_lesion"), database_=database)
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
