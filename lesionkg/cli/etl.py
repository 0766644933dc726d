"""``lesionkg etl``: incremental import of PACS bookmarks, once or from a watched inbox."""

from __future__ import annotations

from pathlib import Path

import click

from lesionkg.cli.options import (
    FORMAT,
    LIMIT,
    QUIET,
    connected,
    device_option,
    model_dir_option,
    neighbours_option,
)
from lesionkg.cli.output import emit, show_progress
from lesionkg.core.errors import LesionKGError
from lesionkg.core.limits import InputLimits


@click.command(name="etl")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--watch",
    "inbox",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    is_flag=False,
    flag_value="-",
    help="Poll this inbox folder; move each processed entry to done/ or quarantine/. "
    "With --dicomweb (no INBOX): sync every --poll-s seconds.",
)
@click.option(
    "--poll-s",
    "--poll",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    help="With --watch: seconds between polls.",
)
@click.option(
    "--max-entries",
    type=click.IntRange(min=1),
    default=None,
    help="With --watch: stop after this many inbox entries (default: run until stopped).",
)
@click.option(
    "--dicomweb",
    default=None,
    metavar="URL",
    help="Pull new SR reports from this DICOMweb PACS [credentials: env LESIONKG_DICOMWEB_USER, "
    "LESIONKG_DICOMWEB_PASSWORD].",
)
@click.option("--since", default=None, metavar="DATE", help="With --dicomweb: from this StudyDate.")
@click.option("--listen", is_flag=True, help="Receive C-STORE pushes into the --watch inbox.")
@click.option("--port", type=click.IntRange(1, 65535), default=11112, show_default=True)
@click.option("--ae-title", default="LESIONKG", show_default=True, help="With --listen.")
@click.option(
    "--images",
    "image_dirs",
    multiple=True,
    type=click.Path(path_type=Path, exists=True),
    help="More folders of CT images that reports reference (repeatable).",
)
@click.option(
    "--allow-missing-images",
    is_flag=True,
    help="Import measurements whose image is not found, without image-derived fields.",
)
@model_dir_option("A trained triplet network: embed new lesions.")
@click.option(
    "--ssbr",
    "ssbr_dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="A trained body-part regression model: z of lesions without a location.",
)
@click.option(
    "--secret",
    "secret_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Pseudonymisation key file [default: $LESIONKG_HOME/pseudonym.key, created if missing].",
)
@neighbours_option(1000, 10)
@click.option(
    "--index-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where the HNSW indexes are kept [default: $LESIONKG_HOME/index/DATABASE].",
)
@click.option(
    "--image-store",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where the key slices read are kept for the explorer, pixels only, by lesion id "
    "[default: $LESIONKG_HOME/images].",
)
@click.option(
    "--update",
    is_flag=True,
    help="Apply a re-import's changed values (type, location, window, series; sex, age) and "
    "report them per field [default: refuse the file, naming field and both values].",
)
@LIMIT
@device_option("cpu")
@FORMAT
@QUIET
def etl_cmd(
    paths: tuple[Path, ...],
    inbox: Path | None,
    poll_s: float,
    max_entries: int | None,
    dicomweb: str | None,
    since: str | None,
    listen: bool,
    port: int,
    ae_title: str,
    image_dirs: tuple[Path, ...],
    allow_missing_images: bool,
    model_dir: Path | None,
    ssbr_dir: Path | None,
    secret_path: Path | None,
    k: int,
    index_dir: Path | None,
    image_store: Path | None,
    device: str,
    update: bool,
    limits: InputLimits,
    fmt: str,
    quiet: bool,
) -> None:
    """Import PACS bookmarks: DICOM SR measurement reports (with their CT images), JSON Lines
    bookmarks and DeepLesion rows; link and track them. Exits 1 when anything was rejected."""
    from lesionkg.etl.importer import EtlOptions, run_etl

    if not paths and inbox is None and dicomweb is None and not listen:
        raise click.UsageError("give PATH... to import, --watch INBOX, --dicomweb URL or --listen")
    if paths and inbox is not None:
        raise click.UsageError("give either PATH... or --watch INBOX, not both")
    options = EtlOptions(
        allow_missing_images=allow_missing_images,
        images=tuple(image_dirs),
        model_dir=model_dir,
        ssbr_dir=ssbr_dir,
        secret_path=secret_path,
        k=k,
        index_dir=index_dir,
        image_store=image_store,
        device=device,
        update=update,
        limits=limits,
    )
    if dicomweb is not None or listen:
        from lesionkg.cli import pacs

        if paths:
            raise click.UsageError("--dicomweb and --listen take no PATH")
        watch = inbox == Path("-")
        if dicomweb is not None:
            return pacs.pull(options, dicomweb, since=since, watch=watch, poll_s=poll_s, fmt=fmt)
        return pacs.receive(
            options,
            None if watch else inbox,
            port=port,
            ae_title=ae_title,
            poll_s=poll_s,
            max_entries=max_entries,
            fmt=fmt,
            quiet=quiet,
        )
    if inbox == Path("-"):
        raise click.UsageError("--watch needs INBOX (or --dicomweb URL)")
    # The arguments are checked before connecting, so a bad call needs no server: no with_driver.
    with connected() as (driver, database):
        if inbox is not None:
            from lesionkg.etl.inbox import watch_inbox

            if not quiet:
                click.echo(f"watching {inbox} every {poll_s:g} s (Ctrl-C to stop)", err=True)
            summary = watch_inbox(
                driver,
                inbox,
                database=database,
                options=options,
                poll_s=poll_s,
                max_entries=max_entries,
                on_entry=None if quiet else show_progress,
            )
        else:
            summary = run_etl(driver, paths, database=database, options=options, progress=not quiet)
    emit(summary, fmt)
    if summary.rejected_files or summary.rejected:
        raise LesionKGError(
            f"{summary.rejected} bookmarks or files rejected (reasons above"
            + (", and beside each file in quarantine/)" if inbox is not None else ")")
        )
