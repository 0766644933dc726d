"""Benchmark: concurrent ``lesionkg etl`` processes on one database, beside one.

Prints one JSON object with the machine and, measured in this one run on a SYNTHETIC export
(``write_synthetic_bookmarks``: JSON Lines, one file per study, no images):

- ``single_in_process``: bookmarks/s of ``run_etl`` over the whole export into an empty graph,
  the figure ``docs/benchmarks.md`` gives (387.5 bookmarks/s for 9,886 bookmarks without
  embedding, before the per-patient locks; ``readme_bookmarks_per_s``);
- ``single_process``: one ``python -m lesionkg.cli etl`` over the whole export (process start,
  schema and index load included);
- ``concurrent``: ``--processes`` (4) ``etl`` processes at once, the export's files dealt to them
  round robin (every process imports studies of the same patients, so they contend for the same
  patients' locks): total bookmarks/s over the wall time of the slowest, and whether the graph
  equals the single run's (study order, tracks, ``FOLLOWED_BY``; a hash of those properties).

Every run starts from an empty graph, after a warm-up import of the first files.

    python bench/etl_concurrency.py [--bookmarks 10000] [--processes 4] [--neo4j-dir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe

from lesionkg.config.settings import Settings
from lesionkg.db import server
from lesionkg.db.driver import open_driver
from lesionkg.db.schema import reset
from lesionkg.etl.importer import EtlOptions, run_etl
from lesionkg.synthetic.bookmarks import write_synthetic_bookmarks

#: bookmarks per patient of the generator (bench/etl_throughput.py)
BOOKMARKS_PER_PATIENT = 7.34
DATABASE = "neo4j"
README_BOOKMARKS_PER_S = 387.5


def graph_hash(driver) -> str:
    """A hash of every study's index and time, every lesion's study index and track, and every
    FOLLOWED_BY edge: what a serial and a concurrent import must agree on."""
    parts = []
    for text in (
        "MATCH (s:Study) RETURN s.study_id AS s, s.study_index AS i, s.study_datetime AS t "
        "ORDER BY s",
        "MATCH (l:Lesion) RETURN l.lesion_id AS l, l.study_index AS i, l.track_id AS t ORDER BY l",
        "MATCH (a:Lesion)-[r:FOLLOWED_BY]->(b:Lesion) RETURN a.lesion_id AS a, b.lesion_id AS b, "
        "round(r.score, 6) AS score, r.by AS by ORDER BY a, b",
    ):
        records, _, _ = driver.execute_query(text, database_=DATABASE)
        parts.append([dict(r) for r in records])
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def command(folders: list[Path], work: Path, index_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "lesionkg.cli",
        "etl",
        *map(str, folders),
        "--allow-missing-images",
        "--secret",
        str(work / "pseudonym.key"),
        "--index-dir",
        str(index_dir),
        "--format",
        "json",
        "--quiet",
    ]


def processes(commands: list[list[str]], env: dict[str, str]) -> tuple[float, list[dict]]:
    """Run ``commands`` at once; the wall time until the last ends, and their summaries."""
    started = time.perf_counter()
    runs = [
        subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    outputs = [run.communicate() for run in runs]
    seconds = time.perf_counter() - started
    for run, (_, err) in zip(runs, outputs, strict=True):
        if run.returncode != 0:
            raise RuntimeError(f"etl exited {run.returncode}: {err[-2000:]}")
    return seconds, [json.loads(out) for out, _ in outputs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bookmarks", type=int, default=10000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--warmup-files", type=int, default=200)
    parser.add_argument(
        "--neo4j-dir", type=Path, default=None, help="Use (or start) this local server's folder."
    )
    args = parser.parse_args()
    out: dict = {"machine": describe(), "readme_bookmarks_per_s": README_BOOKMARKS_PER_S}
    with tempfile.TemporaryDirectory(prefix="lesionkg-bench-conc-") as tmp:
        work = Path(tmp)
        data_dir = args.neo4j_dir or work / "neo4j"
        instance = server.start(data_dir, server.free_port(), heap="2g", pagecache="1g")
        settings = Settings(instance.uri, instance.username, instance.password, DATABASE)
        driver = open_driver(settings)
        env = {
            **os.environ,
            "NEO4J_URI": instance.uri,
            "NEO4J_USERNAME": instance.username,
            "NEO4J_PASSWORD": instance.password,
            "LESIONKG_HOME": str(work / "home"),
        }
        try:
            patients = max(1, round(args.bookmarks / BOOKMARKS_PER_PATIENT))
            export = write_synthetic_bookmarks(work / "export", patients=patients, seed=0)
            files = list(export.files)
            out["generated"] = {"bookmarks": export.bookmarks, "files": len(files)}
            folders = [work / f"part{i}" for i in range(args.processes)]
            for folder in folders:
                folder.mkdir()
                shutil.copy(work / "export" / "SYNTHETIC.json", folder / "SYNTHETIC.json")
            for i, path in enumerate(files):
                os.link(path, folders[i % args.processes] / path.name)
            options = EtlOptions(
                allow_missing_images=True,
                secret_path=work / "pseudonym.key",
                index_dir=work / "index",
            )
            # Warm-up (JIT, page cache), not timed.
            reset(driver, DATABASE)
            run_etl(
                driver,
                files[: args.warmup_files],
                database=DATABASE,
                options=options,
                progress=False,
            )

            reset(driver, DATABASE)
            shutil.rmtree(work / "index", ignore_errors=True)
            started = time.perf_counter()
            summary = run_etl(driver, files, database=DATABASE, options=options, progress=False)
            seconds = time.perf_counter() - started
            out["single_in_process"] = {
                "bookmarks": summary.accepted,
                "seconds": round(seconds, 2),
                "bookmarks_per_s": round(summary.accepted / seconds, 1),
            }
            serial_hash = graph_hash(driver)

            reset(driver, DATABASE)
            seconds, [one] = processes([command([work / "export"], work, work / "index1")], env)
            out["single_process"] = {
                "bookmarks": one["accepted"],
                "seconds": round(seconds, 2),
                "bookmarks_per_s": round(one["accepted"] / seconds, 1),
                "same_graph_as_in_process": graph_hash(driver) == serial_hash,
            }

            reset(driver, DATABASE)
            seconds, summaries = processes(
                [command([f], work, work / f"index_p{i}") for i, f in enumerate(folders)], env
            )
            total = sum(s["accepted"] for s in summaries)
            out["concurrent"] = {
                "processes": args.processes,
                "bookmarks": total,
                "seconds": round(seconds, 2),
                "bookmarks_per_s": round(total / seconds, 1),
                "per_process_bookmarks": [s["accepted"] for s in summaries],
                "retries": sum(s["retries"] for s in summaries),
                "same_graph_as_serial": graph_hash(driver) == serial_hash,
            }
            out["concurrent_vs_single_process"] = round(
                out["concurrent"]["bookmarks_per_s"] / out["single_process"]["bookmarks_per_s"], 2
            )
            out["single_vs_readme"] = round(
                out["single_in_process"]["bookmarks_per_s"] / README_BOOKMARKS_PER_S, 2
            )
        finally:
            driver.close()
            if args.neo4j_dir is None:
                server.stop(data_dir)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
