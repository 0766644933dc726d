"""Benchmark: the DICOMweb pull sync (``lesionkg etl --dicomweb``) from a real local Orthanc.

Prints one JSON object with the machine and, measured in this one run on a SYNTHETIC PACS cohort
(``lesionkg.pacs.cohort``: per study one CT key slice and one TID 1500 SR with 2 measurements):

- ``sync``: ``--reports`` (1,000) SR reports in Orthanc (with their CT key slices), one sync into
  an empty graph without embedding: reports/s, HTTP requests by kind, what was imported;
- ``naive``: the same import through a naive client that searches and retrieves one instance at
  a time (a QIDO page of one report, its retrieval, a QIDO search for its CT slice, the slice's
  retrieval, sequentially), then imports with the same ETL, into a fresh graph, on the first
  ``--naive-reports`` reports;
- ``resync``: a second sync with nothing new (QIDO only, everything known);
- ``watch``: ``watch_dicomweb`` polling every ``--poll-s``; ``--drops`` follow-up studies (CT +
  SR) are stored in Orthanc over STOW-RS one at a time; the latency is from the end of the STOW
  to the new lesions' FOLLOWED_BY edges being queryable over Bolt.

Targets (issue 14): >= 50 reports/s; median arrival-to-track < 5 s.

    python bench/pacs_sync.py [--reports 1000] [--naive-reports 200] [--drops 10]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe

from lesionkg.config.secret import load_or_create_secret
from lesionkg.config.settings import Settings
from lesionkg.core.pseudonym import Pseudonymizer
from lesionkg.db import server
from lesionkg.db.driver import open_driver
from lesionkg.db.schema import apply_schema, reset
from lesionkg.etl.importer import run_etl
from lesionkg.etl.options import EtlOptions
from lesionkg.pacs import orthanc
from lesionkg.pacs.client import PacsClient, PacsConnection
from lesionkg.pacs.cohort import StudyFiles, write_pacs_cohort
from lesionkg.pacs.dicomweb import SyncOptions, sync_dicomweb, watch_dicomweb
from lesionkg.pacs.retrieval import SERIES_UID, SOP_UID, STUDY_UID, referenced_ct, tag_value

DATABASE = "neo4j"
LESIONS = 2


def _write(args: tuple[Path, int, int, int, str]) -> list[StudyFiles]:
    folder, patients, studies, seed, prefix = args
    return write_pacs_cohort(
        folder,
        patients=patients,
        studies=studies,
        lesions=LESIONS,
        slices=1,
        seed=seed,
        prefix=prefix,
    )


def _cohort(work: Path, reports: int, drops: int) -> tuple[list[StudyFiles], list[StudyFiles]]:
    """``reports`` reports (2 studies per patient) and ``drops`` patients with a third study."""
    patients = max(1, reports // 2)
    chunks = [
        (work / "cohort" / f"c{i}", n, 2, i, f"SYNTHETIC-BENCH-{i}")
        for i, n in enumerate(_split(patients, 8))
    ]
    chunks.append((work / "cohort" / "watch", drops, 3, 99, "SYNTHETIC-WATCH"))
    with ProcessPoolExecutor(2) as pool:
        parts = list(pool.map(_write, chunks))
    main = [s for part in parts[:-1] for s in part]
    watch = parts[-1]
    return main + [s for s in watch if s.index < 2], [s for s in watch if s.index == 2]


def _split(n: int, k: int) -> list[int]:
    return [n // k + (1 if i < n % k else 0) for i in range(k) if n // k + (i < n % k)]


def _files(studies: list[StudyFiles]) -> list[Path]:
    return [p for s in studies for p in [*s.ct, s.report] if p is not None]


def _naive(client: PacsClient, folder: Path, reports: int) -> None:
    """One instance at a time: page through the reports one by one and fetch what each needs."""
    (folder / "sr").mkdir(parents=True)
    (folder / "ct").mkdir()
    for offset in range(reports):
        page = client.search_instances(
            filters={"SOPClassUID": "1.2.840.10008.5.1.4.1.1.88.34"}, offset=offset, limit=1
        )
        if not page:
            break
        item = page[0]
        study, series, sop = (tag_value(item, t) or "" for t in (STUDY_UID, SERIES_UID, SOP_UID))
        report = client.retrieve(study, series, sop)
        assert report is not None
        report.save_as(folder / "sr" / f"{offset:06d}.dcm", enforce_file_format=True)
        for uid in referenced_ct(report):
            hits = client.search_instances(study=study, filters={"SOPInstanceUID": uid})
            ct_series = tag_value(hits[0], SERIES_UID) or ""
            ct = client.retrieve(study, ct_series, uid)
            assert ct is not None
            ct.save_as(folder / "ct" / f"{uid}.dcm", enforce_file_format=True)


def _tracked(driver, patient_id: str) -> int:
    records, _, _ = driver.execute_query(
        "MATCH (:Patient {patient_id: $p})-[:HAS_STUDY]->(:Study)-[:HAS_LESION]->(l:Lesion) "
        "WHERE (l)<-[:FOLLOWED_BY]-() RETURN count(l) AS n",
        p=patient_id,
        database_=DATABASE,
    )
    return int(records[0]["n"])


def _watch(driver, conn, store, options, sync, drops, poll_s, pseudo) -> dict:
    stop = threading.Event()
    syncs: list = []
    thread = threading.Thread(
        target=lambda: syncs.extend(
            watch_dicomweb(
                driver,
                conn,
                database=DATABASE,
                options=options,
                sync=sync,
                poll_s=poll_s,
                stop=stop,
            )
        )
    )
    thread.start()
    latencies = []
    try:
        for study in drops:
            patient = pseudo.patient_id(study.patient_id)
            before = _tracked(driver, patient)
            store.store_files(_files([study]))
            arrived = time.perf_counter()
            while _tracked(driver, patient) < before + LESIONS:
                if time.perf_counter() - arrived > 120:
                    raise RuntimeError(f"{study.patient_id}: no track after 120 s")
                time.sleep(0.02)
            latencies.append(time.perf_counter() - arrived)
    finally:
        stop.set()
        thread.join()
    return {
        "drops": len(latencies),
        "poll_s": poll_s,
        "median_s": round(statistics.median(latencies), 2),
        "max_s": round(max(latencies), 2),
        "syncs": len(syncs),
        "target_median_s": 5.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reports", type=int, default=1000)
    parser.add_argument("--naive-reports", type=int, default=200)
    parser.add_argument("--drops", type=int, default=10)
    parser.add_argument("--poll-s", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--page-size", type=int, default=200)
    parser.add_argument("--neo4j-dir", type=Path, default=None, help="Reuse this local Neo4j.")
    args = parser.parse_args()

    out: dict = {"machine": describe(), "data": "SYNTHETIC PACS cohort (lesionkg.pacs.cohort)"}
    with tempfile.TemporaryDirectory(prefix="lesionkg-bench-pacs-") as tmp:
        work = Path(tmp)
        neo4j_dir = args.neo4j_dir or work / "neo4j"
        was_running = server.status(neo4j_dir).running
        instance = server.start(neo4j_dir, server.free_port(), heap="1g", pagecache="512m")
        pacs = orthanc.start(work / "orthanc")
        driver = open_driver(Settings(instance.uri, instance.username, instance.password, DATABASE))
        conn = PacsConnection(pacs.dicomweb_url, pacs.username, pacs.password)
        try:
            started = time.perf_counter()
            initial, drops = _cohort(work, args.reports, args.drops)
            out["generated"] = {
                "reports": len(initial),
                "instances": len(_files(initial)),
                "seconds": round(time.perf_counter() - started, 1),
            }
            started = time.perf_counter()
            store = PacsClient(conn)
            store.store_files(_files(initial))
            out["stored_seconds"] = round(time.perf_counter() - started, 1)

            key = work / "key"
            pseudo = Pseudonymizer(load_or_create_secret(key))
            options = EtlOptions(secret_path=key, index_dir=work / "index")
            sync = SyncOptions(
                state_dir=work / "state", workers=args.workers, page_size=args.page_size
            )
            reset(driver, DATABASE)
            apply_schema(driver, DATABASE)
            summary = sync_dicomweb(driver, conn, database=DATABASE, options=options, sync=sync)
            out["sync"] = {
                "reports": summary.retrieved,
                "imported": summary.imported,
                "bookmarks": summary.bookmarks,
                "seconds": round(summary.seconds, 1),
                "reports_per_s": round(summary.reports_per_s, 1),
                "requests": summary.requests,
                "retrieval_seconds": round(summary.retrieval_seconds, 1),
                "import_seconds": round(summary.import_seconds, 1),
                "retrieval_reports_per_s": round(
                    summary.retrieved / max(summary.retrieval_seconds, 1e-9), 1
                ),
                "target_reports_per_s": 50,
            }
            again = sync_dicomweb(driver, conn, database=DATABASE, options=options, sync=sync)
            out["resync"] = {
                "retrieved": again.retrieved,
                "known": again.known,
                "seconds": round(again.seconds, 2),
                "requests": again.requests,
            }
            out["watch"] = _watch(driver, conn, store, options, sync, drops, args.poll_s, pseudo)

            # The naive client, into a fresh graph, on the first reports.
            reset(driver, DATABASE)
            apply_schema(driver, DATABASE)
            naive = PacsClient(conn)
            started = time.perf_counter()
            _naive(naive, work / "naive", args.naive_reports)
            fetched = time.perf_counter() - started
            result = run_etl(
                driver,
                [work / "naive"],
                database=DATABASE,
                options=EtlOptions(secret_path=key, index_dir=work / "naive-index"),
                progress=False,
            )
            seconds = time.perf_counter() - started
            out["naive"] = {
                "reports": args.naive_reports,
                "imported_bookmarks": result.accepted,
                "retrieval_seconds": round(fetched, 1),
                "seconds": round(seconds, 1),
                "reports_per_s": round(args.naive_reports / seconds, 1),
                "requests": naive.counter.snapshot(),
            }
            out["speedup"] = round(out["sync"]["reports_per_s"] / out["naive"]["reports_per_s"], 1)
        finally:
            driver.close()
            orthanc.stop(work / "orthanc")
            if not was_running and args.neo4j_dir is None:
                server.stop(neo4j_dir)
            shutil.rmtree(work / "cohort", ignore_errors=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
