"""``lesionkg neo4j``, through click's CliRunner."""

import json

from click.testing import CliRunner

from lesionkg.cli import main


def test_neo4j_env_without_instance_is_an_error(tmp_path):
    result = CliRunner().invoke(main, ["neo4j", "env", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1 and "lesionkg neo4j start" in result.output


def test_neo4j_status_of_no_server_exits_3(tmp_path):
    result = CliRunner().invoke(main, ["neo4j", "status", "--data-dir", str(tmp_path)])
    assert result.exit_code == 3
    assert ": not running; data in " + str(tmp_path) in result.output


def test_neo4j_status_and_env(neo4j_instance):
    runner = CliRunner()
    data_dir = str(neo4j_instance.data_dir)
    status = runner.invoke(main, ["neo4j", "status", "--data-dir", data_dir, "--format", "json"])
    assert status.exit_code == 0 and json.loads(status.output)["uri"] == neo4j_instance.uri
    text = runner.invoke(main, ["neo4j", "status", "--data-dir", data_dir])
    assert text.exit_code == 0 and f"running at {neo4j_instance.uri} (pid " in text.output
    env = runner.invoke(main, ["neo4j", "env", "--data-dir", data_dir])
    assert f"export NEO4J_URI={neo4j_instance.uri}" in env.output
