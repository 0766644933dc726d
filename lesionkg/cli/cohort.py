"""``lesionkg similar``, ``similar-patients``, ``tracks`` and ``response``: questions about one
lesion or one patient, answered from the graph."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from lesionkg.cli.options import FORMAT, ROWS_FORMAT, SPACE, neighbours_option, with_driver
from lesionkg.cli.output import emit, emit_rows

if TYPE_CHECKING:
    from lesionkg.db.driver import Driver


@click.command(name="similar")
@click.argument("lesion_id")
@SPACE
@neighbours_option(1000, 10)
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
@ROWS_FORMAT
@with_driver
def similar_cmd(
    lesion_id: str,
    space: str,
    k: int,
    other_patients: bool,
    coarse_type: str | None,
    min_mm: float,
    fmt: str,
    *,
    driver: Driver,
    database: str,
) -> None:
    """Lesions most similar to LESION_ID, through the space's Neo4j vector index."""
    from lesionkg.graph.cohort import similar_lesions

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
    emit_rows(rows, fmt)


@click.command(name="similar-patients")
@click.argument("patient_id")
@SPACE
@neighbours_option(1000, 10)
@ROWS_FORMAT
@with_driver
def similar_patients_cmd(
    patient_id: str, space: str, k: int, fmt: str, *, driver: Driver, database: str
) -> None:
    """Patients whose lesions are most similar to PATIENT_ID's (over SIMILAR_TO edges)."""
    from lesionkg.graph.cohort import similar_patients

    emit_rows(similar_patients(driver, patient_id, k=k, space=space, database=database), fmt)


@click.command(name="tracks")
@click.argument("patient_id")
@ROWS_FORMAT
@with_driver
def tracks_cmd(patient_id: str, fmt: str, *, driver: Driver, database: str) -> None:
    """A patient's lesion tracks with the long-axis change from first to last measurement."""
    from lesionkg.graph.cohort import patient_tracks

    emit_rows(patient_tracks(driver, patient_id, database=database), fmt)


@click.command(name="response")
@click.argument("patient_id")
@FORMAT
@with_driver
def response_cmd(patient_id: str, fmt: str, *, driver: Driver, database: str) -> None:
    """RECIST 1.1-style response of each follow-up study of a patient (from its tracks)."""
    from lesionkg.graph.cohort import patient_response

    emit(patient_response(driver, patient_id, database=database), fmt)
