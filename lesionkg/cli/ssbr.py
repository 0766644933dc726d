"""``lesionkg ssbr``: self-supervised body-part regression."""

from __future__ import annotations

from pathlib import Path

import click

from lesionkg.cli.options import (
    DEVICE,
    FORMAT,
    MODEL_OUT,
    QUIET,
    SEED,
    WINDOW,
    Group,
    backbone_options,
    checkpoint_every_option,
    device_option,
    lr_option,
    model_dir_option,
    steps_option,
)
from lesionkg.cli.output import emit, emit_each


@click.group(name="ssbr", cls=Group)
def ssbr_group() -> None:
    """Self-supervised body-part regression: a slice's position along the body (head to feet)."""


@ssbr_group.command(name="train")
@click.option(
    "--volumes",
    required=True,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Folder of volume folders {volume}/{slice:03d}.png (16-bit, HU + 32768), or the folder "
    "holding Images_png/.",
)
@MODEL_OUT
@steps_option(0, 2000)
@SEED
@click.option(
    "--size", type=click.IntRange(16), default=64, show_default=True, help="Input side in pixels."
)
@click.option(
    "--groups-per-batch",
    type=click.IntRange(1),
    default=4,
    show_default=True,
    help="Groups of 8 equidistant slices per step.",
)
@lr_option(0.01)
@WINDOW
@backbone_options
@checkpoint_every_option(250)
@DEVICE
@FORMAT
@QUIET
def ssbr_train_cmd(
    volumes: Path,
    out: Path,
    steps: int,
    seed: int,
    size: int,
    groups_per_batch: int,
    lr: float,
    window: tuple[float, float],
    backbone: str,
    backbone_weights: Path | None,
    checkpoint_every: int,
    device: str,
    fmt: str,
    quiet: bool,
) -> None:
    """Train an SSBR model on unlabelled volumes (resumes when --out holds the same options)."""
    from lesionkg.model.ssbr import SSBRConfig, train_ssbr

    config = SSBRConfig(
        size=size,
        window=window,
        backbone=backbone,
        steps=steps,
        groups_per_batch=groups_per_batch,
        lr=lr,
        seed=seed,
        device=device,
        checkpoint_every=checkpoint_every,
    )
    emit(
        train_ssbr(volumes, out, config, backbone_weights=backbone_weights, progress=not quiet),
        fmt,
    )


@ssbr_group.command(name="predict")
@model_dir_option("Model folder written by 'lesionkg ssbr train'.", required=True)
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@device_option("cpu")
@FORMAT
def ssbr_predict_cmd(model_dir: Path, paths: tuple[Path, ...], device: str, fmt: str) -> None:
    """Score slices (16-bit PNGs, or volume folders: all their slices): path, score, z.

    z is the normalised body position, 0 at the head and 1 at the feet.
    """
    from lesionkg.model.ssbr import predict_slices

    emit_each(predict_slices(model_dir, list(paths), device=device), fmt)
