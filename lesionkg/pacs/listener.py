"""Push from a PACS: ``lesionkg etl --listen [--port 11112] [--ae-title LESIONKG]``.

A DICOM Storage SCP (pynetdicom) that accepts CT images and SR documents (C-STORE) and C-ECHO, and
writes what it receives into the inbox that ``lesionkg etl --watch`` imports
(:func:`lesionkg.etl.inbox.watch_inbox`):

- each association gets a hidden folder ``INBOX/.assoc-N.part/``; each instance is written there
  as it arrives, as the sender encoded it (no decoding, no re-encoding), under a temporary name
  renamed once complete;
- when the association ends (released, aborted, or the connection dropped), the folder is renamed
  to ``INBOX/pacs-TIME-N/`` in one step: the watcher, which skips hidden names, never sees a study
  half-received, and a report and the CT slices pushed with it are imported together;
- an instance of another SOP class (an MR image, a PDF...) is answered with the refusal status
  ``0x0122`` (SOP class not supported) and not written; a full disk answers ``0xA700``;
- a sender that drops the association mid-transfer loses only the instance in flight (never
  written); what it had sent before, and acknowledged, is published as above, and the listener
  goes on serving other associations.

:func:`listen` runs the listener and the inbox watcher together; CT images received in an
earlier association (``INBOX/done/``) are found by later reports.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from lesionkg.db.driver import Driver
from lesionkg.etl.inbox import EntryResult, watch_inbox
from lesionkg.etl.options import EtlOptions
from lesionkg.etl.report import EtlSummary
from lesionkg.loaders.ct import CT_SOP_CLASSES
from lesionkg.pacs.errors import PacsError

log = logging.getLogger(__name__)

DEFAULT_PORT = 11112
DEFAULT_AE_TITLE = "LESIONKG"
#: SR documents accepted (the measurement report classes, and Basic Text / Extensible SR so that
#: a non-measurement SR is quarantined with its reason rather than refused)
SR_STORAGE: frozenset[str] = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR
        "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
        "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
        "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR
        "1.2.840.10008.5.1.4.1.1.88.35",  # Extensible SR
    }
)
ACCEPTED: frozenset[str] = CT_SOP_CLASSES | SR_STORAGE
#: uncompressed, and the usual compressed syntaxes of CT
TRANSFER_SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
]
SUCCESS = 0x0000
REFUSED_SOP_CLASS = 0x0122
OUT_OF_RESOURCES = 0xA700


@dataclass
class ListenerCounts:
    stored: int = 0
    refused: int = 0
    failed: int = 0
    associations: int = 0
    published: int = 0


class StorageListener:
    """The C-STORE SCP writing into ``inbox`` (see the module docstring)."""

    def __init__(
        self,
        inbox: str | Path,
        *,
        port: int = DEFAULT_PORT,
        ae_title: str = DEFAULT_AE_TITLE,
        host: str = "0.0.0.0",
    ) -> None:
        self.inbox = Path(inbox)
        self.port = port
        self.ae_title = ae_title
        self.host = host
        self.counts = ListenerCounts()
        self._lock = threading.Lock()
        self._folders: dict[int, Path] = {}
        self._ids = itertools.count(1)
        self._server: Any = None

    # -- life cycle --

    def start(self) -> None:
        """Listen in background threads; returns at once."""
        self.inbox.mkdir(parents=True, exist_ok=True)
        for stale in self.inbox.glob(".assoc-*.part"):
            # A previous listener killed mid-association: publish what it acknowledged.
            self._publish(stale)
        ae = AE(ae_title=self.ae_title)
        for context in AllStoragePresentationContexts:
            uid = str(context.abstract_syntax)
            # Every storage class is negotiated, so that the unwanted ones get a refusal status
            # (not a failed negotiation the sender cannot tell from a network error).
            syntaxes = TRANSFER_SYNTAXES if uid in ACCEPTED else TRANSFER_SYNTAXES[:4]
            ae.add_supported_context(uid, syntaxes)
        ae.add_supported_context(Verification)
        ae.maximum_associations = 16
        handlers: list[Any] = [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_CONN_CLOSE, self._on_close),
        ]
        try:
            self._server = ae.start_server(
                (self.host, self.port), block=False, evt_handlers=handlers
            )
        except OSError as exc:
            raise PacsError(
                f"cannot listen for DICOM on {self.host}:{self.port} ({exc}); choose another "
                "port with --port"
            ) from exc
        log.info("listening for DICOM as %s on %s:%d", self.ae_title, self.host, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        with self._lock:
            folders = list(self._folders.values())
            self._folders.clear()
        for folder in folders:
            self._publish(folder)

    def __enter__(self) -> StorageListener:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- events --

    def _folder(self, assoc: Any) -> Path:
        with self._lock:
            folder = self._folders.get(id(assoc))
            if folder is None:
                n = next(self._ids)
                folder = self.inbox / f".assoc-{os.getpid()}-{n}.part"
                folder.mkdir()
                self._folders[id(assoc)] = folder
                self.counts.associations += 1
            return folder

    def _on_store(self, event: Any) -> int:
        sop_class = str(event.request.AffectedSOPClassUID)
        sop = str(event.request.AffectedSOPInstanceUID)
        if sop_class not in ACCEPTED:
            with self._lock:
                self.counts.refused += 1
            log.warning("refused instance %s of SOP class %s", sop, sop_class)
            return REFUSED_SOP_CLASS
        try:
            folder = self._folder(event.assoc)
            data = event.encoded_dataset()
            name = "".join(c for c in sop if c.isdigit() or c == ".") or "instance"
            tmp = folder / f".{name}.tmp"
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, folder / f"{name}.dcm")
        except OSError as exc:
            with self._lock:
                self.counts.failed += 1
            log.error("could not write instance %s: %s", sop, exc)
            return OUT_OF_RESOURCES
        with self._lock:
            self.counts.stored += 1
        return SUCCESS

    def _on_close(self, event: Any) -> None:
        with self._lock:
            folder = self._folders.pop(id(event.assoc), None)
        if folder is not None:
            self._publish(folder)

    def _publish(self, folder: Path) -> None:
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)  # an instance whose write did not finish
        if not any(folder.iterdir()):
            shutil.rmtree(folder, ignore_errors=True)
            return
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        target = self.inbox / f"pacs-{stamp}-{folder.name.split('-')[-1].split('.')[0]}"
        os.replace(folder, target)
        with self._lock:
            self.counts.published += 1
        log.info("received %s", target.name)


def listen(
    driver: Driver,
    inbox: str | Path,
    *,
    port: int = DEFAULT_PORT,
    ae_title: str = DEFAULT_AE_TITLE,
    host: str = "0.0.0.0",
    database: str = "neo4j",
    options: EtlOptions | None = None,
    poll_s: float = 1.0,
    max_entries: int | None = None,
    stop: threading.Event | None = None,
    on_entry: Callable[[EntryResult], None] | None = None,
) -> EtlSummary:
    """Receive over DICOM into ``inbox`` and import what arrives, until ``stop``, ``max_entries``
    inbox entries, or Ctrl-C; the import's summary. ``on_entry`` is called after each inbox
    entry."""
    inbox = Path(inbox)
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "done").mkdir(exist_ok=True)
    options = options or EtlOptions()
    # Reports may reference CT slices received in an earlier association.
    options = replace(options, images=(*options.images, inbox / "done"))
    with StorageListener(inbox, port=port, ae_title=ae_title, host=host):
        return watch_inbox(
            driver,
            inbox,
            database=database,
            options=options,
            poll_s=poll_s,
            max_entries=max_entries,
            stop=stop,
            on_entry=on_entry,
        )
