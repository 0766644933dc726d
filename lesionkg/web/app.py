"""The explorer's ASGI app: configuration, the shared driver, error pages, and the routers.

The app opens its Neo4j driver on the first request that needs it (so it starts, and says 503,
while Neo4j is down) and closes it at shutdown. Errors become pages or JSON with a status and a
plain message: 400 naming the bad field, 404 for an unknown id, 503 when Neo4j cannot be reached,
500 otherwise; a stack trace only ever goes to the log.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

import lesionkg
from lesionkg.core.errors import DatabaseError, QueryError
from lesionkg.db.guard import UNAVAILABLE_ERRORS
from lesionkg.web import api, console, pages
from lesionkg.web.access import token_guard
from lesionkg.web.state import BadParameter, Explorer, ExplorerConfig, NotFound, templates

log = logging.getLogger(__name__)


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def error_response(
    request: Request, status: int, title: str, message: str, fields: list[str] | None = None
) -> Response:
    """The error as JSON under /api/, else as an HTML page; never a stack trace."""
    if _wants_json(request):
        body: dict[str, Any] = {"error": title, "detail": message}
        if fields:
            body["fields"] = fields
        return JSONResponse(body, status_code=status)
    return templates().TemplateResponse(
        request,
        "error.html",
        {"status": status, "title": title, "message": message, "fields": fields or []},
        status_code=status,
    )


def _install_error_handlers(app: FastAPI) -> None:
    async def bad_parameter(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, BadParameter)
        return error_response(request, 400, "bad parameter", str(exc), [exc.field])

    async def validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        fields, notes = [], []
        for err in exc.errors():
            name = str(err.get("loc", ["", "?"])[-1])
            fields.append(name)
            notes.append(f"{name}: {err.get('msg', 'invalid')}")
        return error_response(request, 400, "bad parameter", "; ".join(notes), fields)

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_response(request, 404, "not found", str(exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            return error_response(request, 404, "not found", f"no page at {request.url.path}")
        return error_response(request, exc.status_code, "error", str(exc.detail))

    async def query_error(request: Request, exc: Exception) -> Response:
        return error_response(request, 400, "bad request", str(exc))

    async def unavailable(request: Request, exc: Exception) -> Response:
        log.warning("Neo4j unavailable for %s: %s", request.url.path, exc)
        return error_response(
            request,
            503,
            "Neo4j is unavailable",
            "The explorer cannot reach its Neo4j database right now; this page will work again "
            "once the database is back (lesionkg neo4j status).",
        )

    async def internal(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error for %s %s", request.method, request.url.path)
        return error_response(
            request, 500, "internal error", "Something went wrong; the server log says what."
        )

    app.add_exception_handler(BadParameter, bad_parameter)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(NotFound, not_found)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(QueryError, query_error)
    app.add_exception_handler(DatabaseError, unavailable)
    for cls in UNAVAILABLE_ERRORS:
        app.add_exception_handler(cls, unavailable)
    app.add_exception_handler(Exception, internal)


class DropEmptyParams:
    """HTML forms send an empty field as ``name=``; every parameter here means "unset" by it,
    so empty values leave the query string before the routes validate it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("query_string"):
            pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
            kept = [(k, v) for k, v in pairs if v != ""]
            if len(kept) != len(pairs):
                scope = {**scope, "query_string": urlencode(kept).encode("latin-1")}
        await self.app(scope, receive, send)


def create_app(config: ExplorerConfig) -> FastAPI:
    """The explorer for ``config``; serve it with uvicorn (``lesionkg serve``)."""
    explorer = Explorer(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        explorer.close()

    # No /docs or /redoc: FastAPI's pages load their scripts from a CDN, and nothing here may.
    app = FastAPI(
        title="LesionKG explorer API",
        version=lesionkg.__version__,
        description="Read-only JSON over the LesionKG knowledge base (patients, lesions, "
        "tracks, similar lesions, cohort filter, Cypher).",
        openapi_url="/api/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.explorer = explorer
    if config.token is not None:
        app.middleware("http")(token_guard(config.token))
    app.add_middleware(DropEmptyParams)
    _install_error_handlers(app)
    app.mount(
        "/static",
        StaticFiles(directory=str(resources.files("lesionkg.web") / "static")),
        name="static",
    )
    app.include_router(pages.router)
    app.include_router(console.router)
    app.include_router(api.router)
    return app
