"""The local Neo4j server: real processes, real ports, real files."""

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.request
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
    for service in compose["services"].values():
        assert all(p.startswith("127.0.0.1:") for p in service["ports"])
    # the password comes from the environment and has no default
    assert re.fullmatch(r"neo4j/\$\{NEO4J_PASSWORD:\?[^}]*\}", neo4j["environment"]["NEO4J_AUTH"])
    assert {v.split(":")[1] for v in neo4j["volumes"]} == {"/data", "/logs"}
    assert set(compose["volumes"]) == {"neo4j-data", "neo4j-logs", "orthanc-storage"}
    assert "heap" in " ".join(neo4j["environment"]) and "pagecache" in " ".join(
        neo4j["environment"]
    )
    assert neo4j["healthcheck"]["test"]
    # LOAD CSV reaches neither files nor the network, as on the local server
    env = neo4j["environment"]
    assert env["NEO4J_dbms_security_allow__csv__import__from__file__urls"] == "false"
    assert env["NEO4J_internal_dbms_cypher__ip__blocklist"] == "0.0.0.0/0,::/0"
    # the same guide as the local server's: mounted read-only, served on 8001, allow-listed
    guide = compose["services"]["guide"]
    assert "./cypher/guide:/usr/share/nginx/html/guide:ro" in guide["volumes"]
    assert guide["ports"] == ["127.0.0.1:8001:80"]
    assert (REPO / "cypher" / "guide" / "lesionkg.html").is_file()
    assert "http://127.0.0.1" in env["NEO4J_browser_remote__content__hostname__whitelist"]
    assert env["NEO4J_browser_post__connect__cmd"] == (
        "play http://127.0.0.1:8001/guide/lesionkg.html"
    )
    nginx = compose["configs"]["guide-nginx"]["content"]
    assert "Access-Control-Allow-Origin" in nginx and "cache-control, pragma" in nginx
    # the PACS: authentication on with a password that has no default, DICOMweb enabled
    orthanc = compose["services"]["orthanc"]["environment"]
    assert orthanc["ORTHANC__AUTHENTICATION_ENABLED"] == "true"
    assert re.search(r"\$\{ORTHANC_PASSWORD:\?[^}]*\}", orthanc["ORTHANC__REGISTERED_USERS"])
    assert orthanc["DICOM_WEB_PLUGIN_ENABLED"] == "true"


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


# --- the HTTP connector and Neo4j Browser -------------------------------------------------------


@pytest.mark.neo4j
def test_browser_is_served_and_advertises_the_real_bolt_port(neo4j_instance):
    assert neo4j_instance.http_port is not None
    assert neo4j_instance.browser_url == f"http://127.0.0.1:{neo4j_instance.http_port}/browser/"
    # the discovery document Neo4j Browser reads names the real Bolt port, not 7687
    with urllib.request.urlopen(f"http://127.0.0.1:{neo4j_instance.http_port}/", timeout=10) as r:
        discovery = json.load(r)
    assert discovery["bolt_direct"] == neo4j_instance.uri
    assert discovery["neo4j_version"] == server.NEO4J_VERSION
    with urllib.request.urlopen(neo4j_instance.browser_url, timeout=10) as r:
        assert r.status == 200
        assert r.headers.get_content_type() == "text/html"
        assert b"<html" in r.read().lower()
    # recorded in instance.json, so status, env and the settings see it
    raw = json.loads((neo4j_instance.data_dir / "instance.json").read_text())
    assert raw["http_port"] == neo4j_instance.http_port
    st = server.status(neo4j_instance.data_dir)
    assert st.browser_url == neo4j_instance.browser_url
    assert st.as_dict()["browser_url"] == neo4j_instance.browser_url
    assert f"Neo4j Browser at {neo4j_instance.browser_url}" in st.describe()
    assert f"export NEO4J_BROWSER_URL={neo4j_instance.browser_url}" in server.env_lines(
        neo4j_instance
    )
    conf = (neo4j_instance.data_dir / "conf" / "neo4j.conf").read_text()
    assert f"server.http.listen_address=127.0.0.1:{neo4j_instance.http_port}" in conf
    assert f"server.bolt.advertised_address=127.0.0.1:{neo4j_instance.port}" in conf
    assert "browser.remote_content_hostname_whitelist=http://127.0.0.1\n" in conf


@pytest.mark.neo4j
def test_cli_status_and_env_show_the_browser_url(neo4j_instance):
    from click.testing import CliRunner

    from lesionkg.cli import main

    runner = CliRunner()
    data_dir = str(neo4j_instance.data_dir)
    out = runner.invoke(main, ["neo4j", "status", "--data-dir", data_dir, "--format", "json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["browser_url"] == neo4j_instance.browser_url
    out = runner.invoke(main, ["neo4j", "env", "--data-dir", data_dir])
    assert out.exit_code == 0, out.output
    assert f"export NEO4J_BROWSER_URL={neo4j_instance.browser_url}" in out.output.splitlines()
    # start on the running instance says where its Browser is
    port = str(neo4j_instance.port)
    out = runner.invoke(main, ["neo4j", "start", "--data-dir", data_dir, "--port", port])
    assert out.exit_code == 0, out.output
    assert f"Neo4j Browser: {neo4j_instance.browser_url} (user neo4j)" in out.output


@pytest.mark.neo4j
def test_a_taken_http_port_is_refused_clearly(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        with pytest.raises(ServerError, match=f"HTTP port {taken} on 127.0.0.1 is already in use"):
            server.start(tmp_path / "other", server.free_port(), http_port=taken)
    assert not (tmp_path / "other" / "instance.json").exists()


def test_without_a_given_http_port_7474_or_a_free_one_is_taken():
    bolt = server.free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        # the port of the last start is taken: another one is found, never the Bolt port
        chosen = server._choose_http_port(None, taken, bolt)
        assert chosen not in (taken, bolt)
        free = server.free_port()
        assert server._choose_http_port(None, free, bolt) == free


def test_guide_hosts_become_scheme_and_host_as_neo4j_browser_compares_them():
    assert server.guide_allowlist(["http://127.0.0.1:8000"]) == "http://127.0.0.1"
    assert (
        server.guide_allowlist(["http://127.0.0.1:8000/guide/", "https://kb.example.org", "h1"])
        == "http://127.0.0.1,https://kb.example.org,h1"
    )
    assert server.guide_allowlist(["http://[::1]:8000"]) == "http://[::1]"
    for bad in ("ftp://x", "http://", "a b", "x,y"):
        with pytest.raises(ServerError, match="guide host"):
            server.guide_allowlist([bad])


def test_the_guide_ships_as_package_data():
    html = server.guide_html()
    assert html.count("<slide") >= 5
    assert 'class="pre-scrollable code runnable"' in html


# --- LOAD CSV reaches neither the network nor local files ---------------------------------------


class _Listener:
    """A TCP listener on 127.0.0.1 that records every connection made to it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    self.connections.append(conn.recv(4096) or b"(connected)")
                    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/csv\r\n\r\na,b\r\n1,2\r\n")
                except OSError:
                    self.connections.append(b"(connected)")

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.mark.neo4j
def test_load_csv_reaches_no_local_port_and_no_file(driver, neo4j_instance):
    from neo4j.exceptions import ClientError

    listener = _Listener()
    (neo4j_instance.data_dir / "import").mkdir(exist_ok=True)
    (neo4j_instance.data_dir / "import" / "inside.csv").write_text("a,b\n1,2\n")
    try:
        # the listener answers real HTTP: a client that is let through reads a row
        with urllib.request.urlopen(f"http://127.0.0.1:{listener.port}/probe.csv") as r:
            assert r.read().startswith(b"a,b")
        assert len(listener.connections) == 1
        listener.connections.clear()
        urls = {
            f"http://127.0.0.1:{listener.port}/x.csv": "is blocked",
            f"http://localhost:{listener.port}/x.csv": "is blocked",
            f"https://127.0.0.1:{listener.port}/x.csv": "is blocked",
            f"ftp://127.0.0.1:{listener.port}/x.csv": "is blocked",
            f"http://[::1]:{listener.port}/x.csv": "is blocked",
            # not resolved by Java at all; the listener below proves nothing got through
            f"http://0x7f000001:{listener.port}/x.csv": "Cannot load from URL",
            "file:///etc/passwd": "allow_csv_import_from_file_urls",
            "file:///inside.csv": "allow_csv_import_from_file_urls",
        }
        for url, reason in urls.items():
            with pytest.raises(ClientError, match=reason) as err:
                driver.execute_query(f"LOAD CSV FROM '{url}' AS row RETURN row LIMIT 1")
            assert err.value.code == "Neo.ClientError.Statement.ExternalResourceFailed"
        time.sleep(0.5)  # a late connection would still be counted
        assert listener.connections == []
    finally:
        listener.close()
    conf = (neo4j_instance.data_dir / "conf" / "neo4j.conf").read_text()
    assert "dbms.security.allow_csv_import_from_file_urls=false" in conf
    assert "internal.dbms.cypher_ip_blocklist=0.0.0.0/0,::/0" in conf


# --- secrets and file modes ---------------------------------------------------------------------


class _ProcessWatch:
    """Samples the command line and environment of every descendant of this process while
    running (``lesionkg neo4j start``, and the admin tool and the server it starts)."""

    def __init__(self, interval_s: float = 0.002) -> None:
        self.interval_s = interval_s
        self.seen: dict[tuple[int, bytes], bytes] = {}  # (pid, cmdline) -> environ
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _children(self) -> set[int]:
        """Every descendant of this process (children, their children...)."""
        found: set[int] = set()
        todo = [os.getpid()]
        while todo:
            pid = todo.pop()
            try:
                tasks = list(Path(f"/proc/{pid}/task").iterdir())
            except OSError:
                continue
            for task in tasks:
                try:
                    kids = {int(k) for k in (task / "children").read_text().split()}
                except OSError:
                    continue
                todo += list(kids - found)
                found |= kids
        return found

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in self._children():
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                    key = (pid, cmdline)
                    if cmdline and key not in self.seen:
                        self.seen[key] = Path(f"/proc/{pid}/environ").read_bytes()
                except OSError:
                    continue
            time.sleep(self.interval_s)

    def __enter__(self) -> "_ProcessWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _modes(root: Path) -> dict[str, int]:
    out = {str(root): stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        if not path.is_symlink():
            out[str(path)] = stat.S_IMODE(path.lstat().st_mode)
    return out


@pytest.fixture(scope="module")
def first_start(tmp_path_factory):
    """A first ``lesionkg neo4j start --no-browser``, watched, of an instance outside
    LESIONKG_HOME, in a folder that does not exist yet."""
    home = tmp_path_factory.mktemp("home")
    data_dir = tmp_path_factory.mktemp("elsewhere") / "nested" / "instance"
    cli = Path(sys.executable).with_name("lesionkg")
    cmd = [str(cli), "neo4j", "start", "--data-dir", str(data_dir), "--no-browser"]
    cmd += ["--port", str(server.free_port()), "--heap", "512m", "--pagecache", "64m"]
    with _ProcessWatch() as watch:
        out = subprocess.run(
            cmd, env={**os.environ, "LESIONKG_HOME": str(home)}, capture_output=True, text=True
        )
        time.sleep(0.2)
    assert out.returncode == 0, out.stderr
    instance = server.read_instance(data_dir)
    assert instance is not None and f"running at {instance.uri}" in out.stdout
    yield instance, watch, out.stdout
    server.stop(data_dir)


@pytest.mark.neo4j
def test_the_password_is_in_no_process_arguments_or_environment(first_start):
    instance, watch, _ = first_start
    secret = instance.password.encode()
    admin = [cmd for (_, cmd) in watch.seen if b"set-initial-password" in cmd]
    java = [cmd for (_, cmd) in watch.seen if b"org.neo4j.server.CommunityEntryPoint" in cmd]
    assert admin, "the admin tool's start was not seen"
    assert java, "the server's process was not seen"
    assert all(b"@/dev/stdin" in cmd.split(b"\0") for cmd in admin)
    for (pid, cmd), environ in watch.seen.items():
        assert secret not in cmd, f"process {pid} had the password in its arguments"
        assert secret not in environ, f"process {pid} had the password in its environment"
    # and now, with the server running
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                assert secret not in (entry / "cmdline").read_bytes()
            except OSError:
                continue
    # --no-browser: no HTTP connector, no Browser URL
    assert instance.http_port is None and not server.status(instance.data_dir).browser_url
    assert "Neo4j Browser" not in first_start[2]
    assert "server.http.enabled=false" in (instance.data_dir / "conf/neo4j.conf").read_text()


@pytest.mark.neo4j
def test_the_data_dir_outside_home_is_private_to_the_user(first_start):
    instance, _, _ = first_start
    modes = _modes(instance.data_dir)
    assert len(modes) > 50  # the store, logs, conf, run, instance.json
    assert (instance.data_dir / "data" / "databases" / "neo4j").is_dir()
    assert (instance.data_dir / "logs" / "neo4j.log").is_file()
    loose = {p: oct(m) for p, m in modes.items() if m & 0o077}
    assert loose == {}
    # parents made for it are private too
    assert stat.S_IMODE(instance.data_dir.parent.stat().st_mode) == 0o700


def test_make_private_tightens_an_instance_but_nothing_else(tmp_path):
    data_dir = tmp_path / "inst"
    (data_dir / "data" / "databases").mkdir(parents=True)
    (data_dir / "logs").mkdir()
    store = data_dir / "data" / "databases" / "neostore"
    store.write_text("x")
    script = data_dir / "data" / "tool.sh"
    script.write_text("#!/bin/sh\n")
    (data_dir / "instance.json").write_text("{}")
    other = data_dir / "not-ours.txt"
    other.write_text("x")
    for path, mode in [(data_dir, 0o755), (data_dir / "data", 0o755), (store, 0o644)]:
        path.chmod(mode)
    script.chmod(0o755)
    other.chmod(0o644)
    (data_dir / "instance.json").chmod(0o644)
    server.make_private(data_dir)
    modes = _modes(data_dir)
    assert modes[str(data_dir)] == 0o700
    assert modes[str(data_dir / "data")] == 0o700
    assert modes[str(data_dir / "data" / "databases")] == 0o700
    assert modes[str(store)] == 0o600
    assert modes[str(script)] == 0o700
    assert modes[str(data_dir / "instance.json")] == 0o600
    assert modes[str(other)] == 0o644  # a file of a folder given as --data-dir is not ours
