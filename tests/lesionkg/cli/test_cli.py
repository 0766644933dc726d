"""The command line, through click's CliRunner, against the real test server."""

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
    listed = json.loads(runner.invoke(main, ["query", "--list", "--format", "json"]).output)
    assert {q["name"] for q in listed} == set(queries())


def test_bad_option_exits_2(runner):
    result = runner.invoke(main, ["query", "type_distribution", "--format", "xml"])
    assert result.exit_code == 2


def test_reset_refuses_without_yes(runner):
    result = runner.invoke(main, ["db", "reset"])
    assert result.exit_code == 2 and "--yes" in result.output


def test_unreachable_database_is_a_clear_error(runner):
    result = runner.invoke(main, ["--uri", "bolt://127.0.0.1:1", "--password", "x", "db", "stats"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot reach Neo4j at bolt://127.0.0.1:1")


def test_neo4j_env_without_instance_is_an_error(runner, tmp_path):
    result = runner.invoke(main, ["neo4j", "env", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1 and "lesionkg neo4j start" in result.output


@pytest.mark.neo4j
def test_neo4j_status_and_env(runner, neo4j_instance):
    status = runner.invoke(
        main, ["neo4j", "status", "--data-dir", str(neo4j_instance.data_dir), "--format", "json"]
    )
    assert status.exit_code == 0 and json.loads(status.output)["uri"] == neo4j_instance.uri
    env = runner.invoke(main, ["neo4j", "env", "--data-dir", str(neo4j_instance.data_dir)])
    assert f"export NEO4J_URI={neo4j_instance.uri}" in env.output


@pytest.mark.neo4j
def test_named_query_as_json(runner, val_graph, cli_args):
    result = runner.invoke(main, [*cli_args, "query", "type_distribution", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert sum(r["lesions"] for r in rows) == 4889


@pytest.mark.neo4j
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


@pytest.mark.neo4j
def test_query_with_bad_param_is_an_error(runner, val_graph, cli_args):
    result = runner.invoke(
        main, [*cli_args, "query", "lesions_by_type_and_size", "--param", "coarse_type=liver"]
    )
    assert result.exit_code == 1
    assert "Error: parameter coarse_type: expected INTEGER, got 'liver'" in result.output


@pytest.mark.neo4j
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


@pytest.mark.neo4j
def test_load_bad_file_prints_error_and_exits_1(runner, empty_graph, cli_args, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("File_name,Patient_index\nx.png,1\n")
    result = runner.invoke(main, [*cli_args, "load", "deeplesion", str(bad), "--quiet"])
    assert result.exit_code == 1
    assert result.output.startswith("Error:") and str(bad) in result.output
    assert "Measurement_coordinates" in result.output


@pytest.mark.neo4j
def test_load_db_init_reset_round(runner, empty_graph, cli_args, deeplesion_dir):
    csv_path = deeplesion_dir / "images" / "images_DL_info_rows.csv"
    assert runner.invoke(main, [*cli_args, "db", "init"]).exit_code == 0
    loaded = runner.invoke(
        main, [*cli_args, "load", "deeplesion", str(csv_path), "--quiet", "--format", "json"]
    )
    assert loaded.exit_code == 0, loaded.output
    summary = json.loads(loaded.output)
    assert summary["created"]["Lesion"] == 24 and summary["dataset"] == "DeepLesion"
    again = json.loads(
        runner.invoke(
            main, [*cli_args, "load", "deeplesion", str(csv_path), "--quiet", "--format", "json"]
        ).output
    )
    assert again["created"]["Lesion"] == 0 and again["existing"]["Lesion"] == 24
    assert runner.invoke(main, [*cli_args, "db", "reset", "--yes"]).exit_code == 0
    stats = json.loads(runner.invoke(main, [*cli_args, "db", "stats", "--format", "json"]).output)
    assert stats["Lesion"] == 0


@pytest.mark.neo4j
@pytest.mark.slow
def test_demo_builds_a_synthetic_knowledge_base(
    runner, empty_graph, cli_args, tmp_path, monkeypatch
):
    from lesionkg import demo as pipeline

    # The demo's training, shrunk to seconds: what is tested is that it trains, embeds, shows.
    tiny = {"steps": 2, "sequences_per_batch": 2, "crop_px": 16, "spacings_mm": (2.0, 5.0)}
    monkeypatch.setattr(pipeline, "DEMO_TRAINING", tiny)
    args = [*cli_args, "demo", "--out", str(tmp_path / "demo"), "--patients", "30"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC demo cohort" in result.output
    assert "== Lesions per coarse type" in result.output
    assert "== Timeline of patient 9" in result.output
    assert "Triplet network: 2 steps" in result.output
    assert "Type precision@5" in result.output or "Too few held-out" in result.output
    assert "== Lesions of other patients most similar to DL-" in result.output
    assert "Linked" in result.output and "in the cues space (6-D)" in result.output
    assert "in the triplet space (1408-D)" in result.output
    assert "Tracks against the generator's true tracks" in result.output
    assert "== Tracks of patient 9" in result.output
    assert "== RECIST-style response of patient 9" in result.output
    assert "== Patients most similar to 9" in result.output
    assert "== New PACS bookmarks, a SYNTHETIC export" in result.output
    pacs = json.loads((tmp_path / "demo" / "pacs-export" / "SYNTHETIC.json").read_text())
    assert f"bookmarks: {pacs['bookmarks']} accepted" in result.output
    graph = "MATCH (l:Lesion) RETURN count(l.track_id) AS tracked, count(l) AS n, "
    graph += "COUNT { ()-[:SIMILAR_TO {space: 'cues'}]->() } AS cues_edges"
    first = empty_graph.execute_query(graph).records[0]
    assert first["tracked"] == first["n"] and first["cues_edges"] == 10 * first["n"]
    records, _, _ = empty_graph.execute_query(
        "MATCH (l:Lesion) RETURN collect(DISTINCT l.dataset) AS ds, count(l) AS n, "
        "count(l.embedding) AS embedded"
    )
    assert records[0]["ds"] == ["synthetic"] and records[0]["n"] > 20
    # Every synthetic lesion has its slice, so every one is embedded.
    assert records[0]["embedded"] == records[0]["n"]
    meta = json.loads((tmp_path / "demo" / "DL_info_synthetic.json").read_text())
    assert meta["synthetic"] is True
    assert meta["lesions"] + pacs["bookmarks"] == records[0]["n"]
    # Again: the earlier demo cohort is replaced, the model found, not retrained.
    again = runner.invoke(main, args)
    assert again.exit_code == 0, again.output
    records, _, _ = empty_graph.execute_query("MATCH (l:Lesion) RETURN count(l) AS n")
    assert records[0]["n"] == meta["lesions"] + pacs["bookmarks"]
    # ... and its edges and tracks are replaced, not duplicated
    assert dict(empty_graph.execute_query(graph).records[0]) == dict(first)


def test_etl_needs_paths_or_an_inbox(runner):
    result = runner.invoke(main, ["etl"])
    assert result.exit_code == 2 and "--watch" in result.output


@pytest.mark.neo4j
def test_etl_reports_accepted_and_rejected(runner, cli_args, empty_graph, dicom_dir, tmp_path):
    args = [
        *cli_args,
        "etl",
        str(dicom_dir),
        "--secret",
        str(tmp_path / "key"),
        "--index-dir",
        str(tmp_path / "index"),
        "--quiet",
        "--format",
        "json",
    ]
    result = runner.invoke(main, args)
    # Reports that cannot be imported make the run fail, after the summary.
    assert result.exit_code == 1
    summary = json.loads(result.stdout.splitlines()[0])
    assert summary["accepted"] == 2 and summary["rejected_files"] >= 5
    assert "Error: " in result.stderr and "rejected" in result.stderr
    again = runner.invoke(main, args)
    assert json.loads(again.stdout.splitlines()[0])["duplicates"] == 2
