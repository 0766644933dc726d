"""What a DICOMweb sync may do: search, retrieve, hold back (:class:`SyncOptions`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from lesionkg.pacs.client import PacsRetry


def default_state_dir() -> Path:
    """``$LESIONKG_HOME/pacs`` or ``~/.lesionkg/pacs``: quarantine and temporary batches."""
    home = os.environ.get("LESIONKG_HOME")
    return (Path(home) if home else Path.home() / ".lesionkg") / "pacs"


@dataclass(frozen=True)
class SyncOptions:
    """How a sync searches, retrieves and holds reports back.

    ``since``: a StudyDate ``YYYYMMDD`` (or ISO date) to search from instead of the cursor;
    ``page_size``: QIDO-RS results per page, also the import batch; ``workers``: parallel
    WADO-RS retrievals; ``neighbours``: also retrieve the slices above and below each key slice
    (default: when the import embeds, i.e. ``EtlOptions.model_dir`` is set);
    ``pending_max_age_s``: a report whose CT has not arrived after this long is quarantined;
    ``by_sop_class``: search by SOP Class UID instead of ``Modality=SR`` (finds reports filed in
    a series of another modality, but Orthanc reads every instance to answer it);
    ``lookback_days``: how many days of studies before the newest one found each sync searches
    again, for reports written or sent after their study; ``state_dir``: where quarantined
    reports and temporary batches go.
    """

    since: str | None = None
    page_size: int = 200
    workers: int = 8
    neighbours: bool | None = None
    pending_max_age_s: float = 7 * 86400.0
    lookback_days: int = 7
    by_sop_class: bool = False
    state_dir: Path | None = None
    retry: PacsRetry = field(default_factory=PacsRetry)
