"""Running named and ad-hoc Cypher queries read-only, and shaping their results.

Reads run in READ access mode, so Neo4j itself refuses any write an ad-hoc statement attempts.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from typing import Any

from neo4j import Driver, RoutingControl
from neo4j.exceptions import Neo4jError
from neo4j.graph import Node, Path, Relationship

from lesionkg.core.errors import QueryError
from lesionkg.db.driver import DATABASE_NOT_FOUND, database_error
from lesionkg.db.statements import bind_params, query

FORMATS = ("table", "json", "csv")


@dataclass(frozen=True, slots=True)
class QueryResult:
    """Column names and rows of plain Python values (lists, dicts, str, int, float, bool, None)."""

    columns: list[str]
    rows: list[list[Any]]

    def as_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def _plain(value: Any) -> Any:
    """Neo4j values as JSON-friendly Python values."""
    if isinstance(value, Node):
        return {"_labels": sorted(value.labels), **{k: _plain(v) for k, v in value.items()}}
    if isinstance(value, Relationship):
        return {"_type": value.type, **{k: _plain(v) for k, v in value.items()}}
    if isinstance(value, Path):
        return [_plain(n) for n in value.nodes]
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "iso_format"):
        return value.iso_format()
    return value


def run_cypher(
    driver: Driver, database: str, text: str, params: dict[str, Any] | None = None
) -> QueryResult:
    """Run one read-only statement; a write attempt or a syntax error raises :class:`QueryError`."""
    try:
        records, _, keys = driver.execute_query(
            text, parameters_=params or {}, database_=database, routing_=RoutingControl.READ
        )
    except Neo4jError as exc:
        if exc.code == DATABASE_NOT_FOUND:
            raise database_error(exc, "running the query", database=database) from exc
        raise QueryError(f"{exc.code}: {exc.message}") from exc
    return QueryResult(list(keys), [[_plain(v) for v in r.values()] for r in records])


def run_named(driver: Driver, database: str, name: str, raw_params: dict[str, str]) -> QueryResult:
    """Run the named query of ``cypher/queries/`` with ``--param`` strings converted by type."""
    spec = query(name)
    return run_cypher(driver, database, spec.text, bind_params(spec, raw_params))


def parse_param_options(options: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``("k=v", ...)`` as a dict; a malformed option raises :class:`QueryError`."""
    out = {}
    for opt in options:
        key, sep, value = opt.partition("=")
        if not sep or not key.strip():
            raise QueryError(f"--param {opt!r}: expected key=value")
        out[key.strip()] = value
    return out


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)


def format_result(result: QueryResult, fmt: str) -> str:
    """Render as an aligned text table, JSON (a list of objects) or CSV."""
    if fmt == "json":
        return json.dumps(result.as_dicts(), indent=2, default=str)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(result.columns)
        for row in result.rows:
            writer.writerow([_cell(v) if isinstance(v, list | dict) else v for v in row])
        return buf.getvalue().rstrip("\n")
    if fmt != "table":
        raise QueryError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    cells = [[_cell(v) for v in row] for row in result.rows]
    cells = [[c if len(c) <= 60 else c[:57] + "..." for c in row] for row in cells]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(result.columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(result.columns, widths, strict=True))
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    footer = f"({len(cells)} row{'s' if len(cells) != 1 else ''})"
    return "\n".join([line, rule, *body, footer])
