"""The one error root of LesionKG.

Every error a user can cause derives from :class:`LesionKGError`; the CLI prints its message as
``Error: ...`` and exits 1. Messages name the file, line, column and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass


class LesionKGError(Exception):
    """Base class of every error LesionKG raises on purpose."""


class ConfigurationError(LesionKGError):
    """Settings or environment are incomplete or contradictory (missing password, bad URI...)."""


class ServerError(LesionKGError):
    """The local Neo4j server cannot be installed, started, reached or stopped."""


class DatabaseError(LesionKGError):
    """A Neo4j statement failed or the database is unreachable."""


class DatabaseUnavailableError(DatabaseError):
    """Neo4j is unreachable, restarting or briefly busy: the same work may succeed if tried
    again."""


class QueryError(LesionKGError):
    """A named query or an ad-hoc Cypher statement is unknown, malformed or given bad parameters."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem found in an input file.

    ``line`` is the 1-based physical line where the record starts (the header is line 1 of a CSV);
    ``column`` the column name, or ``None`` when the problem concerns the whole record or file.
    ``rule`` the stable name of the input limit or plausibility rule that refused it
    (:mod:`lesionkg.core.limits`, ``docs/input-limits.md``), ``None`` for other problems.
    """

    source: str
    line: int | None
    column: str | None
    reason: str
    rule: str | None = None

    def __str__(self) -> str:
        where = self.source
        if self.line is not None:
            where += f", line {self.line}"
        if self.column is not None:
            where += f", column {self.column}"
        rule = f" (rule {self.rule})" if self.rule is not None else ""
        return f"{where}: {self.reason}{rule}"


class InvalidInputError(LesionKGError):
    """An input file has problems; all of them are listed, not just the first."""

    #: how many problems the message spells out; the rest are counted (all are in ``problems``)
    shown = 20

    def __init__(
        self, problems: list[Problem], *, written: int = 0, outcome: str | None = None
    ) -> None:
        self.problems = list(problems)
        self.written = written
        lines = [str(p) for p in self.problems[: self.shown]]
        more = len(self.problems) - len(lines)
        if more > 0:
            lines.append(f"... and {more} more problem(s)")
        # What the refused operation did not do, for inputs that are not written to the graph.
        if outcome is None:
            outcome = (
                "nothing was written"
                if written == 0
                else f"{written} lesions before it were written (fix the file and load it again: "
                "loading is idempotent)"
            )
        head = f"{len(self.problems)} problem(s) in the input; {outcome}"
        super().__init__(head + ":\n  " + "\n  ".join(lines))


class ModelError(LesionKGError):
    """A model checkpoint, weights file or training input is missing, malformed or incompatible."""
