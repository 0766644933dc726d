"""Benchmark: the lesion graph on the real validation split, in a fresh local Neo4j.

Prints one JSON object with the machine and, measured in this one run:

- matching: seconds to match all 703 validation patients and write their tracks (``match``), the
  pure matching time of ours and of the issue's Hungarian baseline, and both scores on the 906
  same-lesion pairs (``evaluate matching``);
- similarity: ``link --space cues`` (k = 10) seconds, SIMILAR_TO edges written per second, the
  tuned ``ef`` and recall@10, and the retrieval figures beside the location baselines
  (``evaluate retrieval``, with LesaNet labels).

    python bench/graph_links.py [--data ../shared/data/deeplesion]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe

from lesionkg.config.settings import Settings
from lesionkg.core.matching import BASELINE, MatchConfig, MatchLesion, match_patient
from lesionkg.core.records import LesionRecord
from lesionkg.db import server
from lesionkg.db.driver import open_driver
from lesionkg.etl.bulk import load_deeplesion
from lesionkg.graph.matching import evaluate_matching, match_graph
from lesionkg.graph.retrieval import evaluate_retrieval
from lesionkg.graph.similarity import link_graph
from lesionkg.loaders.deeplesion import parse_dl_info

REPO = Path(__file__).resolve().parents[1]


def _pure_matching(csv_path: Path) -> dict:
    by_patient = defaultdict(list)
    for r in parse_dl_info(csv_path):
        if isinstance(r, LesionRecord):
            by_patient[r.patient_id].append(
                MatchLesion(
                    r.lesion_id,
                    r.study_index,
                    r.series_id,
                    r.location,
                    r.long_axis_mm,
                    r.coarse_type,
                )
            )
    out = {}
    for name, config in (("ours", MatchConfig()), ("baseline", BASELINE)):
        started = time.perf_counter()
        for rows in by_patient.values():
            match_patient(rows, config)
        out[f"{name}_pure_seconds"] = round(time.perf_counter() - started, 3)
    out["patients"] = len(by_patient)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "deeplesion")
    args = parser.parse_args()
    val = args.data / "dl_info" / "DL_info_val.csv"
    pairs = args.data / "dls" / "dls_valid_pairs.csv"
    labels = args.data / "lesanet" / "lesanet_labels_val_train.csv"
    result: dict = {"machine": describe(), "data": f"real DeepLesion validation split ({val})"}
    with tempfile.TemporaryDirectory(prefix="lesionkg-bench-") as tmp:
        data_dir = Path(tmp) / "neo4j"
        instance = server.start(data_dir, server.free_port(), heap="1g", pagecache="512m")
        try:
            settings = Settings(instance.uri, instance.username, instance.password, "neo4j")
            driver = open_driver(settings)
            try:
                load_deeplesion(driver, val, database="neo4j", progress=False)
                started = time.perf_counter()
                summary = match_graph(driver, database="neo4j", progress=False)
                result["matching"] = {
                    "match_and_write_seconds": round(time.perf_counter() - started, 3),
                    "lesions": summary.lesions,
                    "tracks": summary.tracks,
                    "followed_by_edges": summary.links,
                    **_pure_matching(val),
                    "scores": evaluate_matching(driver, pairs, database="neo4j").as_dict(),
                }
                for space_run in ("first", "rerun"):
                    started = time.perf_counter()
                    linked = link_graph(
                        driver,
                        space="cues",
                        k=10,
                        index_dir=Path(tmp) / "index",
                        database="neo4j",
                        progress=False,
                    )
                    result[f"link_cues_{space_run}"] = {
                        "seconds": round(time.perf_counter() - started, 3),
                        "edges": linked.edges,
                        "similar_to_edges_per_s": linked.edges_per_s,
                        "ef": linked.ef,
                        "recall_at_10": linked.recall_at_10,
                        "index_built": linked.index_built,
                    }
                result["retrieval"] = evaluate_retrieval(
                    driver, space="cues", k=5, labels_path=labels, database="neo4j"
                ).as_dict()
            finally:
                driver.close()
        finally:
            server.stop(data_dir)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
