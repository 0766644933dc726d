"""Who may use the explorer: loopback only by default, else everyone holding the token.

On 127.0.0.1 (or ``localhost``/``::1``) no token is needed. Any other bind address refuses to
start without one, and then every request must carry it: ``Authorization: Bearer TOKEN`` (API
clients), or the ``lesionkg_token`` cookie that a first visit with ``?token=TOKEN`` sets (browsers,
HttpOnly and SameSite=Strict, and the token leaves the address bar with a redirect).
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from lesionkg.core.errors import ConfigurationError

log = logging.getLogger(__name__)

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
TOKEN_ENV = "LESIONKG_WEB_TOKEN"
COOKIE = "lesionkg_token"
#: shorter tokens are guessable; ``python -c "import secrets; print(secrets.token_urlsafe())"``
MIN_TOKEN_CHARS = 16


def read_token(token_file: Path | None, env: Mapping[str, str] | None = None) -> str | None:
    """The access token from ``token_file`` (its first line), else ``$LESIONKG_WEB_TOKEN``."""
    env = os.environ if env is None else env
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip().splitlines()[0].strip()
        except (OSError, IndexError) as exc:
            raise ConfigurationError(f"cannot read a token from {token_file}: {exc}") from exc
    else:
        token = env.get(TOKEN_ENV, "").strip()
    if not token:
        return None
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigurationError(
            f"the access token must have at least {MIN_TOKEN_CHARS} characters"
        )
    return token


def check_bind(host: str, token: str | None) -> None:
    """Refuse (:class:`ConfigurationError`) a non-loopback ``host`` without a token."""
    if host not in LOOPBACK and token is None:
        raise ConfigurationError(
            f"refusing to listen on {host} without an access token: anyone who can reach it "
            f"would see the knowledge base. Give --token-file FILE or set {TOKEN_ENV}, or bind "
            "127.0.0.1"
        )


def _presented(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(COOKIE) or request.query_params.get("token")


def token_guard(
    token: str,
) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    """An HTTP middleware that answers 401 to every request without ``token``."""
    expected = token.encode("utf-8")

    async def guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        given = _presented(request)
        if given is None or not hmac.compare_digest(given.encode("utf-8"), expected):
            log.info("401 for %s %s", request.method, request.url.path)
            if request.url.path.startswith("/api/"):
                return JSONResponse(
                    {"error": "unauthorized", "detail": "this explorer needs its access token"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
            return PlainTextResponse(
                "401 Unauthorized: this explorer needs its access token "
                "(open it once with ?token=TOKEN)",
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        if "token" in request.query_params and request.method == "GET":
            # Move the token from the address bar (history, referrers) into a cookie.
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            query = urlencode(rest)
            target = request.url.path + (f"?{query}" if query else "")
            response: Response = RedirectResponse(target, status_code=303)
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
            return response
        return await call_next(request)

    return guard
