"""Study order across imports (issue 12, item 4): a patient's studies are numbered from what the
graph holds, inside the write transaction, and a study given by two reports in two runs is one
study with one place in the order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lesionkg.etl.importer import EtlOptions, run_etl
from lesionkg.etl.transaction import study_order

DATABASE = "neo4j"


def test_a_study_given_twice_with_two_times_counts_once_at_its_first_time() -> None:
    order = study_order(
        [
            ("S2", "2024-05-01T10:00:00"),
            ("S1", "2024-01-01"),
            ("S2", "2024-05-01"),  # the same study, its time written another way
        ]
    )
    assert order == {"S1": 1, "S2": 2}


def test_a_study_without_a_stored_time_takes_the_time_given_later() -> None:
    assert study_order([("S2", None), ("S1", "2024-01-01"), ("S2", "2024-06-01")]) == {
        "S1": 1,
        "S2": 2,
    }


def _bookmark(study: str, when: str, x: float) -> dict:
    return {
        "patient": "SYNTHETIC-ORDER-1",
        "study": study,
        "study_time": when,
        "series": "1",
        "image": f"missing/{study}/{int(x)}.png",
        "long_axis_px": [x, 100.0, x + 20.0, 110.0],
        "spacing_mm": [0.8, 0.8],
        "type": "liver",
    }


def _write(path: Path, *bookmarks: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(b) + "\n" for b in bookmarks))
    return path


def _studies(driver) -> list[tuple]:
    records, _, _ = driver.execute_query(
        "MATCH (p:Patient)-[:HAS_STUDY]->(s:Study) OPTIONAL MATCH (s)-[:HAS_LESION]->(l:Lesion) "
        "RETURN s.study_index AS study_index, count(l) AS lesions, "
        "collect(DISTINCT l.study_index) AS lesion_index ORDER BY study_index",
        database_=DATABASE,
    )
    return [(r["study_index"], r["lesions"], r["lesion_index"]) for r in records]


@pytest.mark.neo4j
def test_two_reports_of_one_study_in_two_runs_give_one_study_index(
    empty_graph, tmp_path: Path
) -> None:
    options = EtlOptions(
        allow_missing_images=True,
        secret_path=tmp_path / "pseudonym.key",
        index_dir=tmp_path / "index",
    )
    # Run 1: the follow-up study's first report. Run 2: its second report (the time written as a
    # date only, as another exporter does) and the patient's baseline, dated earlier.
    first = _write(
        tmp_path / "a" / "followup_report1.jsonl", _bookmark("ST-2", "2024-05-01T10:00", 50)
    )
    second = _write(tmp_path / "b" / "followup_report2.jsonl", _bookmark("ST-2", "2024-05-01", 200))
    baseline = _write(tmp_path / "b" / "baseline.jsonl", _bookmark("ST-1", "2024-01-10T09:00", 60))
    run_etl(empty_graph, [first], database=DATABASE, options=options, progress=False)
    summary = run_etl(
        empty_graph, [second, baseline], database=DATABASE, options=options, progress=False
    )
    assert summary.accepted == 2
    # Two studies, numbered 1 and 2, each study's lesions carrying its index.
    assert _studies(empty_graph) == [(1, 1, [1]), (2, 2, [2])]
    # The follow-up's two reports are one study; its stored time is the first one given.
    records, _, _ = empty_graph.execute_query(
        "MATCH (s:Study {study_index: 2}) RETURN s.study_datetime AS t", database_=DATABASE
    )
    assert len(records) == 1 and records[0]["t"].endswith("10:00:00")


@pytest.mark.neo4j
def test_an_earlier_study_imported_later_renumbers_the_stored_ones(
    empty_graph, tmp_path: Path
) -> None:
    options = EtlOptions(
        allow_missing_images=True,
        secret_path=tmp_path / "pseudonym.key",
        index_dir=tmp_path / "index",
    )
    late = _write(tmp_path / "late.jsonl", _bookmark("ST-9", "2023-09-01T08:00", 70))
    early = _write(tmp_path / "early.jsonl", _bookmark("ST-8", "2023-02-01T08:00", 80))
    run_etl(empty_graph, [late], database=DATABASE, options=options, progress=False)
    assert _studies(empty_graph) == [(1, 1, [1])]
    run_etl(empty_graph, [early], database=DATABASE, options=options, progress=False)
    assert _studies(empty_graph) == [(1, 1, [1]), (2, 1, [2])]
