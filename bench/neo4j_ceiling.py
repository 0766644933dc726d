"""Benchmark: how fast can this machine's Neo4j write lesion-shaped nodes with no client at all?

Generates lesion-shaped data *inside* Neo4j (``UNWIND range(...)``, no Bolt parameters, no
Python) with the same schema, properties, relationships and transaction size as
``lesionkg load deeplesion``, and prints nodes/s as JSON. It is the ceiling any Bolt loader on
this machine can approach; compare with ``bench/load_deeplesion.py`` run on the same machine.

    python bench/load_deeplesion.py --patients 14000 && python bench/neo4j_ceiling.py
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe

from lesionkg.config.settings import Settings
from lesionkg.db import server
from lesionkg.db.driver import open_driver
from lesionkg.db.schema import apply_schema

# One transaction: 700 patients, 1,400 studies and 4,200 lesions, about one loader batch.
BATCH = """
UNWIND range($first, $first + 699) AS p
CREATE (pt:Patient {patient_id: 'P' + p, sex: 'F', dataset: 'ceiling'})
WITH pt, p
UNWIND range(0, 1) AS k
CREATE (pt)-[:HAS_STUDY]->(s:Study {study_id: pt.patient_id + '_' + k, patient_id: pt.patient_id,
                                   study_index: k + 1, patient_age: 60.0})
WITH s, p, k
UNWIND range(0, 2) AS j
WITH s, p * 10 + k * 3 + j AS n
CREATE (s)-[:HAS_LESION]->(l:Lesion {
  lesion_id: 'L' + n, dataset: 'ceiling', patient_id: s.patient_id, study_id: s.study_id,
  study_index: s.study_index, series_id: 1, file_name: 'f' + n + '.png', key_slice: 100,
  recist: [1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.5], bbox: [1.0, 2.0, 30.0, 40.0],
  diameters_px: [20.0, 10.0], long_axis_mm: 17.0 + n % 50, short_axis_mm: 9.0,
  location: [0.5, 0.4, 0.6], coarse_type: 1 + n % 8, coarse_type_name: 'x', noisy: false,
  split: 'val', slice_range: [90, 110], spacing_mm: [0.8, 0.8, 5.0], image_size: [512, 512],
  window: [-175.0, 275.0]})
WITH l
MATCH (t:LesionType {code: l.coarse_type})
CREATE (l)-[:OF_TYPE]->(t)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40, help="transactions of ~4,200 lesions")
    parser.add_argument("--heap", default="2g")
    parser.add_argument("--pagecache", default="2g")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lesionkg-ceiling-") as tmp:
        data_dir = Path(tmp) / "neo4j"
        instance = server.start(
            data_dir, server.free_port(), heap=args.heap, pagecache=args.pagecache
        )
        try:
            driver = open_driver(Settings(instance.uri, instance.username, instance.password))
            apply_schema(driver, "neo4j")
            started = time.perf_counter()
            for b in range(args.batches):
                driver.execute_query(BATCH, first=b * 700, database_="neo4j")
            seconds = time.perf_counter() - started
            counted, _, _ = driver.execute_query("MATCH (l:Lesion) RETURN count(l) AS n")
            lesions = counted[0]["n"]
            driver.close()
        finally:
            server.stop(data_dir)
    print(
        json.dumps(
            {
                "benchmark": "Neo4j-only ceiling: lesion-shaped writes generated server-side",
                "neo4j": server.NEO4J_VERSION,
                "lesions": lesions,
                "seconds": round(seconds, 1),
                "lesions_per_s": round(lesions / seconds, 1),
                "machine": describe(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
