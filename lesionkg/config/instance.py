"""A local server's identity (``instance.json``: port, user, generated password), written by :mod:`lesionkg.db.server` and read by the connection settings."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from lesionkg.core.errors import ServerError


@dataclass(frozen=True, slots=True)
class Instance:
    """A local server's identity, as stored in ``instance.json``."""

    data_dir: Path
    port: int
    username: str
    password: str

    @property
    def uri(self) -> str:
        return f"bolt://127.0.0.1:{self.port}"


def instance_file(data_dir: Path) -> Path:
    return data_dir / "instance.json"


def read_instance(data_dir: Path) -> Instance | None:
    """The instance created in ``data_dir`` by an earlier start, or None."""
    path = instance_file(Path(data_dir))
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
        return Instance(Path(data_dir), int(raw["port"]), raw["username"], raw["password"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ServerError(
            f"{path}: unreadable instance file ({exc}); delete it to start anew"
        ) from exc


def write_private(path: Path, text: str) -> None:
    # Create with 0600 from the start so the password is never readable by others, even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)
