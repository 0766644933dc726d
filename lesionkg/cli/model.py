"""``lesionkg train`` and ``lesionkg embed``: the triplet network and the lesions' embeddings."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from lesionkg.cli.options import (
    DEVICE,
    FORMAT,
    MODEL_OUT,
    QUIET,
    SEED,
    WINDOW,
    backbone_options,
    checkpoint_every_option,
    data_option,
    images_option,
    lr_option,
    model_dir_option,
    parse_floats,
    steps_option,
    with_driver,
)
from lesionkg.cli.output import emit

if TYPE_CHECKING:
    from lesionkg.db.driver import Driver


@click.command(name="train")
@data_option("DL_info.csv with the lesions to train on.", required=True)
@images_option("Folder with Images_png/{volume}/{slice}.png or flat File_name PNGs.", required=True)
@MODEL_OUT
@steps_option(1, 300)
@SEED
@click.option(
    "--sequences",
    type=click.IntRange(1),
    default=24,
    show_default=True,
    help="Five-lesion sequences per mini-batch.",
)
@lr_option(0.002)
@click.option("--optimizer", type=click.Choice(["sgd", "adam"]), default="sgd", show_default=True)
@click.option("--margin", type=click.FloatRange(min=0), default=0.1, show_default=True)
@click.option(
    "--rounds",
    type=click.IntRange(1),
    default=2,
    show_default=True,
    help="Pseudo-labelling rounds for unlabelled lesions.",
)
@click.option(
    "--crop-size",
    type=click.IntRange(16),
    default=64,
    show_default=True,
    help="Crop side in pixels.",
)
@click.option(
    "--crop-spacings",
    default="1.0,2.0",
    show_default=True,
    help="mm per pixel of each crop (comma-separated; one crop each).",
)
@click.option(
    "--context-pooling",
    type=click.Choice(["crop", "box"]),
    default="crop",
    show_default=True,
    help="What the network pools in the crops after the first: the whole crop (the lesion's "
    "surroundings) or the lesion box. The first crop always pools the lesion box.",
)
@WINDOW
@backbone_options
@click.option(
    "--splits",
    default="train,val",
    show_default=True,
    help="Splits of the CSV to train on (the rest stays held out).",
)
@checkpoint_every_option(50)
@DEVICE
@FORMAT
@QUIET
def train_cmd(
    csv_path: Path,
    images: Path,
    out: Path,
    steps: int,
    seed: int,
    sequences: int,
    lr: float,
    optimizer: str,
    margin: float,
    rounds: int,
    crop_size: int,
    crop_spacings: str,
    context_pooling: str,
    window: tuple[float, float],
    backbone: str,
    backbone_weights: Path | None,
    splits: str,
    checkpoint_every: int,
    device: str,
    fmt: str,
    quiet: bool,
) -> None:
    """Train the triplet network (resumes when --out holds a checkpoint of the same options)."""
    from lesionkg.model.network import NetworkConfig
    from lesionkg.model.training import TrainConfig, train_from_csv
    from lesionkg.model.transforms import CropSpec, InputConfig, Window

    spacings = parse_floats(crop_spacings, None, "--crop-spacings")
    config = TrainConfig(
        seed=seed,
        steps=steps,
        sequences_per_batch=sequences,
        optimizer=optimizer,
        lr=lr,
        margin=margin,
        rounds=rounds,
        checkpoint_every=checkpoint_every,
        network=NetworkConfig(backbone=backbone),
        input=InputConfig(
            tuple(
                CropSpec(crop_size, mm, "box" if i == 0 else context_pooling)
                for i, mm in enumerate(spacings)
            ),
            Window(*window),
        ),
    )
    result = train_from_csv(
        csv_path,
        images,
        out,
        config,
        splits=[s.strip() for s in splits.split(",") if s.strip()],
        backbone_weights=backbone_weights,
        device=device,
        progress=not quiet,
    )
    emit(result, fmt)


@click.command(name="embed")
@model_dir_option("Model folder written by 'lesionkg train'.", required=True)
@images_option("Where to find key slices of lesions loaded without --images.")
@click.option(
    "--matrix",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Matrix file for the similarity index [default: MODEL/embeddings.npy].",
)
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@DEVICE
@FORMAT
@QUIET
@with_driver
def embed_cmd(
    model_dir: Path,
    images: Path | None,
    matrix: Path | None,
    batch_size: int,
    device: str,
    fmt: str,
    quiet: bool,
    *,
    driver: Driver,
    database: str,
) -> None:
    """Write Lesion.embedding (1408-D) for every lesion of the graph that has an image."""
    from lesionkg.graph.embedding import embed_graph

    summary = embed_graph(
        driver,
        model_dir,
        database=database,
        images=images,
        matrix=matrix,
        batch_size=batch_size,
        device=device,
        progress=not quiet,
    )
    emit(summary, fmt)
