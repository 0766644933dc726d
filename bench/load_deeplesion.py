"""Benchmark: load a 1,000,000-lesion SYNTHETIC DL_info.csv into a real Neo4j, with a baseline.

Prints one JSON object: lesions/s (end to end, and of the write phase alone), the loader's peak
RSS, the store size, and the same figures for the baseline (5,000 rows, one transaction per row)
with the speed ratio. Everything runs on this machine in one go: a fresh Neo4j instance in a
temporary folder, the generator, then ``lesionkg load deeplesion`` in a subprocess (so its peak
RSS is the loader's own).

    python bench/load_deeplesion.py                 # 1M lesions (~140k patients)
    python bench/load_deeplesion.py --patients 1400 # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe

from lesionkg.db import server
from lesionkg.synthetic.cohort import write_synthetic_dl_info


def _du_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _load(instance: server.Instance, csv_path: Path, *extra: str) -> tuple[dict, float, int]:
    """Run the CLI loader in a child process; its summary, wall seconds and peak RSS (bytes)."""
    cmd = [
        sys.executable,
        "-m",
        "lesionkg.cli",
        "--uri",
        instance.uri,
        "--password",
        instance.password,
        "load",
        "deeplesion",
        str(csv_path),
        "--format",
        "json",
        *extra,
    ]
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, stdout=out, text=True)
        # wait4 gives this child's own peak RSS (RUSAGE_CHILDREN would be the max of all children).
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"loader failed ({proc.returncode})")
        out.seek(0)
        summary = json.load(out)
    return summary, wall, usage.ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--patients",
        type=int,
        default=140_000,
        help="synthetic patients (140,000 give about 1,000,000 lesions)",
    )
    parser.add_argument("--baseline-rows", type=int, default=5000)
    parser.add_argument("--heap", default="2g")
    parser.add_argument("--pagecache", default="2g")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep data and store here instead of a temporary folder",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="lesionkg-bench-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        cohort = write_synthetic_dl_info(
            work / "synthetic", patients=args.patients, seed=2018, progress=True
        )
        gen_s = time.perf_counter() - t0
        print(f"SYNTHETIC cohort: {cohort.lesions} lesions in {gen_s:.1f} s", file=sys.stderr)

        # The baseline gets a separate store so both start empty.
        baseline_csv = work / "baseline.csv"
        with cohort.csv_path.open() as src, baseline_csv.open("w") as dst:
            for i, line in enumerate(src):
                if i > args.baseline_rows:
                    break
                dst.write(line)

        results = {}
        for name, csv_path, extra in (
            ("ours", cohort.csv_path, ()),
            ("baseline_one_tx_per_row", baseline_csv, ("--batch-size", "1", "--writers", "1")),
        ):
            data_dir = work / f"neo4j-{name}"
            instance = server.start(
                data_dir, server.free_port(), heap=args.heap, pagecache=args.pagecache
            )
            try:
                summary, wall, rss = _load(instance, csv_path, *extra)
            finally:
                server.stop(data_dir)
            results[name] = {
                "lesions": summary["lesions_written"],
                "patients": summary["created"]["Patient"],
                "studies": summary["created"]["Study"],
                "seconds": round(wall, 1),
                "lesions_per_s": round(summary["lesions_written"] / wall, 1),
                "write_phase_lesions_per_s": summary.get("write_lesions_per_s"),
                "loader_peak_rss_mib": round(rss / 2**20, 1),
                "store_size_mib": round(_du_bytes(data_dir / "data") / 2**20, 1),
            }
        ours, base = results["ours"], results["baseline_one_tx_per_row"]
        report = {
            "benchmark": "load deeplesion (SYNTHETIC DL_info.csv)",
            "neo4j": server.NEO4J_VERSION,
            "heap": args.heap,
            "pagecache": args.pagecache,
            "generate_seconds": round(gen_s, 1),
            **results,
            "speed_ratio_ours_vs_baseline": round(ours["lesions_per_s"] / base["lesions_per_s"], 1),
            "targets": {"lesions_per_s": 10000, "loader_peak_rss_mib": 1024},
            "machine": describe(),
        }
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
