"""What machine a benchmark ran on, for its JSON output."""

from __future__ import annotations

import os
import platform
import subprocess


def describe() -> dict:
    """CPU model, core count, memory, OS, Python and Java versions."""
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu
            )
    except OSError:
        pass
    mem_gib = None
    try:
        with open("/proc/meminfo") as fh:
            total_kib = next(int(ln.split()[1]) for ln in fh if ln.startswith("MemTotal"))
        mem_gib = round(total_kib / 2**20, 1)
    except (OSError, StopIteration):
        pass
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "os": platform.platform(),
        "python": platform.python_version(),
        "java": java.splitlines()[0] if java else None,
    }
