"""Benchmark: the lesion explorer (``lesionkg serve``) under 8 concurrent clients.

In a fresh local Neo4j: the real DeepLesion validation split (with the real key slices where
given) plus a SYNTHETIC cohort, to at least ``--lesions`` lesions (default 32,000): a few synthetic
patients with rendered slices (``--image-patients``) and the rest without (rendering tens of
thousands of slices takes hours on a small machine; lesions without a slice get a body map).
Then ``link --space cues`` and ``match``. The explorer runs as its own process (``lesionkg
serve``, one uvicorn worker); ``--clients`` threads request patient, lesion, similar (the JSON
gallery) and cohort (overview page with a filter) pages in turn, for ``--duration`` seconds.

Prints one JSON object: the machine, the graph, per page p50/p95 latency (ms) and requests/s
(once with all four pages mixed, once with patient and lesion pages only), beside the p50/p95 of
the same page's Cypher alone (the page's lookups run in this process, one client, same ids, same
run; the overview's whole-graph aggregate separately, since the page computes it at most every
30 s), and the time of a cached and an uncached thumbnail.

    python bench/web_explorer.py [--lesions 32000] [--duration 60] [--clients 8]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe

from lesionkg.config.settings import Settings
from lesionkg.db import server
from lesionkg.db.driver import open_driver
from lesionkg.db.queries import run_cypher
from lesionkg.etl.bulk import load_deeplesion
from lesionkg.graph import cohort as graph_cohort
from lesionkg.graph.matching import match_graph
from lesionkg.graph.similarity import link_graph
from lesionkg.synthetic.cohort import write_synthetic_dl_info
from lesionkg.web import lookups

REPO = Path(__file__).resolve().parents[1]
DB = "neo4j"
VAL_LESIONS = 4889
#: the synthetic generator's mean lesions per patient (measured: about 7)
LESIONS_PER_PATIENT = 7.0
PAGES = ("patient", "lesion", "similar", "cohort")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _summary(seconds: list[float]) -> dict:
    return {
        "n": len(seconds),
        "p50_ms": round(_pct(seconds, 0.5) * 1000, 1),
        "p95_ms": round(_pct(seconds, 0.95) * 1000, 1),
    }


def _build(driver, tmp: Path, data: Path, target: int, image_patients: int) -> dict:
    started = time.perf_counter()
    val = data / "dl_info" / "DL_info_val.csv"
    load_deeplesion(driver, val, database=DB, images=data / "images", progress=False)
    with_images = tmp / "synthetic_images"
    write_synthetic_dl_info(
        with_images, patients=image_patients, seed=7, first_patient_index=900_001, images=True
    )
    load_deeplesion(
        driver,
        with_images / "DL_info_synthetic.csv",
        database=DB,
        images=with_images,
        progress=False,
    )
    have = run_cypher(driver, DB, "MATCH (l:Lesion) RETURN count(l)").rows[0][0]
    rest = max(0, target - have)
    if rest:
        plain = tmp / "synthetic_plain"
        write_synthetic_dl_info(
            plain,
            patients=int(rest / LESIONS_PER_PATIENT * 1.05) + 1,
            seed=8,
            first_patient_index=500_001,
        )
        load_deeplesion(driver, plain / "DL_info_synthetic.csv", database=DB, progress=False)
    loaded = time.perf_counter() - started
    link_graph(driver, space="cues", k=10, index_dir=tmp / "index", database=DB, progress=False)
    match_graph(driver, database=DB, progress=False)
    counts = run_cypher(
        driver,
        DB,
        "MATCH (l:Lesion) RETURN count(l) AS lesions, count(DISTINCT l.patient_id) AS patients, "
        "count(l.image_path) AS with_image_path",
    ).as_dicts()[0]
    return {
        **counts,
        "load_seconds": round(loaded, 1),
        "build_seconds": round(time.perf_counter() - started, 1),
        "synthetic_patients_with_slices": image_patients,
    }


def _ids(driver) -> dict[str, list[str]]:
    """Patients with a track over 2+ studies, and their lesions (the pages worth looking at),
    mixed real and synthetic."""
    rows = run_cypher(
        driver,
        DB,
        "MATCH (l:Lesion) WHERE l.track_id IS NOT NULL "
        "WITH l.patient_id AS p, l.track_id AS t, count(DISTINCT l.study_index) AS n "
        "WHERE n >= 2 WITH DISTINCT p RETURN p ORDER BY p",
    ).rows
    patients = [r[0] for r in rows]
    rng = random.Random(0)
    rng.shuffle(patients)
    patients = patients[:300]
    lesions = [
        r[0]
        for r in run_cypher(
            driver,
            DB,
            "MATCH (l:Lesion) WHERE l.patient_id IN $p RETURN l.lesion_id",
            {"p": patients},
        ).rows
    ]
    rng.shuffle(lesions)
    return {"patients": patients, "lesions": lesions[:1000]}


def _cohort_params(rng: random.Random) -> dict:
    return {"type": str(rng.randint(1, 8)), "min_mm": str(rng.choice([0, 10, 20, 40]))}


def _page_url(page: str, ids: dict[str, list[str]], rng: random.Random) -> str:
    if page == "patient":
        return f"/patient/{rng.choice(ids['patients'])}"
    if page == "lesion":
        return f"/lesion/{rng.choice(ids['lesions'])}"
    if page == "similar":
        return f"/api/lesions/{rng.choice(ids['lesions'])}/similar?k=10"
    p = _cohort_params(rng)
    return f"/?type={p['type']}&min_mm={p['min_mm']}"


def _load(base: str, ids: dict, clients: int, duration: float, pages: tuple[str, ...]) -> dict:
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    lock = threading.Lock()
    stop = time.monotonic() + duration

    def client(n: int) -> None:
        rng = random.Random(n)
        with httpx.Client(base_url=base, timeout=60) as http:
            i = n
            while time.monotonic() < stop:
                page = pages[i % len(pages)]
                i += 1
                url = _page_url(page, ids, rng)
                started = time.perf_counter()
                status = http.get(url).status_code
                took = time.perf_counter() - started
                with lock:
                    if status == 200:
                        latencies[page].append(took)
                    else:
                        errors[page] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    total = sum(len(v) for v in latencies.values())
    return {
        "seconds": round(elapsed, 1),
        "requests_per_s": round(total / elapsed, 1),
        "pages": {
            page: {
                **_summary(latencies[page]),
                "requests_per_s": round(len(latencies[page]) / elapsed, 1),
                "errors": errors[page],
            }
            for page in pages
        },
    }


def _cypher_alone(driver, ids: dict, rounds: int) -> dict:
    """Each page's reads (the same lookups the page makes), one client, no HTTP, no templates."""
    rng = random.Random(1)

    def patient() -> None:
        pid = rng.choice(ids["patients"])
        lookups.patient(driver, DB, pid)
        graph_cohort.patient_tracks(driver, pid, database=DB)
        graph_cohort.patient_response(driver, pid, database=DB)
        graph_cohort.similar_patients(driver, pid, database=DB)
        lookups.patient_graph(driver, DB, pid)

    def similar() -> None:
        graph_cohort.similar_lesions(driver, rng.choice(ids["lesions"]), k=10, database=DB)

    def lesion() -> None:
        lid = rng.choice(ids["lesions"])
        lookups.lesion(driver, DB, lid)
        lookups.image_source(driver, DB, lid)
        graph_cohort.similar_lesions(driver, lid, k=10, database=DB)

    def overview() -> None:
        lookups.overview(driver, DB)

    def cohort() -> None:
        p = _cohort_params(rng)
        lookups.cohort(
            driver,
            DB,
            lookups.CohortFilter(coarse_type=int(p["type"]), min_mm=float(p["min_mm"])),
        )

    work: dict[str, Callable[[], None]] = {
        "patient": patient,
        "lesion": lesion,
        "similar": similar,
        "cohort": cohort,
        "overview_aggregate": overview,
    }
    out = {}
    for page, fn in work.items():
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        out[page] = _summary(times)
    return out


def _thumbnails(base: str, lesion_ids: list[str]) -> dict:
    uncached, cached = [], []
    with httpx.Client(base_url=base, timeout=60) as http:
        for lid in lesion_ids:
            started = time.perf_counter()
            first = http.get(f"/image/{lid}/thumb")
            uncached.append(time.perf_counter() - started)
            assert first.status_code == 200
            for _ in range(5):
                started = time.perf_counter()
                http.get(f"/image/{lid}/thumb")
                cached.append(time.perf_counter() - started)
    return {"uncached_render": _summary(uncached), "cached": _summary(cached)}


def _wait_http(base: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("lesionkg serve exited")
        try:
            if httpx.get(base + "/api/queries", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise RuntimeError("lesionkg serve did not answer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "deeplesion")
    parser.add_argument("--lesions", type=int, default=32_000)
    parser.add_argument("--image-patients", type=int, default=30)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--cypher-rounds", type=int, default=100)
    args = parser.parse_args()
    result: dict = {"machine": describe()}
    with tempfile.TemporaryDirectory(prefix="lesionkg-bench-web-") as name:
        tmp = Path(name)
        data_dir = tmp / "neo4j"
        instance = server.start(data_dir, server.free_port(), heap="1g", pagecache="512m")
        proc = None
        try:
            settings = Settings(instance.uri, instance.username, instance.password, DB)
            driver = open_driver(settings)
            try:
                result["graph"] = _build(driver, tmp, args.data, args.lesions, args.image_patients)
                ids = _ids(driver)
                port = server.free_port()
                env = {
                    **os.environ,
                    "NEO4J_URI": instance.uri,
                    "NEO4J_PASSWORD": instance.password,
                }
                proc = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "lesionkg.cli",
                        "serve",
                        "--port",
                        str(port),
                        "--images",
                        str(args.data / "images"),
                        "--cache-dir",
                        str(tmp / "pictures"),
                    ],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                base = f"http://127.0.0.1:{port}"
                _wait_http(base, proc)
                # Warm up: plans cached, driver pool open (as on a server that has run a while).
                with httpx.Client(base_url=base, timeout=60) as http:
                    rng = random.Random(2)
                    for page in PAGES * 5:
                        http.get(_page_url(page, ids, rng))
                result["load"] = {
                    "clients": args.clients,
                    **_load(base, ids, args.clients, args.duration, PAGES),
                }
                # The same clients on the patient and lesion pages only: what a reading room
                # does, without the whole-graph cohort scans competing for two cores.
                result["load_patient_lesion_only"] = {
                    "clients": args.clients,
                    **_load(base, ids, args.clients, args.duration, ("patient", "lesion")),
                }
                result["cypher_alone"] = _cypher_alone(driver, ids, args.cypher_rounds)
                with_slices = [
                    r[0]
                    for r in run_cypher(
                        driver,
                        DB,
                        "MATCH (l:Lesion) WHERE l.image_path IS NOT NULL "
                        "RETURN l.lesion_id ORDER BY l.lesion_id LIMIT 40",
                    ).rows
                ]
                thumbs = _thumbnails(base, with_slices)
                result["thumbnails"] = {"lesions": len(with_slices), **thumbs}
                mixed, own = result["load"]["pages"], result["load_patient_lesion_only"]["pages"]
                result["targets"] = {
                    "patient_p95_ms_under_300_mixed": mixed["patient"]["p95_ms"] < 300,
                    "lesion_p95_ms_under_300_mixed": mixed["lesion"]["p95_ms"] < 300,
                    "patient_p95_ms_under_300_alone": own["patient"]["p95_ms"] < 300,
                    "lesion_p95_ms_under_300_alone": own["lesion"]["p95_ms"] < 300,
                    "cached_thumbnail_p50_ms_under_20": result["thumbnails"]["cached"]["p50_ms"]
                    < 20,
                }
            finally:
                driver.close()
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=20)
            server.stop(data_dir)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
