"""``lesionkg db``, through click's CliRunner, against the real test server."""

import json

from click.testing import CliRunner

from lesionkg.cli import main


def test_reset_refuses_without_yes():
    result = CliRunner().invoke(main, ["db", "reset"])
    assert result.exit_code == 2 and "--yes" in result.output


def test_unreachable_database_is_a_clear_error():
    result = CliRunner().invoke(
        main, ["--uri", "bolt://127.0.0.1:1", "--password", "x", "db", "stats"]
    )
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot reach Neo4j at bolt://127.0.0.1:1")


def test_stats_as_table_and_json(val_graph, cli_args):
    runner = CliRunner()
    table = runner.invoke(main, [*cli_args, "db", "stats"])
    assert table.exit_code == 0, table.output
    lines = {line.split()[0]: int(line.split()[1]) for line in table.output.splitlines()}
    assert lines["Lesion"] == 4889 and lines["Patient"] == 703
    as_json = json.loads(runner.invoke(main, [*cli_args, "db", "stats", "--format", "json"]).output)
    assert as_json == lines
