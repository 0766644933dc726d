"""Ad-hoc Cypher from people, run read-only: one guard for the web console and the CLI.

Two locks, so that neither alone has to be perfect: the statement is first planned with
``EXPLAIN`` and refused unless Neo4j classifies it as a read (``query_type`` ``"r"``), which
catches writes and schema commands with a clear message before anything runs; it then runs in a
READ access-mode transaction, where Neo4j itself rejects any write that slipped through (a
procedure that writes, say). The transaction has a timeout and the result a row cap, so one query
cannot hold the server or fill the caller's memory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from neo4j import Driver, ManagedTransaction, RoutingControl, unit_of_work
from neo4j.exceptions import ClientError, DriverError, Neo4jError
from neo4j.graph import Node, Path, Relationship

from lesionkg.core.errors import DatabaseError, QueryError
from lesionkg.db.driver import DATABASE_NOT_FOUND, database_error
from lesionkg.db.queries import _plain

#: how long an ad-hoc statement may run, seconds
DEFAULT_TIMEOUT_S = 10.0
#: at most this many rows come back; the result says when more were there
DEFAULT_MAX_ROWS = 1000
#: errors that mean "Neo4j cannot be reached", not "your query is wrong": callers map them to 503
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (DriverError, OSError)
#: node properties too long to show as a caption or tooltip in a graph view
_BULKY = frozenset({"embedding", "cues"})
_QUERY_TYPES = {"r": "read", "rw": "read-write", "w": "write", "s": "schema"}


@dataclass(frozen=True, slots=True)
class GuardedResult:
    """The rows of a read-only statement, and the nodes and relationships among its values.

    ``rows`` hold plain Python values (as :class:`~lesionkg.db.queries.QueryResult`);
    ``truncated`` says the row cap cut the result. ``nodes``: ``{id, labels, properties}``;
    ``relationships``: ``{id, type, source, target, properties}`` with node ids (Neo4j element
    ids), for a graph view; vectors are left out of their properties.
    """

    columns: list[str]
    rows: list[list[Any]]
    truncated: bool
    elapsed_ms: float
    nodes: list[dict[str, Any]] = field(default_factory=list)
    relationships: list[dict[str, Any]] = field(default_factory=list)

    def as_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


class _Graph:
    """Collects the distinct nodes and relationships found in result values."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.relationships: dict[str, dict[str, Any]] = {}

    @staticmethod
    def _props(entity: Node | Relationship) -> dict[str, Any]:
        return {k: _plain(v) for k, v in entity.items() if k not in _BULKY}

    def add_node(self, node: Node) -> None:
        if node.element_id not in self.nodes:
            self.nodes[node.element_id] = {
                "id": node.element_id,
                "labels": sorted(node.labels),
                "properties": self._props(node),
            }

    def add(self, value: Any) -> None:
        if isinstance(value, Node):
            self.add_node(value)
        elif isinstance(value, Relationship):
            start, end = value.start_node, value.end_node
            if start is None or end is None:
                return
            self.add_node(start)
            self.add_node(end)
            self.relationships.setdefault(
                value.element_id,
                {
                    "id": value.element_id,
                    "type": value.type,
                    "source": start.element_id,
                    "target": end.element_id,
                    "properties": self._props(value),
                },
            )
        elif isinstance(value, Path):
            for node in value.nodes:
                self.add_node(node)
            for rel in value.relationships:
                self.add(rel)
        elif isinstance(value, list | tuple):
            for item in value:
                self.add(item)
        elif isinstance(value, dict):
            for item in value.values():
                self.add(item)


def query_type(driver: Driver, database: str, text: str, params: dict[str, Any]) -> str:
    """What Neo4j's planner says ``text`` does: ``"r"``, ``"rw"``, ``"w"`` or ``"s"`` (schema).

    Planning runs nothing. A syntax error raises :class:`QueryError` with Neo4j's message."""
    try:
        _, summary, _ = driver.execute_query(
            "EXPLAIN " + text,
            parameters_=params,
            database_=database,
            routing_=RoutingControl.READ,
        )
    except Neo4jError as exc:
        if exc.code == DATABASE_NOT_FOUND:
            raise database_error(exc, "planning the statement", database=database) from exc
        raise QueryError(f"{exc.code}: {exc.message}") from exc
    except UNAVAILABLE_ERRORS as exc:
        raise DatabaseError(f"Neo4j is unavailable: {exc}") from exc
    return str(summary.query_type or "")


def check_read_only(driver: Driver, database: str, text: str, params: dict[str, Any]) -> None:
    """Raise :class:`QueryError` unless ``text`` is a read-only statement."""
    stripped = text.lstrip()
    if stripped[:7].upper() in ("EXPLAIN", "PROFILE"):
        # EXPLAIN of EXPLAIN is a syntax error, and PROFILE runs the statement: both say nothing
        # useful here, so refuse them plainly.
        raise QueryError("refused: EXPLAIN and PROFILE are not available in the read-only console")
    kind = query_type(driver, database, text, params)
    if kind != "r":
        raise QueryError(
            f"refused: this is a read-only console and the statement is a "
            f"{_QUERY_TYPES.get(kind, kind or 'non-read')} statement (it would change the "
            "graph or its schema); only reads run here"
        )


def run_read_only(
    driver: Driver,
    database: str,
    text: str,
    params: dict[str, Any] | None = None,
    *,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
    max_rows: int | None = DEFAULT_MAX_ROWS,
) -> GuardedResult:
    """Run one ad-hoc statement read-only, with a transaction timeout and a row cap.

    Refuses (:class:`QueryError`, nothing run) anything the planner does not call a read; a Neo4j
    error (syntax, timeout, a write attempted anyway) raises :class:`QueryError` with its message;
    an unreachable server raises :class:`DatabaseError`. Every value goes in ``params``.
    ``timeout_s`` / ``max_rows`` ``None``: no timeout (the server's own) / every row.
    """
    if not text.strip():
        raise QueryError("empty statement")
    if max_rows is not None and max_rows < 1:
        raise QueryError(f"max_rows must be at least 1, got {max_rows}")
    params = dict(params or {})
    check_read_only(driver, database, text, params)

    @unit_of_work(timeout=timeout_s)
    def work(tx: ManagedTransaction) -> tuple[list[str], list[Any]]:
        result = tx.run(text, params)
        records = list(result) if max_rows is None else result.fetch(max_rows + 1)
        return list(result.keys()), records

    start = time.perf_counter()
    try:
        with driver.session(database=database, default_access_mode="READ") as session:
            keys, records = session.execute_read(work)
    except ClientError as exc:
        if "TransactionTimedOut" in (exc.code or "") or "Timeout" in (exc.code or ""):
            raise QueryError(
                f"the statement ran longer than {timeout_s} s and was stopped"
            ) from exc
        raise QueryError(f"{exc.code}: {exc.message}") from exc
    except Neo4jError as exc:
        raise QueryError(f"{exc.code}: {exc.message}") from exc
    except UNAVAILABLE_ERRORS as exc:
        raise DatabaseError(f"Neo4j is unavailable: {exc}") from exc
    elapsed_ms = (time.perf_counter() - start) * 1000.0
    truncated = max_rows is not None and len(records) > max_rows
    records = records[:max_rows]
    graph = _Graph()
    for record in records:
        graph.add(list(record.values()))
    return GuardedResult(
        columns=keys,
        rows=[[_plain(v) for v in r.values()] for r in records],
        truncated=truncated,
        elapsed_ms=elapsed_ms,
        nodes=list(graph.nodes.values()),
        relationships=list(graph.relationships.values()),
    )


def run_read(
    driver: Driver, database: str, text: str, params: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Rows (as dicts of plain values) of one of the library's own read statements, READ mode.

    For callers that must tell a wrong query (:class:`QueryError`) from an unreachable server
    (:class:`DatabaseError`) without importing the driver."""
    try:
        records, _, keys = driver.execute_query(
            text, parameters_=params or {}, database_=database, routing_=RoutingControl.READ
        )
    except Neo4jError as exc:
        raise QueryError(f"{exc.code}: {exc.message}") from exc
    except UNAVAILABLE_ERRORS as exc:
        raise DatabaseError(f"Neo4j is unavailable: {exc}") from exc
    return [dict(zip(keys, (_plain(v) for v in r.values()), strict=True)) for r in records]
