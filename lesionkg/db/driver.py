"""The thin database layer: turns records into parameter rows and writes them with UNWIND batches.

The caller owns the driver; every function takes ``driver`` and ``database``. Nothing here parses
files or decides what is valid: that is the loaders' job.
"""

from __future__ import annotations

from typing import Any

from neo4j import Driver, RoutingControl
from neo4j.exceptions import Neo4jError, ServiceUnavailable

from lesionkg.config.settings import Settings
from lesionkg.core.errors import DatabaseError
from lesionkg.db.statements import statement


def open_driver(settings: Settings) -> Driver:
    """A driver for ``settings`` whose connectivity has been checked (the caller closes it)."""
    from neo4j import GraphDatabase

    # Notifications off: the library's own statements legitimately name labels and relationship
    # types that an empty database does not have yet, and warnings about that are noise.
    driver = GraphDatabase.driver(
        settings.uri, auth=settings.auth, notifications_min_severity="OFF"
    )
    try:
        driver.verify_connectivity()
    except (ServiceUnavailable, Neo4jError, OSError, ValueError) as exc:
        driver.close()
        raise DatabaseError(f"cannot reach Neo4j at {settings.uri}: {exc}") from exc
    return driver


def run_statement(
    driver: Driver, database: str, name: str, what: str, *, read: bool = False, **params: Any
) -> list:
    """Run the library statement ``cypher/store/NAME.cypher`` with ``params``; its records.

    ``read`` runs it in READ access mode. A Neo4j failure raises :class:`DatabaseError` saying
    ``"{what} failed: ..."``.
    """
    try:
        records, _, _ = driver.execute_query(
            statement(name),
            parameters_=params,
            database_=database,
            routing_=RoutingControl.READ if read else RoutingControl.WRITE,
        )
    except Neo4jError as exc:
        raise DatabaseError(f"{what} failed: {exc}") from exc
    return records
