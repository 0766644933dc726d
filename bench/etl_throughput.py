"""Benchmark: the PACS bookmark import (``lesionkg etl``), in a fresh local Neo4j.

Prints one JSON object with the machine and, measured in this one run on SYNTHETIC bookmarks
(``write_synthetic_bookmarks``: JSON Lines, one file per study, about 3 bookmarks per file):

- ``without_embedding``: bookmarks/s through ``etl`` for ``--bookmarks`` (10,000) bookmarks into
  an empty graph (parse, check, pseudonymise, cues, SIMILAR_TO k = 10, re-match, write);
- ``transactions``: ours (up to 500 bookmarks per transaction) against one transaction per file,
  the plain reading of "one file, one transaction", on the same first ``--baseline-files`` files;
- ``with_embedding``: the same with key-slice PNGs and a triplet network (the demo's 32-pixel
  input; its weights are trained for 2 steps only, as speed does not depend on them);
- ``reader_links``: an export with the sources' tracking UIDs (the generator's true lesions):
  how often matching without the UIDs agrees with them, and bookmarks/s with them;
- ``watch``: ``etl --watch`` on the graph of the first run; ``--drops`` new files are dropped in
  the inbox one at a time (written under a ``.part`` name, then renamed, as an exporter would);
  the latency is the time from the rename to the new lesion's track being queryable over Bolt.

Targets (issue 5): >= 200 bookmarks/s without embedding; median inbox-to-track latency < 2 s.

    python bench/etl_throughput.py [--bookmarks 10000] [--embed-bookmarks 10000]
    python bench/etl_throughput.py --only reader_links
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe

from lesionkg.config.secret import load_or_create_secret
from lesionkg.config.settings import Settings
from lesionkg.core.pseudonym import Pseudonymizer
from lesionkg.db import server
from lesionkg.db.driver import open_driver
from lesionkg.db.schema import reset
from lesionkg.etl.importer import EtlOptions, run_etl
from lesionkg.etl.inbox import watch_inbox
from lesionkg.loaders.jsonl import read_jsonl_bookmarks
from lesionkg.synthetic.bookmarks import write_synthetic_bookmarks
from lesionkg.synthetic.cohort import write_synthetic_dl_info

#: bookmarks per patient of the generator, measured: 10,058 for 1,370 patients (seed 0)
BOOKMARKS_PER_PATIENT = 7.34
DATABASE = "neo4j"


def _patients(bookmarks: int) -> int:
    return max(1, round(bookmarks / BOOKMARKS_PER_PATIENT))


def _run(driver, files, options: EtlOptions) -> dict:
    reset(driver, DATABASE)
    started = time.perf_counter()
    summary = run_etl(driver, files, database=DATABASE, options=options, progress=False)
    seconds = time.perf_counter() - started
    return {
        "files": summary.files,
        "bookmarks": summary.accepted,
        "rejected": summary.rejected,
        "seconds": round(seconds, 2),
        "bookmarks_per_s": round(summary.accepted / seconds, 1),
        "similar_edges": summary.similar_edges,
        "embedded": summary.embedded,
        "patients_rematched": summary.patients_rematched,
    }


def _tiny_model(work: Path) -> Path:
    """A triplet network with the demo's input (32-pixel crops), trained 2 steps: for speed."""
    from lesionkg.model.training import TrainConfig, train_from_csv
    from lesionkg.model.transforms import CropSpec, InputConfig

    cohort = write_synthetic_dl_info(work / "train", patients=60, seed=7, images=True)
    config = TrainConfig(
        seed=0,
        steps=2,
        sequences_per_batch=4,
        checkpoint_every=2,
        input=InputConfig((CropSpec(32, 1.0, "box"), CropSpec(32, 3.0, "crop"))),
    )
    train_from_csv(cohort.csv_path, work / "train", work / "model", config, progress=False)
    return work / "model"


def _watch_latency(driver, work: Path, options: EtlOptions, drops: int, poll_s: float) -> dict:
    """Drop files into a watched inbox one at a time; seconds until each lesion is tracked."""
    export = write_synthetic_bookmarks(
        work / "later", patients=drops + 1, seed=11, first_patient_index=800001
    )
    pseudonymizer = Pseudonymizer(load_or_create_secret(options.secret_path))
    inbox = work / "inbox"
    inbox.mkdir()
    stop = threading.Event()
    watcher = threading.Thread(
        target=watch_inbox,
        args=(driver, inbox),
        kwargs={
            "database": DATABASE,
            "options": options,
            "poll_s": poll_s,
            "stop": stop,
            "progress": False,
        },
    )
    watcher.start()
    latencies = []
    try:
        # The first entry also waits for the watcher's start (schema, index load): not timed.
        for i, file in enumerate(export.files[: drops + 1]):
            bookmark = read_jsonl_bookmarks(file, allow_missing_images=True)[0]
            lesion_id = pseudonymizer.lesion_id(bookmark)
            part = inbox / (file.name + ".part")
            part.write_bytes(file.read_bytes())
            started = time.perf_counter()
            os.replace(part, inbox / file.name)
            while True:
                records, _, _ = driver.execute_query(
                    "MATCH (l:Lesion {lesion_id: $id}) RETURN l.track_id AS track",
                    id=lesion_id,
                    database_=DATABASE,
                )
                if records and records[0]["track"]:
                    break
                if time.perf_counter() - started > 60:
                    raise RuntimeError(f"{file.name} was not imported within 60 s")
                time.sleep(0.01)
            if i:
                latencies.append(time.perf_counter() - started)
    finally:
        stop.set()
        watcher.join()
    latencies.sort()
    return {
        "drops": len(latencies),
        "poll_s": poll_s,
        "graph_lesions_before": None,
        "median_s": round(statistics.median(latencies), 3),
        "p90_s": round(latencies[int(0.9 * (len(latencies) - 1))], 3),
        "max_s": round(latencies[-1], 3),
        "target_median_s": 2.0,
        "target_met": statistics.median(latencies) < 2.0,
    }


def _reader_links(driver, work: Path, bookmarks: int) -> dict:
    """Import an export whose bookmarks carry tracking UIDs (the true lesions)."""
    write_synthetic_bookmarks(
        work / "export-uids", patients=_patients(bookmarks), seed=2, tracking_uids=True
    )
    options = EtlOptions(
        allow_missing_images=True,
        secret_path=work / "pseudonym.key",
        index_dir=work / "index-uids",
    )
    reset(driver, DATABASE)
    started = time.perf_counter()
    summary = run_etl(
        driver, [work / "export-uids"], database=DATABASE, options=options, progress=False
    )
    seconds = time.perf_counter() - started
    agreement = summary.reader_agreement
    return {
        "bookmarks": summary.accepted,
        "bookmarks_per_s": round(summary.accepted / seconds, 1),
        "reader_links": summary.reader_links,
        "reader_pairs": agreement["pairs"],
        "matching_without_uids_agrees": agreement["agree"],
        "disagrees": agreement["disagree"],
        "agreement": round(agreement["agree"] / max(agreement["pairs"], 1), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bookmarks", type=int, default=10000)
    parser.add_argument("--embed-bookmarks", type=int, default=10000)
    parser.add_argument("--baseline-files", type=int, default=300)
    parser.add_argument("--drops", type=int, default=30)
    parser.add_argument("--poll-s", type=float, default=0.25)
    parser.add_argument("--uid-bookmarks", type=int, default=10000)
    parser.add_argument(
        "--only", choices=["reader_links"], default=None, help="Run only this section."
    )
    args = parser.parse_args()

    out: dict = {"machine": describe(), "data": "SYNTHETIC bookmarks (write_synthetic_bookmarks)"}
    with tempfile.TemporaryDirectory(prefix="lesionkg-bench-etl-") as tmp:
        work = Path(tmp)
        instance = server.start(work / "neo4j", server.free_port(), heap="2g", pagecache="1g")
        driver = open_driver(Settings(instance.uri, instance.username, instance.password, DATABASE))
        try:
            if args.only == "reader_links":
                out["reader_links"] = _reader_links(driver, work, args.uid_bookmarks)
                return
            started = time.perf_counter()
            export = write_synthetic_bookmarks(
                work / "export", patients=_patients(args.bookmarks), seed=0
            )
            out["generated"] = {
                "bookmarks": export.bookmarks,
                "files": len(export.files),
                "patients": export.patients,
                "seconds": round(time.perf_counter() - started, 1),
            }
            options = EtlOptions(
                allow_missing_images=True,
                secret_path=work / "pseudonym.key",
                index_dir=work / "index",
            )
            subset = list(export.files[: args.baseline_files])
            # A fresh server is slow for its first thousand writes (JIT, page cache): warm it
            # up so that neither side of the comparison pays for it.
            _run(driver, subset, options)
            ours = _run(driver, subset, options)
            per_file = _run(
                driver,
                subset,
                EtlOptions(
                    allow_missing_images=True,
                    secret_path=work / "pseudonym.key",
                    index_dir=work / "index-per-file",
                    batch_bookmarks=1,
                ),
            )
            out["transactions"] = {
                "ours_up_to_500_per_transaction": ours,
                "baseline_one_transaction_per_file": per_file,
                "ratio": round(ours["bookmarks_per_s"] / per_file["bookmarks_per_s"], 2),
            }
            print(json.dumps(out["transactions"]), file=sys.stderr)
            full = _run(driver, [work / "export"], options)
            full["target_bookmarks_per_s"] = 200
            full["target_met"] = full["bookmarks_per_s"] >= 200
            out["without_embedding"] = full
            print(json.dumps(full), file=sys.stderr)

            out["watch"] = _watch_latency(
                driver, work, options, drops=args.drops, poll_s=args.poll_s
            )
            out["watch"]["graph_lesions_before"] = full["bookmarks"]
            print(json.dumps(out["watch"]), file=sys.stderr)

            out["reader_links"] = _reader_links(driver, work, args.uid_bookmarks)
            if args.embed_bookmarks:
                started = time.perf_counter()
                images = write_synthetic_bookmarks(
                    work / "export-images",
                    patients=_patients(args.embed_bookmarks),
                    seed=0,
                    images=True,
                )
                generated = time.perf_counter() - started
                model = _tiny_model(work)
                embedded = _run(
                    driver,
                    [work / "export-images"],
                    EtlOptions(
                        secret_path=work / "pseudonym.key",
                        index_dir=work / "index-embed",
                        model_dir=model,
                    ),
                )
                embedded["images_generated_s"] = round(generated, 1)
                embedded["model"] = "demo input (2 x 32-px crops), 2 training steps: speed only"
                embedded["generated_bookmarks"] = images.bookmarks
                out["with_embedding"] = embedded
        finally:
            driver.close()
            server.stop(work / "neo4j")
            print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
