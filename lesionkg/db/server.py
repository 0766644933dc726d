"""A real local Neo4j Community server for machines without Docker.

The server is the official Neo4j distribution's own entry point (``org.neo4j.server.
CommunityEntryPoint``) run from the ``org.neo4j:neo4j`` and ``org.neo4j:neo4j-bolt`` jars on
Maven Central, fetched once with Maven into a cache shared by every instance, and with
``org.neo4j.client:neo4j-browser`` on the classpath so that the HTTP connector serves Neo4j
Browser at ``/browser/``. One *instance* is one data directory:

    DATA_DIR/instance.json   ports, user and the generated password (mode 0600)
    DATA_DIR/conf/neo4j.conf written on every start from the options given
    DATA_DIR/data/           the store
    DATA_DIR/logs/           neo4j.log, debug.log, console.log
    DATA_DIR/run/neo4j.pid

The jars and Java come from :mod:`lesionkg.db.distribution`. It listens on 127.0.0.1
only: Bolt, and HTTP for Neo4j Browser unless ``browser=False``.

Secrets and files: the generated password never appears in a process's arguments or
environment (``neo4j-admin dbms set-initial-password`` reads it from its standard input through
picocli's ``@file`` expansion, ``@/dev/stdin``); the data directory and everything in it is private
to the user (directories 0700, files 0600; the server and the admin tool run with umask 077).
``LOAD CSV`` can read neither local files (``dbms.security.allow_csv_import_from_file_urls``) nor
any network address (``internal.dbms.cypher_ip_blocklist`` holds every IPv4 and IPv6 address).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import socket
import stat
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from lesionkg.config.instance import Instance, instance_file, read_instance, write_private
from lesionkg.config.process import pid_alive, read_pid, stop_process
from lesionkg.core.errors import ServerError
from lesionkg.db.distribution import (
    NEO4J_VERSION,
    check_java,
    install,
    install_browser,
)

log = logging.getLogger(__name__)

#: The HTTP port tried first for Neo4j Browser when none is given.
DEFAULT_HTTP_PORT = 7474
#: Where ``:play`` guides may come from: the lesion explorer (``lesionkg serve``) on its default
#: address. Neo4j Browser compares the scheme and host name only, never the port.
DEFAULT_GUIDE_HOSTS: tuple[str, ...] = ("http://127.0.0.1:8000",)
#: The LesionKG guide for Neo4j Browser (``:play``), package data of ``lesionkg.cypher``; the lesion
#: explorer serves it at ``/guide/lesionkg.html``.
GUIDE_RESOURCE = ("guide", "lesionkg.html")
#: ``LOAD CSV`` may reach no address at all: every IPv4 and every IPv6 network.
_BLOCK_ALL_IPS = "0.0.0.0/0,::/0"

# The JVM flags Neo4j's own launcher adds by default, minus the GC log and debug ones.
_JVM_FLAGS = [
    "-XX:+UseG1GC",
    "-XX:-OmitStackTraceInFastThrow",
    "-XX:+UnlockExperimentalVMOptions",
    "-XX:+TrustFinalNonStaticFields",
    "-XX:+DisableExplicitGC",
    "-Djdk.nio.maxCachedBufferSize=1024",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Djdk.tls.ephemeralDHKeySize=2048",
    "-Dlog4j2.disable.jmx=true",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
]

#: Files and folders the server and the admin tool create are private to the user.
_UMASK = 0o077


@dataclass(frozen=True, slots=True)
class ServerStatus:
    data_dir: Path
    running: bool
    pid: int | None
    uri: str | None
    version: str
    browser_url: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "running": self.running,
            "pid": self.pid,
            "uri": self.uri,
            "browser_url": self.browser_url,
            "version": self.version,
            "data_dir": str(self.data_dir),
        }

    def describe(self) -> str:
        state = f"running at {self.uri} (pid {self.pid})" if self.running else "not running"
        browser = (
            f"; Neo4j Browser at {self.browser_url}" if self.running and self.browser_url else ""
        )
        return f"Neo4j {self.version}: {state}{browser}; data in {self.data_dir}"


def guide_html() -> str:
    """The LesionKG Browser guide: HTML slides with runnable queries, for ``:play URL``."""
    from importlib.resources import files

    return files("lesionkg.cypher").joinpath(*GUIDE_RESOURCE).read_text(encoding="utf-8")


def _pid_file(data_dir: Path) -> Path:
    return data_dir / "run" / "neo4j.pid"


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bolt_answers(instance: Instance, timeout_s: float = 2.0) -> bool:
    from neo4j import GraphDatabase
    from neo4j.exceptions import Neo4jError, ServiceUnavailable

    try:
        with GraphDatabase.driver(
            instance.uri, auth=(instance.username, instance.password), connection_timeout=timeout_s
        ) as driver:
            driver.verify_connectivity()
        return True
    except (ServiceUnavailable, Neo4jError, OSError):
        return False


def guide_allowlist(hosts: Sequence[str]) -> str:
    """The value of ``browser.remote_content_hostname_whitelist`` for guide addresses.

    Neo4j Browser 5 allows a ``:play`` URL when its ``scheme://hostname`` (or bare hostname) is in
    the list; it ignores ports and paths. So ``http://127.0.0.1:8000/guide`` becomes
    ``http://127.0.0.1``. A bare host name is kept as it is (any scheme).
    """
    out: list[str] = []
    for host in hosts:
        text = host.strip()
        if not text:
            continue
        if "://" in text:
            parts = urlsplit(text)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ServerError(f"guide host {host!r}: expected http(s)://HOST[:PORT] or a host")
            name = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
            entry = f"{parts.scheme}://{name}"
        else:
            if not re.fullmatch(r"[A-Za-z0-9.\-]+", text):
                raise ServerError(f"guide host {host!r}: expected http(s)://HOST[:PORT] or a host")
            entry = text
        if entry not in out:
            out.append(entry)
    return ",".join(out)


def _write_conf(
    data_dir: Path,
    port: int,
    heap: str,
    pagecache: str,
    http_port: int | None,
    guide_hosts: Sequence[str],
) -> None:
    conf = data_dir / "conf"
    _private_dir(conf)
    if http_port is None:
        http = "server.http.enabled=false\n"
    else:
        http = (
            "server.http.enabled=true\n"
            f"server.http.listen_address=127.0.0.1:{http_port}\n"
            f"server.http.advertised_address=127.0.0.1:{http_port}\n"
            # :play guides only from the lesion explorer (Neo4j Browser checks scheme and host).
            f"browser.remote_content_hostname_whitelist={guide_allowlist(guide_hosts)}\n"
            # Neo4j Browser reports no product usage (hospital networks are often closed).
            "client.allow_telemetry=false\n"
        )
    write_private(
        conf / "neo4j.conf",
        "# Written by 'lesionkg neo4j start' on every start; edit the options, not this file.\n"
        "server.default_listen_address=127.0.0.1\n"
        "server.default_advertised_address=127.0.0.1\n"
        f"server.bolt.listen_address=127.0.0.1:{port}\n"
        # What the server tells clients (Neo4j Browser among them) to connect to: the real port.
        f"server.bolt.advertised_address=127.0.0.1:{port}\n"
        "server.bolt.enabled=true\n"
        f"{http}"
        "server.https.enabled=false\n"
        f"server.directories.data={data_dir / 'data'}\n"
        f"server.directories.logs={data_dir / 'logs'}\n"
        f"server.directories.run={data_dir / 'run'}\n"
        f"server.directories.plugins={data_dir / 'plugins'}\n"
        f"server.directories.import={data_dir / 'import'}\n"
        f"server.memory.heap.initial_size={heap}\n"
        f"server.memory.heap.max_size={heap}\n"
        f"server.memory.pagecache.size={pagecache}\n"
        "dbms.usage_report.enabled=false\n"
        # LOAD CSV reads neither local files nor any network address (no SSRF, no port probing).
        "dbms.security.allow_csv_import_from_file_urls=false\n"
        f"internal.dbms.cypher_ip_blocklist={_BLOCK_ALL_IPS}\n",
    )


def _private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) with mode 0700; an existing one is set to 0700."""
    missing = []
    for p in [path, *path.parents]:
        if p.exists():
            break
        missing.append(p)
    for p in reversed(missing):
        with contextlib.suppress(FileExistsError):
            p.mkdir(mode=0o700)
    os.chmod(path, 0o700)


#: What an instance keeps in its data directory; only these are tightened by :func:`make_private`.
_INSTANCE_ENTRIES = ("data", "logs", "run", "plugins", "import", "conf", "instance.json")


def make_private(data_dir: Path) -> None:
    """Make ``data_dir`` and the instance's entries in it private to the user: folders 0700, files
    0600 (executable files 0700). Only the instance's own entries are walked (never other files of
    a folder given as ``--data-dir``); entries owned by another user, and symlinks, are left alone.
    """
    uid = os.getuid()
    _private_dir(data_dir)
    for entry in _INSTANCE_ENTRIES:
        top = data_dir / entry
        paths = [str(top)]
        if top.is_dir() and not top.is_symlink():
            for root, dirs, files in os.walk(top):
                paths += [os.path.join(root, name) for name in [*dirs, *files]]
        for path in paths:
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if st.st_uid != uid or stat.S_ISLNK(st.st_mode):
                continue
            mode = stat.S_IMODE(st.st_mode)
            wanted = 0o700 if stat.S_ISDIR(st.st_mode) or mode & 0o100 else 0o600
            if mode != wanted:
                os.chmod(path, wanted)


def new_password() -> str:
    """A generated password of 32 hex digits (128 bits).

    Hex, not ``token_urlsafe``: a URL-safe token starts with ``-`` once in 64 draws, and
    neo4j-admin then reads the password as an option and refuses to start. Hex also needs no
    quoting in the ``@file`` the admin tool reads it from.
    """
    return secrets.token_hex(16)


def _set_initial_password(java: str, classpath: str, env: dict[str, str], password: str) -> None:
    """Set the ``neo4j`` user's initial password with ``neo4j-admin`` (before the first start).

    The password goes through the admin tool's standard input, never its arguments: picocli,
    Neo4j's command-line parser, expands an argument ``@FILE`` to the words in FILE, and
    ``@/dev/stdin`` makes FILE the pipe this process writes the password to. ``/proc/PID/cmdline``
    then shows ``@/dev/stdin`` only, and no file ever holds the password but ``instance.json``.
    """
    cmd = [java, "-cp", classpath, "org.neo4j.cli.AdminTool", "dbms", "set-initial-password"]
    proc = subprocess.run(
        [*cmd, "@/dev/stdin"],
        input=password + "\n",
        capture_output=True,
        text=True,
        env=env,
        umask=_UMASK,
    )
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).replace(password, "***")
        raise ServerError(f"could not set the initial password:\n{out}")


def _choose_http_port(wanted: int | None, recorded: int | None, bolt_port: int) -> int:
    """The HTTP port: ``wanted`` if given (it must be free), else the instance's earlier one,
    else 7474, else any free port."""
    if wanted is not None:
        if wanted == bolt_port or _port_in_use(wanted):
            raise ServerError(
                f"HTTP port {wanted} on 127.0.0.1 is already in use by another program; "
                "choose another with --http-port (or leave it out for a free one)"
            )
        return wanted
    for candidate in (recorded, DEFAULT_HTTP_PORT):
        if candidate is not None and candidate != bolt_port and not _port_in_use(candidate):
            return candidate
    port = free_port()
    while port == bolt_port:
        port = free_port()
    return port


def start(
    data_dir: Path,
    port: int = 7687,
    *,
    http_port: int | None = None,
    browser: bool = True,
    guide_hosts: Sequence[str] = DEFAULT_GUIDE_HOSTS,
    heap: str = "1g",
    pagecache: str = "512m",
    timeout_s: float = 120.0,
    cache: Path | None = None,
) -> Instance:
    """Start (or find running) the local server for ``data_dir``; returns once Bolt answers.

    The first start generates a password (stored 0600 in ``instance.json``); later starts reuse
    the instance's password. ``port`` is only honoured if the instance is not running yet.

    With ``browser`` (the default) the HTTP connector serves Neo4j Browser on 127.0.0.1:
    ``http_port`` if given (an error when taken), else the port of the instance's last start or
    7474 when free, else any free port; the port is recorded in ``instance.json``
    (``Instance.browser_url``). ``guide_hosts`` are the addresses ``:play`` may fetch guides from.
    """
    data_dir = Path(data_dir).resolve()
    instance = read_instance(data_dir)
    pid = read_pid(_pid_file(data_dir))
    # Already running (perhaps still starting): wait for it rather than start a second server.
    if (
        pid is not None
        and instance is not None
        and (_bolt_answers(instance) or _wait_for_bolt(instance, pid, data_dir, timeout_s))
    ):
        return instance
    java = check_java()
    classpath = f"{install(cache)}/*"
    if browser:
        classpath += f"{os.pathsep}{install_browser(cache)}/*"
    if _port_in_use(port):
        raise ServerError(
            f"port {port} on 127.0.0.1 is already in use by another program; "
            "choose another with --port"
        )
    recorded_http = instance.http_port if instance is not None else None
    chosen_http = _choose_http_port(http_port, recorded_http, port) if browser else None
    # Private from the start, wherever the folder is (inside LESIONKG_HOME or not); files left by
    # an earlier version with looser modes are tightened.
    make_private(data_dir)
    for sub in ("data", "logs", "run", "plugins", "import"):
        _private_dir(data_dir / sub)
    _write_conf(data_dir, port, heap, pagecache, chosen_http, guide_hosts)
    env = {**os.environ, "NEO4J_HOME": str(data_dir), "NEO4J_CONF": str(data_dir / "conf")}
    for secret in ("NEO4J_PASSWORD", "NEO4J_AUTH"):  # not the server's business
        env.pop(secret, None)
    if instance is None:
        password = new_password()
        _set_initial_password(java, classpath, env, password)
        instance = Instance(data_dir, port, "neo4j", password, chosen_http)
    else:
        instance = Instance(data_dir, port, instance.username, instance.password, chosen_http)
    write_private(
        instance_file(data_dir),
        json.dumps(
            {
                "port": instance.port,
                "http_port": instance.http_port,
                "username": instance.username,
                "password": instance.password,
                "version": NEO4J_VERSION,
            },
            indent=2,
        )
        + "\n",
    )
    console_fd = os.open(
        data_dir / "logs" / "console.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
    )
    cmd = [
        java,
        f"-Xms{heap}",
        f"-Xmx{heap}",
        *_JVM_FLAGS,
        "-cp",
        classpath,
        "org.neo4j.server.CommunityEntryPoint",
        f"--home-dir={data_dir}",
        f"--config-dir={data_dir / 'conf'}",
    ]
    try:
        child = subprocess.Popen(
            cmd,
            stdout=console_fd,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=data_dir,
            start_new_session=True,
            umask=_UMASK,
        )
    finally:
        os.close(console_fd)
    write_private(_pid_file(data_dir), f"{child.pid}\n")
    log.info("started Neo4j %s (pid %d) in %s", NEO4J_VERSION, child.pid, data_dir)
    if not _wait_for_bolt(instance, child.pid, data_dir, timeout_s, child):
        stop(data_dir)
        raise ServerError(
            f"Neo4j did not answer on {instance.uri} within {timeout_s:.0f} s; "
            f"last log lines:\n{_log_tail(data_dir)}"
        )
    return instance


def _wait_for_bolt(
    instance: Instance,
    pid: int,
    data_dir: Path,
    timeout_s: float,
    child: subprocess.Popen | None = None,
) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (child is not None and child.poll() is not None) or not pid_alive(pid):
            raise ServerError(
                f"Neo4j exited during start-up; last log lines:\n{_log_tail(data_dir)}"
            )
        if _bolt_answers(instance):
            return True
        time.sleep(0.5)
    return False


def _log_tail(data_dir: Path, lines: int = 25) -> str:
    out = []
    for name in ("console.log", "neo4j.log"):
        path = data_dir / "logs" / name
        if path.exists():
            out += [
                f"[{name}] {line}"
                for line in path.read_text(errors="replace").splitlines()[-lines:]
            ]
    return "\n".join(out) or "(no logs)"


def stop(data_dir: Path, timeout_s: float = 60.0) -> bool:
    """Stop the instance of ``data_dir``; True if one was running."""
    data_dir = Path(data_dir).resolve()
    # Neo4j checkpoints and shuts down cleanly on TERM.
    return stop_process(_pid_file(data_dir), timeout_s, poll_s=0.2, kill_grace_s=0.5)


def status(data_dir: Path) -> ServerStatus:
    data_dir = Path(data_dir).resolve()
    instance = read_instance(data_dir)
    pid = read_pid(_pid_file(data_dir))
    running = pid is not None and instance is not None and _bolt_answers(instance)
    return ServerStatus(
        data_dir,
        running,
        pid,
        instance.uri if instance else None,
        NEO4J_VERSION,
        instance.browser_url if instance else None,
    )


def env_lines(instance: Instance, database: str = "neo4j") -> list[str]:
    """Shell ``export`` lines that point Neo4j tools and LesionKG at ``instance`` (and say where
    its Neo4j Browser is, as ``NEO4J_BROWSER_URL``)."""
    import shlex

    lines = [
        f"export NEO4J_URI={instance.uri}",
        f"export NEO4J_USERNAME={instance.username}",
        f"export NEO4J_PASSWORD={shlex.quote(instance.password)}",
        f"export NEO4J_DATABASE={database}",
    ]
    if instance.browser_url is not None:
        lines.append(f"export NEO4J_BROWSER_URL={instance.browser_url}")
    return lines
