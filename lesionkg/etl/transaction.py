"""The one write transaction of an import batch: patients, studies and lesions, the re-numbered
study order, ``SIMILAR_TO`` edges and type votes, and the re-matched tracks of every patient the
batch touches. Either all of it is in the graph or none of it.

Lesions already in the graph (ids are keyed hashes of the source's ids, so a re-imported file
has the same ones) are left as they are and counted as duplicates, unless the re-import gives a
known value differently: then the batch is refused, or under ``update`` the value is applied.

Concurrent imports: the transaction locks the batch's patients first (sorted), then reads; see
:func:`write_prepared`.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lesionkg.core.errors import ConfigurationError
from lesionkg.core.matching import MatchConfig, MatchLesion, Tracks, match_patient, reader_agreement
from lesionkg.core.provenance import GIVEN
from lesionkg.db.driver import Driver, Record, Tx, run_in, run_statement, write_transaction
from lesionkg.db.writes import Change, ConflictError, find_conflicts, in_lock_order
from lesionkg.etl.preparation import PreparedFile, PreparedLesion
from lesionkg.etl.report import Outcome
from lesionkg.etl.spaces import Spaces
from lesionkg.graph.matching import read_match_lesions, track_rows

log = logging.getLogger(__name__)


def study_order(studies: Iterable[tuple[str, str | None]]) -> dict[str, int]:
    """1-based study index of each ``(study_id, study_datetime ISO)`` of one patient.

    Studies are ordered by study time, then id (two studies at one time keep a stable order; a
    study without a time goes first, as DeepLesion's own studies have none). A study given twice
    with different times (two reports of one study) counts once, at its first time given.
    """
    first: dict[str, str | None] = {}
    for study_id, when in studies:
        if first.get(study_id) is None:
            first[study_id] = when
    ordered = sorted(first.items(), key=lambda s: (s[1] or "", s[0]))
    return {study_id: i for i, (study_id, _) in enumerate(ordered, start=1)}


@dataclass(frozen=True)
class StudyRows:
    """The studies a batch writes: new studies' rows, existing studies whose index changes,
    and the index of every study of the batch's patients."""

    new: list[dict[str, Any]]
    renumbered: list[dict[str, Any]]
    index_of: dict[str, int]


def study_rows(
    tx: Tx,
    prepared: PreparedFile,
    new: Sequence[PreparedLesion],
    patients: Sequence[str],
) -> StudyRows:
    """The :class:`StudyRows` of the ``new`` lesions of ``prepared``: studies keep the index
    their source gives (DeepLesion) or are ordered by time with the patients' stored ones.

    Read inside the write transaction ``tx``, after the patients' locks were taken
    (``etl/lock_patients``): what another import of these patients committed is seen, and none
    can commit a study of theirs before this transaction ends. A stored study keeps its stored
    time; a second report of it adds no second place in the order.
    """
    new_studies = {lesion.study_id for lesion in new}
    if not prepared.ordered_by_time:
        return StudyRows(
            [prepared.studies[s] for s in sorted(new_studies)],
            [],
            {s: prepared.studies[s]["study_index"] for s in new_studies},
        )
    existing = run_in(tx, "etl/patient_studies", patient_ids=list(patients))
    by_patient: dict[str, list[tuple[str, str | None]]] = defaultdict(list)
    old_index: dict[str, int | None] = {}
    old_time: dict[str, str | None] = {}
    for r in existing:
        by_patient[r["patient_id"]].append((r["study_id"], r["study_datetime"]))
        old_index[r["study_id"]] = r["study_index"]
        old_time[r["study_id"]] = r["study_datetime"]
    for s in sorted(new_studies):
        row = prepared.studies[s]
        by_patient[row["patient_id"]].append((s, row["study_datetime"]))
    index_of: dict[str, int] = {}
    for pid in patients:
        index_of.update(study_order(by_patient[pid]))
    renumbered = [
        {
            "study_id": s,
            "study_index": i,
            "study_datetime": prepared.studies.get(s, {}).get("study_datetime"),
        }
        for s, i in sorted(index_of.items())
        if s in old_index
        and (
            old_index[s] != i
            or (old_time[s] is None and prepared.studies.get(s, {}).get("study_datetime"))
        )
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


#: the properties of a PACS bookmark that a re-import may not change silently
CHECKED_FIELDS = ("coarse_type", "location", "window", "series_id")
#: properties derived from the checked ones, rewritten with them under ``update``
_DERIVED = {
    "coarse_type": ("coarse_type_name",),
    "location": ("location_source", "cues", "cues_version"),
    "window": ("cues", "cues_version"),
    "series_id": (),
}


def _differs(old: Any, new: Any) -> bool:
    if isinstance(old, list) and isinstance(new, list):
        return len(old) != len(new) or any(
            not math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
            for a, b in zip(old, new, strict=True)
        )
    return bool(old != new)


def lesion_changes(stored: Record | dict[str, Any], lesion: PreparedLesion) -> list[Change]:
    """The checked values of a stored PACS lesion that ``lesion`` (the same bookmark, imported
    again) gives differently. A value the graph does not hold yet is no conflict; a location
    counts only when both were given by the source (one computed from the image may differ by
    model)."""
    out = []
    for name in CHECKED_FIELDS:
        old, new = stored[name], lesion.props.get(name)
        if old is None or new is None:
            continue
        if name == "location" and (
            stored["location_source"] != GIVEN or lesion.props.get("location_source") != GIVEN
        ):
            continue
        if _differs(old, new):
            out.append(Change("Lesion", lesion.lesion_id, name, old, new))
    return out


@dataclass
class Written:
    """What :func:`write_prepared` did: the ids that were already in the graph, what the new
    lesions gave, and the known values changed (``update``)."""

    present: set[str]
    outcome: Outcome
    changes: list[Change]


@dataclass
class _TxResult:
    present: set[str]
    new: list[PreparedLesion]
    changes: list[Change]
    similar_edges: int = 0
    stored: dict[str, list[MatchLesion]] = field(default_factory=dict)
    tracks: dict[str, Tracks] = field(default_factory=dict)


def _find_changes(
    tx: Tx, prepared: PreparedFile, found: Sequence[Record], present: set[str]
) -> list[Change]:
    """Conflicts of the batch's already-present lesions (and, for DeepLesion rows, patients and
    studies), read in ``tx`` before it writes anything."""
    if prepared.ordered_by_time:
        by_id = {lesion.lesion_id: lesion for lesion in prepared.lesions}
        return [c for r in found for c in lesion_changes(r, by_id[r["lesion_id"]])]
    rows: dict[str, list[dict[str, Any]]] = {
        "lesions": [
            {"id": lesion.lesion_id, "value": lesion.coarse_type}
            for lesion in prepared.lesions
            if lesion.lesion_id in present
        ],
        "patients": [{"id": p, "value": r.get("sex")} for p, r in prepared.patients.items()],
        "studies": [{"id": s, "value": r.get("patient_age")} for s, r in prepared.studies.items()],
    }
    return find_conflicts(tx, rows)


def _update_rows(prepared: PreparedFile, changes: Sequence[Change]) -> dict[str, list]:
    """Parameter rows applying ``changes`` (``update``): lesions' changed and derived
    properties; DeepLesion patients' sex and studies' age through their upserts."""
    by_id = {lesion.lesion_id: lesion for lesion in prepared.lesions}
    lesions: dict[str, dict[str, Any]] = {}
    patients, studies = set(), set()
    for change in changes:
        if change.label == "Patient":
            patients.add(change.node_id)
        elif change.label == "Study":
            studies.add(change.node_id)
        else:
            lesion = by_id[change.node_id]
            row = lesions.setdefault(
                lesion.lesion_id,
                {"lesion_id": lesion.lesion_id, "coarse_type": lesion.coarse_type, "props": {}},
            )
            for name in (change.field, *_DERIVED.get(change.field, ())):
                if name in lesion.props:
                    row["props"][name] = lesion.props[name]
    return {
        "lesions": in_lock_order(lesions.values()),
        "patients": [prepared.patients[p] for p in sorted(patients)],
        "studies": [prepared.studies[s] for s in sorted(studies)],
    }


def write_prepared(
    driver: Driver,
    database: str,
    prepared: PreparedFile,
    spaces: Spaces,
    *,
    key_id: str | None,
    matching: MatchConfig,
    update: bool = False,
) -> Written:
    """Write the new lesions of ``prepared`` in one transaction, then add them to ``spaces``.

    ``key_id`` (PACS ids only) is recorded as the pseudonymisation key of the graph; a graph
    holding another key refuses the batch (:class:`ConfigurationError`, nothing written). The
    transaction first takes the write locks of the batch's patients, in sorted order
    (``etl/lock_patients``), and only then reads which lesions are present, the patients'
    studies and their lesions for matching: concurrent imports of the same patients run one
    after the other, and each counts only the lesions it really added. A present lesion whose
    checked values (:data:`CHECKED_FIELDS`; type, sex and age for DeepLesion rows) differ
    raises :class:`ConflictError` (nothing of the batch written) unless ``update``, which
    applies and returns them. Failures raise :class:`~lesionkg.core.errors.DatabaseError`; an
    unavailable server its ``DatabaseUnavailableError``, which the importer retries.
    """
    ids = [lesion.lesion_id for lesion in prepared.lesions]
    # A read outside the transaction spares one for a file already imported: lesions are never
    # deleted by an import, so what is present now stays present.
    found = run_statement(
        driver, database, "etl/existing_lesions", "finding duplicates", read=True, lesion_ids=ids
    )
    if len(found) == len(set(ids)) and prepared.ordered_by_time:
        changes = [
            c
            for r in found
            for lesion in prepared.lesions
            if lesion.lesion_id == r["lesion_id"]
            for c in lesion_changes(r, lesion)
        ]
        if not changes:
            spaces.add(prepared.lesions)
            return Written({r["lesion_id"] for r in found}, Outcome(), [])
        if not update:
            raise ConflictError(changes)
    patients = sorted({lesion.patient_id for lesion in prepared.lesions})
    lock_rows = [prepared.patients[p] for p in patients]

    def work(tx: Tx) -> _TxResult:
        if key_id is not None:
            _record_key(tx, key_id)
        run_in(tx, "etl/lock_patients", rows=lock_rows)
        found = run_in(tx, "etl/existing_lesions", lesion_ids=ids)
        present = {r["lesion_id"] for r in found}
        changes = _find_changes(tx, prepared, found, present)
        if changes and not update:
            raise ConflictError(changes)
        new = [lesion for lesion in prepared.lesions if lesion.lesion_id not in present]
        result = _TxResult(present, new, changes)
        if changes:
            fixes = _update_rows(prepared, changes)
            run_in(tx, "db/upsert_patients", rows=fixes["patients"])
            run_in(tx, "db/upsert_studies", rows=fixes["studies"])
            run_in(tx, "etl/update_lesions", rows=fixes["lesions"])
        if not new:
            return result
        spaces.lock(tx)
        touched = sorted({lesion.patient_id for lesion in new})
        studies = study_rows(tx, prepared, new, touched)
        for lesion in new:
            lesion.props["study_index"] = studies.index_of[lesion.study_id]
        lesion_rows = in_lock_order(
            {
                "lesion_id": lesion.lesion_id,
                "study_id": lesion.study_id,
                "coarse_type": lesion.coarse_type,
                "props": lesion.props,
            }
            for lesion in new
        )
        run_in(tx, "db/upsert_patients", rows=[prepared.patients[p] for p in touched])
        upsert_studies = "etl/upsert_studies" if prepared.ordered_by_time else "db/upsert_studies"
        run_in(tx, upsert_studies, rows=studies.new)
        run_in(tx, "db/upsert_lesions", rows=lesion_rows)
        if studies.renumbered:
            run_in(tx, "etl/study_order", rows=studies.renumbered)
        result.similar_edges = spaces.write(tx, new)
        # Matching reads the patients back in this transaction: their new lesions and the
        # re-numbered studies are what it must see, exactly as `lesionkg match` would.
        result.stored = read_match_lesions(tx, database, touched)
        result.tracks = {pid: match_patient(result.stored[pid], matching) for pid in touched}
        run_in(tx, "graph/write_tracks", patients=track_rows(result.tracks))
        return result

    what = f"writing {len(ids) - len(found)} bookmarks"
    result = write_transaction(driver, database, work, what)
    outcome = Outcome()
    for lesion in result.new:
        source = str(lesion.props.get("location_source", "none"))
        outcome.location[source.split(";")[0].split(" (")[0]] += 1
        outcome.embedded += "triplet" in lesion.vectors
    _count_reader_links(result.stored, result.tracks, matching, outcome)
    outcome.similar_edges = result.similar_edges
    outcome.patients_rematched = len(result.tracks)
    spaces.add(prepared.lesions)
    for change in result.changes:
        log.info("updated %s", change)
    return Written(result.present, outcome, result.changes)


def _record_key(tx: Tx, key_id: str) -> None:
    """Record ``key_id`` as the graph's one pseudonymisation key, or refuse the batch."""
    row = run_in(tx, "etl/record_key", key_id=key_id)[0]
    others = [row["key_id"], *row["other_key_ids"]]
    if any(other != key_id for other in others):
        raise ConfigurationError(
            f"the graph's PACS ids were made with pseudonymisation key "
            f"{next(o for o in others if o != key_id)}, but the key file gives {key_id}: with "
            "another key the same patient would get another id; nothing of this import was "
            "written. Use the original key file (--secret), or a new database"
        )
