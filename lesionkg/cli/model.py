"""``lesionkg train`` and ``lesionkg embed``: the triplet network and the lesions' embeddings."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from lesionkg.cli.options import DEVICE, FORMAT, QUIET, parse_floats, parse_window, with_driver
from lesionkg.cli.output import emit

if TYPE_CHECKING:
    from lesionkg.db.driver import Driver


@click.command(name="train")
@click.option(
    "--data",
    "csv_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="DL_info.csv with the lesions to train on.",
)
@click.option(
    "--images",
    required=True,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Folder with Images_png/{volume}/{slice}.png or flat File_name PNGs.",
)
@click.option(
    "--out", required=True, type=click.Path(path_type=Path, file_okay=False), help="Model folder."
)
@click.option("--steps", type=click.IntRange(1), default=300, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--sequences",
    type=click.IntRange(1),
    default=24,
    show_default=True,
    help="Five-lesion sequences per mini-batch.",
)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=0.002, show_default=True)
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
@click.option("--window", default="-1024,1024", show_default=True, help="HU window min,max.")
@click.option(
    "--backbone", type=click.Choice(["vgg16_bn", "vgg16"]), default="vgg16_bn", show_default=True
)
@click.option(
    "--backbone-weights",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="torchvision VGG-16 weights file [default: random start].",
)
@click.option(
    "--splits",
    default="train,val",
    show_default=True,
    help="Splits of the CSV to train on (the rest stays held out).",
)
@click.option("--checkpoint-every", type=click.IntRange(1), default=50, show_default=True)
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
    window: str,
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
    low, high = parse_window(window)
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
            Window(low, high),
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
@click.option(
    "--model",
    "model_dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Model folder written by 'lesionkg train'.",
)
@click.option(
    "--images",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Where to find key slices of lesions loaded without --images.",
)
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
