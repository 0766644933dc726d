"""``lesionkg train`` and ``lesionkg embed``, through click's CliRunner: a tiny triplet network
(2 steps, 16-pixel crops) on a SYNTHETIC cohort, its embeddings in the real test server, and
``link`` in the triplet space."""

import json

import pytest
from click.testing import CliRunner
from conftest import DATABASE

from lesionkg.cli import main
from lesionkg.db.schema import counts
from lesionkg.etl.bulk import load_deeplesion
from lesionkg.model.checkpoint import load_checkpoint


@pytest.mark.slow
def test_train_embed_and_link_triplet(empty_graph, synthetic_images, cli_args, tmp_path):
    runner = CliRunner()
    model = tmp_path / "model"
    train = ["train", "--data", str(synthetic_images / "DL_info_synthetic.csv")]
    train += ["--images", str(synthetic_images), "--out", str(model), "--steps", "2"]
    train += ["--sequences", "2", "--crop-size", "16", "--crop-spacings", "2,5", "--rounds", "1"]
    train += ["--splits", "train,val,test", "--device", "cpu", "--quiet"]
    trained = runner.invoke(main, [*train, "--format", "json"])
    assert trained.exit_code == 0, trained.output
    summary = json.loads(trained.stdout)
    assert summary["steps"] == 2 and summary["out_dir"] == str(model)
    assert summary["sha256"] == load_checkpoint(model).sha256
    # Again: the checkpoint of the same options is found, nothing more is trained.
    text = runner.invoke(main, train)
    assert text.exit_code == 0, text.output
    assert text.stdout.startswith(f"trained 2 steps on {summary['lesions']} lesions (0 rows ")
    assert text.stdout.rstrip().endswith(f"model {summary['sha256']} -> {model}")
    bad = runner.invoke(main, [*train, "--crop-spacings", "2,x"])
    assert bad.exit_code == 2 and "expected comma-separated numbers" in bad.output

    load_deeplesion(
        empty_graph,
        synthetic_images / "DL_info_synthetic.csv",
        database=DATABASE,
        images=synthetic_images,
        progress=False,
    )
    lesions = counts(empty_graph, DATABASE)["Lesion"]
    embed = [*cli_args, "embed", "--model", str(model), "--device", "cpu", "--quiet"]
    embedded = runner.invoke(main, [*embed, "--matrix", str(tmp_path / "m.npy")])
    assert embedded.exit_code == 0, embedded.output
    assert embedded.stdout.startswith(f"embedded {lesions} of {lesions} lesions with model ")
    assert embedded.stdout.rstrip().endswith(f"matrix -> {tmp_path / 'm.npy'}")

    link = [*cli_args, "link", "--space", "triplet", "--other-patients", "-k", "3", "--quiet"]
    linked = runner.invoke(
        main, [*link, "--index-dir", str(tmp_path / "index"), "--format", "json"]
    )
    assert linked.exit_code == 0, linked.output
    edges = json.loads(linked.stdout)
    assert edges["space"] == "triplet" and edges["dim"] == 1408 and edges["other_patients"]
    assert edges["edges"] == 3 * lesions


def test_train_refuses_a_bad_window_before_it_starts(tmp_path):
    data = tmp_path / "DL_info.csv"
    data.write_text("File_name\n")
    out = tmp_path / "model"
    train = ["train", "--data", str(data), "--images", str(tmp_path), "--out", str(out)]
    for window, message in [("100,-100", "min must be below max"), ("1,x", "comma-separated")]:
        bad = CliRunner().invoke(main, [*train, "--window", window])
        assert bad.exit_code == 2 and message in bad.output and "--window" in bad.output
    assert not out.exists()
