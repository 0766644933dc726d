"""Benchmark: the HNSW lesion index against exact search, and Neo4j's vector index, on SYNTHETIC
vectors.

Prints one JSON object. For every size (``--sizes``) and both dimensions (1408, the triplet
embedding, cosine; ``--cue-dim``, the cue vectors, squared l2): hnswlib build seconds, the ``ef``
that :meth:`LesionIndex.tune_ef` needs for recall@10 >= 0.99 on a tuning sample, recall@10 on a
separate evaluation sample, HNSW queries/s (a batch, every core), and exact search queries/s
(:func:`exact_knn`, torch, every core) in the same run, with their ratio. Then Neo4j's own vector
index at ``--neo4j-size`` 1408-D vectors in a throwaway local server: per-query latency (median and
p95, one query per round trip, as an application would send them) and its recall@10.

The vectors are SYNTHETIC: a mixture of gaussian clusters with a low-rank shape (each point is a
cluster centre, plus a 32-D latent gaussian mapped by a fixed random matrix, plus small isotropic
noise), normalised for cosine. Uniform noise in 1408-D would be an unrealistic worst case: real
embeddings cluster and have a low intrinsic dimension. Queries are fresh draws from the same
mixture, never indexed points.

    python bench/similarity_index.py                       # 32k and 1M
    python bench/similarity_index.py --sizes 32000         # a quick run
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe

from lesionkg.core.cues import CUE_DIM
from lesionkg.core.similarity import exact_knn, recall_at_k
from lesionkg.db import server
from lesionkg.graph.vector_index import LesionIndex

EMBEDDING_DIM = 1408
K = 10
TARGET_RECALL = 0.99
TARGET_SPEEDUP = 20
TARGET_SIZE = 1_000_000
# Generated in chunks so that 1M x 1408 needs no temporaries of its own size.
CHUNK = 50_000


class Mixture:
    """A fixed random mixture of low-rank gaussian clusters in ``dim`` dimensions."""

    def __init__(self, dim: int, clusters: int, latent: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.dim = dim
        self.latent = min(latent, dim)
        # Centres N(0, 1); the latent map gives each cluster a spread of about half the distance
        # between centres, with isotropic noise a tenth of that.
        self.centres = rng.standard_normal((clusters, dim), dtype=np.float32)
        self.basis = rng.standard_normal((self.latent, dim), dtype=np.float32) * np.float32(
            0.5 / np.sqrt(self.latent)
        )
        self.noise = np.float32(0.05)

    def sample(self, n: int, rng: np.random.Generator, *, unit: bool) -> np.ndarray:
        """``(n, dim)`` float32 draws; rows scaled to unit length when ``unit`` (cosine)."""
        out = np.empty((n, self.dim), dtype=np.float32)
        for start in range(0, n, CHUNK):
            m = min(CHUNK, n - start)
            block = out[start : start + m]
            rng.standard_normal((m, self.dim), dtype=np.float32, out=block)
            block *= self.noise
            block += self.centres[rng.integers(0, len(self.centres), m)]
            block += rng.standard_normal((m, self.latent), dtype=np.float32) @ self.basis
            if unit:
                block /= np.linalg.norm(block, axis=1, keepdims=True)
        return out


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _hnsw_vs_exact(args, dim: int, metric: str, size: int) -> tuple[dict, tuple | None]:
    """Build, tune and time one index; exact search on the same data for recall and speed.

    Returns the figures, and the data Neo4j needs when this is its size and dimension.
    """
    mixture = Mixture(dim, args.clusters, args.latent, seed=args.seed + dim)
    rng = np.random.default_rng(args.seed + size + dim)
    unit = metric == "cosine"
    t0 = time.perf_counter()
    base = mixture.sample(size, rng, unit=unit)
    tune_q = mixture.sample(args.tune_queries, rng, unit=unit)
    eval_q = mixture.sample(args.queries, rng, unit=unit)
    qps_q = mixture.sample(args.qps_queries, rng, unit=unit)
    _log(f"{size} x {dim}: generated in {time.perf_counter() - t0:.1f} s")
    ids = [f"S{i:07d}" for i in range(size)]

    t0 = time.perf_counter()
    index = LesionIndex.build(
        "bench",
        ids,
        base,
        metric=metric,
        producer_sha256="synthetic",
        M=args.M,
        ef_construction=args.ef_construction,
    )
    build_s = time.perf_counter() - t0
    _log(f"{size} x {dim}: built in {build_s:.1f} s")

    t0 = time.perf_counter()
    ef, tune_recall = index.tune_ef(tune_q, k=K, target_recall=TARGET_RECALL)
    tune_s = time.perf_counter() - t0
    _log(f"{size} x {dim}: ef={ef} (recall {tune_recall:.4f}) tuned in {tune_s:.1f} s")

    t0 = time.perf_counter()
    _, exact_d = exact_knn(eval_q, base, K, metric=metric)
    exact_s = time.perf_counter() - t0
    _, found_d = index.query(eval_q, K)
    recall = recall_at_k(found_d, exact_d)
    # The best of three batches: the machine is shared, and the minimum is the least disturbed.
    hnsw_s = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        index.query(qps_q, K)
        hnsw_s = min(hnsw_s, time.perf_counter() - t0)
    hnsw_qps = len(qps_q) / hnsw_s
    exact_qps = len(eval_q) / exact_s
    result = {
        "vectors": size,
        "dim": dim,
        "metric": metric,
        "build_seconds": round(build_s, 2),
        "build_vectors_per_s": round(size / build_s, 1),
        "ef": ef,
        "tune_recall_at_10": round(tune_recall, 4),
        "recall_at_10": round(recall, 4),
        "hnsw_qps": round(hnsw_qps, 1),
        "hnsw_ms_per_query_per_core": round(1000 * hnsw_s * args.cores / len(qps_q), 3),
        "exact_qps": round(exact_qps, 2),
        "speedup_hnsw_vs_exact": round(hnsw_qps / exact_qps, 1),
        # The issue states the target at 1M vectors; below that the speedup is expected lower.
        "targets_met": bool(recall >= TARGET_RECALL and hnsw_qps / exact_qps >= TARGET_SPEEDUP),
    }
    _log(f"{size} x {dim}: {json.dumps(result)}")
    keep = (base, eval_q, exact_d) if args.neo4j_size == size and dim == EMBEDDING_DIM else None
    del index
    gc.collect()
    return result, keep


def _neo4j_vector_index(args, base: np.ndarray, queries: np.ndarray, exact_d: np.ndarray) -> dict:
    """Load ``base`` as Lesion.embedding into a throwaway Neo4j and query its vector index."""
    from lesionkg.config.settings import Settings
    from lesionkg.db.driver import open_driver

    with tempfile.TemporaryDirectory(prefix="lesionkg-bench-vec-") as tmp:
        data_dir = Path(tmp) / "neo4j"
        instance = server.start(
            data_dir, server.free_port(), heap=args.heap, pagecache=args.pagecache
        )
        try:
            driver = open_driver(Settings(instance.uri, instance.username, instance.password))
            t0 = time.perf_counter()
            for start in range(0, len(base), args.write_batch):
                rows = [
                    {"i": start + j, "v": v.tolist()}
                    for j, v in enumerate(base[start : start + args.write_batch])
                ]
                driver.execute_query(
                    "UNWIND $rows AS r CREATE (:Lesion {pos: r.i, embedding: r.v})",
                    rows=rows,
                    database_="neo4j",
                )
            write_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            driver.execute_query(
                "CREATE VECTOR INDEX lesion_bench IF NOT EXISTS FOR (l:Lesion) ON l.embedding "
                "OPTIONS {indexConfig: {`vector.dimensions`: $dim, "
                "`vector.similarity_function`: 'cosine'}}",
                dim=base.shape[1],
                database_="neo4j",
            )
            driver.execute_query("CALL db.awaitIndexes(3600)", database_="neo4j")
            index_s = time.perf_counter() - t0
            _log(f"neo4j: wrote {len(base)} in {write_s:.1f} s, index online in {index_s:.1f} s")

            # One session for all queries, as a service would hold one; one query per round trip.
            session = driver.session(database="neo4j")

            def search(v: np.ndarray, k: int) -> list[int]:
                records = session.run(
                    "CALL db.index.vector.queryNodes('lesion_bench', $k, $v) YIELD node "
                    "RETURN node.pos AS pos",
                    k=k,
                    v=v.tolist(),
                )
                return [r["pos"] for r in records]

            def round_trip(v: np.ndarray) -> None:
                session.run("RETURN size($v) AS n", v=v.tolist()).consume()

            for v in queries[:20]:
                search(v, K)  # warm-up: page cache and query plans
                round_trip(v)
            # What one call costs without the index: driver, Bolt and the 1408-float parameter.
            bolt_ms = []
            for v in queries:
                t0 = time.perf_counter()
                round_trip(v)
                bolt_ms.append(1000 * (time.perf_counter() - t0))
            latencies, found = [], []
            for v in queries:
                t0 = time.perf_counter()
                found.append(search(v, K))
                latencies.append(1000 * (time.perf_counter() - t0))
            # Neo4j's Lucene HNSW explores about k candidates: asking for more and keeping the
            # best 10 is the usual way to buy recall.
            wide = [search(v, args.neo4j_wide_k)[:K] for v in queries]
            session.close()
            driver.close()
        finally:
            server.stop(data_dir)

    def recall_of(positions: list[list[int]]) -> float:
        # Exact distances of what Neo4j returned (1 - cos on unit vectors), then the usual recall.
        d = np.full(exact_d.shape, np.inf)
        for i, pos in enumerate(positions):
            d[i, : len(pos)] = 1.0 - base[pos] @ queries[i]
        return recall_at_k(np.sort(d, axis=1), exact_d)

    return {
        "vectors": len(base),
        "dim": base.shape[1],
        "similarity": "cosine",
        "heap": args.heap,
        "pagecache": args.pagecache,
        "write_seconds": round(write_s, 1),
        "index_online_seconds": round(index_s, 1),
        "queries": len(queries),
        "latency_ms_median": round(float(np.median(latencies)), 2),
        "latency_ms_p95": round(float(np.percentile(latencies, 95)), 2),
        "round_trip_ms_median_without_index": round(float(np.median(bolt_ms)), 2),
        "recall_at_10": round(recall_of(found), 4),
        f"recall_at_10_asking_{args.neo4j_wide_k}": round(recall_of(wide), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        default="32000,1000000",
        help="comma-separated index sizes (1M x 1408 float32 is 5.6 GB, held twice: data + index)",
    )
    parser.add_argument(
        "--embedding-sizes", default=None, help="sizes for the 1408-D space (default: --sizes)"
    )
    parser.add_argument(
        "--cue-sizes", default=None, help="sizes for the cue space (default: --sizes)"
    )
    parser.add_argument("--cue-dim", type=int, default=CUE_DIM, help="dimension of the cue vectors")
    parser.add_argument("--queries", type=int, default=200, help="evaluation queries (recall)")
    parser.add_argument("--tune-queries", type=int, default=500, help="queries that tune ef")
    parser.add_argument("--qps-queries", type=int, default=2000, help="queries timed on HNSW")
    parser.add_argument("--clusters", type=int, default=256)
    parser.add_argument("--latent", type=int, default=32, help="latent dimension per cluster")
    parser.add_argument("--M", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=200)
    parser.add_argument("--seed", type=int, default=2018)
    parser.add_argument("--neo4j-size", type=int, default=32000, help="0 skips Neo4j")
    parser.add_argument("--neo4j-wide-k", type=int, default=100)
    parser.add_argument("--write-batch", type=int, default=1000)
    parser.add_argument("--heap", default="2g")
    parser.add_argument("--pagecache", default="1g")
    args = parser.parse_args()

    def sizes_of(text: str | None) -> list[int]:
        return [int(s) for s in (text or args.sizes).split(",") if s.strip()]

    machine = describe()
    args.cores = machine["cores"] or 1

    results, kept = [], None
    plan = (
        (EMBEDDING_DIM, "cosine", sizes_of(args.embedding_sizes)),
        (args.cue_dim, "l2", sizes_of(args.cue_sizes)),
    )
    for dim, metric, sizes in plan:
        for size in sizes:
            result, keep = _hnsw_vs_exact(args, dim, metric, size)
            results.append(result)
            kept = keep or kept
    neo4j = None
    if args.neo4j_size:
        if kept is None:
            # Not among --sizes: generate it the same way.
            _, kept = _hnsw_vs_exact(args, EMBEDDING_DIM, "cosine", args.neo4j_size)
        neo4j = _neo4j_vector_index(args, *kept)
        neo4j["hnswlib_qps_same_data"] = next(
            (
                r["hnsw_qps"]
                for r in results
                if r["vectors"] == args.neo4j_size and r["dim"] == 1408
            ),
            None,
        )

    # The target is at 1M; say per space whether the largest size run here meets it.
    at_largest = {
        f"{dim}-D {metric}": {
            "vectors": max(sizes),
            "at_target_size": max(sizes) >= TARGET_SIZE,
            "met": next(
                r["targets_met"] for r in results if r["vectors"] == max(sizes) and r["dim"] == dim
            ),
        }
        for dim, metric, sizes in plan
        if sizes
    }
    report = {
        "benchmark": "similarity index: hnswlib vs exact search, and Neo4j's vector index",
        "data": (
            f"SYNTHETIC: {args.clusters} low-rank gaussian clusters ({args.latent}-D latent), "
            "unit vectors for cosine; queries are fresh draws, not indexed points"
        ),
        "k": K,
        "M": args.M,
        "ef_construction": args.ef_construction,
        "queries": args.queries,
        "tune_queries": args.tune_queries,
        "qps_queries": args.qps_queries,
        "results": results,
        "neo4j_vector_index": neo4j,
        "targets": {
            "recall_at_10": TARGET_RECALL,
            "speedup_vs_exact": TARGET_SPEEDUP,
            "at_vectors": TARGET_SIZE,
        },
        "targets_met_at_largest_size": at_largest,
        "neo4j": server.NEO4J_VERSION,
        "machine": machine,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
