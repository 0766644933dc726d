"""``lesionkg query`` and ``lesionkg cypher``: the named queries of the Cypher library, and ad-hoc
read-only Cypher."""

from __future__ import annotations

from typing import Any

import click

from lesionkg.cli.options import PARAM, ROWS_FORMAT, connected
from lesionkg.cli.output import emit_each, emit_rows


@click.command(name="query")
@click.argument("name", required=False)
@PARAM
@ROWS_FORMAT
@click.option("--list", "list_", is_flag=True, help="List the named queries.")
def query_cmd(name: str | None, params: tuple[str, ...], fmt: str, list_: bool) -> None:
    """Run a named query of the Cypher library (see --list)."""
    from lesionkg.db.queries import parse_param_options, run_named
    from lesionkg.db.statements import queries

    if list_ or name is None:
        # The listing needs no server.
        emit_each(queries().values(), "json" if fmt == "json" else "text", indent=2)
        return
    raw = parse_param_options(params)
    with connected() as (driver, database):
        emit_rows(run_named(driver, database, name, raw), fmt)


@click.command(name="cypher")
@click.argument("statement")
@PARAM
@ROWS_FORMAT
def cypher_cmd(statement: str, params: tuple[str, ...], fmt: str) -> None:
    """Run an ad-hoc read-only Cypher statement (values of --param are JSON, else strings)."""
    from lesionkg.db.guard import run_read_only
    from lesionkg.db.queries import QueryResult, parse_param_options
    from lesionkg.db.statements import json_param

    values: dict[str, Any] = {
        key: json_param(key, raw) for key, raw in parse_param_options(params).items()
    }
    with connected() as (driver, database):
        # The one read-only guard (EXPLAIN check, READ transaction) the web console uses too.
        result = run_read_only(driver, database, statement, values, timeout_s=None, max_rows=None)
        emit_rows(QueryResult(result.columns, result.rows), fmt)
