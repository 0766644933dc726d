"""``lesionkg demo``: a demo knowledge base, built and queried."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from lesionkg.cli.options import data_option, images_option, with_driver

if TYPE_CHECKING:
    from lesionkg.db.driver import Driver


@click.command(name="demo")
@data_option("A DL_info.csv to use instead of the generated synthetic cohort.")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("demo-out"),
    show_default=True,
    help="Folder for the generated synthetic data.",
)
@images_option("Key-slice PNGs of --data (then a model is trained on them).")
@click.option("--patients", type=click.IntRange(1), default=60, show_default=True)
@click.option("--no-train", is_flag=True, help="Load only: no model training, no embeddings.")
@with_driver
def demo(
    csv_path: Path | None,
    out: Path,
    images: Path | None,
    patients: int,
    no_train: bool,
    *,
    driver: Driver,
    database: str,
) -> None:
    """Build a demo knowledge base (train, embed, load) and show what Cypher finds in it."""
    from lesionkg.demo import build_demo

    report = build_demo(
        driver,
        database,
        out_dir=out,
        data=csv_path,
        images=images,
        patients=patients,
        train=not no_train,
    )
    click.echo(report)
