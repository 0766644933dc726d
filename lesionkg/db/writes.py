"""Bulk writes of lesion records: parameter rows in UNWIND batches, several writers in parallel."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from neo4j import Driver

from lesionkg.core.errors import LesionKGError
from lesionkg.core.records import LesionRecord
from lesionkg.db.driver import Tx, run_in, write_transaction
from lesionkg.db.schema import NODE_LABELS
from lesionkg.db.statements import statement


def lesion_props(
    rec: LesionRecord, image_path: str | None = None, dataset: str = "DeepLesion"
) -> dict[str, Any]:
    """The Lesion node's properties (the public schema) for one record."""
    props: dict[str, Any] = {
        "lesion_id": rec.lesion_id,
        "dataset": dataset,
        "patient_id": rec.patient_id,
        "study_id": rec.study_id,
        "study_index": rec.study_index,
        "series_id": rec.series_id,
        "file_name": rec.file_name,
        "key_slice": rec.key_slice,
        "recist": list(rec.recist_px),
        "bbox": list(rec.bbox_px),
        "diameters_px": list(rec.diameters_px),
        "long_axis_mm": rec.long_axis_mm,
        "short_axis_mm": rec.short_axis_mm,
        "location": list(rec.location),
        "coarse_type": rec.coarse_type,
        "coarse_type_name": rec.coarse_type_name,
        "noisy": rec.noisy,
        "split": rec.split,
        "slice_range": list(rec.slice_range),
        "spacing_mm": list(rec.spacing_mm),
        "image_size": list(rec.image_size_px),
        "window": list(rec.window_hu),
    }
    if image_path is not None:
        props["image_path"] = image_path
    return props


def in_lock_order(lesion_rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``db/upsert_lesions`` rows sorted by type.

    Concurrent batches all link lesions to the same 8 LesionType nodes; taking those locks in one
    global order (by type) turns would-be deadlocks into short waits.
    """
    return sorted(
        lesion_rows, key=lambda row: -1 if row["coarse_type"] is None else row["coarse_type"]
    )


@dataclass(frozen=True, slots=True)
class Change:
    """A value the graph holds that a re-import gives differently (``label`` node ``node_id``)."""

    label: str
    node_id: str
    field: str
    old: Any
    new: Any

    def __str__(self) -> str:
        return (
            f"{self.label} {self.node_id}, {self.field}: the graph holds {self.old!r}, "
            f"the input gives {self.new!r}"
        )


class ConflictError(LesionKGError):
    """A re-import would change values the graph holds; refused (``--update`` applies them)."""

    def __init__(self, changes: Sequence[Change], *, written: int = 0) -> None:
        self.changes = list(changes)
        shown = [str(c) for c in self.changes[:20]]
        if len(self.changes) > 20:
            shown.append(f"... and {len(self.changes) - 20} more")
        done = (
            "nothing was written"
            if written == 0
            else f"{written} lesions before it were written (they changed nothing known)"
        )
        super().__init__(
            f"{len(self.changes)} value(s) in the graph would change; {done}. Use --update to "
            "apply them:\n  " + "\n  ".join(shown)
        )


@dataclass
class WriteCounts:
    """Nodes created per label by one or more batches (the rest of those written existed), and
    the known values changed (under ``update``)."""

    created: dict[str, int] = field(default_factory=lambda: dict.fromkeys(NODE_LABELS, 0))
    relationships_created: int = 0
    changes: list[Change] = field(default_factory=list)

    def add(self, other: WriteCounts) -> None:
        for label, n in other.created.items():
            self.created[label] += n
        self.relationships_created += other.relationships_created
        self.changes.extend(other.changes)


def conflict_rows(records: Sequence[LesionRecord]) -> dict[str, list[dict[str, Any]]]:
    """The parameters of ``db/conflicts`` for DeepLesion records: type, sex, age."""
    patients: dict[str, Any] = {}
    studies: dict[str, Any] = {}
    for rec in records:
        patients.setdefault(rec.patient_id, rec.sex)
        studies.setdefault(rec.study_id, rec.age_years)
    return {
        "lesions": [{"id": r.lesion_id, "value": r.coarse_type} for r in records],
        "patients": [{"id": k, "value": v} for k, v in patients.items()],
        "studies": [{"id": k, "value": v} for k, v in studies.items()],
    }


def find_conflicts(tx: Tx, rows: dict[str, list[dict[str, Any]]]) -> list[Change]:
    """The known values that ``rows`` (:func:`conflict_rows`) would change, read in ``tx``."""
    return [
        Change(r["label"], r["id"], r["field"], r["old"], r["new"])
        for r in run_in(tx, "db/conflicts", **rows)
    ]


def _write_batch(
    tx: Tx,
    patients: list,
    studies: list,
    lesions: list,
    conflicts: dict[str, list[dict[str, Any]]] | None = None,
    update: bool = False,
) -> WriteCounts:
    out = WriteCounts()
    if conflicts is not None:
        # Read before anything is written, in the same transaction: a concurrent load of the
        # same rows commits before or after, never in between.
        out.changes = find_conflicts(tx, conflicts)
        if out.changes and not update:
            raise ConflictError(out.changes)
    for label, name, rows in (
        ("Patient", "db/upsert_patients", patients),
        ("Study", "db/upsert_studies", studies),
        ("Lesion", "db/upsert_lesions", lesions),
    ):
        summary = tx.run(statement(name), rows=rows).consume()
        out.created[label] += summary.counters.nodes_created
        out.relationships_created += summary.counters.relationships_created
    return out


def write_lesions(
    driver: Driver,
    database: str,
    records: Sequence[LesionRecord],
    image_paths: Sequence[str | None] | None = None,
    *,
    dataset: str = "DeepLesion",
    update: bool = False,
    check_conflicts: bool = True,
) -> WriteCounts:
    """Upsert one batch of lesions with their patients and studies in ONE transaction.

    Either the whole batch is in the graph or none of it; transient failures are retried by the
    driver's managed transaction. ``image_paths`` (same length as ``records``) adds
    ``image_path``; ``dataset`` labels the Patient and Lesion nodes (``synthetic`` for generated
    data). A known type, sex or age that the batch gives differently raises
    :class:`ConflictError` (nothing of the batch written), or with ``update`` is written and
    listed in the result's ``changes``.
    """
    patients: dict[str, dict] = {}
    studies: dict[str, dict] = {}
    lesions: list[dict[str, Any]] = []
    paths: Iterable[str | None] = image_paths if image_paths is not None else [None] * len(records)
    for rec, path in zip(records, paths, strict=True):
        patients.setdefault(
            rec.patient_id, {"patient_id": rec.patient_id, "sex": rec.sex, "dataset": dataset}
        )
        studies.setdefault(
            rec.study_id,
            {
                "study_id": rec.study_id,
                "patient_id": rec.patient_id,
                "study_index": rec.study_index,
                "patient_age": rec.age_years,
            },
        )
        lesions.append(
            {
                "lesion_id": rec.lesion_id,
                "study_id": rec.study_id,
                "coarse_type": rec.coarse_type,
                "props": lesion_props(rec, path, dataset),
            }
        )
    ordered = in_lock_order(lesions)
    return write_transaction(
        driver,
        database,
        lambda tx: _write_batch(
            tx,
            list(patients.values()),
            list(studies.values()),
            ordered,
            conflict_rows(records) if check_conflicts else None,
            update,
        ),
        f"writing a batch of {len(records)} lesions",
    )
