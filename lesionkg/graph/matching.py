"""Lesion tracks in the graph: run :mod:`lesionkg.core.matching` on the stored lesions, write the
tracks, and score them against same-lesion pairs.

Writes ``track_id`` on every lesion (singletons too) and ``(:Lesion)-[:FOLLOWED_BY {score,
same_study, by}]->(:Lesion)`` between consecutive measurements of a track (``by``: "reader" when
a PACS reader gave both one tracking UID, else "matching"). A run replaces the tracks of the
patients it covers, in batches of patients, one transaction per batch.

An ETL that matches the patients it just loaded inside its own write transaction uses the two
halves of :func:`match_graph` directly::

    by_patient = read_match_lesions(tx, database, patient_ids)
    tracks = {pid: match_patient(lesions) for pid, lesions in by_patient.items()}
    run_in(tx, "graph/write_tracks", patients=track_rows(tracks))
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
from tqdm import tqdm

from lesionkg.core.errors import QueryError
from lesionkg.core.matching import (
    BASELINE,
    BY_READER,
    MatchConfig,
    MatchLesion,
    ReaderAgreement,
    Tracks,
    match_patient,
    reader_agreement,
)
from lesionkg.core.metrics import MatchingScores, PairLesion, resolve_pair_lesion, score_matching
from lesionkg.db.driver import Driver, Tx, run_in, run_statement
from lesionkg.db.schema import apply_schema
from lesionkg.loaders.pairs import read_same_lesion_pairs

PATIENTS_PER_BATCH = 200


@dataclass
class MatchSummary:
    """What one ``match`` run did.

    ``reader_links``: FOLLOWED_BY edges ``by`` "reader" (two lesions of one tracking UID);
    ``reader_conflicts``: reader links refused (one UID twice in one volume);
    ``reader_agreement``: ``pairs``, ``agree``, ``disagree`` of
    :func:`lesionkg.core.matching.reader_agreement`, summed over the patients.
    """

    patients: int = 0
    lesions: int = 0
    tracks: int = 0
    multi_tracks: int = 0
    links: int = 0
    same_study_links: int = 0
    reader_links: int = 0
    reader_conflicts: int = 0
    reader_agreement: dict = field(default_factory=lambda: ReaderAgreement().as_dict())
    seconds: float = 0.0
    config: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        lines = [
            f"matched {self.lesions} lesions of {self.patients} patients in "
            f"{self.seconds:.1f} s: {self.tracks} tracks, {self.multi_tracks} with two or "
            f"more measurements, {self.links} FOLLOWED_BY edges ({self.same_study_links} "
            "between two series of one study)"
        ]
        if self.reader_links or self.reader_conflicts:
            agreement = self.reader_agreement
            lines.append(
                f"{self.reader_links} links from reader tracking UIDs ({self.reader_conflicts} "
                f"refused: one UID twice in one series); matching without the UIDs agrees on "
                f"{agreement['agree']} of {agreement['pairs']} reader pairs"
            )
        return "\n".join(lines)


def _match_lesion(r: Mapping[str, Any]) -> MatchLesion:
    """A :class:`MatchLesion` from a row of ``match_lesions`` (or ``tracked_lesions``, which has
    no embedding column)."""
    embedding = r.get("embedding")
    return MatchLesion(
        lesion_id=r["lesion_id"],
        study_index=r["study_index"],
        series_id=r["series_id"],
        # the statements give x, y, z; x, y, NaN (z unknown); or null (no location)
        location=tuple(r["location"]) if r["location"] is not None else None,
        long_axis_mm=r["long_axis_mm"],
        coarse_type=r["coarse_type"],
        embedding=tuple(embedding) if embedding is not None else None,
        tracking_uid=r["tracking_uid"],
    )


def read_match_lesions(
    driver: Driver | Tx,
    database: str,
    patient_ids: Sequence[str] | None,
) -> dict[str, list[MatchLesion]]:
    """What matching needs of the lesions of ``patient_ids`` (``None``: every patient), by patient.

    Patients without lesions are simply absent. ``driver`` may be an open transaction instead
    (an ETL's own write transaction, which must see the lesions it just wrote; ``database`` is
    then the transaction's and ignored). A Neo4j failure raises :class:`DatabaseError`; inside
    a transaction it propagates as it is, so that a managed transaction can retry a transient
    one (the caller turns what remains into a :class:`DatabaseError`).
    """
    if isinstance(patient_ids, str):
        # a str is a Sequence[str] too, and would read patients "0", "1", ...
        raise TypeError("read_match_lesions: patient_ids is a list of ids, not one id")
    ids = None if patient_ids is None else list(patient_ids)
    if isinstance(driver, Driver):
        rows = run_statement(
            driver,
            database,
            "graph/match_lesions",
            "reading lesions for matching",
            read=True,
            patient_ids=ids,
        )
    else:
        rows = run_in(driver, "graph/match_lesions", patient_ids=ids)
    out: dict[str, list[MatchLesion]] = defaultdict(list)
    for r in rows:
        out[r["patient_id"]].append(_match_lesion(r))
    return dict(out)


def track_rows(tracks_by_patient: Mapping[str, Tracks]) -> list[dict]:
    """The ``$patients`` parameter of ``write_tracks.cypher`` for these patients' tracks.

    ``run_in(tx, "graph/write_tracks", patients=track_rows(tracks))`` replaces their tracks.
    """
    return [
        {
            "patient_id": pid,
            "tracks": [{"lesion_id": k, "track_id": v} for k, v in tracks.track_of.items()],
            "links": [asdict(link) for link in tracks.links],
        }
        for pid, tracks in tracks_by_patient.items()
    ]


def match_graph(
    driver: Driver,
    *,
    database: str = "neo4j",
    patient_id: str | None = None,
    patient_ids: Sequence[str] | None = None,
    config: MatchConfig | None = None,
    progress: bool = True,
) -> MatchSummary:
    """Match the lesions of one patient, of some, or of all, and replace their tracks in the graph.

    ``patient_id``: only this patient, a :class:`QueryError` when it has no lesions;
    ``patient_ids``: only these patients, those without lesions simply absent from the summary
    (an ETL names the patients a batch touched). ``config`` defaults to :class:`MatchConfig`'s
    defaults; reader links (tracking UIDs) are used.
    """
    if patient_id is not None and patient_ids is not None:
        raise ValueError("match_graph: give patient_id or patient_ids, not both")
    config = config or MatchConfig()
    started = time.perf_counter()
    ids = [patient_id] if patient_id is not None else patient_ids
    by_patient = read_match_lesions(driver, database, ids)
    if patient_id is not None and not by_patient:
        raise QueryError(f"no lesions of patient {patient_id!r} in the graph")
    summary = MatchSummary(config=config.as_dict())
    agreement = ReaderAgreement()
    apply_schema(driver, database)
    batch: dict[str, Tracks] = {}
    bar = tqdm(total=len(by_patient), desc="match", unit="patient", disable=not progress)

    def flush() -> None:
        if not batch:
            return
        run_statement(
            driver,
            database,
            "graph/write_tracks",
            f"writing the tracks of {len(batch)} patients",
            patients=track_rows(batch),
        )
        bar.update(len(batch))
        batch.clear()

    for pid in sorted(by_patient):
        lesions = by_patient[pid]
        tracks = match_patient(lesions, config)
        summary.patients += 1
        summary.lesions += len(lesions)
        sizes: dict[str, int] = defaultdict(int)
        for track in tracks.track_of.values():
            sizes[track] += 1
        summary.tracks += len(sizes)
        summary.multi_tracks += sum(1 for n in sizes.values() if n > 1)
        summary.links += len(tracks.links)
        summary.same_study_links += sum(1 for link in tracks.links if link.same_study)
        summary.reader_links += sum(1 for link in tracks.links if link.by == BY_READER)
        summary.reader_conflicts += tracks.reader_conflicts
        agreement += reader_agreement(lesions, config)
        batch[pid] = tracks
        if len(batch) >= PATIENTS_PER_BATCH:
            flush()
    flush()
    bar.close()
    summary.reader_agreement = agreement.as_dict()
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
    #: :func:`lesionkg.core.matching.reader_agreement` over every patient of the graph (its default
    #: config): how often matching without reader links agrees with the readers' tracking UIDs
    reader_agreement: ReaderAgreement = field(default_factory=ReaderAgreement)

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
            "reader_agreement": self.reader_agreement.as_dict(),
        }

    def describe(self) -> str:
        lines = [f"{self.pairs} same-lesion pairs from {self.pairs_file}"]
        lines += [f"  unresolved: {line}" for line in self.unresolved]
        lines.append(f"{'tracks':<26}{'recall':>8}{'precision':>11}{'mixed-type tracks':>19}")
        for name, scores in (
            ("lesionkg (stored tracks)", self.ours),
            ("baseline (Hungarian, loc)", self.baseline),
            ("ground-truth components", self.ground_truth_components),
        ):
            lines.append(
                f"{name:<26}{scores.recall:>8.3f}{scores.precision:>11.3f}"
                f"{scores.mixed_type_share:>19.3f}"
            )
        plain = self.as_dict()
        agreement = plain["reader_agreement"]
        if agreement["pairs"]:
            lines.append(
                f"reader tracking UIDs: {agreement['pairs']} consecutive pairs; matching without "
                f"them agrees on {agreement['agree']}, disagrees on {agreement['disagree']}"
            )
        lines.append(
            f"targets recall >= {self.targets['recall']}, precision >= "
            f"{self.targets['precision']}: {'met' if plain['targets_met'] else 'NOT met'}"
        )
        return "\n".join(lines)


def evaluate_matching(
    driver: Driver, pairs_path: Path, *, database: str = "neo4j"
) -> MatchingReport:
    """Score the graph's tracks on a same-lesion pairs CSV, beside the baseline of the same run.

    The baseline (:data:`lesionkg.core.matching.BASELINE`) is computed here from the same lesions,
    reader links included, as the stored tracks had them. Pairs whose key slice is not in the graph
    are listed in ``unresolved``, never dropped silently. ``reader_agreement`` covers every patient
    with tracking UIDs (none in DeepLesion), whether the pairs name it or not.
    """
    pairs = read_same_lesion_pairs(pairs_path)
    rows = run_statement(driver, database, "graph/tracked_lesions", "reading lesions", read=True)
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
        by_patient[r["patient_id"]].append(_match_lesion(r))
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
    # Agreement needs the lesions exactly as `match` saw them (embeddings too), so it reads the
    # patients with tracking UIDs again; DeepLesion has none and reads nothing.
    with_uids = sorted({r["patient_id"] for r in rows if r["tracking_uid"] is not None})
    agreement = ReaderAgreement()
    if with_uids:
        for lesions in read_match_lesions(driver, database, with_uids).values():
            agreement += reader_agreement(lesions)
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
        reader_agreement=agreement,
    )
