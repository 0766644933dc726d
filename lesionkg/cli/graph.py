"""``lesionkg match``, ``link`` and ``evaluate``: the lesion graph's tracks and similarity edges,
and their evaluation against ground truth and baselines."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from lesionkg.cli.options import (
    FORMAT,
    INDEX_DIR,
    QUIET,
    SPACE,
    Group,
    neighbours_option,
    with_driver,
)
from lesionkg.cli.output import emit

if TYPE_CHECKING:
    from lesionkg.db.driver import Driver


@click.command(name="match")
@click.option("--patient", "patient_id", default=None, help="Only this patient [default: all].")
@FORMAT
@QUIET
@with_driver
def match_cmd(
    patient_id: str | None, fmt: str, quiet: bool, *, driver: Driver, database: str
) -> None:
    """Link each patient's measurements of one lesion into tracks (track_id, FOLLOWED_BY)."""
    from lesionkg.graph.matching import match_graph

    emit(match_graph(driver, database=database, patient_id=patient_id, progress=not quiet), fmt)


@click.command(name="link")
@SPACE
@neighbours_option(1000, 10)
@click.option(
    "--other-patients", is_flag=True, help="Only neighbours of other patients (cohort retrieval)."
)
@INDEX_DIR
@FORMAT
@QUIET
@with_driver
def link_cmd(
    space: str,
    k: int,
    other_patients: bool,
    index_dir: Path | None,
    fmt: str,
    quiet: bool,
    *,
    driver: Driver,
    database: str,
) -> None:
    """Write SIMILAR_TO edges to every lesion's k nearest lesions in an embedding space."""
    from lesionkg.graph.similarity import link_graph

    summary = link_graph(
        driver,
        space=space,
        k=k,
        other_patients=other_patients,
        index_dir=index_dir,
        database=database,
        progress=not quiet,
    )
    emit(summary, fmt)


@click.group(name="evaluate", cls=Group)
def evaluate_group() -> None:
    """Measure tracks and retrieval against ground truth and baselines."""


@evaluate_group.command(name="matching")
@click.option(
    "--pairs",
    "pairs_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Same-lesion pairs CSV (source_File_name, target_File_name[, *_recist_diameter_mm]).",
)
@FORMAT
@with_driver
def evaluate_matching_cmd(pairs_path: Path, fmt: str, *, driver: Driver, database: str) -> None:
    """Score the stored tracks on same-lesion pairs, beside the Hungarian location baseline."""
    from lesionkg.graph.matching import evaluate_matching

    emit(evaluate_matching(driver, pairs_path, database=database), fmt)


@evaluate_group.command(name="retrieval")
@SPACE
@neighbours_option(100, 5)
@click.option(
    "--labels",
    "labels_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="LesaNet labels CSV (File_name, relevant_labels) for label precision@k.",
)
@FORMAT
@with_driver
def evaluate_retrieval_cmd(
    space: str, k: int, labels_path: Path | None, fmt: str, *, driver: Driver, database: str
) -> None:
    """Type (and LesaNet label) precision@k over other patients, beside location baselines."""
    from lesionkg.graph.retrieval import evaluate_retrieval

    report = evaluate_retrieval(
        driver, space=space, k=k, labels_path=labels_path, database=database
    )
    emit(report, fmt)
