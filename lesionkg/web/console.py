"""The read-only Cypher console: the named queries as forms, ad-hoc Cypher, table, graph, CSV.

Everything runs through :func:`lesionkg.db.guard.run_read_only`: planned with EXPLAIN and refused
unless a read, then run in a READ transaction with the configured timeout and row cap.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from lesionkg.core.errors import QueryError
from lesionkg.db.guard import GuardedResult, run_read_only
from lesionkg.db.queries import QueryResult, format_result
from lesionkg.db.statements import bind_params, queries, query
from lesionkg.web.state import BadParameter, Explorer, explorer_of, templates

router = APIRouter(include_in_schema=False)
#: query-string keys of a named query's parameters: p.NAME
PARAM_PREFIX = "p."
MAX_QUERY_CHARS = 20_000


def statement_of(
    request: Request, named: str | None = None
) -> tuple[str | None, str, dict[str, Any]]:
    """(named query or None, Cypher text, parameters) from the request's query string; ``named``
    gives the query's name where the path holds it."""
    qp = request.query_params
    name = named or qp.get("name") or None
    if name is not None:
        if name not in queries():
            raise BadParameter("name", f"no named query {name!r}")
        spec = query(name)
        raw = {
            k.removeprefix(PARAM_PREFIX): v
            for k, v in qp.items()
            if k.startswith(PARAM_PREFIX) and v != ""
        }
        try:
            return name, spec.text, bind_params(spec, raw)
        except QueryError as exc:
            raise BadParameter("params", str(exc)) from exc
    text = qp.get("cypher", "")
    if len(text) > MAX_QUERY_CHARS:
        raise BadParameter("cypher", f"at most {MAX_QUERY_CHARS} characters")
    raw_params = qp.get("params", "").strip()
    params: dict[str, Any] = {}
    if raw_params:
        try:
            params = json.loads(raw_params)
        except json.JSONDecodeError as exc:
            raise BadParameter("params", f"not JSON: {exc.msg}") from exc
        if not isinstance(params, dict):
            raise BadParameter("params", "expected a JSON object of parameter values")
    return None, text, params


def execute(explorer: Explorer, text: str, params: dict[str, Any]) -> GuardedResult:
    return run_read_only(
        explorer.driver(),
        explorer.database,
        text,
        params,
        timeout_s=explorer.config.timeout_s,
        max_rows=explorer.config.max_rows,
    )


@router.get("/console")
def console_page(request: Request) -> Response:
    explorer = explorer_of(request)
    name, text, params = statement_of(request)
    result: GuardedResult | None = None
    error: str | None = None
    status = 200
    if text.strip():
        try:
            result = execute(explorer, text, params)
        except QueryError as exc:
            error, status = str(exc), 400
    graph = None
    if result is not None and result.nodes:
        graph = json.dumps(
            {"nodes": result.nodes, "relationships": result.relationships}, default=str
        ).replace("</", "<\\/")
    shown_params = request.query_params.get("params", "")
    return templates().TemplateResponse(
        request,
        "console.html",
        {
            "named": list(queries().values()),
            "name": name,
            "cypher": request.query_params.get("cypher", "") if name is None else "",
            "params_text": shown_params,
            "values": {k.removeprefix(PARAM_PREFIX): v for k, v in request.query_params.items()},
            "result": result,
            "error": error,
            "graph_json": graph,
            "csv_url": "/console.csv?" + str(request.query_params) if result else None,
            "max_rows": explorer.config.max_rows,
            "timeout_s": explorer.config.timeout_s,
        },
        status_code=status,
    )


@router.get("/console.csv")
def console_csv(request: Request) -> Response:
    name, text, params = statement_of(request)
    if not text.strip():
        raise BadParameter("cypher", "give a statement or a named query")
    result = execute(explorer_of(request), text, params)
    body = format_result(QueryResult(result.columns, result.rows), "csv") + "\n"
    filename = f"{name or 'cypher'}.csv"
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
