"""Trying again when Neo4j is unreachable or restarting: a policy and :func:`with_retries`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from lesionkg.core.errors import DatabaseError, DatabaseUnavailableError
from lesionkg.db.driver import UNAVAILABLE

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to keep trying when Neo4j is unreachable or restarting, seconds.

    Waits double from ``first_wait_s`` up to ``max_wait_s``; after ``give_up_after_s`` of failed
    tries the error is raised (nothing of the work was written).
    """

    first_wait_s: float = 0.5
    max_wait_s: float = 10.0
    give_up_after_s: float = 120.0


#: failures after which the same work may succeed: the database layer's
#: :class:`DatabaseUnavailableError`, the driver's own (from code that talks to it directly) and a
#: socket's
RETRYABLE = (DatabaseUnavailableError, *UNAVAILABLE, ConnectionError, OSError)


def _cause(exc: BaseException) -> BaseException:
    """The driver's own error behind a :class:`DatabaseUnavailableError`, which names the
    failure better (``ServiceUnavailable``)."""
    if isinstance(exc, DatabaseUnavailableError) and exc.__cause__ is not None:
        return exc.__cause__
    return exc


def with_retries(
    action: Callable[[], T],
    policy: RetryPolicy,
    what: str,
    on_retry: Callable[[int, float, BaseException], None] | None = None,
) -> T:
    """``action()``, retried with exponential backoff on :data:`RETRYABLE` errors.

    ``on_retry(attempt, wait_s, error)`` is called before each wait (``error``: the driver's own
    error where there is one). Raises :class:`DatabaseError` naming ``what`` once
    ``policy.give_up_after_s`` has passed.
    """
    started = time.monotonic()
    attempt = 0
    wait = policy.first_wait_s
    while True:
        try:
            return action()
        except RETRYABLE as exc:
            attempt += 1
            elapsed = time.monotonic() - started
            cause = _cause(exc)
            if elapsed + wait > policy.give_up_after_s:
                raise DatabaseError(
                    f"{what}: Neo4j still unreachable after {attempt} tries over {elapsed:.0f} s "
                    f"({type(cause).__name__}: {cause}); nothing of it was written, run again to "
                    "import it"
                ) from exc
            if on_retry is not None:
                on_retry(attempt, wait, cause)
            time.sleep(wait)
            wait = min(wait * 2, policy.max_wait_s)
