"""``lesionkg query`` and ``lesionkg cypher``, through click's CliRunner, against the real test
server."""

import json

import pytest
from click.testing import CliRunner

from lesionkg.cli import main
from lesionkg.db.statements import queries


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_query_list_names_every_query(runner):
    result = runner.invoke(main, ["query", "--list"])
    assert result.exit_code == 0
    for name in queries():
        assert name in result.output
    assert "    --param patient_id=<STRING>  (required) " in result.output
    assert "    e.g. lesionkg query type_distribution" in result.output
    listed = json.loads(runner.invoke(main, ["query", "--list", "--format", "json"]).output)
    assert {q["name"] for q in listed} == set(queries())
    timeline = next(q for q in listed if q["name"] == "patient_timeline")
    assert [p["name"] for p in timeline["params"]] == ["patient_id"]
    assert set(timeline) == {"name", "description", "params", "example"}


def test_bad_option_exits_2(runner):
    result = runner.invoke(main, ["query", "type_distribution", "--format", "xml"])
    assert result.exit_code == 2


def test_named_query_as_json(runner, val_graph, cli_args):
    result = runner.invoke(main, [*cli_args, "query", "type_distribution", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert sum(r["lesions"] for r in rows) == 4889


def test_named_query_as_table(runner, val_graph, cli_args):
    result = runner.invoke(main, [*cli_args, "query", "type_distribution"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["code", "name", "lesions", "patients", "median_long_axis_mm"]
    assert lines[-1] == "(8 rows)"


def test_query_with_params_as_csv(runner, val_graph, cli_args):
    result = runner.invoke(
        main,
        [
            *cli_args,
            "query",
            "lesions_by_type_and_size",
            "--param",
            "coarse_type=4",
            "--param",
            "min_mm=100",
            "--format",
            "csv",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("lesion_id,patient_id")
    assert all(float(line.split(",")[4]) >= 100 for line in lines[1:])


def test_query_with_bad_param_is_an_error(runner, val_graph, cli_args):
    result = runner.invoke(
        main, [*cli_args, "query", "lesions_by_type_and_size", "--param", "coarse_type=liver"]
    )
    assert result.exit_code == 1
    assert "Error: parameter coarse_type: expected INTEGER, got 'liver'" in result.output


def test_cypher_reads_and_refuses_writes(runner, val_graph, cli_args):
    ok = runner.invoke(
        main, [*cli_args, "cypher", "MATCH (p:Patient) RETURN count(p) AS n", "--format", "json"]
    )
    assert ok.exit_code == 0 and json.loads(ok.output) == [{"n": 703}]
    with_param = runner.invoke(
        main,
        [
            *cli_args,
            "cypher",
            "MATCH (l:Lesion) WHERE l.long_axis_mm > $mm RETURN count(l) AS n",
            "--param",
            "mm=100",
            "--format",
            "csv",
        ],
    )
    assert with_param.exit_code == 0 and with_param.output.splitlines()[0] == "n"
    refused = runner.invoke(main, [*cli_args, "cypher", "MATCH (n) DETACH DELETE n"])
    assert refused.exit_code == 1 and refused.output.startswith("Error:")
    assert (
        runner.invoke(main, [*cli_args, "db", "stats", "--format", "json"]).output.count(
            '"Lesion": 4889'
        )
        == 1
    )
