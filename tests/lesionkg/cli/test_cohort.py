"""``lesionkg similar``, ``similar-patients``, ``tracks`` and ``response``, through click's
CliRunner, on a SYNTHETIC cohort in the real test server."""

import json

import pytest
from click.testing import CliRunner
from conftest import DATABASE, GraphState

from lesionkg.cli import main
from lesionkg.db.schema import reset
from lesionkg.etl.bulk import load_deeplesion
from lesionkg.graph.matching import match_graph
from lesionkg.graph.similarity import link_graph


@pytest.fixture
def synthetic_graph(driver, synthetic_images, tmp_path_factory):
    """The 12 SYNTHETIC patients, linked in the cues space and matched into tracks."""
    if GraphState.content != "synthetic-linked":
        reset(driver, DATABASE)
        csv_path = synthetic_images / "DL_info_synthetic.csv"
        load_deeplesion(driver, csv_path, database=DATABASE, progress=False)
        index_dir = tmp_path_factory.mktemp("synthetic-index")
        link_graph(driver, space="cues", k=5, index_dir=index_dir, database=DATABASE)
        match_graph(driver, database=DATABASE)
        GraphState.content = "synthetic-linked"
    return driver


def _patient_with_most_studies(driver) -> str:
    records, _, _ = driver.execute_query(
        "MATCH (p:Patient)-[:HAS_STUDY]->(s) RETURN p.patient_id AS id, count(s) AS n "
        "ORDER BY n DESC, id LIMIT 1",
        database_=DATABASE,
    )
    return records[0]["id"]


def test_similar_lesions_and_patients(synthetic_graph, cli_args):
    runner = CliRunner()
    patient = _patient_with_most_studies(synthetic_graph)
    records, _, _ = synthetic_graph.execute_query(
        "MATCH (l:Lesion {patient_id: $p}) RETURN l.lesion_id AS id ORDER BY id LIMIT 1",
        p=patient,
        database_=DATABASE,
    )
    lesion = records[0]["id"]
    similar = runner.invoke(main, [*cli_args, "similar", lesion, "-k", "3", "--format", "json"])
    assert similar.exit_code == 0, similar.output
    rows = json.loads(similar.stdout)
    assert 0 < len(rows) <= 3 and all(r["patient_id"] != patient for r in rows)
    table = runner.invoke(main, [*cli_args, "similar", lesion, "-k", "3"]).stdout.splitlines()
    assert table[0].split()[:2] == ["lesion_id", "patient_id"]
    assert table[-1] == f"({len(rows)} row{'s' if len(rows) != 1 else ''})"
    patients = runner.invoke(
        main, [*cli_args, "similar-patients", patient, "--format", "csv"]
    ).stdout.splitlines()
    assert patients[0].startswith("patient_id,score,") and len(patients) > 1
    missing = runner.invoke(main, [*cli_args, "similar", "DL-0000000000000000"])
    assert missing.exit_code == 1 and missing.output.startswith("Error:")


def test_tracks_and_response(synthetic_graph, cli_args):
    runner = CliRunner()
    patient = _patient_with_most_studies(synthetic_graph)
    tracks = json.loads(
        runner.invoke(main, [*cli_args, "tracks", patient, "--format", "json"]).stdout
    )
    assert tracks and all(r["measurements"] >= 1 for r in tracks)
    report = runner.invoke(main, [*cli_args, "response", patient, "--format", "json"])
    assert report.exit_code == 0, report.output
    response = json.loads(report.stdout)
    assert response["patient_id"] == patient and response["targets"]
    text = runner.invoke(main, [*cli_args, "response", patient]).stdout.splitlines()
    assert text[0].startswith(f"patient {patient}: baseline study ")
    assert text[1].split() == [
        "study",
        "SLD",
        "mm",
        "vs",
        "base",
        "vs",
        "nadir",
        "targets",
        "category",
    ]
    assert len(text) == 2 + len(response["studies"])
