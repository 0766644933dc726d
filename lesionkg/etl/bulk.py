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

from tqdm import tqdm

from lesionkg.core.errors import InvalidInputError, LesionKGError, Problem
from lesionkg.core.limits import DEFAULT_LIMITS, INT64_MAX, InputLimits
from lesionkg.core.records import LesionRecord
from lesionkg.db.driver import Driver, run_statement
from lesionkg.db.schema import NODE_LABELS, apply_schema
from lesionkg.db.writes import Change, WriteCounts, conflict_rows, write_lesions
from lesionkg.loaders.deeplesion import (
    RejectedRow,
    parse_dl_info,
    refuse_rejects_path,
    write_rejects,
)
from lesionkg.loaders.images import find_key_slice

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
    #: known values changed by rows given with ``update``, per field
    updated: dict[str, int] = field(default_factory=dict)
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
        if self.updated:
            changed = ", ".join(f"{k} {v}" for k, v in sorted(self.updated.items()))
            lines.append(f"  updated (--update): {changed}")
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
    update: bool = False,
    progress: bool = True,
    limits: InputLimits = DEFAULT_LIMITS,
) -> LoadSummary:
    """Load a DeepLesion ``DL_info.csv`` into the graph, streaming, in UNWIND batches.

    Without ``skip_invalid`` the whole file is validated first and nothing is written if any row
    is invalid (:class:`InvalidInputError` lists every problem). With it, valid rows are written
    in one pass and the rejected ones go, with their reasons, to ``rejects_path`` (default
    ``<csv name>.rejects.csv`` in the working directory). Loading the same file again changes
    nothing: ids are derived from content and every write is a MERGE. ``batch_size`` lesions go
    in one transaction; ``writers`` transactions run at once (``1, 1`` is one row per
    transaction, the benchmark's baseline).

    Before the first write the whole file is also compared with the graph: a row that gives a
    known lesion's type, a known patient's sex or a known study's age differently is refused
    (:class:`InvalidInputError` naming line, column and both values; nothing written), or with
    ``update`` written and counted per field in ``summary.updated``. Each write transaction
    checks again (:class:`~lesionkg.db.writes.ConflictError`), for a concurrent load.

    ``limits`` (``--limit NAME=VALUE``) are what the reader accepts. A rejects file that is the
    input under any name is refused (rule ``output_is_input``) before anything is read or written.
    """
    csv_path = Path(csv_path)
    if batch_size < 1 or writers < 1:
        raise LesionKGError(f"batch size and writers must be at least 1: {batch_size}, {writers}")
    images_root = Path(images) if images is not None else None
    if images_root is not None and not images_root.is_dir():
        raise LesionKGError(f"--images {images_root}: not a directory")
    rejects_out = (
        Path(rejects_path) if rejects_path else Path.cwd() / f"{csv_path.stem}.rejects.csv"
    )
    refuse_rejects_path(rejects_out, [csv_path])
    summary = LoadSummary(source=str(csv_path), dataset=dataset or dataset_of(csv_path))
    started = time.perf_counter()

    total = _validate(
        csv_path,
        progress,
        driver,
        database,
        strict=not skip_invalid,
        update=update,
        limits=limits,
    )

    apply_schema(driver, database)
    rejected: list[RejectedRow] = []
    seen_patients: set[str] = set()
    seen_studies: set[str] = set()
    counts = WriteCounts()

    in_flight: deque[tuple[Future, int]] = deque()

    def records() -> Iterator[LesionRecord]:
        try:
            for item in parse_dl_info(csv_path, limits=limits):
                summary.rows += 1
                if isinstance(item, RejectedRow):
                    rejected.append(item)
                elif problems := out_of_range(str(csv_path), item):
                    rejected.append(RejectedRow(item.source_line, {}, tuple(problems)))
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
                write_lesions,
                driver,
                database,
                batch,
                paths,
                dataset=summary.dataset,
                update=update,
            )
            in_flight.append((future, len(batch)))
        while in_flight:
            _collect(in_flight.popleft(), counts, summary, bar)
    summary.write_seconds = time.perf_counter() - write_started

    summary.rejected = len(rejected)
    if rejected:
        write_rejects(rejects_out, rejected)
        summary.rejects_file = str(rejects_out)
    summary.created = dict(counts.created)
    for change in counts.changes:
        summary.updated[change.field] = summary.updated.get(change.field, 0) + 1
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


#: the integer fields of a record, with the CSV column each comes from
_INT_FIELDS = {
    "study_index": "Study_index",
    "series_id": "Series_ID",
    "key_slice": "Key_slice_index",
    "slice_range": "Slice_range",
    "image_size_px": "Image_size",
}
#: the CSV column of each value :func:`~lesionkg.db.writes.conflict_rows` compares
CONFLICT_COLUMNS = {
    "coarse_type": "Coarse_lesion_type",
    "sex": "Patient_gender",
    "patient_age": "Patient_age",
}


def out_of_range(source: str, rec: LesionRecord) -> list[Problem]:
    """Problems of ``rec``'s integers that Neo4j cannot store (beyond 64 bits): found while
    validating, they would otherwise fail the write after earlier batches were committed."""
    out = []
    for name, column in _INT_FIELDS.items():
        value = getattr(rec, name)
        values = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, int) and abs(v) > INT64_MAX for v in values):
            out.append(
                Problem(source, rec.source_line, column, "integer out of range (64-bit signed)")
            )
    return out


def _conflict_problems(
    driver: Driver, database: str, source: str, records: list[LesionRecord]
) -> list[Problem]:
    """Known values that ``records`` give differently, as problems naming line and column."""
    rows = run_statement(
        driver,
        database,
        "db/conflicts",
        "comparing the file with the graph",
        read=True,
        **conflict_rows(records),
    )
    line_of: dict[str, int] = {}
    for rec in records:
        for node_id in (rec.lesion_id, rec.patient_id, rec.study_id):
            line_of.setdefault(node_id, rec.source_line)
    problems = []
    for r in rows:
        change = Change(r["label"], r["id"], r["field"], r["old"], r["new"])
        problems.append(
            Problem(
                source,
                line_of.get(change.node_id),
                CONFLICT_COLUMNS[change.field],
                f"changes a known value: {change.label} {change.node_id} is in the graph with "
                f"{change.field} {change.old!r}, the file gives {change.new!r} (--update "
                "applies it)",
            )
        )
    return problems


def _validate(
    csv_path: Path,
    progress: bool,
    driver: Driver,
    database: str,
    *,
    strict: bool = True,
    update: bool = False,
    limits: InputLimits = DEFAULT_LIMITS,
) -> int:
    """Parse the whole file once before anything is written; raise with every problem, else
    return the row count.

    ``strict``: any bad row is a problem (else bad rows are left to the rejects file). Rows
    that would change a known type, sex or age are problems unless ``update``."""
    problems: list[Problem] = []
    rows = 0
    chunk: list[LesionRecord] = []
    source = str(csv_path)

    def compare() -> None:
        if chunk and not update:
            problems.extend(_conflict_problems(driver, database, source, chunk))
        chunk.clear()

    with _bar("validating", None, progress) as bar:
        for item in parse_dl_info(csv_path, limits=limits):
            rows += 1
            if isinstance(item, RejectedRow):
                if strict:
                    problems.extend(item.problems)
            elif bad := out_of_range(source, item):
                if strict:
                    problems.extend(bad)
            else:
                chunk.append(item)
                if len(chunk) >= DEFAULT_BATCH:
                    compare()
            if rows % 10000 == 0:
                bar.update(10000)
        compare()
        bar.update(rows % 10000)
    if problems:
        raise InvalidInputError(problems)
    return rows
