"""A local server's identity (``instance.json``: ports, user, generated password).

Written by :mod:`lesionkg.db.server` and read by the connection settings.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lesionkg.core.errors import ServerError


@dataclass(frozen=True, slots=True)
class Instance:
    """A local server's identity, as stored in ``instance.json``.

    ``http_port`` is the port of the HTTP connector that serves Neo4j Browser, or None when the
    instance runs without it (``--no-browser``).
    """

    data_dir: Path
    port: int
    username: str
    password: str
    http_port: int | None = None

    @property
    def uri(self) -> str:
        return f"bolt://127.0.0.1:{self.port}"

    @property
    def browser_url(self) -> str | None:
        """Where Neo4j Browser is served, or None without the HTTP connector."""
        return None if self.http_port is None else f"http://127.0.0.1:{self.http_port}/browser/"


def instance_file(data_dir: Path) -> Path:
    return data_dir / "instance.json"


def read_instance(data_dir: Path) -> Instance | None:
    """The instance created in ``data_dir`` by an earlier start, or None."""
    path = instance_file(Path(data_dir))
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
        http_port = raw.get("http_port")
        return Instance(
            Path(data_dir),
            int(raw["port"]),
            raw["username"],
            raw["password"],
            None if http_port is None else int(http_port),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ServerError(
            f"{path}: unreadable instance file ({exc}); delete it to start anew"
        ) from exc


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600), from the first byte on.

    The text goes to a temporary file (created 0600) beside ``path`` that then replaces it, so a
    reader never sees a half-written file and the password is never readable by others, even
    briefly.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
