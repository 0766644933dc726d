"""``lesionkg load``: bulk import of lesion bookmarks."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from lesionkg.cli.options import FORMAT, LIMIT, QUIET, Group, with_driver
from lesionkg.cli.output import emit

if TYPE_CHECKING:
    from lesionkg.core.limits import InputLimits
    from lesionkg.db.driver import Driver


@click.group(name="load", cls=Group)
def load_group() -> None:
    """Import lesion bookmarks."""


@load_group.command(name="deeplesion")
@click.argument("csv_path", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--images",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder of key-slice PNGs (Images_png/... or flat File_name PNGs).",
)
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Write the valid rows; put rejected ones with reasons in the rejects file.",
)
@click.option(
    "--rejects",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Rejects file [default: ./<csv name>.rejects.csv].",
)
@click.option(
    "--dataset",
    default=None,
    help="Dataset label stored on nodes [default: 'synthetic' when the CSV has a "
    "synthetic metadata file beside it, else 'DeepLesion'].",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    default=5000,
    show_default=True,
    help="Lesions per transaction.",
)
@click.option(
    "--writers",
    type=click.IntRange(1, 16),
    default=2,
    show_default=True,
    help="Concurrent write transactions.",
)
@click.option(
    "--update",
    is_flag=True,
    help="Apply rows that change a known type, sex or age, and report them per field "
    "[default: refuse the file, naming field and both values].",
)
@LIMIT
@FORMAT
@QUIET
@with_driver
def load_deeplesion_cmd(
    csv_path: Path,
    images: Path | None,
    skip_invalid: bool,
    rejects: Path | None,
    dataset: str | None,
    batch_size: int,
    writers: int,
    update: bool,
    limits: InputLimits,
    fmt: str,
    quiet: bool,
    *,
    driver: Driver,
    database: str,
) -> None:
    """Load a DeepLesion DL_info.csv (18 columns) into the graph; idempotent."""
    from lesionkg.etl.bulk import load_deeplesion

    summary = load_deeplesion(
        driver,
        csv_path,
        database=database,
        images=images,
        skip_invalid=skip_invalid,
        rejects_path=rejects,
        dataset=dataset,
        batch_size=batch_size,
        writers=writers,
        update=update,
        progress=not quiet,
        limits=limits,
    )
    emit(summary, fmt)
