"""A real local Neo4j Community server for machines without Docker.

The server is the official Neo4j distribution's own entry point (``org.neo4j.server.
CommunityEntryPoint``) run from the ``org.neo4j:neo4j`` and ``org.neo4j:neo4j-bolt`` jars on
Maven Central, fetched once with Maven into a cache shared by every instance. One *instance* is one
data directory:

    DATA_DIR/instance.json   port, user and the generated password (mode 0600)
    DATA_DIR/conf/neo4j.conf written on every start from the options given
    DATA_DIR/data/           the store
    DATA_DIR/logs/           neo4j.log, debug.log, console.log
    DATA_DIR/run/neo4j.pid

It listens on 127.0.0.1 only, Bolt only (no HTTP connector: nothing here needs it).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from lesionkg.config.instance import Instance, instance_file, read_instance, write_private
from lesionkg.config.paths import cache_dir
from lesionkg.core.errors import ServerError

#: The one place the Neo4j version is pinned (docker-compose.yml's image tag is checked against it).
NEO4J_VERSION = "5.26.25"
MIN_JAVA = 17

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>lesionkg.local</groupId><artifactId>neo4j-server</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.neo4j</groupId><artifactId>neo4j</artifactId>
      <version>{v}</version></dependency>
    <dependency><groupId>org.neo4j</groupId><artifactId>neo4j-bolt</artifactId>
      <version>{v}</version></dependency>
  </dependencies>
</project>
"""

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


@dataclass(frozen=True, slots=True)
class ServerStatus:
    data_dir: Path
    running: bool
    pid: int | None
    uri: str | None
    version: str


def _pid_file(data_dir: Path) -> Path:
    return data_dir / "run" / "neo4j.pid"


def check_java() -> str:
    """Path of a Java >= 17 binary (``$JAVA_HOME/bin/java`` first), else :class:`ServerError`."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home and (Path(home) / "bin/java").exists() else None
    java = java or shutil.which("java")
    if java is None:
        raise ServerError(
            f"Java not found: Neo4j {NEO4J_VERSION} needs Java {MIN_JAVA} or newer "
            "(apt-get install openjdk-17-jre-headless, or set JAVA_HOME)"
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = int(match.group(1)) if match else 0
    if major == 1 and match and match.group(2):  # "1.8.0" style
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise ServerError(f"{java} is Java {major}; Neo4j {NEO4J_VERSION} needs Java {MIN_JAVA}+")
    return java


def install(cache: Path | None = None) -> Path:
    """Fetch the Neo4j jars with Maven once; returns the folder of jars (the classpath)."""
    root = (cache or cache_dir()) / f"neo4j-{NEO4J_VERSION}"
    lib = root / "lib"
    done = root / ".complete"
    if done.exists():
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServerError(
            f"Maven (mvn) not found: it fetches Neo4j {NEO4J_VERSION} from Maven Central once "
            f"into {root} (apt-get install maven)"
        )
    root.mkdir(parents=True, exist_ok=True)
    (root / "pom.xml").write_text(_POM.format(v=NEO4J_VERSION))
    staging = root / "lib.partial"
    shutil.rmtree(staging, ignore_errors=True)
    cmd = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(root / "pom.xml"),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}",
        "-DincludeScope=runtime",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-2000:]
        raise ServerError(f"Maven could not fetch Neo4j {NEO4J_VERSION}:\n{tail}")
    shutil.rmtree(lib, ignore_errors=True)
    staging.rename(lib)  # atomic: a half-fetched folder is never taken for a complete one
    done.write_text(NEO4J_VERSION + "\n")
    return lib


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still "exists"; treat it as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def _read_pid(data_dir: Path) -> int | None:
    try:
        pid = int(_pid_file(data_dir).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


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


def _write_conf(data_dir: Path, port: int, heap: str, pagecache: str) -> None:
    conf = data_dir / "conf"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "neo4j.conf").write_text(
        "# Written by 'lesionkg neo4j start' on every start; edit the options, not this file.\n"
        "server.default_listen_address=127.0.0.1\n"
        "server.default_advertised_address=127.0.0.1\n"
        f"server.bolt.listen_address=127.0.0.1:{port}\n"
        "server.bolt.enabled=true\n"
        "server.http.enabled=false\n"
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
    )


def new_password() -> str:
    """A generated password of 32 hex digits (128 bits).

    Hex, not ``token_urlsafe``: a URL-safe token starts with ``-`` once in 64 draws, and
    neo4j-admin then reads the password as an option and refuses to start.
    """
    return secrets.token_hex(16)


def start(
    data_dir: Path,
    port: int = 7687,
    *,
    heap: str = "1g",
    pagecache: str = "512m",
    timeout_s: float = 120.0,
    cache: Path | None = None,
) -> Instance:
    """Start (or find running) the local server for ``data_dir``; returns once Bolt answers.

    The first start generates a password (stored 0600 in ``instance.json``); later starts reuse
    the instance's password. ``port`` is only honoured if the instance is not running yet.
    """
    data_dir = Path(data_dir).resolve()
    instance = read_instance(data_dir)
    pid = _read_pid(data_dir)
    # Already running (perhaps still starting): wait for it rather than start a second server.
    if (
        pid is not None
        and instance is not None
        and (_bolt_answers(instance) or _wait_for_bolt(instance, pid, data_dir, timeout_s))
    ):
        return instance
    java = check_java()
    lib = install(cache)
    if instance is not None and instance.port != port:
        instance = Instance(data_dir, port, instance.username, instance.password)
    if _port_in_use(port):
        raise ServerError(
            f"port {port} on 127.0.0.1 is already in use by another program; "
            "choose another with --port"
        )
    for sub in ("data", "logs", "run", "plugins", "import"):
        (data_dir / sub).mkdir(parents=True, exist_ok=True)
    _write_conf(data_dir, port, heap, pagecache)
    env = {**os.environ, "NEO4J_HOME": str(data_dir), "NEO4J_CONF": str(data_dir / "conf")}
    classpath = f"{lib}/*"
    if instance is None:
        password = new_password()
        proc = subprocess.run(
            [
                java,
                "-cp",
                classpath,
                "org.neo4j.cli.AdminTool",
                "dbms",
                "set-initial-password",
                password,
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        if proc.returncode != 0:
            raise ServerError(f"could not set the initial password:\n{proc.stdout}{proc.stderr}")
        instance = Instance(data_dir, port, "neo4j", password)
    write_private(
        instance_file(data_dir),
        json.dumps(
            {
                "port": instance.port,
                "username": instance.username,
                "password": instance.password,
                "version": NEO4J_VERSION,
            },
            indent=2,
        )
        + "\n",
    )
    console = open(data_dir / "logs" / "console.log", "ab")  # noqa: SIM115 (owned by the child)
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
    child = subprocess.Popen(
        cmd,
        stdout=console,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=data_dir,
        start_new_session=True,
    )
    console.close()
    _pid_file(data_dir).write_text(f"{child.pid}\n")
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
        if (child is not None and child.poll() is not None) or not _pid_alive(pid):
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
    pid = _read_pid(data_dir)
    if pid is None:
        _pid_file(data_dir).unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)  # Neo4j checkpoints and shuts down cleanly on TERM
    deadline = time.monotonic() + timeout_s
    while _pid_alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.2)
    if _pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
    _reap(pid)
    _pid_file(data_dir).unlink(missing_ok=True)
    return True


def _reap(pid: int) -> None:
    # If this process started the server, collect the exit status so no zombie is left behind.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def status(data_dir: Path) -> ServerStatus:
    data_dir = Path(data_dir).resolve()
    instance = read_instance(data_dir)
    pid = _read_pid(data_dir)
    running = pid is not None and instance is not None and _bolt_answers(instance)
    return ServerStatus(data_dir, running, pid, instance.uri if instance else None, NEO4J_VERSION)


def env_lines(instance: Instance, database: str = "neo4j") -> list[str]:
    """Shell ``export`` lines that point Neo4j tools and LesionKG at ``instance``."""
    import shlex

    return [
        f"export NEO4J_URI={instance.uri}",
        f"export NEO4J_USERNAME={instance.username}",
        f"export NEO4J_PASSWORD={shlex.quote(instance.password)}",
        f"export NEO4J_DATABASE={database}",
    ]
