"""The Neo4j Community distribution a local server runs: its jars and Neo4j Browser's, fetched from
Maven Central with Maven once into a cache shared by every instance, and the Java that runs them.
:mod:`lesionkg.db.server` starts and stops instances on top of this."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

from lesionkg.config.paths import cache_dir
from lesionkg.core.errors import ServerError

log = logging.getLogger(__name__)

#: The one place the Neo4j version is pinned (docker-compose.yml's image tag is checked against it).
NEO4J_VERSION = "5.26.25"
#: Neo4j Browser as published on Maven Central (org.neo4j.client:neo4j-browser).
BROWSER_VERSION = "5.24.0"
MIN_JAVA = 17
_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>lesionkg.local</groupId><artifactId>{name}</artifactId><version>1</version>
  <dependencies>
{dependencies}
  </dependencies>
</project>
"""

_DEPENDENCY = (
    "    <dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
    "<version>{version}</version></dependency>"
)


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


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created if missing), so concurrent fetches take turns."""
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _fetch(root: Path, what: str, artifacts: Sequence[tuple[str, str, str]]) -> Path:
    """Fetch ``artifacts`` (group, artifact, version) and their runtime dependencies with Maven
    once into ``root/lib``; returns that folder."""
    lib = root / "lib"
    done = root / ".complete"
    if done.exists():
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServerError(
            f"Maven (mvn) not found: it fetches {what} from Maven Central once "
            f"into {root} (apt-get install maven)"
        )
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / ".lock"):
        if done.exists():  # another process fetched it while this one waited
            return lib
        dependencies = "\n".join(
            _DEPENDENCY.format(group=g, artifact=a, version=v) for g, a, v in artifacts
        )
        (root / "pom.xml").write_text(_POM.format(name=root.name, dependencies=dependencies))
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
        log.info("fetching %s from Maven Central into %s", what, root)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr)[-2000:]
            raise ServerError(f"Maven could not fetch {what}:\n{tail}")
        shutil.rmtree(lib, ignore_errors=True)
        staging.rename(lib)  # atomic: a half-fetched folder is never taken for a complete one
        done.write_text(" ".join(":".join(a) for a in artifacts) + "\n")
    return lib


def install(cache: Path | None = None) -> Path:
    """Fetch the Neo4j jars with Maven once; returns the folder of jars (the classpath)."""
    return _fetch(
        (cache or cache_dir()) / f"neo4j-{NEO4J_VERSION}",
        f"Neo4j {NEO4J_VERSION}",
        [("org.neo4j", "neo4j", NEO4J_VERSION), ("org.neo4j", "neo4j-bolt", NEO4J_VERSION)],
    )


def install_browser(cache: Path | None = None) -> Path:
    """Fetch the Neo4j Browser jar with Maven once; returns its folder (added to the classpath).

    A folder of its own beside the server's jars, so that a cache filled before the Browser was
    added is completed without touching the jars a running server reads.
    """
    return _fetch(
        (cache or cache_dir()) / f"neo4j-browser-{BROWSER_VERSION}",
        f"Neo4j Browser {BROWSER_VERSION}",
        [("org.neo4j.client", "neo4j-browser", BROWSER_VERSION)],
    )
