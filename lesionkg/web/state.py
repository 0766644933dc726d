"""The explorer's shared state: its configuration, the lazily opened driver, the picture cache,
the templates, and the errors that routes raise for the app's handlers to answer."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi.templating import Jinja2Templates
from starlette.requests import Request

import lesionkg
from lesionkg.config.paths import cache_dir, image_store_dir
from lesionkg.config.settings import Settings
from lesionkg.core.errors import LesionKGError
from lesionkg.db.guard import DEFAULT_MAX_ROWS, DEFAULT_TIMEOUT_S
from lesionkg.web.images import PictureCache

if TYPE_CHECKING:
    from lesionkg.db.driver import Driver

T = TypeVar("T")


def default_cache_dir() -> Path:
    """Rendered key slices: ``$XDG_CACHE_HOME/lesionkg/pictures`` (``~/.cache/...``)."""
    return cache_dir() / "pictures"


@dataclass(frozen=True, slots=True)
class ExplorerConfig:
    """What ``lesionkg serve`` was given: the database, image folders, the ETL's image store,
    cache, token, limits."""

    settings: Settings
    images: tuple[Path, ...] = ()
    image_store: Path | None = field(default_factory=image_store_dir)
    cache_dir: Path = field(default_factory=default_cache_dir)
    token: str | None = None
    max_rows: int = DEFAULT_MAX_ROWS
    timeout_s: float = DEFAULT_TIMEOUT_S


class BadParameter(LesionKGError):
    """A request parameter is malformed; ``field`` names it (answered with 400)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.field = name
        self.message = message


class NotFound(LesionKGError):
    """An unknown patient or lesion (answered with 404)."""


class Explorer:
    """The app's shared state: configuration, the lazily opened driver and the picture cache."""

    def __init__(self, config: ExplorerConfig) -> None:
        self.config = config
        self.database = config.settings.database
        self.pictures = PictureCache(config.cache_dir, config.images, config.image_store)
        self._driver: Driver | None = None
        self._lock = threading.Lock()
        self._memo: dict[str, tuple[float, Any]] = {}

    def driver(self) -> Driver:
        """The driver, opened on first use; :class:`DatabaseError` while Neo4j is unreachable."""
        with self._lock:
            if self._driver is None:
                from lesionkg.db.driver import open_driver

                self._driver = open_driver(self.config.settings)
            return self._driver

    def cached(self, key: str, ttl_s: float, compute: Callable[[], T]) -> T:
        """``compute()``'s value, kept ``ttl_s`` seconds (for whole-graph aggregates that many
        requests share and nobody needs to the second)."""
        now = time.monotonic()
        with self._lock:
            hit = self._memo.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        value = compute()
        with self._lock:
            self._memo[key] = (now + ttl_s, value)
        return value

    def close(self) -> None:
        with self._lock:
            if self._driver is not None:
                self._driver.close()
                self._driver = None


def explorer_of(request: Request) -> Explorer:
    explorer: Explorer = request.app.state.explorer
    return explorer


_TEMPLATES = Jinja2Templates(directory=str(resources.files("lesionkg.web") / "templates"))
_TEMPLATES.env.globals["version"] = lesionkg.__version__


def show_value(value: object) -> str:
    """A property value for a table: floats to 6 significant digits, lists joined."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return ", ".join(show_value(v) for v in value)
    return "" if value is None else str(value)


_TEMPLATES.env.filters["value"] = show_value


def templates() -> Jinja2Templates:
    return _TEMPLATES
