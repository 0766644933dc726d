"""Hardening of the database layer and of re-imports (issue 15): --param values that Neo4j cannot
take are refused with the parameter named, a database that does not exist is an error (not a
traceback), and a re-imported JSON Lines bookmark that changes a known value is refused or, under
--update, applied and reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lesionkg.core.errors import QueryError
from lesionkg.db.statements import Param, bind_params, convert_param, json_param, query
from lesionkg.etl.importer import EtlOptions, run_etl

DATABASE = "neo4j"
HUGE = "12345678901234567890123"


@pytest.mark.parametrize("ptype", ["INTEGER", "LIST<INTEGER>"])
def test_integer_params_beyond_64_bits_are_refused_by_name(ptype: str) -> None:
    with pytest.raises(QueryError, match=r"parameter n: expected .*beyond 64 bits"):
        convert_param(Param("n", ptype, None, ""), HUGE if ptype == "INTEGER" else f"1,{HUGE}")
    assert convert_param(Param("n", "INTEGER", None, ""), str(2**63 - 1)) == 2**63 - 1
    assert convert_param(Param("n", "INTEGER", None, ""), str(-(2**63))) == -(2**63)


def test_bind_params_refuses_an_overflowing_named_query_param() -> None:
    with pytest.raises(QueryError, match="parameter coarse_type"):
        bind_params(query("lesions_by_type_and_size"), {"coarse_type": HUGE})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("[" * 3000 + "]" * 3000, "parameter x: JSON nested 3000 deep"),
        ('{"a": ' * 100 + "1" + "}" * 100, "parameter x: JSON nested 100 deep"),
        (HUGE, "parameter x: integer"),
        (f'{{"a": [1, {HUGE}]}}', "parameter x: integer"),
    ],
)
def test_json_params_too_deep_or_too_big_are_refused_by_name(raw: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        json_param("x", raw)


def test_json_params_that_are_fine_pass() -> None:
    assert json_param("x", '{"a": [1, 2.5, "["]}') == {"a": [1, 2.5, "["]}
    assert json_param("x", "not json") == "not json"
    assert json_param("x", "[" * 10 + "]" * 10) == [[[[[[[[[[]]]]]]]]]]


def _cli(settings, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "NEO4J_URI": settings.uri,
        "NEO4J_USERNAME": settings.username,
        "NEO4J_PASSWORD": settings.password,
    }
    return subprocess.run(
        [sys.executable, "-m", "lesionkg.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "args",
    [
        ["db", "stats"],
        ["query", "type_distribution"],
        ["cypher", "RETURN 1"],
    ],
)
def test_a_database_that_does_not_exist_is_an_error_not_a_traceback(settings, args) -> None:
    done = _cli(settings, "--database", "nosuchdb", *args)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "Error: " in done.stderr and "database 'nosuchdb' does not exist" in done.stderr


def test_cypher_param_too_deep_or_too_big_is_an_error_not_a_traceback(settings) -> None:
    for value in ("[" * 3000 + "]" * 3000, HUGE):
        done = _cli(settings, "cypher", "RETURN $x AS x", "--param", f"x={value}")
        assert done.returncode == 1, done.stderr[-500:]
        assert "Traceback" not in done.stderr and "Error: parameter x" in done.stderr


# --- conflicts of re-imported JSON Lines bookmarks ---

BOOKMARK = {
    "patient": "SYNTHETIC-CONFLICT-1",
    "study": "ST-1",
    "study_time": "2024-03-01T10:22:00",
    "series": "3",
    "image": "missing/0162.png",
    "long_axis_px": [238.3, 261.2, 235.9, 268.6],
    "spacing_mm": [0.82, 0.82],
    "type": "liver",
    "location": [0.55, 0.43, 0.62],
    "window_hu": [-175, 275],
}


def _lesion(driver) -> dict:
    records, _, _ = driver.execute_query(
        "MATCH (l:Lesion)-[:OF_TYPE]->(t:LesionType) RETURN l {.*} AS l, t.code AS code",
        database_=DATABASE,
    )
    assert len(records) == 1
    return {**records[0]["l"], "of_type": records[0]["code"]}


@pytest.mark.parametrize(
    ("field", "value", "stored_field"),
    [
        ("type", "lung", "coarse_type"),
        ("location", [0.25, 0.43, 0.62], "location"),
        ("window_hu", [-1350, 150], "window"),
        ("series", "4", "series_id"),
    ],
)
def test_a_reimported_bookmark_that_changes_a_value_is_refused_or_updated(
    empty_graph, tmp_path: Path, field: str, value, stored_field: str
) -> None:
    options = EtlOptions(
        allow_missing_images=True, secret_path=tmp_path / "key", index_dir=tmp_path / "index"
    )
    first = tmp_path / "first.jsonl"
    first.write_text(json.dumps(BOOKMARK) + "\n")
    assert (
        run_etl(empty_graph, [first], database=DATABASE, options=options, progress=False).accepted
        == 1
    )
    before = _lesion(empty_graph)
    changed = tmp_path / "changed.jsonl"
    changed.write_text(json.dumps({**BOOKMARK, field: value}) + "\n")

    refused = run_etl(empty_graph, [changed], database=DATABASE, options=options, progress=False)
    assert (refused.rejected_files, refused.accepted, refused.duplicates) == (1, 0, 0)
    [problem] = refused.reports[0].problems
    assert problem.column == stored_field
    assert repr(before[stored_field]) in problem.reason and "this file gives" in problem.reason
    assert _lesion(empty_graph) == before

    update = EtlOptions(
        allow_missing_images=True,
        secret_path=tmp_path / "key",
        index_dir=tmp_path / "index",
        update=True,
    )
    applied = run_etl(empty_graph, [changed], database=DATABASE, options=update, progress=False)
    assert applied.updated == {stored_field: 1} and applied.rejected_files == 0
    assert "updated (--update)" in applied.describe()
    after = _lesion(empty_graph)
    assert after[stored_field] != before[stored_field]
    if field == "type":
        assert after["of_type"] == after["coarse_type"] == 5 and after["coarse_type_name"] == "lung"
    if field in ("location", "window_hu"):
        assert after["cues"] != before["cues"]
    # The same file again: a plain duplicate now.
    again = run_etl(empty_graph, [changed], database=DATABASE, options=options, progress=False)
    assert (again.duplicates, again.rejected_files, again.updated) == (1, 0, {})
