"""Bulk writes of lesion records: parameter rows in UNWIND batches, several writers in parallel."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from neo4j import Driver

from lesionkg.core.records import LesionRecord
from lesionkg.db.driver import Tx, write_transaction
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


@dataclass
class WriteCounts:
    """Nodes created per label by one or more batches (the rest of those written existed)."""

    created: dict[str, int] = field(default_factory=lambda: dict.fromkeys(NODE_LABELS, 0))
    relationships_created: int = 0

    def add(self, other: WriteCounts) -> None:
        for label, n in other.created.items():
            self.created[label] += n
        self.relationships_created += other.relationships_created


def _write_batch(tx: Tx, patients: list, studies: list, lesions: list) -> WriteCounts:
    out = WriteCounts()
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
) -> WriteCounts:
    """Upsert one batch of lesions with their patients and studies in ONE transaction.

    Either the whole batch is in the graph or none of it; transient failures are retried by the
    driver's managed transaction. ``image_paths`` (same length as ``records``) adds
    ``image_path``; ``dataset`` labels the Patient and Lesion nodes (``synthetic`` for generated
    data).
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
        lambda tx: _write_batch(tx, list(patients.values()), list(studies.values()), ordered),
        f"writing a batch of {len(records)} lesions",
    )
