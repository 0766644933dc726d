"""What an import fixes once in a graph imported before, in the real Neo4j: study dates in clear
are shifted by a per-patient offset from the pseudonym key; location sources that contradict the
image status are rewritten."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from lesionkg.config.secret import load_or_create_secret
from lesionkg.core.provenance import (
    GIVEN,
    LEGACY_NO_IMAGE,
    NO_COORDINATES,
    XY_ONLY,
    contradiction,
)
from lesionkg.core.pseudonym import (
    DATE_SHIFT_MAX_DAYS,
    DATE_SHIFT_MIN_DAYS,
    Pseudonymizer,
    shift_datetime,
)
from lesionkg.etl.importer import EtlOptions, run_etl
from lesionkg.etl.migrations import fix_location_sources, migrate_study_dates

DATABASE = "neo4j"
#: two patients of an old graph, their studies' dates as stored before the migration
OLD_STUDIES = {
    "PX-1": ["2023-12-31", "2024-03-01T10:22:00", "2024-09-01T08:00:00+01:00"],
    "PX-2": ["2019-02-28T23:59:59", "2020-02-29T00:00:00"],
}


def days_between(first: str, second: str) -> int:
    return (date.fromisoformat(second[:10]) - date.fromisoformat(first[:10])).days


# --- pure -----------------------------------------------------------------------------------------


def test_shift_moves_whole_days_and_keeps_time_and_offset() -> None:
    assert shift_datetime("2024-03-01T10:22:00+01:00", -1) == "2024-02-29T10:22:00+01:00"
    assert shift_datetime("2024-01-01", -365) == "2023-01-01"
    assert shift_datetime("2024-03-01T10:22:00.5Z", 3) == "2024-03-04T10:22:00.5Z"
    assert shift_datetime(None, -10) is None


def test_each_patient_has_its_own_offset_from_the_key(tmp_path: Path) -> None:
    one = Pseudonymizer(load_or_create_secret(tmp_path / "one.key"))
    other = Pseudonymizer(load_or_create_secret(tmp_path / "other.key"))
    ids = [one.patient_id(f"PX-{i}") for i in range(200)]
    shifts = [one.date_shift_days(pid) for pid in ids]
    assert all(-DATE_SHIFT_MAX_DAYS <= s <= -DATE_SHIFT_MIN_DAYS for s in shifts)
    assert len(set(shifts)) > 150  # spread over about three years
    assert shifts == [one.date_shift_days(pid) for pid in ids]  # the same in every run
    assert sum(a != b for a, b in zip(shifts, map(other.date_shift_days, ids), strict=True)) > 190


# --- the migration of an old graph ---------------------------------------------------------------


def write_old_graph(driver, pseudonymizer: Pseudonymizer) -> dict[str, str]:
    """A graph as imports before date shifting left it: PACS studies with their dates in clear,
    the key node from before its `scope` property, and a DeepLesion patient without dates.
    Returns the study id of each old date."""
    study_of: dict[str, str] = {}
    rows = []
    for patient, dates in OLD_STUDIES.items():
        pid = pseudonymizer.patient_id(patient)
        for index, when in enumerate(dates, 1):
            sid = pseudonymizer.study_id(patient, f"1.2.3.{index}")
            study_of[when] = sid
            rows.append({"pid": pid, "sid": sid, "when": when, "index": index})
    driver.execute_query(
        "UNWIND $rows AS row MERGE (p:Patient {patient_id: row.pid}) SET p.dataset = 'PACS' "
        "CREATE (p)-[:HAS_STUDY]->(:Study {study_id: row.sid, patient_id: row.pid, "
        "study_datetime: row.when, study_index: row.index})",
        rows=rows,
        database_=DATABASE,
    )
    driver.execute_query(
        "CREATE (:PseudonymKey {key_id: $key_id}) "
        "CREATE (p:Patient {patient_id: '000042', dataset: 'DeepLesion'})"
        "-[:HAS_STUDY]->(:Study {study_id: '000042_01', patient_id: '000042', study_index: 1})",
        key_id=pseudonymizer.key_id,
        database_=DATABASE,
    )
    return study_of


def stored_dates(driver) -> dict[str, str | None]:
    records, _, _ = driver.execute_query(
        "MATCH (s:Study) RETURN s.study_id AS sid, s.study_datetime AS when", database_=DATABASE
    )
    return {r["sid"]: r["when"] for r in records}


@pytest.mark.neo4j
def test_migration_shifts_every_date_keeps_intervals_and_runs_once(
    empty_graph, tmp_path: Path
) -> None:
    pseudonymizer = Pseudonymizer(load_or_create_secret(tmp_path / "pseudonym.key"))
    study_of = write_old_graph(empty_graph, pseudonymizer)
    assert migrate_study_dates(empty_graph, DATABASE, pseudonymizer) == 5
    after = stored_dates(empty_graph)
    for patient, dates in OLD_STUDIES.items():
        shift = pseudonymizer.date_shift_days(pseudonymizer.patient_id(patient))
        moved = [after[study_of[when]] for when in dates]
        # Every stored date changed, by the patient's whole days; time and offset kept.
        assert moved == [shift_datetime(when, shift) for when in dates]
        assert all(new != old for new, old in zip(moved, dates, strict=True))
        assert [m[10:] for m in moved] == [d[10:] for d in dates]
        # The patient's intervals are exact.
        assert [days_between(moved[0], m) for m in moved] == [
            days_between(dates[0], d) for d in dates
        ]
    assert after["000042_01"] is None  # DeepLesion rows have no dates
    records, _, _ = empty_graph.execute_query(
        "MATCH (k:PseudonymKey) RETURN k.scope AS scope, k.dates_shifted AS shifted",
        database_=DATABASE,
    )
    assert {"scope": "graph", "shifted": True} in [dict(r) for r in records]
    # Running it again changes nothing.
    assert migrate_study_dates(empty_graph, DATABASE, pseudonymizer) == 0
    assert stored_dates(empty_graph) == after


@pytest.mark.neo4j
def test_an_import_migrates_first_and_orders_the_new_study_among_the_old(
    empty_graph, tmp_path: Path
) -> None:
    key = tmp_path / "pseudonym.key"
    pseudonymizer = Pseudonymizer(load_or_create_secret(key))
    study_of = write_old_graph(empty_graph, pseudonymizer)
    export = tmp_path / "export"
    export.mkdir()
    # PX-1's study of 2024-06-15 arrives late: it belongs between its 2nd and 3rd studies.
    line = {
        "patient": "PX-1",
        "study": "1.2.3.9",
        "study_time": "2024-06-15T09:00:00",
        "image": "images/0001.png",
        "long_axis_px": [10, 10, 40, 10],
        "spacing_mm": [0.8, 0.8],
    }
    (export / "late.jsonl").write_text(json.dumps(line) + "\n", encoding="utf-8")
    options = EtlOptions(secret_path=key, index_dir=tmp_path / "index", allow_missing_images=True)
    summary = run_etl(empty_graph, [export], database=DATABASE, options=options, progress=False)
    assert (summary.accepted, summary.rejected) == (1, 0)
    after = stored_dates(empty_graph)
    records, _, _ = empty_graph.execute_query(
        "MATCH (s:Study {patient_id: $pid}) RETURN s.study_id AS sid, s.study_index AS i, "
        "s.study_datetime AS when ORDER BY i",
        pid=pseudonymizer.patient_id("PX-1"),
        database_=DATABASE,
    )
    late = pseudonymizer.study_id("PX-1", "1.2.3.9")
    old = [study_of[d] for d in OLD_STUDIES["PX-1"]]
    assert [r["sid"] for r in records] == [old[0], old[1], late, old[2]]
    assert [r["i"] for r in records] == [1, 2, 3, 4]
    # The late study is stored shifted by the same days as the migrated ones.
    assert days_between(after[old[1]], after[late]) == days_between("2024-03-01", "2024-06-15")
    assert after[late] != "2024-06-15T09:00:00"
    # A second import migrates nothing again.
    run_etl(empty_graph, [export], database=DATABASE, options=options, progress=False)
    assert stored_dates(empty_graph) == after


@pytest.mark.neo4j
def test_an_import_fixes_location_sources_that_contradict_the_image_status(
    empty_graph, tmp_path: Path
) -> None:
    # An old graph: an ellipse on a found image was written as "no image"; the others were right.
    old = [
        ("L-ellipse", "found", LEGACY_NO_IMAGE),
        ("L-missing", "missing", LEGACY_NO_IMAGE),
        ("L-line", "found", XY_ONLY),
        ("L-deeplesion", None, GIVEN),
    ]
    empty_graph.execute_query(
        "UNWIND $rows AS row CREATE (:Lesion {lesion_id: row[0], image_status: row[1], "
        "location_source: row[2]})",
        rows=[list(r) for r in old],
        database_=DATABASE,
    )
    empty = tmp_path / "nothing_new"
    empty.mkdir()
    options = EtlOptions(secret_path=tmp_path / "pseudonym.key", index_dir=tmp_path / "index")
    run_etl(empty_graph, [empty], database=DATABASE, options=options, progress=False)
    records, _, _ = empty_graph.execute_query(
        "MATCH (l:Lesion) RETURN l.lesion_id AS id, l.image_status AS status, "
        "l.location_source AS source ORDER BY id",
        database_=DATABASE,
    )
    after = {r["id"]: (r["status"], r["source"]) for r in records}
    assert after == {
        "L-deeplesion": (None, GIVEN),
        "L-ellipse": ("found", NO_COORDINATES),
        "L-line": ("found", XY_ONLY),
        "L-missing": ("missing", LEGACY_NO_IMAGE),
    }
    assert all(contradiction(*pair) is None for pair in after.values())
    # Done once, marked on the graph's key node: later imports do not scan the lesions again.
    records, _, _ = empty_graph.execute_query(
        "MATCH (k:PseudonymKey {scope: 'graph'}) RETURN k.location_sources_fixed AS fixed",
        database_=DATABASE,
    )
    assert [r["fixed"] for r in records] == [True]
    assert fix_location_sources(empty_graph, DATABASE) == 0
