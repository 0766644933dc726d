"""The ``lesionkg`` command line: each command parses options and calls one library function.

Results go to stdout, logs and progress bars to stderr. Errors print ``Error: ...`` and exit 1;
bad options exit 2 (click's convention).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import click

from lesionkg.config.paths import default_data_dir
from lesionkg.config.settings import DEFAULT_PORT, resolve_settings
from lesionkg.core.errors import LesionKGError
from lesionkg.db import server

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
TEXT_OR_JSON = click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", help="Output format."
)
QUIET = click.option("--quiet", is_flag=True, help="No progress bar.")


def device_option(default: str):
    """``--device auto|cpu|cuda`` (auto: CUDA when available)."""
    return click.option(
        "--device", type=click.Choice(["auto", "cpu", "cuda"]), default=default, show_default=True
    )


DEVICE = device_option("auto")
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
    from lesionkg.db.driver import open_driver

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
@TEXT_OR_JSON
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
    from lesionkg.db.schema import apply_schema

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
    from lesionkg.db.schema import reset as reset_graph

    with _connect(ctx) as (driver, database):
        reset_graph(driver, database)
    click.echo(f"database {database} emptied")


@db_group.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_context
def stats(ctx, fmt) -> None:
    """Count nodes by label and relationships by type."""
    from lesionkg.db.schema import counts

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
@TEXT_OR_JSON
@QUIET
@click.pass_context
def load_deeplesion_cmd(
    ctx, csv_path, images, skip_invalid, rejects, dataset, batch_size, writers, fmt, quiet
) -> None:
    """Load a DeepLesion DL_info.csv (18 columns) into the graph; idempotent."""
    from lesionkg.etl.bulk import load_deeplesion

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


# --- the triplet network -------------------------------------------------------------------------


def _floats(text: str, n: int | None, option: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(
            f"expected comma-separated numbers, got {text!r}", param_hint=option
        ) from None
    if n is not None and len(values) != n:
        raise click.BadParameter(f"expected {n} numbers, got {text!r}", param_hint=option)
    return values


@main.command(name="train")
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
@TEXT_OR_JSON
@QUIET
def train_cmd(
    csv_path,
    images,
    out,
    steps,
    seed,
    sequences,
    lr,
    optimizer,
    margin,
    rounds,
    crop_size,
    crop_spacings,
    context_pooling,
    window,
    backbone,
    backbone_weights,
    splits,
    checkpoint_every,
    device,
    fmt,
    quiet,
) -> None:
    """Train the triplet network (resumes when --out holds a checkpoint of the same options)."""
    from lesionkg.model.network import NetworkConfig
    from lesionkg.model.training import TrainConfig, describe, train_from_csv
    from lesionkg.model.transforms import CropSpec, InputConfig, Window

    spacings = _floats(crop_spacings, None, "--crop-spacings")
    low, high = _floats(window, 2, "--window")
    if low >= high:
        raise click.BadParameter("min must be below max", param_hint="--window")
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
    if fmt == "json":
        click.echo(json.dumps(describe(result)))
        return
    click.echo(
        f"trained {result.steps} steps on {result.lesions} lesions ({result.without_image} rows "
        f"without image left out) in {result.seconds:.0f} s on {result.device}; "
        f"final loss {result.final_loss:.4f}\nmodel {result.sha256} -> {result.out_dir}"
    )


@main.command(name="embed")
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
@TEXT_OR_JSON
@QUIET
@click.pass_context
def embed_cmd(ctx, model_dir, images, matrix, batch_size, device, fmt, quiet) -> None:
    """Write Lesion.embedding (1408-D) for every lesion of the graph that has an image."""
    from lesionkg.graph.embedding import embed_graph

    with _connect(ctx) as (driver, database):
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
    if fmt == "json":
        click.echo(json.dumps(summary.as_dict()))
        return
    click.echo(
        f"embedded {summary.embedded} of {summary.lesions} lesions with model "
        f"{summary.model_sha256[:12]} in {summary.seconds:.1f} s; {summary.without_image} without "
        f"image; matrix -> {summary.matrix_path}"
    )


# --- the lesion graph: tracks, similarity, evaluation -------------------------------------------


@main.command(name="match")
@click.option("--patient", "patient_id", default=None, help="Only this patient [default: all].")
@TEXT_OR_JSON
@QUIET
@click.pass_context
def match_cmd(ctx, patient_id, fmt, quiet) -> None:
    """Link each patient's measurements of one lesion into tracks (track_id, FOLLOWED_BY)."""
    from lesionkg.graph.matching import match_graph

    with _connect(ctx) as (driver, database):
        summary = match_graph(driver, database=database, patient_id=patient_id, progress=not quiet)
    if fmt == "json":
        click.echo(json.dumps(summary.as_dict()))
        return
    click.echo(
        f"matched {summary.lesions} lesions of {summary.patients} patients in "
        f"{summary.seconds:.1f} s: {summary.tracks} tracks, {summary.multi_tracks} with two or "
        f"more measurements, {summary.links} FOLLOWED_BY edges ({summary.same_study_links} "
        "between two series of one study)"
    )
    agreement = summary.reader_agreement
    if summary.reader_links or summary.reader_conflicts:
        click.echo(
            f"{summary.reader_links} links from reader tracking UIDs ({summary.reader_conflicts} "
            f"refused: one UID twice in one series); matching without the UIDs agrees on "
            f"{agreement['agree']} of {agreement['pairs']} reader pairs"
        )


SPACE = click.option(
    "--space",
    type=click.Choice(["cues", "triplet"]),
    default="cues",
    show_default=True,
    help="Embedding space: cues (metadata) or triplet (the network's, after `lesionkg embed`).",
)


@main.command(name="link")
@SPACE
@click.option("-k", "--k", "k", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option(
    "--other-patients", is_flag=True, help="Only neighbours of other patients (cohort retrieval)."
)
@click.option(
    "--index-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where the HNSW index is kept [default: $LESIONKG_HOME/index/DATABASE].",
)
@TEXT_OR_JSON
@QUIET
@click.pass_context
def link_cmd(ctx, space, k, other_patients, index_dir, fmt, quiet) -> None:
    """Write SIMILAR_TO edges to every lesion's k nearest lesions in an embedding space."""
    from lesionkg.graph.similarity import link_graph

    with _connect(ctx) as (driver, database):
        summary = link_graph(
            driver,
            space=space,
            k=k,
            other_patients=other_patients,
            index_dir=index_dir,
            database=database,
            progress=not quiet,
        )
    if fmt == "json":
        click.echo(json.dumps(summary.as_dict()))
        return
    built = "built" if summary.index_built else f"updated (+{summary.index_added})"
    click.echo(
        f"{summary.space}: {summary.lesions} lesions of {summary.dim}-D; index {built}, ef "
        f"{summary.ef} (recall@10 {summary.recall_at_10:.3f} against exact search) -> "
        f"{summary.index_path}\n{summary.edges} SIMILAR_TO edges ({summary.edges_per_s:.0f}/s), "
        f"{summary.stale_edges_removed} stale removed; {summary.predicted_types} lesions without "
        f"a given type got a predicted type; {summary.seconds:.1f} s"
    )


@main.command(name="etl")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--watch",
    "inbox",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Poll this inbox folder; move each processed entry to done/ or quarantine/.",
)
@click.option(
    "--poll-s",
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
@click.option(
    "--model",
    "model_dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="A trained triplet network: embed new lesions.",
)
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
@click.option("-k", "--k", "k", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option(
    "--index-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where the HNSW indexes are kept [default: $LESIONKG_HOME/index/DATABASE].",
)
@device_option("cpu")
@TEXT_OR_JSON
@QUIET
@click.pass_context
def etl_cmd(
    ctx,
    paths,
    inbox,
    poll_s,
    max_entries,
    image_dirs,
    allow_missing_images,
    model_dir,
    ssbr_dir,
    secret_path,
    k,
    index_dir,
    device,
    fmt,
    quiet,
) -> None:
    """Import PACS bookmarks: DICOM SR measurement reports (with their CT images), JSON Lines
    bookmarks and DeepLesion rows; link and track them. Exits 1 when anything was rejected."""
    from lesionkg.etl.importer import EtlOptions, run_etl

    if not paths and inbox is None:
        raise click.UsageError("give PATH... to import, or --watch INBOX")
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
        device=device,
    )
    with _connect(ctx) as (driver, database):
        if inbox is not None:
            from lesionkg.etl.inbox import watch_inbox

            summary = watch_inbox(
                driver,
                inbox,
                database=database,
                options=options,
                poll_s=poll_s,
                max_entries=max_entries,
                progress=not quiet,
            )
        else:
            summary = run_etl(driver, paths, database=database, options=options, progress=not quiet)
    click.echo(json.dumps(summary.as_dict()) if fmt == "json" else summary.describe())
    if summary.rejected_files or summary.rejected:
        raise LesionKGError(
            f"{summary.rejected} bookmarks or files rejected (reasons above"
            + (", and beside each file in quarantine/)" if inbox is not None else ")")
        )


def _table(rows: list[dict], fmt: str) -> str:
    from lesionkg.db.queries import QueryResult, format_result

    columns = list(rows[0]) if rows else []
    return format_result(QueryResult(columns, [list(r.values()) for r in rows]), fmt)


@main.command(name="similar")
@click.argument("lesion_id")
@SPACE
@click.option("-k", "--k", "k", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option(
    "--other-patients/--any-patient",
    default=True,
    show_default=True,
    help="Only lesions of other patients.",
)
@click.option(
    "--type", "coarse_type", default=None, help="Coarse type name or code (given, else predicted)."
)
@click.option("--min-mm", type=click.FloatRange(min=0), default=0.0, show_default=True)
@FORMAT
@click.pass_context
def similar_cmd(ctx, lesion_id, space, k, other_patients, coarse_type, min_mm, fmt) -> None:
    """Lesions most similar to LESION_ID, through the space's Neo4j vector index."""
    from lesionkg.graph.cohort import similar_lesions

    with _connect(ctx) as (driver, database):
        rows = similar_lesions(
            driver,
            lesion_id,
            k=k,
            space=space,
            other_patients=other_patients,
            coarse_type=coarse_type,
            min_mm=min_mm,
            database=database,
        )
    click.echo(_table(rows, fmt))


@main.command(name="similar-patients")
@click.argument("patient_id")
@SPACE
@click.option("-k", "--k", "k", type=click.IntRange(1, 1000), default=10, show_default=True)
@FORMAT
@click.pass_context
def similar_patients_cmd(ctx, patient_id, space, k, fmt) -> None:
    """Patients whose lesions are most similar to PATIENT_ID's (over SIMILAR_TO edges)."""
    from lesionkg.graph.cohort import similar_patients

    with _connect(ctx) as (driver, database):
        rows = similar_patients(driver, patient_id, k=k, space=space, database=database)
    click.echo(_table(rows, fmt))


@main.command(name="tracks")
@click.argument("patient_id")
@FORMAT
@click.pass_context
def tracks_cmd(ctx, patient_id, fmt) -> None:
    """A patient's lesion tracks with the long-axis change from first to last measurement."""
    from lesionkg.graph.cohort import patient_tracks

    with _connect(ctx) as (driver, database):
        rows = patient_tracks(driver, patient_id, database=database)
    click.echo(_table(rows, fmt))


@main.command(name="response")
@click.argument("patient_id")
@TEXT_OR_JSON
@click.pass_context
def response_cmd(ctx, patient_id, fmt) -> None:
    """RECIST 1.1-style response of each follow-up study of a patient (from its tracks)."""
    from dataclasses import asdict

    from lesionkg.core.response import describe_response
    from lesionkg.graph.cohort import patient_response

    with _connect(ctx) as (driver, database):
        report = patient_response(driver, patient_id, database=database)
    if fmt == "json":
        click.echo(json.dumps(asdict(report)))
        return
    click.echo(describe_response(report))


@main.group(name="evaluate", cls=_Group)
def evaluate_group() -> None:
    """Measure tracks and retrieval against ground truth and baselines."""


def _rate(value: float) -> str:
    return f"{value:.3f}"


@evaluate_group.command(name="matching")
@click.option(
    "--pairs",
    "pairs_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Same-lesion pairs CSV (source_File_name, target_File_name[, *_recist_diameter_mm]).",
)
@TEXT_OR_JSON
@click.pass_context
def evaluate_matching_cmd(ctx, pairs_path, fmt) -> None:
    """Score the stored tracks on same-lesion pairs, beside the Hungarian location baseline."""
    from lesionkg.graph.matching import evaluate_matching

    with _connect(ctx) as (driver, database):
        report = evaluate_matching(driver, pairs_path, database=database)
    if fmt == "json":
        click.echo(json.dumps(report.as_dict()))
        return
    click.echo(f"{report.pairs} same-lesion pairs from {report.pairs_file}")
    for line in report.unresolved:
        click.echo(f"  unresolved: {line}")
    click.echo(f"{'tracks':<26}{'recall':>8}{'precision':>11}{'mixed-type tracks':>19}")
    for name, scores in (
        ("lesionkg (stored tracks)", report.ours),
        ("baseline (Hungarian, loc)", report.baseline),
        ("ground-truth components", report.ground_truth_components),
    ):
        click.echo(
            f"{name:<26}{_rate(scores.recall):>8}{_rate(scores.precision):>11}"
            f"{_rate(scores.mixed_type_share):>19}"
        )
    agreement = report.as_dict()["reader_agreement"]
    if agreement["pairs"]:
        click.echo(
            f"reader tracking UIDs: {agreement['pairs']} consecutive pairs; matching without "
            f"them agrees on {agreement['agree']}, disagrees on {agreement['disagree']}"
        )
    met = report.as_dict()["targets_met"]
    click.echo(
        f"targets recall >= {report.targets['recall']}, precision >= "
        f"{report.targets['precision']}: {'met' if met else 'NOT met'}"
    )


@evaluate_group.command(name="retrieval")
@SPACE
@click.option("-k", "--k", "k", type=click.IntRange(1, 100), default=5, show_default=True)
@click.option(
    "--labels",
    "labels_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="LesaNet labels CSV (File_name, relevant_labels) for label precision@k.",
)
@TEXT_OR_JSON
@click.pass_context
def evaluate_retrieval_cmd(ctx, space, k, labels_path, fmt) -> None:
    """Type (and LesaNet label) precision@k over other patients, beside location baselines."""
    from lesionkg.graph.retrieval import evaluate_retrieval

    with _connect(ctx) as (driver, database):
        report = evaluate_retrieval(
            driver, space=space, k=k, labels_path=labels_path, database=database
        )
    if fmt == "json":
        click.echo(json.dumps(report.as_dict()))
        return
    click.echo(
        f"{report.lesions} lesions with a {report.space} vector, {report.labelled} with a given "
        f"type; neighbours from other patients only, k = {report.k}"
    )
    if report.labels_file:
        click.echo(
            f"LesaNet labels: {report.lesions_with_labels} lesions; {report.labels_unresolved} "
            "label rows not used (their key slice holds several lesions or none of the graph)"
        )
    click.echo(f"{'embedding':<24}{'dim':>6}{'type P@k':>10}{'type vote acc':>15}{'label P@k':>11}")
    for r in report.results:
        label = "-" if r.label_precision is None else _rate(r.label_precision)
        click.echo(
            f"{r.name:<24}{r.dim:>6}{_rate(r.type_precision):>10}"
            f"{_rate(r.type_vote_accuracy):>15}{label:>11}"
        )


# --- query and cypher ---------------------------------------------------------------------------


@main.command(name="query")
@click.argument("name", required=False)
@PARAM
@FORMAT
@click.option("--list", "list_", is_flag=True, help="List the named queries.")
@click.pass_context
def query_cmd(ctx, name, params, fmt, list_) -> None:
    """Run a named query of the Cypher library (see --list)."""
    from lesionkg.db.queries import format_result, parse_param_options, run_named
    from lesionkg.db.statements import queries

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
    from lesionkg.db.queries import format_result, parse_param_options, run_cypher

    values = {}
    for key, raw in parse_param_options(params).items():
        try:
            values[key] = json.loads(raw)
        except ValueError:
            values[key] = raw
    with _connect(ctx) as (driver, database):
        result = run_cypher(driver, database, statement, values)
    click.echo(format_result(result, fmt))


# --- ssbr: self-supervised body-part regression -------------------------------------------------


@main.group(name="ssbr", cls=_Group)
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
@click.option(
    "--out", required=True, type=click.Path(path_type=Path, file_okay=False), help="Model folder."
)
@click.option("--steps", type=click.IntRange(0), default=2000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
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
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=0.01, show_default=True)
@click.option("--window", default="-1024,1024", show_default=True, help="HU window min,max.")
@click.option(
    "--backbone", type=click.Choice(["vgg16_bn", "vgg16"]), default="vgg16_bn", show_default=True
)
@click.option(
    "--backbone-weights",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="torchvision VGG-16 weights file for --backbone [default: random start].",
)
@click.option("--checkpoint-every", type=click.IntRange(1), default=250, show_default=True)
@DEVICE
@TEXT_OR_JSON
@QUIET
def ssbr_train_cmd(
    volumes,
    out,
    steps,
    seed,
    size,
    groups_per_batch,
    lr,
    window,
    backbone,
    backbone_weights,
    checkpoint_every,
    device,
    fmt,
    quiet,
) -> None:
    """Train an SSBR model on unlabelled volumes (resumes when --out holds the same options)."""
    from lesionkg.model.ssbr import SSBRConfig, train_ssbr

    low, high = _floats(window, 2, "--window")
    if low >= high:
        raise click.BadParameter("min must be below max", param_hint="--window")
    config = SSBRConfig(
        size=size,
        window=(low, high),
        backbone=backbone,
        steps=steps,
        groups_per_batch=groups_per_batch,
        lr=lr,
        seed=seed,
        device=device,
        checkpoint_every=checkpoint_every,
    )
    result = train_ssbr(volumes, out, config, backbone_weights=backbone_weights, progress=not quiet)
    click.echo(json.dumps(result.as_dict()) if fmt == "json" else result.describe())


@ssbr_group.command(name="predict")
@click.option(
    "--model",
    "model_dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Model folder written by 'lesionkg ssbr train'.",
)
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@device_option("cpu")
@TEXT_OR_JSON
def ssbr_predict_cmd(model_dir, paths, device, fmt) -> None:
    """Score slices (16-bit PNGs, or volume folders: all their slices): path, score, z.

    z is the normalised body position, 0 at the head and 1 at the feet.
    """
    from lesionkg.model.ssbr import predict_slices

    predictions = predict_slices(model_dir, list(paths), device=device)
    if fmt == "json":
        rows = [{"path": str(p.path), "score": p.score, "z": p.z} for p in predictions]
        click.echo(json.dumps(rows))
        return
    for p in predictions:
        z = "-" if p.z is None else f"{p.z:.4f}"
        click.echo(f"{p.path}\t{p.score:.6f}\t{z}")


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
def synth_deeplesion(out_dir, patients, seed, first_patient, images, ssbr_volumes) -> None:
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
@click.option(
    "--images",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Key-slice PNGs of --data (then a model is trained on them).",
)
@click.option("--patients", type=click.IntRange(1), default=60, show_default=True)
@click.option("--no-train", is_flag=True, help="Load only: no model training, no embeddings.")
@click.pass_context
def demo(ctx, data, out, images, patients, no_train) -> None:
    """Build a demo knowledge base (train, embed, load) and show what Cypher finds in it."""
    from lesionkg.demo import build_demo

    with _connect(ctx) as (driver, database):
        report = build_demo(
            driver,
            database,
            out_dir=out,
            data=data,
            images=images,
            patients=patients,
            train=not no_train,
        )
    click.echo(report)


if __name__ == "__main__":
    main()
