"""The local Neo4j server: real processes, real ports, real files."""

import os
import re
import shutil
import socket
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from lesionkg.core.errors import ServerError
from lesionkg.db import server

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.neo4j
def test_instance_is_running_on_loopback_with_a_private_password(neo4j_instance):
    st = server.status(neo4j_instance.data_dir)
    assert st.running and st.uri == neo4j_instance.uri
    assert neo4j_instance.uri.startswith("bolt://127.0.0.1:")
    mode = stat.S_IMODE(os.stat(neo4j_instance.data_dir / "instance.json").st_mode)
    assert mode == 0o600
    assert len(neo4j_instance.password) >= 20
    conf = (neo4j_instance.data_dir / "conf" / "neo4j.conf").read_text()
    assert "server.default_listen_address=127.0.0.1" in conf


@pytest.mark.neo4j
def test_server_is_the_pinned_community_version(driver):
    records, _, _ = driver.execute_query(
        "CALL dbms.components() YIELD name, versions, edition RETURN versions[0] AS v, edition"
    )
    assert records[0]["v"] == server.NEO4J_VERSION
    assert records[0]["edition"] == "community"


@pytest.mark.neo4j
def test_start_on_a_running_instance_returns_it(neo4j_instance):
    again = server.start(neo4j_instance.data_dir, neo4j_instance.port)
    assert again == neo4j_instance


@pytest.mark.neo4j
def test_env_lines_point_at_the_instance(neo4j_instance):
    lines = server.env_lines(neo4j_instance)
    assert f"export NEO4J_URI={neo4j_instance.uri}" in lines
    assert any(line.startswith("export NEO4J_PASSWORD=") for line in lines)
    out = subprocess.run(
        ["bash", "-c", "; ".join(lines) + '; echo "$NEO4J_PASSWORD"'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out == neo4j_instance.password


@pytest.mark.neo4j
def test_a_taken_port_is_refused_clearly(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ServerError, match=f"port {port} on 127.0.0.1 is already in use"):
            server.start(tmp_path / "other", port)
    assert not (tmp_path / "other" / "instance.json").exists()


def test_missing_java_is_reported(monkeypatch):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ServerError, match="Java not found"):
        server.check_java()


def test_missing_maven_is_reported_when_jars_are_not_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ServerError, match=r"Maven \(mvn\) not found"):
        server.install(tmp_path / "empty-cache")


def test_stop_on_a_folder_without_server_says_so(tmp_path):
    assert server.stop(tmp_path) is False
    assert server.status(tmp_path).running is False


def test_docker_compose_file_is_safe_and_pinned():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    neo4j = compose["services"]["neo4j"]
    assert neo4j["image"] == f"neo4j:{server.NEO4J_VERSION}-community"
    assert all(p.startswith("127.0.0.1:") for p in neo4j["ports"])
    # the password comes from the environment and has no default
    assert re.fullmatch(r"neo4j/\$\{NEO4J_PASSWORD:\?[^}]*\}", neo4j["environment"]["NEO4J_AUTH"])
    assert {v.split(":")[1] for v in neo4j["volumes"]} == {"/data", "/logs"}
    assert set(compose["volumes"]) == {"neo4j-data", "neo4j-logs"}
    assert "heap" in " ".join(neo4j["environment"]) and "pagecache" in " ".join(
        neo4j["environment"]
    )
    assert neo4j["healthcheck"]["test"]


def _compose_command() -> list[str] | None:
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.mark.skipif(_compose_command() is None, reason="no docker compose client on this machine")
def test_docker_compose_config_validates():
    cmd = _compose_command()
    env = {**os.environ, "NEO4J_PASSWORD": "a-test-password"}
    ok = subprocess.run([*cmd, "config"], cwd=REPO, env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "127.0.0.1" in ok.stdout
    env.pop("NEO4J_PASSWORD")
    refused = subprocess.run([*cmd, "config"], cwd=REPO, env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "NEO4J_PASSWORD" in refused.stderr


def test_generated_passwords_never_look_like_an_option():
    # neo4j-admin takes a password that starts with "-" for an option and refuses to start;
    # the old URL-safe tokens did that once in 64 starts.
    drawn = {server.new_password() for _ in range(2000)}
    assert len(drawn) == 2000
    assert all(len(p) == 32 and p[0] != "-" and p.isalnum() for p in drawn)
