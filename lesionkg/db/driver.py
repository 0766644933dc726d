"""The connection to Neo4j: open a driver, run the library's statements, run a write transaction.

The caller owns the driver; every function takes ``driver`` and ``database``. Every Neo4j failure
leaves this module as a :class:`DatabaseError`, and one after which the same work may succeed
(server unreachable or restarting, a transient lock conflict) as its subclass
:class:`DatabaseUnavailableError`, so that the layers above never catch a ``neo4j`` exception.
``Driver`` and ``Tx`` are re-exported for their type hints.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from neo4j import Driver, ManagedTransaction, Record, RoutingControl, Transaction
from neo4j.exceptions import (
    DriverError,
    Neo4jError,
    ServiceUnavailable,
    SessionExpired,
    TransientError,
)

from lesionkg.config.settings import Settings
from lesionkg.core.errors import DatabaseError, DatabaseUnavailableError
from lesionkg.db.statements import statement

__all__ = [
    "UNAVAILABLE",
    "Driver",
    "Record",
    "Tx",
    "database_error",
    "open_driver",
    "run_in",
    "run_statement",
    "write_transaction",
]

#: an open transaction, managed (inside :func:`write_transaction`) or explicit
Tx = ManagedTransaction | Transaction

#: the driver's failures after which the same work may succeed: connection lost, leader switch,
#: lock timeouts
UNAVAILABLE = (ServiceUnavailable, SessionExpired, TransientError)

T = TypeVar("T")


#: Neo4j's code for a database name the server does not have
DATABASE_NOT_FOUND = "Neo.ClientError.Database.DatabaseNotFound"
_NAMED = re.compile(r"(?:not found|does not exist)[^:]*:\s*'?([^'\s]+?)'?\.?$")


def database_error(exc: Exception, what: str, *, database: str | None = None) -> DatabaseError:
    """The LesionKG error for a Neo4j failure while doing ``what``: ``"{what} failed: ..."``, a
    :class:`DatabaseUnavailableError` when trying again may succeed. A database that does not
    exist (``--database nosuchdb``) is said so, by name (``database``, else from the message)."""
    if isinstance(exc, Neo4jError) and exc.code == DATABASE_NOT_FOUND:
        name = database
        if name is None:
            found = _NAMED.search(str(exc.message or "").strip())
            name = found.group(1) if found else "?"
        return DatabaseError(
            f"{what} failed: database {name!r} does not exist on this server (--database, "
            "env NEO4J_DATABASE; Neo4j Community has only 'neo4j' and 'system')"
        )
    kind = DatabaseUnavailableError if isinstance(exc, UNAVAILABLE) else DatabaseError
    return kind(f"{what} failed: {exc}")


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
) -> list[Record]:
    """Run the library statement ``cypher/store/NAME.cypher`` with ``params``; its records.

    ``read`` runs it in READ access mode. A Neo4j failure raises :class:`DatabaseError` saying
    ``"{what} failed: ..."`` (:class:`DatabaseUnavailableError` when it may succeed later).
    """
    try:
        records, _, _ = driver.execute_query(
            statement(name),
            parameters_=params,
            database_=database,
            routing_=RoutingControl.READ if read else RoutingControl.WRITE,
        )
    except (Neo4jError, DriverError) as exc:
        raise database_error(exc, what, database=database) from exc
    return records


def run_in(tx: Tx, name: str, **params: Any) -> list[Record]:
    """Run the library statement ``NAME`` inside the open transaction ``tx``; its records.

    Failures propagate as they are, so that a managed transaction can retry a transient one
    (:func:`write_transaction` turns what remains into a :class:`DatabaseError`).
    """
    return list(tx.run(statement(name), **params))


def write_transaction(driver: Driver, database: str, work: Callable[[Tx], T], what: str) -> T:
    """``work(tx)`` in ONE managed write transaction (the driver retries transient failures for
    a while); its result. A Neo4j failure raises :func:`database_error` of ``what``."""
    try:
        with driver.session(database=database) as session:
            return session.execute_write(work)
    except (Neo4jError, DriverError) as exc:
        raise database_error(exc, what, database=database) from exc
