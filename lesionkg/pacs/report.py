"""What one DICOMweb sync did (:class:`SyncSummary`), for people and as JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class SyncSummary:
    """What one sync did."""

    source: str
    cursor_before: str | None = None
    cursor_after: str | None = None
    found: int = 0
    known: int = 0
    retrieved: int = 0
    imported: int = 0
    duplicates: int = 0
    pending: int = 0
    quarantined: int = 0
    bookmarks: int = 0
    #: seconds spent retrieving (QIDO and WADO) and importing (the file ETL)
    retrieval_seconds: float = 0.0
    import_seconds: float = 0.0
    requests: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    seconds: float = 0.0
    quarantine_dir: str | None = None
    pending_reasons: list[str] = field(default_factory=list)
    etl: dict[str, Any] = field(default_factory=dict)

    @property
    def reports_per_s(self) -> float:
        return self.retrieved / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["reports_per_s"] = round(self.reports_per_s, 1)
        return out

    def describe(self) -> str:
        lines = [
            f"{self.source}: {self.found} reports found since {self.cursor_before or 'the start'}"
            f", {self.known} already known (not retrieved), {self.retrieved} retrieved in "
            f"{self.seconds:.1f} s ({self.reports_per_s:,.0f} reports/s)",
            f"  {self.imported} imported ({self.bookmarks} bookmarks), {self.duplicates} already "
            f"in the graph, {self.pending} pending, {self.quarantined} quarantined",
            "  requests: " + ", ".join(f"{k} {v}" for k, v in sorted(self.requests.items())),
            f"  cursor: {self.cursor_before or '-'} -> {self.cursor_after or '-'}",
        ]
        if self.retries:
            lines.append(f"  the PACS failed {self.retries} time(s); retried")
        lines += [f"  pending: {reason}" for reason in self.pending_reasons[:10]]
        if self.quarantined:
            lines.append(f"  quarantined reports and their reasons: {self.quarantine_dir}")
        return "\n".join(lines)
