"""Where LesionKG keeps its files: the local server's data directory, the image store and the
jar cache."""

from __future__ import annotations

import os
from pathlib import Path


def default_data_dir() -> Path:
    """Where the local server keeps its files: ``$LESIONKG_HOME/neo4j`` or ``~/.lesionkg/neo4j``."""
    home = os.environ.get("LESIONKG_HOME")
    return (Path(home) if home else Path.home() / ".lesionkg") / "neo4j"


def cache_dir() -> Path:
    """Where the Neo4j jars fetched from Maven Central are cached, shared by every instance."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lesionkg"


def image_store_dir() -> Path:
    """The key slices the ETL read, as pixels only, one PNG per lesion id:
    ``$LESIONKG_HOME/images`` or ``~/.lesionkg/images`` (beside the local server's folder)."""
    return default_data_dir().parent / "images"
