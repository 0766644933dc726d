"""``lesionkg synth``: SYNTHETIC data sets, clearly labelled, of no real patient."""

from __future__ import annotations

from pathlib import Path

import click

from lesionkg.cli.options import SEED, Group


@click.group(name="synth", cls=Group)
def synth_group() -> None:
    """Write SYNTHETIC data sets (clearly labelled; no real patients)."""


@synth_group.command(name="deeplesion")
@click.argument("out_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--patients", type=click.IntRange(1), default=100, show_default=True)
@SEED
@click.option(
    "--first-patient",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Patient_index of the first synthetic patient.",
)
@click.option(
    "--images/--no-images",
    default=True,
    show_default=True,
    help="Render CT key slices (and neighbours) as Images_png/{volume}/{slice}.png.",
)
@click.option(
    "--ssbr-volumes",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Extra unlabelled volumes of contiguous slices for body-part regression training.",
)
def synth_deeplesion(
    out_dir: Path,
    patients: int,
    seed: int,
    first_patient: int,
    images: bool,
    ssbr_volumes: int,
) -> None:
    """A synthetic cohort in DL_info.csv format, with metadata, ground-truth tracks and images."""
    from lesionkg.synthetic.cohort import write_synthetic_dl_info

    cohort = write_synthetic_dl_info(
        out_dir,
        patients=patients,
        seed=seed,
        first_patient_index=first_patient,
        images=images,
        ssbr_volumes=ssbr_volumes,
        progress=True,
    )
    click.echo(
        f"SYNTHETIC cohort: {cohort.patients} patients, {cohort.studies} studies, "
        f"{cohort.lesions} lesions, {cohort.images} images, {cohort.ssbr_volumes} SSBR volumes "
        f"-> {cohort.csv_path}"
    )
