"""The ``lesionkg`` command line: each command parses options and calls one library function.

Results go to stdout, logs and progress bars to stderr. Errors print ``Error: ...`` and exit 1;
bad options exit 2 (click's convention).

One module per command group; a new one adds its command (or group) to :data:`COMMANDS`.
"""

from __future__ import annotations

import click

from lesionkg.cli import (
    cohort,
    database,
    demo,
    etl,
    graph,
    load,
    model,
    orthanc,
    query,
    server,
    ssbr,
    synth,
    web,
)
from lesionkg.cli.options import Group, connection_options


@click.group(cls=Group)
@connection_options
@click.version_option(package_name="lesionkg")
@click.pass_context
def main(
    ctx: click.Context,
    uri: str | None,
    username: str | None,
    password: str | None,
    database: str | None,
) -> None:
    """LesionKG: a lesion knowledge base for radiology on Neo4j."""
    ctx.obj = {"uri": uri, "username": username, "password": password, "database": database}


COMMANDS: list[click.Command] = [
    server.neo4j_group,
    database.db_group,
    load.load_group,
    model.train_cmd,
    model.embed_cmd,
    graph.match_cmd,
    graph.link_cmd,
    graph.evaluate_group,
    cohort.similar_cmd,
    cohort.similar_patients_cmd,
    cohort.tracks_cmd,
    cohort.response_cmd,
    query.query_cmd,
    query.cypher_cmd,
    etl.etl_cmd,
    orthanc.orthanc_group,
    ssbr.ssbr_group,
    synth.synth_group,
    demo.demo,
    web.serve,
]

for command in COMMANDS:
    main.add_command(command)
