"""``lesionkg neo4j``: the local Neo4j Community server."""

from __future__ import annotations

from pathlib import Path

import click

from lesionkg.cli.options import FORMAT, Group
from lesionkg.cli.output import emit
from lesionkg.config.paths import default_data_dir
from lesionkg.config.settings import DEFAULT_PORT
from lesionkg.core.errors import LesionKGError
from lesionkg.db import server

DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Local server instance folder [default: $LESIONKG_HOME/neo4j or ~/.lesionkg/neo4j].",
)


@click.group(name="neo4j", cls=Group)
def neo4j_group() -> None:
    """Run a real local Neo4j Community server (no Docker needed)."""


@neo4j_group.command()
@DATA_DIR
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True)
@click.option("--heap", default="1g", show_default=True, help="JVM heap size, e.g. 2g.")
@click.option("--pagecache", default="512m", show_default=True, help="Page cache size.")
@click.option(
    "--timeout",
    type=float,
    default=120.0,
    show_default=True,
    help="Seconds to wait for Bolt to answer.",
)
@click.option(
    "--http-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="HTTP port of Neo4j Browser (an error when taken) "
    "[default: the last one, else 7474 when free, else any free port].",
)
@click.option("--no-browser", is_flag=True, help="No HTTP connector and no Neo4j Browser.")
@click.option(
    "--guide-host",
    "guide_hosts",
    multiple=True,
    default=server.DEFAULT_GUIDE_HOSTS,
    show_default=True,
    help="Address Neo4j Browser may :play guides from (repeatable; scheme and host count).",
)
def start(
    data_dir: Path | None,
    port: int,
    heap: str,
    pagecache: str,
    timeout: float,
    http_port: int | None,
    no_browser: bool,
    guide_hosts: tuple[str, ...],
) -> None:
    """Start the server (fetching Neo4j from Maven Central the first time)."""
    data_dir = data_dir or default_data_dir()
    click.echo(f"starting Neo4j {server.NEO4J_VERSION} in {data_dir} ...", err=True)
    instance = server.start(
        data_dir,
        port,
        http_port=http_port,
        browser=not no_browser,
        guide_hosts=guide_hosts,
        heap=heap,
        pagecache=pagecache,
        timeout_s=timeout,
    )
    click.echo(f"Neo4j {server.NEO4J_VERSION} is running at {instance.uri} (data in {data_dir})")
    if instance.browser_url:
        click.echo(f"Neo4j Browser: {instance.browser_url} (user {instance.username})")


@neo4j_group.command()
@DATA_DIR
def stop(data_dir: Path | None) -> None:
    """Stop the server."""
    data_dir = data_dir or default_data_dir()
    was = server.stop(data_dir)
    click.echo("stopped" if was else f"not running ({data_dir})")


@neo4j_group.command()
@DATA_DIR
@FORMAT
def status(data_dir: Path | None, fmt: str) -> None:
    """Say whether the server runs, where and which version; exit 3 when it does not run."""
    st = server.status(data_dir or default_data_dir())
    emit(st, fmt)
    if not st.running:
        raise SystemExit(3)


@neo4j_group.command()
@DATA_DIR
@click.option("--database", default="neo4j", show_default=True)
def env(data_dir: Path | None, database: str) -> None:
    """Print NEO4J_* export lines for the local server (eval "$(lesionkg neo4j env)")."""
    data_dir = data_dir or default_data_dir()
    instance = server.read_instance(data_dir)
    if instance is None:
        raise LesionKGError(f"no local server in {data_dir}: run 'lesionkg neo4j start' first")
    click.echo("\n".join(server.env_lines(instance, database)))
