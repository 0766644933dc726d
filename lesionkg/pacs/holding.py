"""Where the DICOMweb sync keeps reports it does not import now, on this machine (not in the graph).

``STATE_DIR/quarantine/KEY.dcm`` and ``KEY.dcm.reason.json``: a report the reader rejected (or
that could not be read, or whose CT never arrived), with the reason, the problems and its UIDs;
``STATE_DIR/pending/KEY.json``: what a pending report waits for (the CT instances' UIDs and where
to look for them), so that later syncs check with a QIDO-RS search instead of retrieving the report
again. ``KEY`` is the report's hashed SOP Instance UID (:func:`lesionkg.pacs.ledger.instance_key`).
Both folders are private (0700): the files hold the PACS's identifiers.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from lesionkg.pacs.retrieval import Fetched

log = logging.getLogger(__name__)


def write_private(path: Path, content: dict) -> None:
    """``content`` as JSON at ``path``, atomically, in a 0700 folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(content, indent=2) + "\n")
    os.replace(tmp, path)


class Holding:
    """The quarantine and pending notes of one state folder."""

    def __init__(self, state_dir: Path, source: str) -> None:
        self.quarantine_dir = state_dir / "quarantine"
        self.pending_dir = state_dir / "pending"
        self.source = source

    def quarantine(self, item: Fetched, reason: str, problems: list[str]) -> None:
        """Keep the report's file and a reason file."""
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.quarantine_dir, 0o700)
        name = f"{item.found.key}.dcm"
        if item.path is not None and item.path.is_file():
            shutil.copyfile(item.path, self.quarantine_dir / name)
        text = {
            "sop_instance_uid": item.found.sop,
            "study_instance_uid": item.found.study,
            "series_instance_uid": item.found.series,
            "source": self.source,
            "processed_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "reason": reason,
            "problems": problems,
            "file": name if item.path is not None else None,
        }
        write_private(self.quarantine_dir / f"{name}.reason.json", text)
        log.warning("quarantined %s: %s", item.found.sop, reason)

    def note_pending(self, item: Fetched) -> None:
        write_private(
            self.pending_dir / f"{item.found.key}.json",
            {
                "sop_instance_uid": item.found.sop,
                "study_instance_uid": item.found.study,
                "waiting": {uid: list(where) for uid, where in item.waiting.items()},
            },
        )

    def waiting_for(self, key: str) -> dict[str, tuple[str, str]] | None:
        """The CT instances a pending report waits for (UID -> study, series), or None when this
        machine has no (readable) note of it."""
        try:
            raw = json.loads((self.pending_dir / f"{key}.json").read_text())["waiting"]
            return {uid: (str(where[0]), str(where[1])) for uid, where in raw.items()}
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return None

    def forget_pending(self, key: str) -> None:
        (self.pending_dir / f"{key}.json").unlink(missing_ok=True)
