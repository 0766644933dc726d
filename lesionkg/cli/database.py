"""``lesionkg db``: schema and housekeeping of the configured database."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from lesionkg.cli.options import Group, with_driver
from lesionkg.cli.output import emit

if TYPE_CHECKING:
    from lesionkg.db.driver import Driver


@dataclass(frozen=True)
class Counts:
    """Nodes by label and relationships by type, as :func:`lesionkg.db.schema.counts` gives them."""

    by_name: dict[str, int]

    def as_dict(self) -> dict[str, int]:
        return self.by_name

    def describe(self) -> str:
        return "\n".join(f"{k:<12}{v:>10}" for k, v in self.by_name.items())


@click.group(name="db", cls=Group)
def db_group() -> None:
    """Schema and housekeeping of the configured database."""


@db_group.command()
@with_driver
def init(*, driver: Driver, database: str) -> None:
    """Create constraints, indexes and lesion types (idempotent)."""
    from lesionkg.db.schema import apply_schema

    apply_schema(driver, database)
    click.echo("schema applied")


def _require_yes(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    # A callback, so that the refusal comes before the command connects (exit 2, no server needed).
    if not value:
        raise click.UsageError("refusing to empty the database without --yes", ctx=ctx)
    return value


@db_group.command()
@click.option(
    "--yes",
    is_flag=True,
    callback=_require_yes,
    expose_value=False,
    help="Really delete everything in the database.",
)
@with_driver
def reset(*, driver: Driver, database: str) -> None:
    """Delete every node and relationship of the configured database."""
    from lesionkg.db.schema import reset as reset_graph

    reset_graph(driver, database)
    click.echo(f"database {database} emptied")


@db_group.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@with_driver
def stats(fmt: str, *, driver: Driver, database: str) -> None:
    """Count nodes by label and relationships by type."""
    from lesionkg.db.schema import counts

    emit(Counts(counts(driver, database)), "json" if fmt == "json" else "text")
