"""``lesionkg ssbr``, through click's CliRunner: a tiny body-part regression model (2 steps,
16 pixels) on SYNTHETIC volumes."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from lesionkg.cli import main
from lesionkg.synthetic.cohort import write_synthetic_dl_info


@pytest.fixture(scope="module")
def volumes(tmp_path_factory) -> Path:
    """Two SYNTHETIC unlabelled volumes of contiguous slices."""
    out = tmp_path_factory.mktemp("ssbr-cohort")
    write_synthetic_dl_info(out, patients=1, seed=3, images=False, ssbr_volumes=2)
    return out / "ssbr_volumes_synthetic"


@pytest.mark.slow
def test_train_then_predict(volumes, tmp_path):
    runner = CliRunner()
    model = tmp_path / "model"
    train = ["ssbr", "train", "--volumes", str(volumes), "--out", str(model)]
    train += ["--steps", "2", "--size", "16", "--device", "cpu", "--quiet"]
    trained = runner.invoke(main, [*train, "--format", "json"])
    assert trained.exit_code == 0, trained.output
    summary = json.loads(trained.stdout)
    assert summary["steps"] == 2 and summary["volumes_used"] == 2
    assert summary["model_dir"] == str(model)
    text = runner.invoke(main, train)
    assert text.exit_code == 0, text.output
    assert text.stdout.startswith(f"SSBR model {model} (sha256 {summary['sha256'][:12]})")
    bad = runner.invoke(main, [*train, "--window", "100,-100"])
    assert bad.exit_code == 2 and "min must be below max" in bad.output

    volume = sorted(p for p in volumes.iterdir() if p.is_dir())[0]
    slices = sorted(volume.glob("*.png"))
    predict = ["ssbr", "predict", "--model", str(model), str(volume)]
    predicted = runner.invoke(main, [*predict, "--format", "json"])
    assert predicted.exit_code == 0, predicted.output
    rows = json.loads(predicted.stdout)
    assert [r["path"] for r in rows] == [str(p) for p in slices]
    assert all(r["z"] is not None and 0 <= r["z"] <= 1 for r in rows)
    lines = runner.invoke(main, predict).stdout.splitlines()
    assert [line.split("\t") for line in lines] == [
        [r["path"], f"{r['score']:.6f}", f"{r['z']:.4f}"] for r in rows
    ]


def test_train_refuses_a_bad_window_before_it_starts(tmp_path):
    out = tmp_path / "model"
    train = ["ssbr", "train", "--volumes", str(tmp_path), "--out", str(out)]
    bad = CliRunner().invoke(main, [*train, "--window", "100,-100"])
    assert bad.exit_code == 2 and "Invalid value for --window: min must be below max" in bad.output
    assert not out.exists()
