"""The background servers LesionKG starts itself (the local Neo4j, the local Orthanc): whether a
process recorded in a pid file is alive, and stopping it, TERM first and KILL after a timeout."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a process of another user counts; a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still "exists"; treat it as gone.
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
        return stat_line.split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def read_pid(pid_file: Path) -> int | None:
    """The live process recorded in ``pid_file``, or None (no file, unreadable, or gone)."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def reap(pid: int) -> None:
    # If this process started the server, collect the exit status so no zombie is left behind.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop_process(pid_file: Path, timeout_s: float, poll_s: float, kill_grace_s: float) -> bool:
    """Stop the process of ``pid_file`` (TERM, then KILL after ``timeout_s``) and remove the
    file; True if one was running."""
    pid = read_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid) and time.monotonic() < deadline:
        reap(pid)
        time.sleep(poll_s)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
        time.sleep(kill_grace_s)
    reap(pid)
    pid_file.unlink(missing_ok=True)
    return True
