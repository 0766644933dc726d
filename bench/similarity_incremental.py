"""Benchmark: exact incremental SIMILAR_TO maintenance (the reverse-kNN update of each import)
beside a full re-link, at 10k and 100k lesions.

Prints one JSON object with the machine. Two parts, in one run:

- ``computation``: SYNTHETIC cue vectors (6-D, squared l2, a mixture of gaussian clusters, 5
  lesions per patient) at each ``--sizes``: an in-memory space holding the exact kNN lists of N
  lesions takes ``--imports`` imports of ``--batch`` new lesions each (:class:`Spaces` compute
  and commit, no database): seconds per import (median), the older lists each import changed,
  and after the imports the overlap of every list with the exact kNN of the grown set; beside
  the computation of a full re-link at the grown size (hnswlib build + ``neighbours`` +
  ``knn_edges``, what ``lesionkg link`` computes before writing).
- ``neo4j``: a throwaway local Neo4j holding ``--neo4j-size`` SYNTHETIC bookmarks imported by
  ``lesionkg etl`` (JSON Lines, cues space); then ``--imports`` further imports of about
  ``--batch`` bookmarks of new patients (``run_etl``, wall seconds each: reading the space's
  lists, the reverse-kNN update and its write, in the import's transaction), beside a full
  ``link_graph`` of the same graph. The 100k graph is left to the computation part: loading
  100k bookmarks through ``etl`` takes too long for a bench of a few minutes on two cores.

    python bench/similarity_incremental.py                      # 10k and 100k, ~5 minutes
    python bench/similarity_incremental.py --sizes 10000 --no-neo4j
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe

from lesionkg.config.settings import Settings
from lesionkg.core.cues import CUE_DIM, CUES_VERSION
from lesionkg.core.similarity import exact_knn, knn_edges, neighbours
from lesionkg.db import server
from lesionkg.db.driver import open_driver
from lesionkg.etl.importer import EtlOptions, run_etl
from lesionkg.etl.preparation import PreparedLesion
from lesionkg.etl.spaces import KnnLists, Pending, SpaceIndex, Spaces
from lesionkg.graph.similarity import SPACES, link_graph
from lesionkg.graph.vector_index import LesionIndex
from lesionkg.synthetic.bookmarks import write_synthetic_bookmarks

K = 10
DATABASE = "neo4j"
PER_PATIENT = 5


def mixture(n: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    """``n`` SYNTHETIC cue-like vectors around the given cluster centres."""
    pick = rng.integers(0, len(centres), size=n)
    return (centres[pick] + 0.03 * rng.standard_normal((n, CUE_DIM))).astype(np.float32)


def lesion(i: int, vector: np.ndarray) -> PreparedLesion:
    return PreparedLesion(
        lesion_id=f"SYN-{i:07d}",
        patient_id=f"P-{i // PER_PATIENT:06d}",
        study_id=f"S-{i // PER_PATIENT:06d}",
        study_datetime=None,
        props={},
        coarse_type=int(i % 8) if i % 3 else None,
        location=None,
        vectors={"cues": vector},
    )


def computation(size: int, imports: int, batch: int, seed: int) -> dict:
    """Incremental maintenance of ``size`` lesions' lists, in memory, beside a full re-link."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 1, size=(200, CUE_DIM))
    vectors = mixture(size, rng, centres)
    ids = [f"SYN-{i:07d}" for i in range(size)]
    patients = [f"P-{i // PER_PATIENT:06d}" for i in range(size)]
    index = LesionIndex.build("cues", ids, vectors, metric="l2", producer_sha256=CUES_VERSION)
    index.tune_ef(vectors[rng.choice(size, 1000, replace=False)], k=K)
    index.ef = max(index.ef, 64)
    pos, dist = neighbours(index, K, patients, False)
    lists = KnnLists(K, size)
    lists.pos[:size], lists.dist[:size] = pos, dist
    state = SpaceIndex(
        SPACES["cues"],
        CUES_VERSION,
        index,
        {lid: None for lid in ids},
        Path("unused"),
        patients=list(patients),
        lists=lists,
        k=K,
        generation=1,
    )
    spaces = Spaces({"cues": state}, K)
    seconds, changed = [], []
    for step in range(imports):
        first = size + step * batch
        new = [lesion(first + j, v) for j, v in enumerate(mixture(batch, rng, centres))]
        state.pending = Pending(
            step + 2,
            [],
            np.zeros((0, CUE_DIM), np.float32),
            [],
            [],
            np.zeros((0, K), np.int64),
            np.zeros((0, K)),
            np.zeros(0, np.int64),
            np.zeros((0, K), np.int64),
            np.zeros((0, K)),
            0,
        )
        started = time.perf_counter()
        pending = spaces._compute(state, new)
        rows = spaces._rows(state, pending)
        state.pending = pending
        spaces.add(new)
        seconds.append(time.perf_counter() - started)
        changed.append(len(pending.changed_rows))
        assert len(rows) >= pending.edges
    grown = index.count
    # Exactness: every list against the exact kNN of the grown set.
    sample = rng.choice(grown, size=min(grown, 5000), replace=False)
    e_pos, _ = exact_knn(index.vectors[sample], index.vectors, K + 1, metric="l2")
    hits = 0
    for row, s in enumerate(sample):
        truth = [p for p in e_pos[row] if p != s][:K]
        hits += len(set(truth) & set(state.lists.pos[s].tolist()))
    overlap = hits / (len(sample) * K)
    # A full re-link's computation at the grown size.
    started = time.perf_counter()
    relink = LesionIndex.build(
        "cues", list(index.ids), index.vectors.copy(), metric="l2", producer_sha256=CUES_VERSION
    )
    relink.tune_ef(index.vectors[sample[:1000]], k=K)
    r_pos, r_dist = neighbours(relink, K, state.patients, False)
    knn_edges(relink.ids, state.patients, r_pos, r_dist, K, other_patients=False)
    relink_s = time.perf_counter() - started
    median = statistics.median(seconds)
    return {
        "lesions": size,
        "batch": batch,
        "imports": imports,
        "per_import_s_median": round(median, 4),
        "per_import_s": [round(s, 4) for s in seconds],
        "older_lists_changed_per_import": changed,
        "overlap_with_exact_knn": round(overlap, 5),
        "full_relink_computation_s": round(relink_s, 3),
        "relink_over_import": round(relink_s / median, 1),
    }


def with_neo4j(size: int, imports: int, batch: int, work: Path) -> dict:
    """Imports into a real Neo4j of ``size`` bookmarks, beside a full ``link``."""
    started = time.perf_counter()
    instance = server.start(work / "neo4j", server.free_port(), heap="2g", pagecache="1g")
    driver = open_driver(Settings(instance.uri, instance.username, instance.password, DATABASE))
    out: dict = {"server_start_s": round(time.perf_counter() - started, 1)}
    try:
        options = EtlOptions(
            allow_missing_images=True,
            secret_path=work / "key",
            index_dir=work / "index",
            k=K,
        )
        # ~5.8 bookmarks per SYNTHETIC patient.
        base = write_synthetic_bookmarks(work / "base", patients=max(1, size * 10 // 58), seed=1)
        started = time.perf_counter()
        summary = run_etl(
            driver, [work / "base"], database=DATABASE, options=options, progress=False
        )
        out["base_bookmarks"] = summary.accepted
        out["base_import_s"] = round(time.perf_counter() - started, 1)
        seconds, edges = [], []
        first = base.patients + 1
        for step in range(imports):
            folder = work / f"import-{step}"
            more = write_synthetic_bookmarks(
                folder,
                patients=max(1, batch * 10 // 58),
                seed=100 + step,
                first_patient_index=first,
            )
            first += more.patients
            before = _edge_count(driver)
            started = time.perf_counter()
            summary = run_etl(driver, [folder], database=DATABASE, options=options, progress=False)
            seconds.append(time.perf_counter() - started)
            edges.append({"bookmarks": summary.accepted, "edges_before": before})
        out["per_import_s_median"] = round(statistics.median(seconds), 3)
        out["per_import_s"] = [round(s, 3) for s in seconds]
        out["imports"] = edges
        out["lesions_after"] = _lesion_count(driver)
        started = time.perf_counter()
        link = link_graph(
            driver,
            space="cues",
            k=K,
            index_dir=work / "link-index",
            database=DATABASE,
            progress=False,
        )
        out["full_link_s"] = round(time.perf_counter() - started, 2)
        out["full_link_edges"] = link.edges
        out["link_over_import"] = round(out["full_link_s"] / out["per_import_s_median"], 1)
    finally:
        driver.close()
        server.stop(work / "neo4j")
    return out


def _edge_count(driver) -> int:
    records, _, _ = driver.execute_query(
        "MATCH ()-[e:SIMILAR_TO]->() RETURN count(e) AS n", database_=DATABASE
    )
    return records[0]["n"]


def _lesion_count(driver) -> int:
    records, _, _ = driver.execute_query(
        "MATCH (l:Lesion) RETURN count(l) AS n", database_=DATABASE
    )
    return records[0]["n"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--imports", type=int, default=5)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--neo4j-size", type=int, default=10_000)
    parser.add_argument("--no-neo4j", action="store_true")
    args = parser.parse_args()
    out: dict = {
        "machine": describe(),
        "data": "SYNTHETIC cue vectors (computation) and SYNTHETIC bookmarks (neo4j)",
        "k": K,
        "computation": [computation(n, args.imports, args.batch, seed=n) for n in args.sizes],
    }
    if not args.no_neo4j:
        with tempfile.TemporaryDirectory(prefix="lesionkg-bench-siminc-") as tmp:
            out["neo4j"] = with_neo4j(args.neo4j_size, args.imports, args.batch, Path(tmp))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
