"""``lesionkg orthanc``: a local Orthanc (a DICOM node with DICOMweb) for tests and the demo."""

from __future__ import annotations

from pathlib import Path

import click

from lesionkg.cli.options import FORMAT, Group
from lesionkg.cli.output import emit
from lesionkg.pacs import orthanc
from lesionkg.pacs.errors import OrthancError

DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Orthanc instance folder [default: $LESIONKG_HOME/orthanc or ~/.lesionkg/orthanc].",
)


@click.group(name="orthanc", cls=Group)
def orthanc_group() -> None:
    """Run a real local Orthanc (Debian's orthanc and orthanc-dicomweb packages)."""


@orthanc_group.command()
@DATA_DIR
@click.option(
    "--http-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="HTTP port (REST and DICOMweb) [default: the last one, else a free port].",
)
@click.option(
    "--dicom-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="DICOM port (C-STORE, C-ECHO) [default: the last one, else a free port].",
)
@click.option("--timeout", type=float, default=60.0, show_default=True)
def start(
    data_dir: Path | None, http_port: int | None, dicom_port: int | None, timeout: float
) -> None:
    """Start Orthanc on 127.0.0.1 with authentication and DICOMweb."""
    data_dir = data_dir or orthanc.default_orthanc_dir()
    instance = orthanc.start(data_dir, http_port, dicom_port, timeout_s=timeout)
    click.echo(
        f"Orthanc is running: DICOMweb {instance.dicomweb_url}, DICOM port {instance.dicom_port} "
        f"(AE {instance.ae_title}), user {instance.username} (data in {data_dir}); "
        "eval \"$(lesionkg orthanc env)\" points 'lesionkg etl --dicomweb' at it"
    )


@orthanc_group.command()
@DATA_DIR
def stop(data_dir: Path | None) -> None:
    """Stop Orthanc."""
    data_dir = data_dir or orthanc.default_orthanc_dir()
    click.echo("stopped" if orthanc.stop(data_dir) else f"not running ({data_dir})")


@orthanc_group.command()
@DATA_DIR
@FORMAT
def status(data_dir: Path | None, fmt: str) -> None:
    """Say whether Orthanc runs and where; exit 3 when it does not run."""
    st = orthanc.status(data_dir or orthanc.default_orthanc_dir())
    emit(st, fmt)
    if not st.running:
        raise SystemExit(3)


@orthanc_group.command()
@DATA_DIR
def env(data_dir: Path | None) -> None:
    """Print LESIONKG_DICOMWEB_* export lines (eval "$(lesionkg orthanc env)")."""
    data_dir = data_dir or orthanc.default_orthanc_dir()
    instance = orthanc.read_orthanc_instance(data_dir)
    if instance is None:
        raise OrthancError(f"no local Orthanc in {data_dir}: run 'lesionkg orthanc start' first")
    click.echo("\n".join(orthanc.env_lines(instance)))
