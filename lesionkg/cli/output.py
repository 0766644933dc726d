"""How results reach stdout: JSON of ``as_dict()``, or the text of ``describe()``.

Every result a command prints gives both; tables of rows (named queries, ad-hoc Cypher, cohort
questions) print as an aligned table, JSON or CSV through :func:`emit_rows`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import click

if TYPE_CHECKING:
    from lesionkg.db.queries import QueryResult


class Described(Protocol):
    def describe(self) -> str: ...


class Result(Described, Protocol):
    def as_dict(self) -> Mapping[str, Any]: ...


def emit(result: Result, fmt: str, *, indent: int | None = None) -> None:
    """Print ``result`` as JSON (``fmt == "json"``) or as its text."""
    click.echo(json.dumps(result.as_dict(), indent=indent) if fmt == "json" else result.describe())


def emit_each(results: Iterable[Result], fmt: str, *, indent: int | None = None) -> None:
    """Print results as one JSON list, or their texts one after the other."""
    items = list(results)
    if fmt == "json":
        click.echo(json.dumps([r.as_dict() for r in items], indent=indent))
        return
    for r in items:
        click.echo(r.describe())


def show_progress(result: Described) -> None:
    """A line of progress (a watched inbox's entry) on standard error, apart from the results."""
    click.echo(result.describe(), err=True)


def emit_rows(rows: QueryResult | list[dict[str, Any]], fmt: str) -> None:
    """Print a :class:`~lesionkg.db.queries.QueryResult` or a list of row dicts as ``fmt`` (table,
    json or csv)."""
    from lesionkg.db.queries import QueryResult, format_result

    if isinstance(rows, QueryResult):
        click.echo(format_result(rows, fmt))
        return
    columns = list(rows[0]) if rows else []
    click.echo(format_result(QueryResult(columns, [list(r.values()) for r in rows]), fmt))
