"""``lesionkg match``, ``link`` and ``evaluate retrieval``, through click's CliRunner, on a
SYNTHETIC cohort in the real test server."""

import json

from click.testing import CliRunner
from conftest import DATABASE

from lesionkg.cli import main
from lesionkg.db.schema import counts
from lesionkg.etl.bulk import load_deeplesion


def test_link_match_and_evaluate_retrieval(empty_graph, synthetic_images, cli_args, tmp_path):
    load_deeplesion(
        empty_graph, synthetic_images / "DL_info_synthetic.csv", database=DATABASE, progress=False
    )
    lesions = counts(empty_graph, DATABASE)["Lesion"]
    runner = CliRunner()
    link = [
        *cli_args,
        "link",
        "--space",
        "cues",
        "-k",
        "5",
        "--index-dir",
        str(tmp_path),
        "--quiet",
    ]
    linked = runner.invoke(main, [*link, "--format", "json"])
    assert linked.exit_code == 0, linked.output
    summary = json.loads(linked.stdout)
    assert summary["lesions"] == lesions and summary["index_built"]
    assert summary["edges"] == 5 * lesions == counts(empty_graph, DATABASE)["SIMILAR_TO"]
    again = runner.invoke(main, link)
    assert again.exit_code == 0, again.output
    assert again.stdout.startswith(f"cues: {lesions} lesions of 6-D; index updated (+0), ef ")
    assert f"\n{5 * lesions} SIMILAR_TO edges (" in again.stdout

    matched = runner.invoke(main, [*cli_args, "match", "--quiet", "--format", "json"])
    assert matched.exit_code == 0, matched.output
    tracks = json.loads(matched.stdout)
    assert tracks["lesions"] == lesions and 0 < tracks["tracks"] < lesions
    text = runner.invoke(main, [*cli_args, "match", "--quiet"])
    assert text.stdout.startswith(f"matched {lesions} lesions of 12 patients in ")

    evaluate = [*cli_args, "evaluate", "retrieval", "--space", "cues", "-k", "3"]
    report = runner.invoke(main, [*evaluate, "--format", "json"])
    assert report.exit_code == 0, report.output
    scores = json.loads(report.stdout)
    assert scores["k"] == 3 and scores["lesions"] == lesions
    assert scores["results"] and all(0 <= r["type_precision"] <= 1 for r in scores["results"])
    table = runner.invoke(main, evaluate).stdout.splitlines()
    assert table[0].startswith(f"{lesions} lesions with a cues vector, ")
    assert table[1].split() == [
        "embedding",
        "dim",
        "type",
        "P@k",
        "type",
        "vote",
        "acc",
        "label",
        "P@k",
    ]
    assert len(table) == 2 + len(scores["results"])
    assert [line.split()[0] for line in table[2:]] == [r["name"] for r in scores["results"]]
