"""``lesionkg etl --watch INBOX``: import what lands in an inbox folder, as it lands.

Layout::

    INBOX/                 entries: bookmark files, or folders (e.g. a study export: SR + CT)
    INBOX/done/            entries imported (or already in the graph), moved here
    INBOX/quarantine/      entries with a problem, moved here with NAME.reason.json beside them

An entry is taken once it has not changed (size and modification time of every file in it) for
one poll, so a file still being copied is left alone; names starting with ``.`` or ending with
``.part``/``.tmp`` are ignored, so an exporter that writes under such a name and renames is taken
at the next poll. Each entry is imported with :class:`lesionkg.etl.importer.Importer` (one
transaction per file). When Neo4j stays unreachable through the retries, the entry stays in the
inbox and is tried again at a later poll: it is not the entry's fault. Only one watcher may serve
an inbox (a lock file, ``INBOX/.lesionkg-etl.lock``).

The reason file holds the entry's name, when it was processed, and each file's outcome with its
problems (file, line, field, reason). Problems can name DICOM UIDs; they are not hashed, because
the quarantined file itself, with all its identifiers, lies beside the reason.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from lesionkg.core.errors import ConfigurationError, DatabaseError, LesionKGError
from lesionkg.db.driver import Driver
from lesionkg.etl.discovery import file_kind, input_files
from lesionkg.etl.importer import Importer
from lesionkg.etl.options import EtlOptions
from lesionkg.etl.report import EtlSummary, FileReport
from lesionkg.loaders.ct import index_ct_images

DONE = "done"
QUARANTINE = "quarantine"
LOCK = ".lesionkg-etl.lock"
IGNORED_SUFFIXES = (".part", ".tmp", ".partial")

log = logging.getLogger(__name__)


@dataclass
class EntryResult:
    """One inbox entry: where it went and what its files gave."""

    name: str
    destination: str
    reports: list[FileReport]
    seconds: float

    def describe(self) -> str:
        """One line: ``done: study-42, 3 new, 0 duplicates (0.41 s)``."""
        counts = ", ".join(
            f"{r.new} new, {r.duplicates} duplicates"
            + (f", {len(r.problems)} problems" if r.problems else "")
            for r in self.reports
            if r.status not in ("image", "metadata")
        )
        return f"{self.destination}: {self.name} {counts} ({self.seconds:.2f} s)"


def _signature(path: Path) -> tuple:
    """What changes while an entry is still being written: sizes and modification times."""
    try:
        if path.is_dir():
            return tuple(
                sorted(
                    (str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
                    for p in path.rglob("*")
                    if p.is_file()
                )
            )
        stat = path.stat()
        return (stat.st_size, stat.st_mtime_ns)
    except FileNotFoundError:
        return ("gone",)


def _entries(inbox: Path) -> list[Path]:
    return sorted(
        p
        for p in inbox.iterdir()
        if p.name not in (DONE, QUARANTINE)
        and not p.name.startswith(".")
        and not p.name.endswith(IGNORED_SUFFIXES)
    )


def _free_name(folder: Path, name: str) -> Path:
    """``folder/name``, or with a time stamp added when an earlier entry took that name."""
    target = folder / name
    if not target.exists() and not (folder / f"{name}.reason.json").exists():
        return target
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return folder / f"{name}.{stamp}"


def _move(entry: Path, folder: Path) -> Path:
    target = _free_name(folder, entry.name)
    os.replace(entry, target)
    return target


def _write_reason(target: Path, entry: str, reports: list[FileReport], note: str) -> Path:
    reason = {
        "entry": entry,
        "processed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "note": note,
        "files": [
            {
                "file": os.path.relpath(r.file, target.parent.parent)
                if os.path.isabs(r.file)
                else r.file,
                "kind": r.kind,
                "status": r.status,
                "new_bookmarks": r.new,
                "duplicates": r.duplicates,
                "problems": [
                    {"line": p.line, "field": p.column, "reason": p.reason} for p in r.problems
                ],
            }
            for r in reports
            if r.status not in ("image", "metadata")
        ],
    }
    path = target.with_name(target.name + ".reason.json")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(reason, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def process_entry(importer: Importer, entry: Path, options: EtlOptions) -> list[FileReport]:
    """Import every file of one inbox entry; raises :class:`DatabaseError` when Neo4j stays
    unreachable (the entry then stays where it is)."""
    files = input_files([entry])
    ct = index_ct_images(
        [*(f for f in files if file_kind(f) == "dicom"), *options.images], limits=options.limits
    )
    return importer.import_files(files, ct)


def watch_inbox(
    driver: Driver,
    inbox: str | Path,
    *,
    database: str = "neo4j",
    options: EtlOptions | None = None,
    poll_s: float = 1.0,
    max_entries: int | None = None,
    stop: threading.Event | None = None,
    on_entry: Callable[[EntryResult], None] | None = None,
) -> EtlSummary:
    """Serve ``inbox`` until ``stop`` is set, ``max_entries`` entries are done, or Ctrl-C.

    Returns the summary of everything processed. ``on_entry`` is called after each entry (the
    CLI shows :meth:`EntryResult.describe`); each entry is also logged.
    """
    options = options or EtlOptions()
    inbox = Path(inbox)
    if not inbox.is_dir():
        raise ConfigurationError(f"--watch {inbox}: not a folder")
    done, quarantine = inbox / DONE, inbox / QUARANTINE
    done.mkdir(exist_ok=True)
    quarantine.mkdir(exist_ok=True)
    lock = open(inbox / LOCK, "w")  # noqa: SIM115 (held for the whole watch)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise ConfigurationError(
            f"another `lesionkg etl --watch` already serves {inbox} (lock {inbox / LOCK})"
        ) from None
    started = time.perf_counter()
    summary = EtlSummary()
    seen: dict[Path, tuple] = {}
    handled = 0
    importer = None
    try:
        with Importer(driver, database=database, options=options) as importer:
            log.info("watching %s every %g s", inbox, poll_s)
            while not (stop is not None and stop.is_set()):
                if max_entries is not None and handled >= max_entries:
                    break
                ready = []
                current = {}
                for entry in _entries(inbox):
                    current[entry] = _signature(entry)
                    if seen.get(entry) == current[entry]:
                        ready.append(entry)
                seen = current
                for entry in ready:
                    if max_entries is not None and handled >= max_entries:
                        break
                    result = _handle(importer, entry, options, done, quarantine, summary)
                    if result is None:
                        continue
                    handled += 1
                    seen.pop(entry, None)
                    log.info("%s", result.describe())
                    if on_entry is not None:
                        on_entry(result)
                if not ready:
                    # Idle: a good moment to persist the grown indexes.
                    importer.close()
                    if stop is not None:
                        stop.wait(poll_s)
                    else:
                        time.sleep(poll_s)
    except KeyboardInterrupt:
        log.info("stopped watching %s", inbox)
    finally:
        if importer is not None:
            summary.take(importer.outcome)
            summary.updated = dict(importer.updated)
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
    summary.seconds = time.perf_counter() - started
    return summary


def _handle(
    importer: Importer,
    entry: Path,
    options: EtlOptions,
    done: Path,
    quarantine: Path,
    summary: EtlSummary,
) -> EntryResult | None:
    """Import, then move one entry; None when Neo4j was unreachable (the entry stays)."""
    started = time.perf_counter()
    try:
        reports = process_entry(importer, entry, options)
    except DatabaseError as exc:
        log.warning("%s: %s; left in the inbox, tried again later", entry.name, exc)
        return None
    except LesionKGError as exc:
        reports = [FileReport(str(entry), "entry", "rejected")]
        target = _move(entry, quarantine)
        _write_reason(target, entry.name, reports, f"the entry could not be read: {exc}")
        summary.add(reports[0])
        return EntryResult(entry.name, QUARANTINE, reports, time.perf_counter() - started)
    for report in reports:
        summary.add(report)
    bad = [r for r in reports if r.status == "rejected" or r.problems]
    if bad:
        imported = sum(r.new for r in reports)
        note = (
            f"{imported} bookmarks of this entry were imported; fix the problems and drop the "
            "entry in the inbox again (what is already in the graph counts as duplicates)"
            if imported
            else "nothing of this entry was imported"
        )
        target = _move(entry, quarantine)
        _write_reason(target, entry.name, reports, note)
        destination = QUARANTINE
    else:
        _move(entry, done)
        destination = DONE
    return EntryResult(entry.name, destination, reports, time.perf_counter() - started)
