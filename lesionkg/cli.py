"""The ``lesionkg`` command line: each command parses options and calls one library function.

Results go to stdout, logs and progress bars to stderr. Errors print ``Error: ...`` and exit 1;
bad options exit 2 (click's convention).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import click

from lesionkg import server
from lesionkg.errors import LesionKGError
from lesionkg.settings import DEFAULT_PORT, default_data_dir, resolve_settings

FORMAT = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="Output format.",
)
PARAM = click.option(
    "--param", "params", multiple=True, metavar="KEY=VALUE", help="Query parameter (repeatable)."
)
DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Local server instance folder [default: $LESIONKG_HOME/neo4j or ~/.lesionkg/neo4j].",
)


class _Group(click.Group):
    """Turns LesionKGError into click's 'Error: ...' message with exit status 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except LesionKGError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=_Group)
@click.option("--uri", default=None, help="Bolt URI [env NEO4J_URI; default: the local server].")
@click.option("--user", "username", default=None, help="User [env NEO4J_USERNAME or NEO4J_USER].")
@click.option("--password", default=None, help="Password [env NEO4J_PASSWORD].")
@click.option("--database", default=None, help="Database [env NEO4J_DATABASE; default neo4j].")
@click.version_option(package_name="lesionkg")
@click.pass_context
def main(ctx: click.Context, uri, username, password, database) -> None:
    """LesionKG: a lesion knowledge base for radiology on Neo4j."""
    ctx.obj = {"uri": uri, "username": username, "password": password, "database": database}


@contextmanager
def _connect(ctx: click.Context):
    """One driver per command, closed when the command ends."""
    from lesionkg.graph import open_driver

    settings = resolve_settings(**ctx.find_root().obj)
    driver = open_driver(settings)
    try:
        yield driver, settings.database
    finally:
        driver.close()


# --- neo4j: the local server ------------------------------------------------------------------


@main.group(name="neo4j", cls=_Group)
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
def start(data_dir, port, heap, pagecache, timeout) -> None:
    """Start the server (fetching Neo4j from Maven Central the first time)."""
    data_dir = data_dir or default_data_dir()
    click.echo(f"starting Neo4j {server.NEO4J_VERSION} in {data_dir} ...", err=True)
    instance = server.start(data_dir, port, heap=heap, pagecache=pagecache, timeout_s=timeout)
    click.echo(f"Neo4j {server.NEO4J_VERSION} is running at {instance.uri} (data in {data_dir})")


@neo4j_group.command()
@DATA_DIR
def stop(data_dir) -> None:
    """Stop the server."""
    data_dir = data_dir or default_data_dir()
    was = server.stop(data_dir)
    click.echo("stopped" if was else f"not running ({data_dir})")


@neo4j_group.command()
@DATA_DIR
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def status(data_dir, fmt) -> None:
    """Say whether the server runs, where and which version; exit 3 when it does not run."""
    st = server.status(data_dir or default_data_dir())
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "running": st.running,
                    "pid": st.pid,
                    "uri": st.uri,
                    "version": st.version,
                    "data_dir": str(st.data_dir),
                }
            )
        )
    else:
        state = f"running at {st.uri} (pid {st.pid})" if st.running else "not running"
        click.echo(f"Neo4j {st.version}: {state}; data in {st.data_dir}")
    if not st.running:
        raise SystemExit(3)


@neo4j_group.command()
@DATA_DIR
@click.option("--database", default="neo4j", show_default=True)
def env(data_dir, database) -> None:
    """Print NEO4J_* export lines for the local server (eval "$(lesionkg neo4j env)")."""
    data_dir = data_dir or default_data_dir()
    instance = server.read_instance(data_dir)
    if instance is None:
        raise LesionKGError(f"no local server in {data_dir}: run 'lesionkg neo4j start' first")
    click.echo("\n".join(server.env_lines(instance, database)))


# --- db: schema and housekeeping --------------------------------------------------------------


@main.group(name="db", cls=_Group)
def db_group() -> None:
    """Schema and housekeeping of the configured database."""


@db_group.command()
@click.pass_context
def init(ctx) -> None:
    """Create constraints, indexes and lesion types (idempotent)."""
    from lesionkg.graph import apply_schema

    with _connect(ctx) as (driver, database):
        apply_schema(driver, database)
    click.echo("schema applied")


@db_group.command()
@click.option("--yes", is_flag=True, help="Really delete everything in the database.")
@click.pass_context
def reset(ctx, yes) -> None:
    """Delete every node and relationship of the configured database."""
    if not yes:
        raise click.UsageError("refusing to empty the database without --yes")
    from lesionkg.graph import reset as reset_graph

    with _connect(ctx) as (driver, database):
        reset_graph(driver, database)
    click.echo(f"database {database} emptied")


@db_group.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_context
def stats(ctx, fmt) -> None:
    """Count nodes by label and relationships by type."""
    from lesionkg.graph import counts

    with _connect(ctx) as (driver, database):
        found = counts(driver, database)
    if fmt == "json":
        click.echo(json.dumps(found))
    else:
        click.echo("\n".join(f"{k:<12}{v:>10}" for k, v in found.items()))


# --- load ---------------------------------------------------------------------------------------


@main.group(name="load", cls=_Group)
def load_group() -> None:
    """Import lesion bookmarks."""


@load_group.command(name="deeplesion")
@click.argument("csv_path", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--images",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder of key-slice PNGs (Images_png/... or flat File_name PNGs).",
)
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Write the valid rows; put rejected ones with reasons in the rejects file.",
)
@click.option(
    "--rejects",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Rejects file [default: ./<csv name>.rejects.csv].",
)
@click.option(
    "--dataset",
    default=None,
    help="Dataset label stored on nodes [default: 'synthetic' when the CSV has a "
    "synthetic metadata file beside it, else 'DeepLesion'].",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    default=5000,
    show_default=True,
    help="Lesions per transaction.",
)
@click.option(
    "--writers",
    type=click.IntRange(1, 16),
    default=2,
    show_default=True,
    help="Concurrent write transactions.",
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def load_deeplesion_cmd(
    ctx, csv_path, images, skip_invalid, rejects, dataset, batch_size, writers, fmt, quiet
) -> None:
    """Load a DeepLesion DL_info.csv (18 columns) into the graph; idempotent."""
    from lesionkg.pipeline import load_deeplesion

    with _connect(ctx) as (driver, database):
        summary = load_deeplesion(
            driver,
            csv_path,
            database=database,
            images=images,
            skip_invalid=skip_invalid,
            rejects_path=rejects,
            dataset=dataset,
            batch_size=batch_size,
            writers=writers,
            progress=not quiet,
        )
    if fmt == "json":
        click.echo(json.dumps(summary.as_dict()))
        return
    click.echo(summary.describe())


# --- query and cypher ---------------------------------------------------------------------------


@main.command(name="query")
@click.argument("name", required=False)
@PARAM
@FORMAT
@click.option("--list", "list_", is_flag=True, help="List the named queries.")
@click.pass_context
def query_cmd(ctx, name, params, fmt, list_) -> None:
    """Run a named query of the Cypher library (see --list)."""
    from lesionkg.queries import format_result, parse_param_options, run_named
    from lesionkg.statements import queries

    if list_ or name is None:
        specs = queries().values()
        if fmt == "json":
            click.echo(
                json.dumps(
                    [
                        {
                            "name": s.name,
                            "description": s.description,
                            "params": [
                                {
                                    "name": p.name,
                                    "type": p.type,
                                    "default": p.default,
                                    "description": p.description,
                                }
                                for p in s.params
                            ],
                            "example": s.example,
                        }
                        for s in specs
                    ],
                    indent=2,
                )
            )
            return
        for s in specs:
            click.echo(f"{s.name}\n    {s.description}")
            for p in s.params:
                default = "required" if p.required else f"default {p.default}"
                click.echo(f"    --param {p.name}=<{p.type}>  ({default}) {p.description}")
            if s.example:
                click.echo(f"    e.g. {s.example}")
        return
    raw = parse_param_options(params)
    with _connect(ctx) as (driver, database):
        result = run_named(driver, database, name, raw)
    click.echo(format_result(result, fmt))


@main.command(name="cypher")
@click.argument("statement")
@PARAM
@FORMAT
@click.pass_context
def cypher_cmd(ctx, statement, params, fmt) -> None:
    """Run an ad-hoc read-only Cypher statement (values of --param are JSON, else strings)."""
    from lesionkg.queries import format_result, parse_param_options, run_cypher

    values = {}
    for key, raw in parse_param_options(params).items():
        try:
            values[key] = json.loads(raw)
        except ValueError:
            values[key] = raw
    with _connect(ctx) as (driver, database):
        result = run_cypher(driver, database, statement, values)
    click.echo(format_result(result, fmt))


# --- synthetic data and the demo ----------------------------------------------------------------


@main.group(name="synth", cls=_Group)
def synth_group() -> None:
    """Write SYNTHETIC data sets (clearly labelled; no real patients)."""


@synth_group.command(name="deeplesion")
@click.argument("out_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--patients", type=click.IntRange(1), default=100, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--first-patient",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Patient_index of the first synthetic patient.",
)
def synth_deeplesion(out_dir, patients, seed, first_patient) -> None:
    """A synthetic cohort in DL_info.csv format, with metadata and ground-truth tracks."""
    from lesionkg.loaders.synthetic import write_synthetic_dl_info

    cohort = write_synthetic_dl_info(
        out_dir, patients=patients, seed=seed, first_patient_index=first_patient, progress=True
    )
    click.echo(
        f"SYNTHETIC cohort: {cohort.patients} patients, {cohort.studies} studies, "
        f"{cohort.lesions} lesions -> {cohort.csv_path}"
    )


@main.command()
@click.option(
    "--data",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="A DL_info.csv to use instead of the generated synthetic cohort.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("demo-out"),
    show_default=True,
    help="Folder for the generated synthetic data.",
)
@click.option("--patients", type=click.IntRange(1), default=60, show_default=True)
@click.pass_context
def demo(ctx, data, out, patients) -> None:
    """Build a demo knowledge base and show what Cypher finds in it."""
    from lesionkg.pipeline import build_demo

    with _connect(ctx) as (driver, database):
        report = build_demo(driver, database, out_dir=out, data=data, patients=patients)
    click.echo(report)


if __name__ == "__main__":
    main()
