"""Concurrent imports (issue 15): several real ``lesionkg etl`` processes over files of the same
SYNTHETIC patients end in the graph a serial run gives (study order, tracks, one pseudonym key),
and each run's summary counts only what it really added; two first imports with different keys:
one is refused and writes nothing."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lesionkg.db.schema import reset

pytestmark = [pytest.mark.neo4j, pytest.mark.slow]
DATABASE = "neo4j"
PROCESSES = 4
PATIENTS = 24


def etl_env(settings, home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "NEO4J_URI": settings.uri,
        "NEO4J_USERNAME": settings.username,
        "NEO4J_PASSWORD": settings.password,
        "LESIONKG_HOME": str(home),
    }


def etl_command(folders: list[Path], key: Path, index_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "lesionkg.cli",
        "etl",
        *map(str, folders),
        "--allow-missing-images",
        "--secret",
        str(key),
        "--index-dir",
        str(index_dir),
        "--format",
        "json",
        "--quiet",
    ]


def graph_hash(driver) -> tuple[str, dict[str, int]]:
    """A hash of what a serial and a concurrent import must agree on: every study's index and
    time, every lesion's study index and track, every FOLLOWED_BY edge; and the counts."""
    studies, _, _ = driver.execute_query(
        "MATCH (p:Patient)-[:HAS_STUDY]->(s:Study) RETURN p.patient_id AS p, s.study_id AS s, "
        "s.study_index AS i, s.study_datetime AS t ORDER BY s",
        database_=DATABASE,
    )
    lesions, _, _ = driver.execute_query(
        "MATCH (s:Study)-[:HAS_LESION]->(l:Lesion) RETURN s.study_id AS s, l.lesion_id AS l, "
        "l.study_index AS i, l.track_id AS track ORDER BY l",
        database_=DATABASE,
    )
    edges, _, _ = driver.execute_query(
        "MATCH (a:Lesion)-[r:FOLLOWED_BY]->(b:Lesion) RETURN a.lesion_id AS a, b.lesion_id AS b, "
        "round(r.score, 6) AS score, r.same_study AS same, r.by AS by ORDER BY a, b",
        database_=DATABASE,
    )
    found, _, _ = driver.execute_query(
        "CALL () { MATCH (p:Patient) RETURN 'Patient' AS k, count(p) AS n "
        "UNION ALL MATCH (s:Study) RETURN 'Study' AS k, count(s) AS n "
        "UNION ALL MATCH (l:Lesion) RETURN 'Lesion' AS k, count(l) AS n "
        "UNION ALL MATCH (k:PseudonymKey) RETURN 'PseudonymKey' AS k, count(k) AS n "
        "UNION ALL MATCH ()-[r:FOLLOWED_BY]->() RETURN 'FOLLOWED_BY' AS k, count(r) AS n } "
        "RETURN k, n",
        database_=DATABASE,
    )
    text = json.dumps(
        [[dict(r) for r in rows] for rows in (studies, lesions, edges)], sort_keys=True
    )
    return hashlib.sha256(text.encode()).hexdigest(), {r["k"]: r["n"] for r in found}


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> tuple[Path, list[Path]]:
    """A SYNTHETIC export (one JSON Lines file per study) dealt round-robin into four folders,
    so that every process imports studies of the same patients; each folder also holds a copy
    of a few files of the next one (the same bookmarks imported twice, concurrently)."""
    from lesionkg.synthetic.bookmarks import write_synthetic_bookmarks

    root = tmp_path_factory.mktemp("concurrent_export")
    write_synthetic_bookmarks(root / "all", patients=PATIENTS, seed=11, tracking_uids=True)
    files = sorted((root / "all").glob("*.jsonl"))
    folders = [root / f"part{i}" for i in range(PROCESSES)]
    for folder in folders:
        folder.mkdir()
        shutil.copy(root / "all" / "SYNTHETIC.json", folder / "SYNTHETIC.json")
    for i, path in enumerate(files):
        shutil.copy(path, folders[i % PROCESSES] / path.name)
        if i % 7 == 0:
            shutil.copy(path, folders[(i + 1) % PROCESSES] / f"copy_{path.name}")
    return root, folders


def test_four_concurrent_imports_give_the_serial_graph(
    empty_graph, settings, export, tmp_path: Path
) -> None:
    _, folders = export
    key = tmp_path / "pseudonym.key"
    env = etl_env(settings, tmp_path / "home")

    serial = subprocess.run(
        etl_command(folders, key, tmp_path / "index_serial"),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert serial.returncode == 0, serial.stderr[-2000:]
    serial_summary = json.loads(serial.stdout)
    expected_hash, expected_counts = graph_hash(empty_graph)
    assert expected_counts["PseudonymKey"] == 1
    assert expected_counts["Patient"] == PATIENTS
    assert serial_summary["accepted"] == expected_counts["Lesion"]

    reset(empty_graph, DATABASE)
    runs = [
        subprocess.Popen(
            etl_command([folder], key, tmp_path / f"index_{i}"),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, folder in enumerate(folders)
    ]
    outputs = [run.communicate(timeout=600) for run in runs]
    for run, (_, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err[-2000:]
    summaries = [json.loads(out) for out, _ in outputs]

    found_hash, found_counts = graph_hash(empty_graph)
    assert found_counts == expected_counts
    assert found_hash == expected_hash
    # Each run counts what it really added: together, every lesion once; the copies that two
    # runs imported at the same time are one run's accepted and the other's duplicates.
    assert sum(s["accepted"] for s in summaries) == expected_counts["Lesion"]
    assert sum(s["duplicates"] for s in summaries) == serial_summary["duplicates"]


def test_two_first_imports_with_different_keys_one_is_refused(
    empty_graph, settings, export, tmp_path: Path
) -> None:
    root, _ = export
    env = etl_env(settings, tmp_path / "home")
    keys = [tmp_path / "key_a", tmp_path / "key_b"]
    runs = [
        subprocess.Popen(
            etl_command([root / "all"], key, tmp_path / f"index_{i}"),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, key in enumerate(keys)
    ]
    outputs = [run.communicate(timeout=600) for run in runs]
    codes = sorted(run.returncode for run in runs)
    assert codes == [0, 1], [err[-1500:] for _, err in outputs]
    loser = next(i for i, run in enumerate(runs) if run.returncode == 1)
    err = outputs[loser][1]
    assert "Error: " in err and "pseudonymisation key" in err and "Traceback" not in err
    # Nothing of the refused run: one key, each patient once, every lesion the winner's.
    _, found = graph_hash(empty_graph)
    assert found["PseudonymKey"] == 1
    assert found["Patient"] == PATIENTS
    winner = json.loads(outputs[1 - loser][0])
    assert found["Lesion"] == winner["accepted"]
    from lesionkg.config.secret import load_or_create_secret
    from lesionkg.core.pseudonym import Pseudonymizer

    records, _, _ = empty_graph.execute_query(
        "MATCH (k:PseudonymKey) RETURN k.key_id AS key_id", database_=DATABASE
    )
    assert records[0]["key_id"] == Pseudonymizer(load_or_create_secret(keys[1 - loser])).key_id
