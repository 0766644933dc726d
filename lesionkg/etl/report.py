"""What an import did: one :class:`FileReport` per input file, the :class:`Outcome` of the written
bookmarks (locations, embeddings, edges, tracks) and the run's :class:`EtlSummary`."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from lesionkg.core.errors import Problem


@dataclass
class FileReport:
    """What happened to one input file.

    ``status``: ``imported`` (new bookmarks written), ``duplicate`` (all already in the graph),
    ``rejected`` (nothing written; ``problems`` says why), ``image`` (a CT image or key slice,
    used by reports), ``metadata`` (``SYNTHETIC.json``). An imported report can also list
    ``problems``: measurement groups skipped with their reasons.
    """

    file: str
    kind: str
    status: str
    bookmarks: int = 0
    new: int = 0
    duplicates: int = 0
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0
    retries: int = 0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["problems"] = [str(p) for p in self.problems]
        return out


@dataclass
class EtlSummary:
    """What one ``etl`` run (or a watch session so far) did."""

    files: int = 0
    imported_files: int = 0
    duplicate_files: int = 0
    rejected_files: int = 0
    images: int = 0
    #: files that describe others (SYNTHETIC.json, reason files), read for their labels only
    metadata: int = 0
    #: bookmarks newly written / already in the graph / rejected or skipped
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    #: rejected files and skipped measurements, counted per reason
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    location: dict[str, int] = field(default_factory=dict)
    embedded: int = 0
    similar_edges: int = 0
    patients_rematched: int = 0
    reader_links: int = 0
    #: consecutive measurements with one tracking UID: does matching without the UID agree?
    reader_agreement: dict[str, int] = field(
        default_factory=lambda: {"pairs": 0, "agree": 0, "disagree": 0}
    )
    retries: int = 0
    #: known values a re-import changed under --update, per field
    updated: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    reports: list[FileReport] = field(default_factory=list)

    @property
    def bookmarks_per_s(self) -> float:
        return self.accepted / self.seconds if self.seconds > 0 else 0.0

    def add(self, report: FileReport) -> None:
        self.files += 1
        self.reports.append(report)
        self.retries += report.retries
        if report.status in ("image", "metadata"):
            self.images += report.status == "image"
            self.metadata += report.status == "metadata"
            return
        self.accepted += report.new
        self.duplicates += report.duplicates
        if report.status == "imported":
            self.imported_files += 1
        elif report.status == "duplicate":
            self.duplicate_files += 1
        elif report.status == "rejected":
            self.rejected_files += 1
        for problem in report.problems:
            self.rejected += 1
            key = reason_key(problem)
            self.rejected_by_reason[key] = self.rejected_by_reason.get(key, 0) + 1

    def take(self, outcome: Outcome) -> None:
        """Add what the written bookmarks gave (an :class:`Importer`'s ``outcome``)."""
        for key, n in outcome.location.items():
            self.location[key] = self.location.get(key, 0) + n
        self.embedded += outcome.embedded
        self.similar_edges += outcome.similar_edges
        self.patients_rematched += outcome.patients_rematched
        self.reader_links += outcome.reader_links
        for key in ("pairs", "agree", "disagree"):
            self.reader_agreement[key] += outcome.reader_agreement.get(key, 0)

    def as_dict(self, *, files: bool = True) -> dict[str, Any]:
        out = asdict(self)
        out["bookmarks_per_s"] = round(self.bookmarks_per_s, 1)
        out["reports"] = [r.as_dict() for r in self.reports if r.status not in ("image",)]
        if not files:
            del out["reports"]
        return out

    def describe(self) -> str:
        """A few lines for people: files, bookmarks accepted, duplicates, rejected by reason."""
        lines = [
            f"{self.files} files: {self.imported_files} imported, {self.duplicate_files} already "
            f"in the graph, {self.rejected_files} rejected, {self.images} images"
            + (f", {self.metadata} metadata" if self.metadata else ""),
            f"bookmarks: {self.accepted} accepted, {self.duplicates} duplicates, "
            f"{self.rejected} rejected or skipped, in {self.seconds:.1f} s "
            f"({self.bookmarks_per_s:,.0f} bookmarks/s)",
        ]
        if self.accepted:
            where = ", ".join(f"{k} {v}" for k, v in sorted(self.location.items()))
            lines.append(
                f"  location: {where}; embedded {self.embedded}; SIMILAR_TO edges "
                f"{self.similar_edges}; patients re-matched {self.patients_rematched}"
            )
        agreement = self.reader_agreement
        if agreement["pairs"]:
            lines.append(
                f"  tracking UIDs: {self.reader_links} reader links; matching without them "
                f"agrees on {agreement['agree']} of {agreement['pairs']} pairs, disagrees on "
                f"{agreement['disagree']}"
            )
        if self.updated:
            changed = ", ".join(f"{k} {v}" for k, v in sorted(self.updated.items()))
            lines.append(f"  updated (--update): {changed}")
        if self.retries:
            lines.append(f"  Neo4j was unreachable {self.retries} time(s); retried")
        for reason, n in sorted(self.rejected_by_reason.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  rejected {n:>5} x {reason}")
        for report in self.reports:
            if report.status == "rejected" or report.problems:
                head = "rejected" if report.status == "rejected" else "skipped in"
                for problem in report.problems[:5]:
                    lines.append(f"  {head} {problem}")
                if len(report.problems) > 5:
                    lines.append(f"  ... and {len(report.problems) - 5} more in {report.file}")
        return "\n".join(lines)


@dataclass
class Outcome:
    """What written bookmarks gave: where their location came from, embeddings, edges, tracks."""

    location: Counter = field(default_factory=Counter)
    embedded: int = 0
    similar_edges: int = 0
    patients_rematched: int = 0
    reader_links: int = 0
    reader_agreement: Counter = field(default_factory=Counter)

    def add(self, other: Outcome) -> None:
        self.location.update(other.location)
        self.embedded += other.embedded
        self.similar_edges += other.similar_edges
        self.patients_rematched += other.patients_rematched
        self.reader_links += other.reader_links
        self.reader_agreement.update(other.reader_agreement)


_UID = re.compile(r"\b\d+(?:\.\d+){2,}\b")


def reason_key(problem: Problem) -> str:
    """A problem's reason without the values that differ from file to file, for counting."""
    # DICOM UIDs (dotted digits) name one instance: "the referenced CT image 1.2.3... is not ..."
    reason = _UID.sub("<uid>", problem.reason)
    for cut in (" (", ": ", ", got", "; "):
        reason = reason.split(cut, 1)[0]
    reason = reason.strip()[:80]
    return f"{problem.column}: {reason}" if problem.column else reason
