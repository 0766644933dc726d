"""``lesionkg etl``, through click's CliRunner, against the real test server."""

import json

from click.testing import CliRunner

from lesionkg.cli import main


def test_etl_needs_paths_or_an_inbox():
    runner = CliRunner()
    result = runner.invoke(main, ["etl"])
    assert result.exit_code == 2 and "--watch" in result.output


def test_etl_reports_accepted_and_rejected(cli_args, empty_graph, dicom_dir, tmp_path):
    runner = CliRunner()
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
    # The multi-group report's 10 mm lesion; its 20 mm aorta diameter is normal anatomy, skipped
    # and counted under its own reason.
    assert summary["accepted"] == 1 and summary["rejected_files"] >= 4
    assert summary["rejected_by_reason"]["finding: normal anatomy, not a lesion"] == 1
    assert "Error: " in result.stderr and "rejected" in result.stderr
    again = runner.invoke(main, args)
    assert json.loads(again.stdout.splitlines()[0])["duplicates"] == 1


def test_etl_refuses_a_bad_limit_with_the_valid_names():
    runner = CliRunner()
    for setting in ("json_depht=8", "json_depth=deep", "json_depth"):
        result = runner.invoke(main, ["etl", "x.jsonl", "--limit", setting])
        assert result.exit_code == 2, result.output
        assert "--limit" in result.output and "image_pixels, dicom_pixels" in result.output
        assert "Traceback" not in result.output
