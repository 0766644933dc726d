"""``lesionkg load`` (and ``db init``/``reset`` around it), through click's CliRunner, against the
real test server."""

import json

from click.testing import CliRunner

from lesionkg.cli import main


def test_load_bad_file_prints_error_and_exits_1(empty_graph, cli_args, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("File_name,Patient_index\nx.png,1\n")
    result = CliRunner().invoke(main, [*cli_args, "load", "deeplesion", str(bad), "--quiet"])
    assert result.exit_code == 1
    assert result.output.startswith("Error:") and str(bad) in result.output
    assert "Measurement_coordinates" in result.output


def test_load_db_init_reset_round(empty_graph, cli_args, deeplesion_dir):
    runner = CliRunner()
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


def test_load_refuses_a_bad_limit_with_the_valid_names():
    runner = CliRunner()
    for setting in ("depth=8", "spacing_max_mm=nan", "earliest_date=someday"):
        result = runner.invoke(main, ["load", "deeplesion", "x.csv", "--limit", setting])
        assert result.exit_code == 2, result.output
        assert "--limit" in result.output and "json_depth, xml_depth" in result.output
        assert "Traceback" not in result.output
