"""Training the triplet network on a tiny SYNTHETIC cohort (small crops, few steps)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from lesionkg.cli import main
from lesionkg.core.errors import ModelError
from lesionkg.model.checkpoint import load_checkpoint
from lesionkg.model.embedder import Embedder
from lesionkg.model.network import LesionEmbedder, NetworkConfig
from lesionkg.model.sampling import SequenceSampler
from lesionkg.model.training import (
    TrainConfig,
    TrainingSet,
    _prepare_all,
    train,
    train_step,
)
from lesionkg.model.transforms import CropSpec, InputConfig

SMALL = InputConfig((CropSpec(16, 2.0), CropSpec(16, 5.0)))


def _config(**changes) -> TrainConfig:
    base = TrainConfig(
        steps=4, sequences_per_batch=3, lr=0.01, rounds=1, checkpoint_every=2, input=SMALL
    )
    return replace(base, **changes)


def test_training_steps_lower_the_loss_of_a_batch(labelled_set):
    torch.manual_seed(0)
    net = LesionEmbedder().train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    cache = _prepare_all(labelled_set, SMALL, progress=False)
    sampler = SequenceSampler(labelled_set.types, labelled_set.location, labelled_set.size_mm)
    sequences = sampler.sample(6, np.random.default_rng(0))
    losses = [train_step(net, opt, cache.crops, cache.boxes, sequences, 0.1) for _ in range(8)]
    assert losses[-1] < losses[0] * 0.8, losses


def test_train_writes_a_loadable_checkpoint(labelled_set, tmp_path):
    result = train(labelled_set, tmp_path, _config(), device="cpu", progress=False)
    assert result.steps == 4 and result.lesions == len(labelled_set.lesions)
    for name in ("config.json", "weights.pt", "metrics.json", "loss_curve.png"):
        assert (tmp_path / name).is_file(), name
    ckpt = load_checkpoint(tmp_path, kind="triplet")
    assert ckpt.sha256 == result.sha256
    assert ckpt.config["backbone_init"] == {"source": "random", "seed": 0}
    assert ckpt.config["lr"] == 0.01 and ckpt.config["input"]["crops"] == [
        [16, 2.0, "box"],
        [16, 5.0, "box"],
    ]
    assert len(ckpt.metrics["loss"]) == 4 and ckpt.metrics["steps_done"] == 4


def test_checkpoint_round_trip_gives_identical_embeddings(labelled_set, tmp_path):
    train(labelled_set, tmp_path, _config(steps=2), device="cpu", progress=False)
    lesions = labelled_set.lesions[:10]
    first = Embedder.load(tmp_path, device="cpu").embed(lesions, batch_size=4)
    # Rebuild by hand from the plain JSON config and the tensor-only weights.
    header = json.loads((tmp_path / "config.json").read_text())
    net = LesionEmbedder(NetworkConfig.from_json(header["config"]["network"]))
    state = torch.load(tmp_path / "weights.pt", weights_only=True)["network"]
    net.load_state_dict(state)
    net.eval()
    crops, boxes = zip(*(SMALL.prepare(lesion) for lesion in lesions), strict=True)
    with torch.no_grad():
        again = net(torch.from_numpy(np.stack(crops)), torch.from_numpy(np.stack(boxes))).numpy()
    np.testing.assert_array_equal(first, again)
    assert first.shape == (10, 1408)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-5)


@pytest.mark.slow
def test_resumed_training_equals_an_uninterrupted_run(labelled_set, tmp_path):
    whole = train(labelled_set, tmp_path / "whole", _config(), device="cpu", progress=False)
    train(labelled_set, tmp_path / "parts", _config(steps=2), device="cpu", progress=False)
    resumed = train(labelled_set, tmp_path / "parts", _config(), device="cpu", progress=False)
    assert resumed.steps == 4
    assert resumed.sha256 == whole.sha256
    again = train(labelled_set, tmp_path / "parts", _config(), device="cpu", progress=False)
    assert again.sha256 == whole.sha256  # nothing left to do


def test_resume_refuses_another_configuration(labelled_set, tmp_path):
    train(labelled_set, tmp_path, _config(steps=2), device="cpu", progress=False)
    with pytest.raises(ModelError, match="another configuration"):
        train(labelled_set, tmp_path, _config(steps=2, lr=0.5), device="cpu", progress=False)


@pytest.mark.slow
def test_pseudo_label_round_labels_unlabelled_lesions(labelled_set, true_types, tmp_path):
    hidden = np.arange(len(true_types)) % 3 == 0
    data = replace(labelled_set, types=np.where(hidden, -1, true_types))
    config = _config(rounds=2, pseudo_min_confidence=0.0)
    train(data, tmp_path, config, device="cpu", progress=False)
    rounds = load_checkpoint(tmp_path).metrics["rounds"]
    assert len(rounds) == 1 and rounds[0]["step"] == 2
    assert rounds[0]["unlabelled"] == int(hidden.sum())
    # min confidence 0: every unlabelled lesion gets a pseudo-label.
    assert rounds[0]["pseudo_labelled"] == int(hidden.sum())
    state = torch.load(tmp_path / "training_state.pt", weights_only=True)
    types = state["types"].numpy()
    assert (types != -1).all() and (types[~hidden] == true_types[~hidden]).all()


def test_no_sequence_without_two_types(labelled_set, tmp_path):
    data = replace(labelled_set, types=np.full(len(labelled_set.types), 4))
    with pytest.raises(ModelError, match="two labelled coarse types"):
        train(data, tmp_path, _config(), device="cpu", progress=False)


def test_rows_without_image_are_counted(synthetic_images, tmp_path):
    from lesionkg.model.training import read_training_rows

    rows = read_training_rows(synthetic_images / "DL_info_synthetic.csv", None)
    data = TrainingSet.from_records(rows, tmp_path)  # no images there
    assert data.lesions == [] and len(data.without_image) == len(rows)


@pytest.mark.slow
def test_cli_train(synthetic_images, tmp_path):
    out = tmp_path / "model"
    args = ["train", "--data", str(synthetic_images / "DL_info_synthetic.csv")]
    args += ["--images", str(synthetic_images), "--out", str(out), "--steps", "2"]
    args += ["--sequences", "2", "--crop-size", "16", "--crop-spacings", "2,5", "--rounds", "1"]
    args += ["--splits", "train,val,test", "--device", "cpu", "--format", "json", "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["steps"] == 2 and summary["without_image"] == 0
    assert summary["sha256"] == load_checkpoint(out).sha256
    bad = CliRunner().invoke(main, [*args[:-3], "--window", "100,-100"])
    assert bad.exit_code == 2 and "min must be below max" in bad.output


def test_bad_rows_stop_training_with_every_problem(synthetic_images, tmp_path):
    import csv

    from lesionkg.core.errors import InvalidInputError
    from lesionkg.model.training import read_training_rows

    with open(synthetic_images / "DL_info_synthetic.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    rows[2][rows[0].index("Coarse_lesion_type")] = "9"  # line 3: not a DeepLesion type
    bad = tmp_path / "bad.csv"
    with open(bad, "w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)
    with pytest.raises(InvalidInputError, match=r"nothing was trained") as err:
        read_training_rows(bad, None)
    assert [(p.line, p.column) for p in err.value.problems] == [(3, "Coarse_lesion_type")]
