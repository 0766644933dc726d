"""Tracks on the real validation split in the real Neo4j: rules, re-runs, and the evaluation."""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict

import pytest
from click.testing import CliRunner
from conftest import DATABASE, GraphState

from lesionkg.cli import main
from lesionkg.core.errors import QueryError
from lesionkg.core.matching import match_patient
from lesionkg.db.schema import counts, reset
from lesionkg.db.statements import statement
from lesionkg.etl.bulk import load_deeplesion
from lesionkg.graph.matching import evaluate_matching, match_graph, read_match_lesions, track_rows

pytestmark = pytest.mark.neo4j


@pytest.fixture
def tracked_val(driver, val_csv):
    """The real validation split with tracks; tests may re-run matching but add nothing else."""
    if GraphState.content != "val-tracked":
        reset(driver, DATABASE)
        load_deeplesion(driver, val_csv, database=DATABASE, progress=False)
        match_graph(driver, database=DATABASE, progress=False)
        GraphState.content = "val-tracked"
    return driver


def rows(driver, text, **params):
    records, _, _ = driver.execute_query(text, parameters_=params, database_=DATABASE)
    return [dict(r) for r in records]


def test_every_lesion_has_a_track_and_edges_obey_the_rules(tracked_val):
    assert (
        rows(tracked_val, "MATCH (l:Lesion) WHERE l.track_id IS NULL RETURN count(l) AS n")[0]["n"]
        == 0
    )
    bad = rows(
        tracked_val,
        """
        MATCH (a:Lesion)-[f:FOLLOWED_BY]->(b:Lesion)
        WHERE a.patient_id <> b.patient_id OR a.track_id <> b.track_id
           OR NOT [a.study_index, a.series_id] < [b.study_index, b.series_id]
           OR f.same_study <> (a.study_index = b.study_index)
           OR NOT 0.0 <= f.score <= 1.0
        RETURN count(f) AS n
        """,
    )
    assert bad[0]["n"] == 0
    shared = rows(
        tracked_val,
        """
        MATCH (l:Lesion)
        WITH l.track_id AS track, l.study_index AS study, l.series_id AS series, count(*) AS n
        WHERE n > 1
        RETURN count(*) AS n
        """,
    )
    assert shared[0]["n"] == 0
    # a track of n measurements has n - 1 links: a chain, no branches
    chains = rows(
        tracked_val,
        """
        MATCH (l:Lesion)
        WITH l.track_id AS track, count(*) AS n
        OPTIONAL MATCH (a:Lesion {track_id: track})-[f:FOLLOWED_BY]->()
        WITH track, n, count(f) AS links
        WHERE links <> n - 1
        RETURN count(*) AS n
        """,
    )
    assert chains[0]["n"] == 0


def test_rerunning_match_changes_nothing(tracked_val):
    before = counts(tracked_val, DATABASE)
    tracks_before = rows(tracked_val, "MATCH (l:Lesion) RETURN l.lesion_id AS id, l.track_id AS t")
    summary = match_graph(tracked_val, database=DATABASE, progress=False)
    assert counts(tracked_val, DATABASE) == before
    assert before["FOLLOWED_BY"] == summary.links > 1000
    # DeepLesion has no tracking UIDs: every link is inferred
    assert (summary.reader_links, summary.reader_conflicts) == (0, 0)
    assert summary.reader_agreement == {"pairs": 0, "agree": 0, "disagree": 0}
    by = rows(tracked_val, "MATCH ()-[f:FOLLOWED_BY]->() RETURN f.by AS by, count(*) AS n")
    assert by == [{"by": "matching", "n": summary.links}]
    assert rows(tracked_val, "MATCH (l:Lesion) RETURN l.lesion_id AS id, l.track_id AS t") == (
        tracks_before
    )


def test_match_one_patient_replaces_only_its_edges(tracked_val, cli_args):
    patient = "000569"  # 19 studies, several series per study
    mine = "MATCH (a:Lesion {patient_id: $p})-[f:FOLLOWED_BY]->() RETURN count(f) AS n"
    total = counts(tracked_val, DATABASE)["FOLLOWED_BY"]
    n = rows(tracked_val, mine, p=patient)[0]["n"]
    result = CliRunner().invoke(
        main, [*cli_args, "match", "--patient", patient, "--quiet", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["patients"] == 1
    assert rows(tracked_val, mine, p=patient)[0]["n"] == n > 10
    assert counts(tracked_val, DATABASE)["FOLLOWED_BY"] == total


def test_match_unknown_patient_is_an_error(tracked_val, cli_args):
    result = CliRunner().invoke(main, [*cli_args, "match", "--patient", "999999"])
    assert result.exit_code == 1
    assert "no lesions of patient '999999'" in result.output


def _independent_scores(driver, pairs_csv):
    """Recall and precision from the CSV and the stored track ids, with no LesionKG code."""
    lesions = rows(
        driver,
        "MATCH (l:Lesion) RETURN l.lesion_id AS id, l.file_name AS f, l.long_axis_mm AS long, "
        "l.short_axis_mm AS short, l.track_id AS t, l.patient_id AS p, l.study_index AS s, "
        "l.series_id AS se",
    )
    on_file = defaultdict(list)
    where = {}
    for r in lesions:
        on_file[r["f"]].append(r)
        where[(r["t"], r["p"], r["s"], r["se"])] = where.get((r["t"], r["p"], r["s"], r["se"]), [])
        where[(r["t"], r["p"], r["s"], r["se"])].append(r["id"])

    def find(name, diam):
        long_mm, short_mm = (float(x) for x in diam.split(";"))
        return min(
            on_file[name], key=lambda r: abs(r["long"] - long_mm) + abs(r["short"] - short_mm)
        )

    hits = wrongs = total = 0
    with open(pairs_csv, newline="") as fh:
        for row in csv.DictReader(fh):
            total += 1
            a = find(row["source_File_name"], row["source_recist_diameter_mm"])
            b = find(row["target_File_name"], row["target_recist_diameter_mm"])
            there = where.get((a["t"], b["p"], b["s"], b["se"]), [])
            hits += there == [b["id"]]
            wrongs += bool(there) and there != [b["id"]]
    return hits / total, hits / (hits + wrongs)


def test_evaluate_matching_is_reproduced_independently(tracked_val, cli_args, deeplesion_dir):
    pairs_csv = deeplesion_dir / "dls" / "dls_valid_pairs.csv"
    result = CliRunner().invoke(
        main, [*cli_args, "evaluate", "matching", "--pairs", str(pairs_csv), "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    recall, precision = _independent_scores(tracked_val, pairs_csv)
    assert report["pairs"] == 906 and report["unresolved"] == []
    assert report["reader_agreement"] == {"pairs": 0, "agree": 0, "disagree": 0}
    assert report["ours"]["recall"] == pytest.approx(recall, abs=1e-4)
    assert report["ours"]["precision"] == pytest.approx(precision, abs=1e-4)
    # the baseline, computed in the same run, is worse on both
    assert report["baseline"]["recall"] <= report["ours"]["recall"]
    assert report["baseline"]["precision"] < report["ours"]["precision"]
    text = CliRunner().invoke(main, [*cli_args, "evaluate", "matching", "--pairs", str(pairs_csv)])
    assert "baseline (Hungarian, loc)" in text.output and "NOT met" in text.output


def test_evaluate_matching_bad_pairs_file_names_line_and_column(tracked_val, cli_args, tmp_path):
    bad = tmp_path / "pairs.csv"
    bad.write_text(
        "source_File_name,target_File_name,source_recist_diameter_mm,target_recist_diameter_mm\n"
        "000004_02_01_013.png,000004_03_01_008.png,34.4;29.3,21.7\n"
    )
    result = CliRunner().invoke(main, [*cli_args, "evaluate", "matching", "--pairs", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}, line 2, column target_recist_diameter_mm" in result.output
    assert "nothing was evaluated" in result.output


# --- PACS bookmarks: string series ids, x, y only, no location, the readers' tracking UIDs ------

PACS_LESIONS = """
UNWIND $rows AS r
CREATE (l:Lesion {lesion_id: r.id, patient_id: r.patient, study_index: r.study,
                  series_id: r.series, long_axis_mm: r.long, short_axis_mm: r.long / 2,
                  file_name: r.id + '.png'})
SET l.location_xy = r.xy, l.location = r.xyz, l.tracking_uid = r.uid
"""


def pacs_lesion(lid, patient, study, series, *, xy=None, xyz=None, uid=None, long=20.0) -> dict:
    return {
        "id": lid,
        "patient": patient,
        "study": study,
        "series": series,
        "xy": xy,
        "xyz": xyz,
        "uid": uid,
        "long": long,
    }


@pytest.fixture
def pacs_graph(empty_graph):
    """Three patients written with plain Cypher, as the PACS ETL stores them:

    - PX-A: string series ids, x, y only; by location a1-b1 and a2-b2, but the readers' UIDs say
      a1-b2 and a2-b1; a3-b3 without UIDs; b4 without any location;
    - PX-B: one UID on two lesions of one volume (c1, c2) and on d1 in the next study;
    - PX-C: DeepLesion-like, int series ids and x, y, z.
    """
    lesions = [
        pacs_lesion("PA-a1", "PX-A", 1, "SE-3fa9", xy=[0.30, 0.40], uid="TU-x"),
        pacs_lesion("PA-a2", "PX-A", 1, "SE-3fa9", xy=[0.60, 0.40], uid="TU-y"),
        pacs_lesion("PA-a3", "PX-A", 1, "SE-3fa9", xy=[0.80, 0.80]),
        pacs_lesion("PA-b1", "PX-A", 2, "SE-77c0", xy=[0.31, 0.40], uid="TU-y"),
        pacs_lesion("PA-b2", "PX-A", 2, "SE-77c0", xy=[0.61, 0.40], uid="TU-x"),
        pacs_lesion("PA-b3", "PX-A", 2, "SE-77c0", xy=[0.81, 0.80]),
        pacs_lesion("PA-b4", "PX-A", 2, "SE-77c0"),
        pacs_lesion("PB-c1", "PX-B", 1, "SE-0001", xy=[0.2, 0.2], uid="TU-z"),
        pacs_lesion("PB-c2", "PX-B", 1, "SE-0001", xy=[0.7, 0.7], uid="TU-z"),
        pacs_lesion("PB-d1", "PX-B", 2, "SE-0002", xy=[0.7, 0.7], uid="TU-z"),
        pacs_lesion("PC-e1", "PX-C", 1, 3, xyz=[0.5, 0.5, 0.5]),
        pacs_lesion("PC-f1", "PX-C", 2, 1, xyz=[0.5, 0.5, 0.51]),
    ]
    empty_graph.execute_query(PACS_LESIONS, rows=lesions, database_=DATABASE)
    return empty_graph


def graph_tracks(driver) -> dict[str, str | None]:
    found = rows(driver, "MATCH (l:Lesion) RETURN l.lesion_id AS id, l.track_id AS track")
    return {r["id"]: r["track"] for r in found}


def graph_links(driver) -> set[tuple[str, str, str, bool]]:
    found = rows(
        driver,
        "MATCH (a:Lesion)-[f:FOLLOWED_BY]->(b:Lesion) "
        "RETURN a.lesion_id AS a, b.lesion_id AS b, f.by AS by, f.same_study AS same",
    )
    return {(r["a"], r["b"], r["by"], r["same"]) for r in found}


def test_pacs_lesions_are_tracked_by_reader_links_first(pacs_graph):
    summary = match_graph(
        pacs_graph, database=DATABASE, patient_ids=["PX-A", "PX-B", "PX-none"], progress=False
    )
    # only the named patients are touched; one without lesions is simply absent
    assert (summary.patients, summary.lesions) == (2, 10)
    tracks = graph_tracks(pacs_graph)
    assert tracks == {
        "PA-a1": "T-a1",
        "PA-b2": "T-a1",
        "PA-a2": "T-a2",
        "PA-b1": "T-a2",
        "PA-a3": "T-a3",
        "PA-b3": "T-a3",
        "PA-b4": "T-b4",
        "PB-c1": "T-c1",
        "PB-d1": "T-c1",
        "PB-c2": "T-c2",
        "PC-e1": None,
        "PC-f1": None,
    }
    assert graph_links(pacs_graph) == {
        ("PA-a1", "PA-b2", "reader", False),
        ("PA-a2", "PA-b1", "reader", False),
        ("PA-a3", "PA-b3", "matching", False),
        ("PB-c1", "PB-d1", "reader", False),
    }
    assert (summary.links, summary.reader_links, summary.reader_conflicts) == (4, 3, 1)
    # without reader links matching pairs PX-A's lesions the other way round (both pairs
    # disagree), and PX-B's d1 with c2, at its place, rather than with c1 (the reader's pair)
    assert summary.reader_agreement == {"pairs": 3, "agree": 0, "disagree": 3}
    assert summary.as_dict()["reader_agreement"] == summary.reader_agreement

    # then everyone: PX-C gets its (inferred) track, the others' tracks stay as they were
    everyone = match_graph(pacs_graph, database=DATABASE, progress=False)
    assert everyone.patients == 3
    assert graph_tracks(pacs_graph) == {**tracks, "PC-e1": "T-e1", "PC-f1": "T-e1"}
    assert ("PC-e1", "PC-f1", "matching", False) in graph_links(pacs_graph)
    assert match_graph(pacs_graph, database=DATABASE, patient_ids=[], progress=False).patients == 0
    with pytest.raises(QueryError, match="no lesions of patient 'PX-none'"):
        match_graph(pacs_graph, database=DATABASE, patient_id="PX-none", progress=False)


def test_read_match_lesions_builds_partial_locations(pacs_graph):
    by_patient = read_match_lesions(pacs_graph, DATABASE, ["PX-A", "PX-C", "PX-none"])
    assert sorted(by_patient) == ["PX-A", "PX-C"]
    a = {x.lesion_id: x for x in by_patient["PX-A"]}
    assert a["PA-a1"].location[:2] == (0.30, 0.40) and math.isnan(a["PA-a1"].location[2])
    assert a["PA-a1"].series_id == "SE-3fa9" and a["PA-a1"].tracking_uid == "TU-x"
    assert a["PA-b4"].location is None and a["PA-b4"].tracking_uid is None
    c = {x.lesion_id: x for x in by_patient["PX-C"]}
    assert c["PC-e1"].location == (0.5, 0.5, 0.5) and c["PC-e1"].series_id == 3
    assert sorted(read_match_lesions(pacs_graph, DATABASE, None)) == ["PX-A", "PX-B", "PX-C"]
    with pytest.raises(TypeError, match="not one id"):
        read_match_lesions(pacs_graph, DATABASE, "PX-A")


def test_an_etl_matches_inside_its_own_write_transaction(pacs_graph):
    """The ETL writes a lesion, then reads, matches and writes tracks in the same transaction."""

    def load_and_match(tx) -> None:
        new = [pacs_lesion("PB-e9", "PX-B", 3, "SE-0003", xy=[0.2, 0.2], uid="TU-z")]
        tx.run(PACS_LESIONS, rows=new)
        by_patient = read_match_lesions(tx, DATABASE, ["PX-B"])
        assert len(by_patient["PX-B"]) == 4  # sees its own uncommitted lesion
        tracks = {pid: match_patient(lesions) for pid, lesions in by_patient.items()}
        tx.run(statement("graph/write_tracks"), patients=track_rows(tracks))

    with pacs_graph.session(database=DATABASE) as session:
        session.execute_write(load_and_match)
    tracks = graph_tracks(pacs_graph)
    assert tracks["PB-e9"] == tracks["PB-d1"] == "T-c1" and tracks["PA-a1"] is None
    assert graph_links(pacs_graph) == {
        ("PB-c1", "PB-d1", "reader", False),
        ("PB-d1", "PB-e9", "reader", False),
    }


def test_evaluate_matching_reports_reader_agreement(pacs_graph, tmp_path):
    match_graph(pacs_graph, database=DATABASE, progress=False)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("source_File_name,target_File_name\nPA-a3.png,PA-b3.png\n")
    report = evaluate_matching(pacs_graph, pairs, database=DATABASE)
    assert report.ours.hits == 1
    assert report.as_dict()["reader_agreement"] == {"pairs": 3, "agree": 0, "disagree": 3}
