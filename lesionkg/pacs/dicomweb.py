"""Pull sync from a PACS over DICOMweb: ``lesionkg etl --dicomweb URL [--since DATE] [--watch]``.

One sync:

1. reads the source's cursor from the graph (:mod:`.ledger`; ``--since`` overrides it) and pages
   through a QIDO-RS instance search ``Modality=SR, StudyDate=CURSOR-`` (``page_size`` per page),
   keeping the measurement report SOP classes (Enhanced, Comprehensive, Comprehensive 3D SR;
   ``by_sop_class`` searches for these classes instead);
2. drops, without retrieving them, the instances the graph already knows (their hashed SOP
   Instance UIDs, :func:`.ledger.instance_key`) as imported, duplicate or quarantined;
3. retrieves the rest with WADO-RS, each with only the CT instances it references
   (:mod:`.retrieval`), into a private temporary folder, and imports them with the file ETL
   (:func:`lesionkg.etl.importer.run_etl`: pseudonyms, one transaction per report, tracks);
4. records what became of each report; a report whose CT the PACS does not have yet is
   *pending*: not imported, retried by every later sync, and quarantined once older than
   ``pending_max_age_s``; a report the reader rejects (malformed, not a measurement report) is
   quarantined: the file and a reason file are kept in ``STATE_DIR/quarantine/``;
5. once every page is done, advances the cursor to the oldest StudyDate still pending, else to
   ``lookback_days`` (7) before the newest StudyDate found (not after today): a report sent days
   after its study is still found, and the known reports of those days cost one QIDO-RS answer,
   no retrieval. A report that reaches the PACS later than that after its study is found only by
   a sync with ``--since`` an earlier date.

Searching and retrieving run in a background thread one batch ahead of the import, so the PACS
and the import work at the same time; each batch is imported (and recorded) in the order found.

Faults. An unreachable PACS (refused connections, timeouts, 5xx) is retried with backoff
(:class:`~lesionkg.pacs.client.PacsRetry`), then the sync stops with :class:`PacsError`; a batch is
imported only once all of it is retrieved, so nothing is half-written, the cursor has not moved,
and the next sync resumes where this one stopped (reports already committed are known and skipped).
Wrong credentials stop the sync at the first answer (:class:`PacsAuthError`), without retries.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from lesionkg.config.secret import load_or_create_secret
from lesionkg.db.driver import Driver
from lesionkg.etl.importer import run_etl
from lesionkg.etl.options import EtlOptions
from lesionkg.etl.report import EtlSummary
from lesionkg.pacs.client import PacsClient, PacsConnection
from lesionkg.pacs.errors import PacsAuthError, PacsError
from lesionkg.pacs.holding import Holding
from lesionkg.pacs.ledger import (
    DUPLICATE,
    IMPORTED,
    PENDING,
    QUARANTINED,
    SETTLED,
    Known,
    Ledger,
    Outcome,
    age_s,
    instance_key,
)
from lesionkg.pacs.options import SyncOptions, default_state_dir
from lesionkg.pacs.report import SyncSummary
from lesionkg.pacs.retrieval import (
    SERIES_UID,
    SOP_CLASS,
    SOP_UID,
    SR_SOP_CLASSES,
    STUDY_DATE,
    STUDY_UID,
    BatchRetrieval,
    Fetched,
    Found,
    tag_value,
)

log = logging.getLogger(__name__)

__all__ = [
    "DicomwebSync",
    "SyncOptions",
    "SyncSummary",
    "default_state_dir",
    "sync_dicomweb",
    "watch_dicomweb",
]


def _dicom_date(text: str) -> str:
    """``YYYYMMDD`` from ``YYYYMMDD`` or an ISO date."""
    try:
        return date.fromisoformat(text).strftime("%Y%m%d")
    except ValueError:
        pass
    try:
        return datetime.strptime(text, "%Y%m%d").strftime("%Y%m%d")
    except ValueError:
        raise PacsError(f"--since {text!r}: expected a date, YYYY-MM-DD or YYYYMMDD") from None


class DicomwebSync:
    """Syncs one source into one graph; :meth:`run` is one sync."""

    def __init__(
        self,
        driver: Driver,
        connection: PacsConnection,
        *,
        database: str = "neo4j",
        options: EtlOptions | None = None,
        sync: SyncOptions | None = None,
        client: PacsClient | None = None,
    ) -> None:
        self.driver = driver
        self.database = database
        self.options = options or EtlOptions()
        self.sync = sync or SyncOptions()
        self.client = client or PacsClient(connection, self.sync.retry)
        self.ledger = Ledger(driver, connection.source, database)
        self.secret = load_or_create_secret(self.options.secret_path)
        self.state_dir = Path(self.sync.state_dir or default_state_dir())
        self.holding = Holding(self.state_dir, connection.source)
        neighbours = self.sync.neighbours
        self.neighbours = self.options.model_dir is not None if neighbours is None else neighbours

    # -- one sync --

    def run(self) -> SyncSummary:
        """One sync; only one at a time per source and state folder (a lock file)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(self.client.connection.source.encode()).hexdigest()[:16]
        with open(self.state_dir / f".sync-{name}.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise PacsError(
                    f"another sync of {self.client.connection.source} is running (lock in "
                    f"{self.state_dir})"
                ) from None
            try:
                return self._run()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _run(self) -> SyncSummary:
        """Search and retrieve in a background thread, one batch ahead of the import."""
        started = time.perf_counter()
        before = dict(self.client.counter.snapshot())
        retries_before = self.client.retries
        self.ledger.ensure_schema()
        cursor = self.ledger.cursor()
        since = _dicom_date(self.sync.since) if self.sync.since else cursor
        summary = SyncSummary(self.client.connection.source, cursor_before=since)
        summary.quarantine_dir = str(self.holding.quarantine_dir)
        searched = _Searched()
        pending_dates: list[str | None] = []
        etl = EtlSummary()
        batches: queue.Queue[_Batch | BaseException | None] = queue.Queue(maxsize=1)
        stop = threading.Event()
        producer = threading.Thread(
            target=self._produce, args=(since, batches, stop, searched), daemon=True
        )
        producer.start()
        try:
            while (batch := batches.get()) is not None:
                if isinstance(batch, BaseException):
                    raise batch
                outcomes = self._import(batch, summary, etl)
                pending_dates += [
                    f.study_date
                    for f, o in zip(batch.todo, outcomes, strict=True)
                    if o.status == PENDING
                ]
        finally:
            stop.set()
            producer.join()
            while not batches.empty():
                left = batches.get_nowait()
                if isinstance(left, _Batch):
                    shutil.rmtree(left.folder, ignore_errors=True)
        summary.found, summary.known = searched.found, searched.known
        summary.retrieved, summary.retrieval_seconds = searched.retrieved, searched.seconds
        # Every page is done: the cursor may move, to the oldest pending report if any (a
        # pending report without a StudyDate keeps every later search unfiltered).
        after: str | None
        if None in pending_dates:
            after = None
        elif pending_dates:
            after = min(d for d in pending_dates if d is not None)
        elif searched.dates:
            # Reports of the last `lookback_days` of studies are searched again: a report
            # is often written, or sent, days after its study (the known ones cost no retrieval).
            newest = min(max(searched.dates), date.today().strftime("%Y%m%d"))
            back = datetime.strptime(newest, "%Y%m%d") - timedelta(days=self.sync.lookback_days)
            after = max(back.strftime("%Y%m%d"), since or "")
        else:
            after = since
        self.ledger.advance(after)
        summary.cursor_after = after
        summary.etl = etl.as_dict(files=False)
        now = self.client.counter.snapshot()
        summary.requests = {k: now.get(k, 0) - before.get(k, 0) for k in now}
        summary.retries = self.client.retries - retries_before
        summary.seconds = time.perf_counter() - started
        return summary

    def _produce(
        self,
        since: str | None,
        batches: queue.Queue[_Batch | BaseException | None],
        stop: threading.Event,
        searched: _Searched,
    ) -> None:
        """The paged searches and each page's retrieval, handed over batch by batch; an error
        is handed over too, after the batches before it."""

        def hand_over(item: _Batch | BaseException | None) -> bool:
            while not stop.is_set():
                try:
                    batches.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            if isinstance(item, _Batch):
                shutil.rmtree(item.folder, ignore_errors=True)
            return False

        # Modality is indexed by every PACS (SOPClassUID is not by Orthanc, which then reads
        # every instance); one search per SOP class, as list matching of UIDs is not supported
        # by every PACS either.
        searches: list[dict[str, Any]] = (
            [{"SOPClassUID": c} for c in sorted(SR_SOP_CLASSES)]
            if self.sync.by_sop_class
            else [{"Modality": "SR"}]
        )
        try:
            for search in searches:
                filters = dict(search)
                if since:
                    filters["StudyDate"] = f"{since}-"
                offset = 0
                while not stop.is_set():
                    page = self.client.search_instances(
                        filters=filters,
                        fields=[STUDY_DATE],
                        offset=offset,
                        limit=self.sync.page_size,
                    )
                    offset += len(page)
                    found = self._reports(page)
                    searched.found += len(found)
                    searched.dates += [f.study_date for f in found if f.study_date]
                    known = self.ledger.known([f.key for f in found])
                    todo = [
                        f for f in found if f.key not in known or known[f.key].status not in SETTLED
                    ]
                    searched.known += len(found) - len(todo)
                    if todo and not hand_over(self._gather(todo, known, searched)):
                        return
                    if len(page) < self.sync.page_size:
                        break
            hand_over(None)
        except BaseException as exc:  # handed to the importing thread, which raises it
            hand_over(exc)

    def _reports(self, page: list[dict]) -> list[Found]:
        found = []
        for item in page:
            sop_class = tag_value(item, SOP_CLASS)
            sop = tag_value(item, SOP_UID)
            study, series = tag_value(item, STUDY_UID), tag_value(item, SERIES_UID)
            if sop_class not in SR_SOP_CLASSES or not (sop and study and series):
                continue
            found.append(
                Found(
                    study,
                    series,
                    sop,
                    sop_class,
                    tag_value(item, STUDY_DATE),
                    instance_key(self.secret, sop),
                )
            )
        return found

    def _gather(self, todo: list[Found], known: dict[str, Known], searched: _Searched) -> _Batch:
        """Retrieve one batch into a private folder (QIDO-RS and WADO-RS only, no graph
        write): the reports still waiting for their CT are found out with QIDO-RS."""
        started = time.perf_counter()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        batch = _Batch(todo, known, Path(tempfile.mkdtemp(prefix="batch-", dir=self.state_dir)))
        try:
            for found in todo:
                if found.key in known and known[found.key].status == PENDING:
                    self._still_pending(found, known[found.key].first_seen, batch)
            retrieval = BatchRetrieval(
                self.client,
                batch.folder / "import",
                workers=self.sync.workers,
                neighbours=self.neighbours,
            )
            batch.fetched = retrieval.fetch([f for f in todo if f.key not in batch.held])
            (batch.folder / "held").mkdir()
            for item in batch.fetched:
                if item.path is not None and (item.unreadable or item.waiting):
                    # Out of the folder the import reads.
                    item.path = item.path.rename(batch.folder / "held" / item.path.name)
        except BaseException:
            shutil.rmtree(batch.folder, ignore_errors=True)
            raise
        searched.retrieved += len(batch.fetched)
        searched.seconds += time.perf_counter() - started
        return batch

    def _still_pending(self, item: Found, first_seen: datetime | None, batch: _Batch) -> None:
        """A pending report whose CT images are still missing stays pending, found out with a
        QIDO-RS search per image and no retrieval; it is retrieved again when its CT arrived,
        when it is too old, or when this machine has no note of what it waits for."""
        waiting = self.holding.waiting_for(item.key)
        if waiting is None or age_s(first_seen) > self.sync.pending_max_age_s:
            return
        missing = []
        for uid, (study, series) in waiting.items():
            hits = self.client.search_instances(
                study=study, series=series or None, filters={"SOPInstanceUID": uid}
            )
            if not hits:
                missing.append(uid)
        if missing:
            reason = f"waiting for {len(missing)} referenced CT image(s) not in the PACS yet"
            batch.held[item.key] = Outcome(item.key, PENDING, reason)
            batch.reasons.append(f"{item.sop}: {reason}: " + ", ".join(missing))

    def _import(self, batch: _Batch, summary: SyncSummary, etl: EtlSummary) -> list[Outcome]:
        """Import and record one retrieved batch; the outcomes in ``batch.todo``'s order."""
        try:
            outcomes: dict[str, Outcome] = dict(batch.held)
            summary.pending += len(batch.held)
            summary.pending_reasons += batch.reasons
            for item in batch.fetched:
                early = self._hold_back(item, batch.known, summary)
                if early is not None:
                    outcomes[item.found.key] = early
            ready = [f for f in batch.fetched if f.found.key not in outcomes and f.path is not None]
            if ready:
                started = time.perf_counter()
                result = run_etl(
                    self.driver,
                    [batch.folder / "import"],
                    database=self.database,
                    options=self.options,
                    progress=False,
                )
                summary.import_seconds += time.perf_counter() - started
                _merge(etl, result)
                by_file = {Path(r.file).resolve(): r for r in result.reports}
                for item in ready:
                    assert item.path is not None
                    report = by_file.get(item.path.resolve())
                    outcomes[item.found.key] = self._settle(item, report, summary)
            for item in batch.fetched:
                if outcomes[item.found.key].status != PENDING:
                    self.holding.forget_pending(item.found.key)
            ordered = [outcomes[f.key] for f in batch.todo]
            self.ledger.record(ordered)
            return ordered
        finally:
            shutil.rmtree(batch.folder, ignore_errors=True)

    def _hold_back(
        self, item: Fetched, known: dict[str, Known], summary: SyncSummary
    ) -> Outcome | None:
        """The outcome of a report that is not imported now (unreadable, waiting), else None."""
        key = item.found.key
        if item.unreadable is not None:
            summary.quarantined += 1
            self.holding.quarantine(item, item.unreadable, [])
            return Outcome(key, QUARANTINED, "unreadable report")
        if not item.waiting:
            return None
        n = len(item.waiting)
        reason = f"waiting for {n} referenced CT image(s) not in the PACS yet"
        first = known[key].first_seen if key in known else None
        if age_s(first) > self.sync.pending_max_age_s:
            summary.quarantined += 1
            self.holding.quarantine(
                item,
                f"{reason} after {age_s(first) / 3600:.1f} h (limit "
                f"{self.sync.pending_max_age_s / 3600:.1f} h): " + ", ".join(item.waiting),
                [],
            )
            return Outcome(key, QUARANTINED, "referenced CT never arrived")
        summary.pending += 1
        summary.pending_reasons.append(f"{item.found.sop}: {reason}: " + ", ".join(item.waiting))
        self.holding.note_pending(item)
        return Outcome(key, PENDING, reason)

    def _settle(self, item: Fetched, report: Any, summary: SyncSummary) -> Outcome:
        key = item.found.key
        if report is None:  # cannot happen: every file of the batch gets a report
            raise PacsError(f"the import gave no report for {item.path}")
        problems = [str(p) for p in report.problems]
        if report.status == "rejected":
            summary.quarantined += 1
            self.holding.quarantine(item, "the reader rejected the report", problems)
            return Outcome(key, QUARANTINED, f"rejected by the reader: {len(problems)} problem(s)")
        summary.bookmarks += report.new
        if problems:
            self.holding.quarantine(
                item, f"{report.new} bookmarks imported, these groups skipped", problems
            )
        if report.status == "duplicate" or report.new == 0:
            summary.duplicates += 1
            return Outcome(key, DUPLICATE, None, 0)
        summary.imported += 1
        return Outcome(
            key, IMPORTED, f"{len(problems)} group(s) skipped" if problems else None, report.new
        )


@dataclass
class _Searched:
    """What the searching thread found and retrieved (read once it has finished)."""

    found: int = 0
    known: int = 0
    retrieved: int = 0
    seconds: float = 0.0
    dates: list[str] = field(default_factory=list)


@dataclass
class _Batch:
    """One page's reports, retrieved into ``folder``, ready to import."""

    todo: list[Found]
    known: dict[str, Known]
    folder: Path
    fetched: list[Fetched] = field(default_factory=list)
    #: reports still pending, found out without retrieving them, and why
    held: dict[str, Outcome] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)


def _merge(total: EtlSummary, part: EtlSummary) -> None:
    for report in part.reports:
        total.add(report)
    total.embedded += part.embedded
    total.similar_edges += part.similar_edges
    total.patients_rematched += part.patients_rematched
    total.reader_links += part.reader_links
    for key, n in part.location.items():
        total.location[key] = total.location.get(key, 0) + n
    total.seconds += part.seconds


def sync_dicomweb(
    driver: Driver,
    connection: PacsConnection,
    *,
    database: str = "neo4j",
    options: EtlOptions | None = None,
    sync: SyncOptions | None = None,
    client: PacsClient | None = None,
) -> SyncSummary:
    """One sync of ``connection`` into the graph (see the module docstring)."""
    return DicomwebSync(
        driver, connection, database=database, options=options, sync=sync, client=client
    ).run()


def watch_dicomweb(
    driver: Driver,
    connection: PacsConnection,
    *,
    database: str = "neo4j",
    options: EtlOptions | None = None,
    sync: SyncOptions | None = None,
    poll_s: float = 5.0,
    stop: threading.Event | None = None,
    max_syncs: int | None = None,
    on_sync: Callable[[SyncSummary], None] | None = None,
    client: PacsClient | None = None,
) -> list[SyncSummary]:
    """Sync every ``poll_s`` seconds until ``stop`` is set, ``max_syncs`` syncs, or Ctrl-C.

    A PACS that stays unreachable through a sync's retries is logged and tried again at the next
    poll; wrong credentials stop the watch (:class:`PacsAuthError`)."""
    syncer = DicomwebSync(
        driver, connection, database=database, options=options, sync=sync, client=client
    )
    summaries: list[SyncSummary] = []
    try:
        while not (stop is not None and stop.is_set()):
            try:
                summary = syncer.run()
            except PacsAuthError:
                raise
            except PacsError as exc:
                log.error("%s; trying again in %.0f s", exc, poll_s)
            else:
                summaries.append(summary)
                if summary.retrieved:
                    log.info("%s", summary.describe())
                if on_sync is not None:
                    on_sync(summary)
            if max_syncs is not None and len(summaries) >= max_syncs:
                break
            if stop is not None:
                stop.wait(poll_s)
            else:
                time.sleep(poll_s)
    except KeyboardInterrupt:
        log.info("stopped")
    return summaries
