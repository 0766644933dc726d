"""What the DICOMweb sync keeps in the graph: one cursor per source, and what became of each report.

``(:PacsSource {url, cursor, synced_at})``: ``cursor`` is the StudyDate (``YYYYMMDD``) from which
the next sync searches (inclusive); it advances only once every report found from it is committed,
pending or quarantined.

``(:PacsInstance {key, source, status, reason, lesions, first_seen, updated_at})``: one per SR
instance the sync has retrieved. ``key`` is ``I-`` + 16 hex digits of an HMAC of its SOP Instance
UID with the pseudonymisation secret (:mod:`lesionkg.core.pseudonym`'s construction, kind
``pacs-instance``), so the graph holds no UID of the PACS, and a sync can still tell, from a QIDO
answer alone, which reports it already has. ``status``: ``imported``, ``duplicate`` (all its
bookmarks were in the graph already), ``quarantined`` or ``pending`` (retried by later syncs);
``reason`` never names an identifier.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import sha256
from typing import Any

from lesionkg.db.driver import Driver, run_statement

IMPORTED = "imported"
DUPLICATE = "duplicate"
QUARANTINED = "quarantined"
PENDING = "pending"
#: states after which a report is never retrieved again
SETTLED = frozenset({IMPORTED, DUPLICATE, QUARANTINED})

_DOMAIN = b"lesionkg/v1/pacs-instance\0"


def instance_key(secret: bytes, sop_instance_uid: str) -> str:
    """``I-`` + 16 hex digits: the keyed hash of one SOP Instance UID."""
    if not sop_instance_uid:
        raise ValueError("instance key of an empty SOP Instance UID")
    payload = json.dumps([sop_instance_uid], separators=(",", ":")).encode()
    return "I-" + hmac.new(secret, _DOMAIN + payload, sha256).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Known:
    """What the graph knows of one instance."""

    status: str
    first_seen: datetime | None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one instance in this sync."""

    key: str
    status: str
    reason: str | None = None
    lesions: int = 0


class Ledger:
    """The sync state of one source in the graph."""

    def __init__(self, driver: Driver, url: str, database: str = "neo4j") -> None:
        self.driver = driver
        self.url = url
        self.database = database

    def _run(self, name: str, what: str, *, read: bool = False, **params: Any) -> list:
        return run_statement(self.driver, self.database, f"pacs/{name}", what, read=read, **params)

    def ensure_schema(self) -> None:
        self._run("instance_key_constraint", "creating the PACS instance constraint")
        self._run("source_constraint", "creating the PACS source constraint")

    def cursor(self) -> str | None:
        records = self._run("read_cursor", "reading the sync cursor", read=True, url=self.url)
        return records[0]["cursor"] if records else None

    def advance(self, cursor: str | None) -> None:
        self._run("write_cursor", "advancing the sync cursor", url=self.url, cursor=cursor)

    def known(self, keys: list[str]) -> dict[str, Known]:
        if not keys:
            return {}
        records = self._run("known_instances", "reading known PACS instances", read=True, keys=keys)
        out = {}
        for record in records:
            first = record["first_seen"]
            out[record["key"]] = Known(
                record["status"], first.to_native() if first is not None else None
            )
        return out

    def record(self, outcomes: list[Outcome]) -> None:
        if not outcomes:
            return
        rows = [
            {"key": o.key, "status": o.status, "reason": o.reason, "lesions": o.lesions}
            for o in outcomes
        ]
        self._run("record_instances", "recording PACS instances", url=self.url, rows=rows)

    def counts(self) -> dict[str, int]:
        records = self._run("instance_counts", "counting PACS instances", read=True, url=self.url)
        return {r["status"]: r["n"] for r in records}


def age_s(first_seen: datetime | None) -> float:
    """Seconds since ``first_seen`` (0 when unknown)."""
    if first_seen is None:
        return 0.0
    if first_seen.tzinfo is None:
        first_seen = first_seen.replace(tzinfo=UTC)
    return (datetime.now(UTC) - first_seen).total_seconds()
