"""Connection settings: environment variables, CLI overrides, and the local server as fallback.

Resolution order for each field: an explicit CLI option, then ``NEO4J_URI``, ``NEO4J_USERNAME``
(or the older ``NEO4J_USER``), ``NEO4J_PASSWORD``, ``NEO4J_DATABASE``; when no URI is set anywhere
the local server that ``lesionkg neo4j start`` manages (its data directory holds the port and the
generated password) is used.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lesionkg.config.paths import default_data_dir
from lesionkg.core.errors import ConfigurationError

DEFAULT_DATABASE = "neo4j"
DEFAULT_PORT = 7687


@dataclass(frozen=True, slots=True)
class Settings:
    """How to reach Neo4j."""

    uri: str
    username: str
    password: str
    database: str = DEFAULT_DATABASE

    @property
    def auth(self) -> tuple[str, str]:
        return (self.username, self.password)


def resolve_settings(
    uri: str | None = None,
    username: str | None = None,
    password: str | None = None,
    database: str | None = None,
    *,
    data_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Combine CLI options, environment and the local server's state into :class:`Settings`."""
    env = os.environ if env is None else env
    uri = uri or env.get("NEO4J_URI")
    username = username or env.get("NEO4J_USERNAME") or env.get("NEO4J_USER")
    password = password or env.get("NEO4J_PASSWORD")
    database = database or env.get("NEO4J_DATABASE") or DEFAULT_DATABASE
    if uri is None:
        # Imported here because the server module pulls in process management the rest never needs.
        from lesionkg.config.instance import read_instance

        instance = read_instance(data_dir or default_data_dir())
        if instance is None:
            where = data_dir or default_data_dir()
            raise ConfigurationError(
                "no Neo4j configured: set NEO4J_URI (and NEO4J_PASSWORD), or start the local "
                f"server with 'lesionkg neo4j start' (data directory {where})"
            )
        return Settings(
            instance.uri, username or instance.username, password or instance.password, database
        )
    if password is None:
        raise ConfigurationError(f"NEO4J_URI is {uri} but no password: set NEO4J_PASSWORD")
    return Settings(uri, username or "neo4j", password, database)
