"""Tracks on the real validation split in the real Neo4j: rules, re-runs, and the evaluation."""

from __future__ import annotations

import csv
import json
from collections import defaultdict

import pytest
from click.testing import CliRunner
from conftest import DATABASE, GraphState

from lesionkg.cli import main
from lesionkg.graph import counts, reset
from lesionkg.pipeline import load_deeplesion
from lesionkg.tracking import match_graph

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
