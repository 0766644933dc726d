"""``lesionkg etl --dicomweb URL`` and ``lesionkg etl --listen``: the PACS sides of ``etl``.

The ``etl`` command parses the options; these functions call the library
(:mod:`lesionkg.pacs.dicomweb`, :mod:`lesionkg.pacs.listener`) and print the results.
"""

from __future__ import annotations

from pathlib import Path

import click

from lesionkg.cli.options import connected
from lesionkg.cli.output import emit, show_progress
from lesionkg.core.errors import LesionKGError
from lesionkg.etl.options import EtlOptions


def pull(
    options: EtlOptions,
    url: str,
    *,
    since: str | None,
    watch: bool,
    poll_s: float,
    fmt: str,
) -> None:
    """One sync of the PACS at ``url`` (credentials from ``LESIONKG_DICOMWEB_USER`` and
    ``LESIONKG_DICOMWEB_PASSWORD``), or one every ``poll_s`` seconds with ``watch``."""
    from lesionkg.pacs.client import resolve_connection
    from lesionkg.pacs.dicomweb import SyncOptions, sync_dicomweb, watch_dicomweb

    connection = resolve_connection(url)
    sync = SyncOptions(since=since)
    with connected() as (driver, database):
        if watch:
            click.echo(f"syncing {connection.url} every {poll_s:g} s (Ctrl-C to stop)", err=True)
            watch_dicomweb(
                driver,
                connection,
                database=database,
                options=options,
                sync=sync,
                poll_s=poll_s,
                on_sync=lambda s: emit(s, fmt) if s.retrieved or fmt == "json" else None,
            )
            return
        summary = sync_dicomweb(driver, connection, database=database, options=options, sync=sync)
    emit(summary, fmt)
    if summary.quarantined:
        raise LesionKGError(
            f"{summary.quarantined} reports quarantined (each with its reason in "
            f"{summary.quarantine_dir})"
        )


def receive(
    options: EtlOptions,
    inbox: Path | None,
    *,
    port: int,
    ae_title: str,
    poll_s: float,
    max_entries: int | None,
    fmt: str,
    quiet: bool,
) -> None:
    """Receive over DICOM C-STORE into ``inbox`` and import what arrives."""
    from lesionkg.pacs.listener import listen
    from lesionkg.pacs.options import default_state_dir

    inbox = inbox or default_state_dir().parent / "inbox"
    click.echo(f"listening for DICOM as {ae_title} on port {port}, inbox {inbox}", err=True)
    with connected() as (driver, database):
        summary = listen(
            driver,
            inbox,
            port=port,
            ae_title=ae_title,
            database=database,
            options=options,
            poll_s=poll_s,
            max_entries=max_entries,
            on_entry=None if quiet else show_progress,
        )
    emit(summary, fmt)
    if summary.rejected_files or summary.rejected:
        raise LesionKGError(
            f"{summary.rejected} bookmarks or files rejected (reasons above, and beside each "
            "file in quarantine/)"
        )
