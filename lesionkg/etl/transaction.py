"""The one write transaction of an import batch: patients, studies and lesions, the re-numbered
study order, ``SIMILAR_TO`` edges and type votes, and the re-matched tracks of every patient the
batch touches. Either all of it is in the graph or none of it.

Lesions already in the graph (ids are keyed hashes of the source's ids, so a re-imported file
has the same ones) are left as they are and counted as duplicates.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from lesionkg.core.matching import MatchConfig, MatchLesion, Tracks, match_patient, reader_agreement
from lesionkg.db.driver import Driver, Tx, run_in, run_statement, write_transaction
from lesionkg.db.writes import in_lock_order
from lesionkg.etl.preparation import PreparedFile, PreparedLesion
from lesionkg.etl.report import Outcome
from lesionkg.etl.spaces import Spaces
from lesionkg.graph.matching import read_match_lesions, track_rows


def study_order(studies: Iterable[tuple[str, str | None]]) -> dict[str, int]:
    """1-based study index of each ``(study_id, study_datetime ISO)`` of one patient.

    Studies are ordered by study time, then id (two studies at one time keep a stable order; a
    study without a time goes first, as DeepLesion's own studies have none).
    """
    ordered = sorted(set(studies), key=lambda s: (s[1] or "", s[0]))
    return {study_id: i for i, (study_id, _) in enumerate(ordered, start=1)}


@dataclass(frozen=True)
class StudyRows:
    """The studies a batch writes: new studies' rows, existing studies whose index changes,
    and the index of every study of the batch's patients."""

    new: list[dict[str, Any]]
    renumbered: list[dict[str, Any]]
    index_of: dict[str, int]


def study_rows(
    driver: Driver,
    database: str,
    prepared: PreparedFile,
    new: Sequence[PreparedLesion],
    patients: Sequence[str],
) -> StudyRows:
    """The :class:`StudyRows` of the ``new`` lesions of ``prepared``: studies keep the index
    their source gives (DeepLesion) or are ordered by time with the patients' stored ones."""
    new_studies = {lesion.study_id for lesion in new}
    if not prepared.ordered_by_time:
        return StudyRows(
            [prepared.studies[s] for s in sorted(new_studies)],
            [],
            {s: prepared.studies[s]["study_index"] for s in new_studies},
        )
    existing = run_statement(
        driver,
        database,
        "etl/patient_studies",
        "reading the patients' studies",
        read=True,
        patient_ids=list(patients),
    )
    by_patient: dict[str, list[tuple[str, str | None]]] = defaultdict(list)
    old_index = {}
    for r in existing:
        by_patient[r["patient_id"]].append((r["study_id"], r["study_datetime"]))
        old_index[r["study_id"]] = r["study_index"]
    for s in new_studies:
        row = prepared.studies[s]
        by_patient[row["patient_id"]].append((s, row["study_datetime"]))
    index_of: dict[str, int] = {}
    for pid in patients:
        index_of.update(study_order(by_patient[pid]))
    renumbered = [
        {"study_id": s, "study_index": i}
        for s, i in index_of.items()
        if s in old_index and old_index[s] != i
    ]
    rows = [
        {**prepared.studies[s], "study_index": index_of[s]}
        for s in sorted(new_studies)
        if s not in old_index
    ]
    return StudyRows(rows, renumbered, index_of)


def _count_reader_links(
    stored: dict[str, list[MatchLesion]],
    tracks: dict[str, Tracks],
    matching: MatchConfig,
    outcome: Outcome,
) -> None:
    """Reader links written, and how often matching without the UIDs agrees with them."""
    for pid, patient_tracks in tracks.items():
        outcome.reader_links += sum(1 for link in patient_tracks.links if link.by == "reader")
        if any(m.tracking_uid for m in stored[pid]):
            agreement = reader_agreement(stored[pid], matching)
            outcome.reader_agreement.update(
                pairs=agreement.pairs, agree=agreement.agree, disagree=agreement.disagree
            )


def write_prepared(
    driver: Driver,
    database: str,
    prepared: PreparedFile,
    spaces: Spaces,
    *,
    key_id: str | None,
    matching: MatchConfig,
) -> tuple[set[str], Outcome]:
    """Write the new lesions of ``prepared`` in one transaction, then add them to ``spaces``.

    Returns the ids already present and what the new lesions gave. ``key_id`` (PACS ids only)
    is recorded as the pseudonymisation key of the graph. Failures raise
    :class:`~lesionkg.core.errors.DatabaseError`; an unavailable server its
    ``DatabaseUnavailableError``, which the importer retries.
    """
    ids = [lesion.lesion_id for lesion in prepared.lesions]
    found = run_statement(
        driver, database, "etl/existing_lesions", "finding duplicates", read=True, lesion_ids=ids
    )
    present = {r["lesion_id"] for r in found}
    new = [lesion for lesion in prepared.lesions if lesion.lesion_id not in present]
    outcome = Outcome()
    if not new:
        spaces.add(prepared.lesions)
        return present, outcome
    patients = sorted({lesion.patient_id for lesion in new})
    studies = study_rows(driver, database, prepared, new, patients)
    similar = spaces.similar(new)
    votes = spaces.votes(new, similar)
    for lesion in new:
        lesion.props["study_index"] = studies.index_of[lesion.study_id]
        source = str(lesion.props.get("location_source", "none"))
        outcome.location[source.split(";")[0].split(" (")[0]] += 1
        outcome.embedded += "triplet" in lesion.vectors
    patient_rows = [prepared.patients[p] for p in patients]
    lesion_rows = in_lock_order(
        {
            "lesion_id": lesion.lesion_id,
            "study_id": lesion.study_id,
            "coarse_type": lesion.coarse_type,
            "props": lesion.props,
        }
        for lesion in new
    )

    def work(tx: Tx) -> tuple[dict[str, list[MatchLesion]], dict[str, Tracks]]:
        if key_id is not None:
            run_in(tx, "etl/record_key", key_id=key_id)
        run_in(tx, "db/upsert_patients", rows=patient_rows)
        upsert_studies = "etl/upsert_studies" if prepared.ordered_by_time else "db/upsert_studies"
        run_in(tx, upsert_studies, rows=studies.new)
        run_in(tx, "db/upsert_lesions", rows=lesion_rows)
        if studies.renumbered:
            run_in(tx, "etl/study_order", rows=studies.renumbered)
        for space, (sources, rows) in similar.items():
            run_in(
                tx,
                "graph/write_similar",
                sources=sources,
                rows=rows,
                space=space,
                producer=spaces.producer(space),
            )
        for space, rows in votes.items():
            run_in(tx, "graph/set_predicted_types", rows=rows, space=space)
        # Matching reads the patients back in this transaction: their new lesions and the
        # re-numbered studies are what it must see, exactly as `lesionkg match` would.
        stored = read_match_lesions(tx, database, patients)
        tracks = {pid: match_patient(stored[pid], matching) for pid in patients}
        run_in(tx, "graph/write_tracks", patients=track_rows(tracks))
        return stored, tracks

    stored, tracks = write_transaction(driver, database, work, f"writing {len(new)} bookmarks")
    _count_reader_links(stored, tracks, matching, outcome)
    outcome.similar_edges = sum(len(rows) for _, rows in similar.values())
    outcome.patients_rematched = len(patients)
    spaces.add(prepared.lesions)
    return present, outcome
