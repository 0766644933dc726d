"""Lesion tracks in the graph: run :mod:`lesionkg.matching` on the stored lesions, write the tracks,
and score them against same-lesion pairs.

Writes ``track_id`` on every lesion (singletons too) and ``(:Lesion)-[:FOLLOWED_BY {score,
same_study}]->(:Lesion)`` between consecutive measurements of a track. A run replaces the tracks
of the patients it covers, in batches of patients, one transaction per batch.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import networkx as nx
from neo4j import Driver
from tqdm import tqdm

from lesionkg.errors import QueryError
from lesionkg.evaluation import (
    MatchingScores,
    PairLesion,
    resolve_pair_lesion,
    score_matching,
)
from lesionkg.graph import apply_schema, run_statement
from lesionkg.loaders.pairs import read_same_lesion_pairs
from lesionkg.matching import BASELINE, MatchConfig, MatchLesion, match_patient

PATIENTS_PER_BATCH = 200


@dataclass
class MatchSummary:
    """What one ``match`` run did."""

    patients: int = 0
    lesions: int = 0
    tracks: int = 0
    multi_tracks: int = 0
    links: int = 0
    same_study_links: int = 0
    seconds: float = 0.0
    config: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def _read(driver: Driver, database: str, patient_id: str | None) -> dict[str, list[MatchLesion]]:
    rows = run_statement(
        driver,
        database,
        "match_lesions",
        "reading lesions for matching",
        read=True,
        patient_id=patient_id,
    )
    out: dict[str, list[MatchLesion]] = defaultdict(list)
    for r in rows:
        out[r["patient_id"]].append(
            MatchLesion(
                lesion_id=r["lesion_id"],
                study_index=r["study_index"],
                series_id=r["series_id"],
                location=tuple(r["location"]),
                long_axis_mm=r["long_axis_mm"],
                coarse_type=r["coarse_type"],
                embedding=tuple(r["embedding"]) if r["embedding"] is not None else None,
            )
        )
    return out


def match_graph(
    driver: Driver,
    *,
    database: str = "neo4j",
    patient_id: str | None = None,
    config: MatchConfig | None = None,
    progress: bool = True,
) -> MatchSummary:
    """Match the lesions of one patient (or all) and replace their tracks in the graph.

    ``config`` defaults to :class:`MatchConfig`'s defaults.
    """
    config = config or MatchConfig()
    started = time.perf_counter()
    by_patient = _read(driver, database, patient_id)
    if patient_id is not None and not by_patient:
        raise QueryError(f"no lesions of patient {patient_id!r} in the graph")
    summary = MatchSummary(config=config.as_dict())
    apply_schema(driver, database)
    batch: list[dict] = []
    bar = tqdm(total=len(by_patient), desc="match", unit="patient", disable=not progress)

    def flush() -> None:
        if not batch:
            return
        run_statement(
            driver,
            database,
            "write_tracks",
            f"writing the tracks of {len(batch)} patients",
            patients=batch,
        )
        bar.update(len(batch))
        batch.clear()

    for pid in sorted(by_patient):
        lesions = by_patient[pid]
        tracks = match_patient(lesions, config)
        summary.patients += 1
        summary.lesions += len(lesions)
        sizes = defaultdict(int)
        for track in tracks.track_of.values():
            sizes[track] += 1
        summary.tracks += len(sizes)
        summary.multi_tracks += sum(1 for n in sizes.values() if n > 1)
        summary.links += len(tracks.links)
        summary.same_study_links += sum(1 for link in tracks.links if link.same_study)
        batch.append(
            {
                "patient_id": pid,
                "tracks": [{"lesion_id": k, "track_id": v} for k, v in tracks.track_of.items()],
                "links": [asdict(link) for link in tracks.links],
            }
        )
        if len(batch) >= PATIENTS_PER_BATCH:
            flush()
    flush()
    bar.close()
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


@dataclass
class MatchingReport:
    """Scores of the stored tracks beside the baseline and the ground truth's own ceiling."""

    pairs_file: str
    pairs: int
    unresolved: list[str]
    ours: MatchingScores
    baseline: MatchingScores
    #: tracks = connected components of the ground-truth pairs themselves: pairs that disagree
    #: with each other (two lesions of one volume in a component) cap what any tracking can score
    ground_truth_components: MatchingScores
    targets: dict = field(default_factory=lambda: {"recall": 0.98, "precision": 0.99})

    def as_dict(self) -> dict:
        return {
            "pairs_file": self.pairs_file,
            "pairs": self.pairs,
            "unresolved": self.unresolved,
            "ours": self.ours.as_dict(),
            "baseline": self.baseline.as_dict(),
            "ground_truth_components": self.ground_truth_components.as_dict(),
            "targets": self.targets,
            "targets_met": self.ours.recall >= self.targets["recall"]
            and self.ours.precision >= self.targets["precision"],
        }


def evaluate_matching(
    driver: Driver, pairs_path: Path, *, database: str = "neo4j"
) -> MatchingReport:
    """Score the graph's tracks on a same-lesion pairs CSV, beside the baseline of the same run.

    The baseline (:data:`lesionkg.matching.BASELINE`) is computed here from the same lesions.
    Pairs whose key slice is not in the graph are listed in ``unresolved``, never dropped silently.
    """
    pairs = read_same_lesion_pairs(pairs_path)
    rows = run_statement(driver, database, "tracked_lesions", "reading lesions", read=True)
    untracked = [r["lesion_id"] for r in rows if r["track_id"] is None]
    if untracked:
        raise QueryError(
            f"{len(untracked)} lesions have no track_id (e.g. {untracked[0]}): run `lesionkg match`"
        )
    by_file: dict[str, list[PairLesion]] = defaultdict(list)
    volume_of, type_of, ours = {}, {}, {}
    by_patient: dict[str, list[MatchLesion]] = defaultdict(list)
    for r in rows:
        lid = r["lesion_id"]
        by_file[r["file_name"]].append(
            PairLesion(lid, r["file_name"], r["long_axis_mm"], r["short_axis_mm"])
        )
        volume_of[lid] = (r["patient_id"], r["study_index"], r["series_id"])
        type_of[lid] = r["coarse_type"]
        ours[lid] = r["track_id"]
        by_patient[r["patient_id"]].append(
            MatchLesion(
                lid,
                r["study_index"],
                r["series_id"],
                tuple(r["location"]),
                r["long_axis_mm"],
                r["coarse_type"],
            )
        )
    resolved: list[tuple[str, str]] = []
    unresolved: list[str] = []
    for p in pairs:
        a = resolve_pair_lesion(
            p.source_file_name, p.source_diameters_mm, by_file[p.source_file_name]
        )
        b = resolve_pair_lesion(
            p.target_file_name, p.target_diameters_mm, by_file[p.target_file_name]
        )
        if a is None or b is None:
            missing = p.source_file_name if a is None else p.target_file_name
            unresolved.append(f"{pairs_path}, line {p.line}: no lesion of the graph on {missing}")
        else:
            resolved.append((a, b))
    if not resolved:
        raise QueryError(
            f"none of the {len(pairs)} pairs of {pairs_path} names lesions of the graph "
            "(load the split the pairs come from)"
        )
    baseline: dict[str, str] = {}
    for pid in sorted(by_patient):
        baseline.update(match_patient(by_patient[pid], BASELINE).track_of)
    components = nx.Graph()
    components.add_nodes_from(ours)
    components.add_edges_from(resolved)
    truth = {lid: str(i) for i, cc in enumerate(nx.connected_components(components)) for lid in cc}
    return MatchingReport(
        pairs_file=str(pairs_path),
        pairs=len(pairs),
        unresolved=unresolved,
        ours=score_matching(resolved, ours, volume_of, type_of),
        baseline=score_matching(resolved, baseline, volume_of, type_of),
        ground_truth_components=score_matching(resolved, truth, volume_of, type_of),
    )
