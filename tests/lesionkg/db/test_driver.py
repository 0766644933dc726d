"""The database layer's promise to the layers above: a Neo4j failure leaves it as a LesionKG error
(unreachable: :class:`DatabaseUnavailableError`, which :func:`with_retries` retries), never as a
``neo4j`` exception. With a real driver pointed at a closed port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lesionkg.config.settings import Settings
from lesionkg.core.errors import DatabaseError, DatabaseUnavailableError
from lesionkg.db.driver import Driver, run_in, run_statement, write_transaction
from lesionkg.db.retry import RetryPolicy, with_retries
from lesionkg.db.server import free_port


@pytest.fixture
def closed_port_driver() -> Iterator[Driver]:
    from neo4j import GraphDatabase

    driver = GraphDatabase.driver(
        f"bolt://127.0.0.1:{free_port()}",
        auth=("neo4j", "x" * 12),
        connection_timeout=2.0,
        # fail at once: the retries under test are ours, not the driver's own (30 s)
        max_transaction_retry_time=0,
    )
    try:
        yield driver
    finally:
        driver.close()


def test_unreachable_server_is_a_database_unavailable_error(closed_port_driver: Driver) -> None:
    with pytest.raises(DatabaseUnavailableError, match=r"^counting nodes failed: ") as caught:
        run_statement(closed_port_driver, "neo4j", "db/count_nodes", "counting nodes", read=True)
    assert type(caught.value.__cause__).__name__ == "ServiceUnavailable"
    with pytest.raises(DatabaseUnavailableError, match=r"^writing 3 bookmarks failed: "):
        write_transaction(
            closed_port_driver,
            "neo4j",
            lambda tx: run_in(tx, "db/count_nodes"),
            "writing 3 bookmarks",
        )


def test_with_retries_retries_unavailable_and_names_the_drivers_error(
    closed_port_driver: Driver,
) -> None:
    seen: list[str] = []
    policy = RetryPolicy(first_wait_s=0.01, max_wait_s=0.02, give_up_after_s=0.2)
    with pytest.raises(DatabaseError, match=r"still unreachable after \d+ tries") as caught:
        with_retries(
            lambda: run_statement(closed_port_driver, "neo4j", "db/count_nodes", "counting"),
            policy,
            "counting",
            lambda attempt, wait, error: seen.append(type(error).__name__),
        )
    assert not isinstance(caught.value, DatabaseUnavailableError)
    assert "(ServiceUnavailable: " in str(caught.value)
    assert seen and set(seen) == {"ServiceUnavailable"}


def test_open_driver_on_a_closed_port_says_where() -> None:
    from lesionkg.db.driver import open_driver

    uri = f"bolt://127.0.0.1:{free_port()}"
    settings = Settings(uri=uri, username="neo4j", password="x" * 12)
    with pytest.raises(DatabaseError, match=f"cannot reach Neo4j at {uri}"):
        open_driver(settings)
