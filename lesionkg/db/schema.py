"""The graph's schema (constraints, indexes) and whole-database operations: reset and counts."""

from __future__ import annotations

from neo4j import Driver
from neo4j.exceptions import DriverError, Neo4jError

from lesionkg.core.records import COARSE_TYPES
from lesionkg.db.driver import database_error, run_statement
from lesionkg.db.statements import schema_statements, statement

NODE_LABELS = ("Patient", "Study", "Lesion")

COUNTED_KINDS = (
    *NODE_LABELS,
    "LesionType",
    "HAS_STUDY",
    "HAS_LESION",
    "OF_TYPE",
    "FOLLOWED_BY",
    "SIMILAR_TO",
)


def apply_schema(driver: Driver, database: str) -> None:
    """Create the constraints, indexes and LesionType nodes if they do not exist yet."""
    try:
        for text in schema_statements():
            driver.execute_query(text, database_=database)
        rows = [{"code": code, "name": name} for code, name in COARSE_TYPES.items()]
        driver.execute_query(statement("db/lesion_types"), rows=rows, database_=database)
    except (Neo4jError, DriverError) as exc:
        raise database_error(exc, "applying the schema", database=database) from exc


def reset(driver: Driver, database: str) -> None:
    """Delete every node and relationship of ``database`` (constraints and indexes stay)."""
    try:
        with driver.session(database=database) as session:
            # CALL ... IN TRANSACTIONS needs an implicit (auto-commit) transaction.
            session.run(statement("db/reset")).consume()
    except (Neo4jError, DriverError) as exc:
        raise database_error(exc, "deleting the graph", database=database) from exc


def counts(driver: Driver, database: str) -> dict[str, int]:
    """Number of nodes per label and relationships per type that LesionKG writes."""
    records = run_statement(driver, database, "db/count_nodes", "counting nodes", read=True)
    # A label or type never written yet yields no row at all, so start every kind at zero.
    found = dict.fromkeys(COUNTED_KINDS, 0)
    found.update({r["kind"]: r["n"] for r in records})
    return found
