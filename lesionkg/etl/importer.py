"""Incremental import of new PACS bookmarks: ``lesionkg etl PATH...``.

Inputs are files and folders (walked recursively, in sorted order; :mod:`lesionkg.etl.discovery`):

- DICOM SR TID 1500 measurement reports (:mod:`lesionkg.loaders.dicom_sr`), with the CT images
  they reference found among all the inputs and ``EtlOptions.images``
  (:mod:`lesionkg.loaders.ct`);
- JSON Lines bookmarks (``.jsonl``, :mod:`lesionkg.loaders.jsonl`);
- DeepLesion rows (``.csv`` in ``DL_info.csv`` format, :mod:`lesionkg.loaders.deeplesion`).

CT images and PNG key slices are images, not bookmarks; a ``SYNTHETIC.json`` beside the files
marks them as generated data (``dataset = 'synthetic'`` on every node). Anything else is rejected
with its reason.

Each bookmark file is one unit, written in ONE transaction (:mod:`lesionkg.etl.transaction`): its
patients, studies and lesions; the lesions' cue vectors and embeddings; their ``SIMILAR_TO`` edges
(the ``k`` nearest lesions in each similarity space, from the persisted hnswlib index plus the
file's own new lesions, :mod:`lesionkg.etl.spaces`); the re-numbered study order and the
re-matched tracks of every patient the file touches. So a bookmark is either fully in the graph
(node, edges, track) or not at all, and killing the process at any point loses at most the file
in flight, which the next run imports. Ids are keyed hashes of the source's own ids
(:mod:`lesionkg.core.pseudonym`; DeepLesion rows keep their public ids), so a re-imported file
finds its lesions present and changes nothing (counted as duplicates).

Files are read and checked without a database (:mod:`lesionkg.etl.preparation`); the reads and
the one write per batch are retried with backoff when Neo4j is unreachable or restarting
(:class:`lesionkg.db.retry.RetryPolicy`), and a file is never half-applied. This module is the
loop: batching, retries and the summary (:mod:`lesionkg.etl.report`).
"""

from __future__ import annotations

import logging
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from tqdm import tqdm

from lesionkg.config.secret import load_or_create_secret
from lesionkg.core import cues
from lesionkg.core.errors import ConfigurationError, Problem
from lesionkg.core.pseudonym import Pseudonymizer
from lesionkg.db.driver import Driver, run_statement
from lesionkg.db.retry import with_retries
from lesionkg.db.schema import apply_schema
from lesionkg.db.writes import ConflictError
from lesionkg.etl.discovery import file_kind, input_files
from lesionkg.etl.imaging import Models
from lesionkg.etl.migrations import fix_location_sources, migrate_study_dates
from lesionkg.etl.options import EtlOptions
from lesionkg.etl.preparation import PreparedFile, embed_lesions, prepare_file
from lesionkg.etl.report import EtlSummary, FileReport, Outcome
from lesionkg.etl.spaces import Spaces
from lesionkg.etl.transaction import Written, write_prepared
from lesionkg.graph.similarity import default_index_dir
from lesionkg.loaders.ct import CTIndex, index_ct_images

# EtlOptions and EtlSummary are this module's public face too (the CLI imports them from here).
__all__ = ["EtlOptions", "EtlSummary", "FileReport", "Importer", "run_etl"]

log = logging.getLogger(__name__)


class Importer:
    """Imports bookmark files one at a time into one database (the caller owns ``driver``).

    Holds what is costly to set up once: the pseudonymisation key, the models, the similarity
    indexes. Call :meth:`close` (or use it as a context manager) to save the indexes.
    """

    def __init__(
        self,
        driver: Driver,
        *,
        database: str = "neo4j",
        options: EtlOptions | None = None,
    ) -> None:
        self.driver = driver
        self.database = database
        self.options = options or EtlOptions()
        if self.options.k < 1:
            raise ConfigurationError(f"k must be at least 1, got {self.options.k}")
        self.pseudonymizer = Pseudonymizer(load_or_create_secret(self.options.secret_path))
        self.models = Models(self.options)
        self.retries = 0
        #: what the bookmarks written so far gave
        self.outcome = Outcome()
        #: known values changed under ``options.update``, per field
        self.updated: dict[str, int] = {}
        self._on_retry_file = ""
        self.spaces = with_retries(
            self._setup, self.options.retry, "connecting to Neo4j", self._retrying
        )

    # -- setup --

    def _retrying(self, attempt: int, wait: float, exc: BaseException) -> None:
        self.retries += 1
        log.warning(
            "Neo4j unreachable (%s)%s; try %d in %.1f s",
            type(exc).__name__,
            self._on_retry_file,
            attempt + 1,
            wait,
        )

    def _setup(self) -> Spaces:
        """Check the graph's pseudonymisation key and open the similarity indexes."""
        apply_schema(self.driver, self.database)
        found = run_statement(
            self.driver, self.database, "etl/pseudonym_key", "reading the key id", read=True
        )
        key_id = self.pseudonymizer.key_id
        other = next((r["key_id"] for r in found if r["key_id"] != key_id), None)
        if other is not None:
            raise ConfigurationError(
                f"the graph's PACS ids were made with pseudonymisation key {other}, "
                f"but the key file gives {key_id}: with another key the same patient would get "
                "another id. Use the original key file (--secret), or a new database"
            )
        # Study dates are stored shifted per patient; a graph imported before is shifted once.
        migrate_study_dates(self.driver, self.database, self.pseudonymizer)
        fix_location_sources(self.driver, self.database)
        producers = {"cues": cues.CUES_VERSION}
        if self.models.embedder is not None:
            producers["triplet"] = self.models.embedder.sha256
        index_dir = Path(self.options.index_dir or default_index_dir(self.database))
        return Spaces.open(self.driver, self.database, index_dir, producers, self.options.k)

    def close(self) -> None:
        """Save the similarity indexes that grew (a later run or ``link`` starts from them)."""
        self.spaces.save()

    def __enter__(self) -> Importer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- files --

    def read_file(
        self, path: Path, ct: CTIndex, ct_paths: set[Path] | None = None
    ) -> PreparedFile | FileReport:
        """Parse and check one bookmark file; a :class:`FileReport` when it is not one.

        ``ct_paths``: the resolved paths of ``ct``'s images (computed here when not given)."""
        return prepare_file(path, ct, self.pseudonymizer, self.models, self.options, ct_paths)

    def import_file(self, path: str | Path, ct: CTIndex | None = None) -> FileReport:
        """Import one file: everything it holds in one transaction, or nothing."""
        return self.import_files([path], ct)[0]

    def import_files(
        self,
        paths: Sequence[str | Path],
        ct: CTIndex | None = None,
        on_files: Callable[[int], None] | None = None,
    ) -> list[FileReport]:
        """Import ``paths`` in order; one report per file.

        Files are parsed and checked one by one; the bookmarks of consecutive good files are
        written together, up to ``options.batch_bookmarks`` per transaction (each file's
        bookmarks always in one): a commit per small file would cap an import at Neo4j's commit
        rate. Rejected files never reach a transaction. ``on_files(n)`` reports
        progress.
        """
        ct = ct if ct is not None else index_ct_images([])
        ct_paths = {image.path.resolve() for image in ct.values()}
        reports: list[FileReport] = []
        batch: list[tuple[FileReport, PreparedFile]] = []

        def flush() -> None:
            if batch:
                self._write_batch(batch)
                if on_files is not None:
                    on_files(len(batch))
                batch.clear()

        for raw in paths:
            started = time.perf_counter()
            path = Path(raw)
            prepared = self.read_file(path, ct, ct_paths)
            if isinstance(prepared, FileReport):
                prepared.seconds = time.perf_counter() - started
                reports.append(prepared)
                if on_files is not None:
                    on_files(1)
                continue
            report = FileReport(str(path), prepared.kind, "imported", problems=prepared.skipped)
            report.bookmarks = len(prepared.lesions) + prepared.in_file_duplicates
            report.seconds = time.perf_counter() - started
            reports.append(report)
            if not prepared.lesions:
                report.status = "rejected" if prepared.skipped else "duplicate"
                report.duplicates = prepared.in_file_duplicates
                if on_files is not None:
                    on_files(1)
                continue
            if batch and (
                batch[0][1].ordered_by_time != prepared.ordered_by_time
                or sum(len(p.lesions) for _, p in batch) + len(prepared.lesions)
                > self.options.batch_bookmarks
            ):
                flush()
            batch.append((report, prepared))
        flush()
        return reports

    def _write_batch(self, batch: list[tuple[FileReport, PreparedFile]]) -> None:
        """Write the bookmarks of several checked files in one transaction, with retries.

        A file that would change a value the graph holds (:class:`ConflictError`) is rejected
        with each field and both values named, unless ``options.update``; the batch's other
        files are written without it."""
        started = time.perf_counter()
        embed_lesions([lesion for _, p in batch for lesion in p.lesions], self.models)
        retries_before = self.retries
        names = batch[0][0].file if len(batch) == 1 else f"{len(batch)} files"
        self._on_retry_file = f" importing {Path(names).name}"
        written: Written | None = None
        while batch:
            merged, owner = _merge(batch)
            try:
                written = with_retries(
                    partial(self._write, merged),
                    self.options.retry,
                    f"importing {names}",
                    self._retrying,
                )
                break
            except ConflictError as exc:
                refused = _refuse(exc, merged, owner)
                batch = [(r, p) for r, p in batch if id(r) not in refused]
        seconds = (time.perf_counter() - started) / max(len(batch), 1)
        if not batch or written is None:
            return
        batch[0][0].retries = self.retries - retries_before
        for report, prepared in batch:
            report.duplicates += prepared.in_file_duplicates
            report.seconds += seconds
        for lesion_id, report in owner.items():
            if lesion_id in written.present:
                report.duplicates += 1
            else:
                report.new += 1
        for change in written.changes:
            self.updated[change.field] = self.updated.get(change.field, 0) + 1
        for report, _ in batch:
            report.status = "imported" if report.new else "duplicate"

    def _write(self, prepared: PreparedFile) -> Written:
        """Write the new lesions of ``prepared`` in one transaction (see :func:`write_prepared`)."""
        written = write_prepared(
            self.driver,
            self.database,
            prepared,
            self.spaces,
            key_id=self.pseudonymizer.key_id if prepared.ordered_by_time else None,
            matching=self.options.matching,
            update=self.options.update,
        )
        self.outcome.add(written.outcome)
        return written


def _merge(
    batch: list[tuple[FileReport, PreparedFile]],
) -> tuple[PreparedFile, dict[str, FileReport]]:
    """The files of ``batch`` as one :class:`PreparedFile`, and the file of each lesion (the
    same bookmark in two files of one batch: the later is a duplicate)."""
    merged = PreparedFile(
        batch[0][1].kind, batch[0][1].dataset, [], batch[0][1].ordered_by_time, {}, {}
    )
    owner: dict[str, FileReport] = {}
    for report, prepared in batch:
        report.duplicates = 0
        merged.patients.update(prepared.patients)
        merged.studies.update(prepared.studies)
        for lesion in prepared.lesions:
            if lesion.lesion_id in owner:
                report.duplicates += 1
                continue
            owner[lesion.lesion_id] = report
            merged.lesions.append(lesion)
    return merged, owner


def _refuse(exc: ConflictError, merged: PreparedFile, owner: dict[str, FileReport]) -> set[int]:
    """Reject the files whose bookmarks, patients or studies would change known values; the
    ``id()`` of their reports."""
    files_of: dict[str, set[int]] = defaultdict(set)
    reports = {id(r): r for r in owner.values()}
    for lesion in merged.lesions:
        for node_id in (lesion.lesion_id, lesion.patient_id, lesion.study_id):
            files_of[node_id].add(id(owner[lesion.lesion_id]))
    refused: set[int] = set()
    for change in exc.changes:
        for key in sorted(files_of[change.node_id]):
            report = reports[key]
            report.status = "rejected"
            report.problems.append(
                Problem(
                    report.file,
                    None,
                    change.field,
                    f"changes a known value: {change.label} {change.node_id} is in the graph "
                    f"with {change.field} {change.old!r}, this file gives {change.new!r}; "
                    "nothing of the file was written (--update applies it)",
                )
            )
            refused.add(key)
    return refused


def run_etl(
    driver: Driver,
    paths: Sequence[str | Path],
    *,
    database: str = "neo4j",
    options: EtlOptions | None = None,
    progress: bool = True,
) -> EtlSummary:
    """Import every bookmark file among ``paths`` (see the module docstring); a summary.

    CT images among the inputs and in ``options.images`` are indexed first, so a report may come
    before or after its images. Files are imported in sorted path order (see
    :meth:`Importer.import_files` for how they share transactions).
    """
    options = options or EtlOptions()
    started = time.perf_counter()
    files = input_files(paths)
    ct = index_ct_images(
        [*(p for p in files if file_kind(p) == "dicom"), *options.images], limits=options.limits
    )
    summary = EtlSummary()
    bar = tqdm(total=len(files), desc="etl", unit="file", disable=not progress, file=sys.stderr)
    with Importer(driver, database=database, options=options) as importer:
        summary.retries += importer.retries
        reports = importer.import_files(files, ct, on_files=bar.update)
        for report in reports:
            summary.add(report)
        summary.take(importer.outcome)
        summary.updated = dict(importer.updated)
    bar.close()
    summary.seconds = time.perf_counter() - started
    return summary
