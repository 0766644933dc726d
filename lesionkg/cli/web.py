"""``lesionkg serve``: the lesion explorer web app over the configured Neo4j."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

from lesionkg.config.settings import resolve_settings

IMAGES_ENV = "LESIONKG_IMAGES"


@click.command(name="serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option(
    "--images",
    "images",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help=f"Folder of DeepLesion key-slice PNGs (repeatable) [env {IMAGES_ENV}, ':'-separated].",
)
@click.option(
    "--image-store",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="The key slices `lesionkg etl` stored, by lesion id [default: $LESIONKG_HOME/images].",
)
@click.option(
    "--token-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="File holding the access token every request must carry [env LESIONKG_WEB_TOKEN]; "
    "required for any host other than 127.0.0.1.",
)
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Rendered key slices [default: $XDG_CACHE_HOME/lesionkg/pictures].",
)
@click.option(
    "--max-rows",
    type=click.IntRange(1, 100_000),
    default=1000,
    show_default=True,
    help="Row cap of the Cypher console.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Transaction timeout of the Cypher console, seconds.",
)
def serve(
    host: str,
    port: int,
    images: tuple[Path, ...],
    image_store: Path | None,
    token_file: Path | None,
    cache_dir: Path | None,
    max_rows: int,
    timeout_s: float,
) -> None:
    """Open the lesion explorer: overview, patients, lesions, Cypher console, JSON API."""
    import uvicorn

    from lesionkg.config.paths import image_store_dir
    from lesionkg.web.access import check_bind, read_token
    from lesionkg.web.app import create_app
    from lesionkg.web.state import ExplorerConfig, default_cache_dir

    token = read_token(token_file)
    check_bind(host, token)
    if not images and os.environ.get(IMAGES_ENV):
        images = tuple(Path(p) for p in os.environ[IMAGES_ENV].split(os.pathsep) if p)
    settings = resolve_settings(**click.get_current_context().find_root().obj)
    config = ExplorerConfig(
        settings=settings,
        images=images,
        image_store=image_store or image_store_dir(),
        cache_dir=cache_dir or default_cache_dir(),
        token=token,
        max_rows=max_rows,
        timeout_s=timeout_s,
    )
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    click.echo(f"LesionKG explorer on http://{host}:{port}/ (Neo4j {settings.uri})", err=True)
    uvicorn.run(create_app(config), host=host, port=port, log_level="warning")
