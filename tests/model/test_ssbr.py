"""SSBR: losses, group sampling, training on SYNTHETIC volumes, checkpoints, errors and the CLI.

The volumes are SYNTHETIC: a body ellipse whose content changes with z (lungs of air shrinking
towards the diaphragm, a liver-like blob mid-way, pelvic bone rings growing towards the feet, a
spine everywhere, noise), written as DeepLesion-style folders of 16-bit PNGs (pixel = HU + 32768)
whose slice numbers grow from head to feet.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from lesionkg.cli import main
from lesionkg.core.errors import InvalidInputError, ModelError
from lesionkg.model.ssbr import (
    OPTIMIZER_FILE,
    SSBRConfig,
    SSBRNet,
    Volume,
    group_starts,
    group_strides,
    load_ssbr,
    order_loss,
    predict_slices,
    preprocess_slices,
    read_hu_slice,
    sample_group,
    scan_volumes,
    spacing_loss,
    ssbr_loss,
    train_ssbr,
)

PX = 64  # side of the synthetic slices (pixels)


def _disc(yy, xx, cy, cx, ry, rx):
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def synthetic_slice(z: float, rng: np.random.Generator, shift, scale: float) -> np.ndarray:
    """HU ``(PX, PX)`` of a SYNTHETIC axial slice at body position z (0 head .. 1 feet)."""
    yy, xx = np.mgrid[0:PX, 0:PX].astype(np.float64)
    cy, cx = PX / 2 + shift[0] * PX, PX / 2 + shift[1] * PX
    s = PX * scale
    hu = np.full((PX, PX), -1000.0)
    hu[_disc(yy, xx, cy, cx, 0.28 * s, 0.42 * s)] = 40.0
    hu[_disc(yy, xx, cy + 0.17 * s, cx, 0.05 * s, 0.05 * s)] = 600.0
    if z < 0.45:
        r = 0.16 * s * math.sqrt((0.45 - z) / 0.45)
        for side in (-1, 1):
            hu[_disc(yy, xx, cy - 0.03 * s, cx + side * 0.18 * s, 1.2 * r, r)] = -850.0
    if 0.3 < z < 0.7:
        r = 0.16 * s * math.sin(math.pi * (z - 0.3) / 0.4)
        hu[_disc(yy, xx, cy, cx - 0.14 * s, r, 1.1 * r)] = 160.0
    if z > 0.6:
        r = 0.05 * s + 0.12 * s * (z - 0.6) / 0.4
        for side in (-1, 1):
            centre = (cy + 0.04 * s, cx + side * 0.2 * s)
            ring = _disc(yy, xx, *centre, r, r) & ~_disc(yy, xx, *centre, 0.6 * r, 0.6 * r)
            hu[ring] = 700.0
    return hu + rng.normal(0.0, 20.0, hu.shape)


def write_volume(folder: Path, z_values, rng: np.random.Generator, numbers=None) -> None:
    """A SYNTHETIC volume folder ``{slice:03d}.png``; slice numbers grow with z."""
    folder.mkdir(parents=True)
    numbers = range(1, len(z_values) + 1) if numbers is None else numbers
    shift, scale = rng.uniform(-0.05, 0.05, 2), rng.uniform(0.9, 1.1)
    for number, z in zip(numbers, z_values, strict=True):
        pixels = np.round(synthetic_slice(z, rng, shift, scale)) + 32768
        Image.fromarray(np.clip(pixels, 0, 65535).astype(np.uint16)).save(
            folder / f"{number:03d}.png"
        )


def write_training_set(root: Path, volumes: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for v in range(volumes):
        span = rng.uniform(0.4, 0.9)
        z0 = rng.uniform(0.0, 1.0 - span)
        n = int(rng.integers(16, 33))
        first = int(rng.integers(1, 60))
        write_volume(
            root / f"{v:06d}_01_01", np.linspace(z0, z0 + span, n), rng, range(first, first + n)
        )


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> dict[str, Path]:
    """12 SYNTHETIC training volumes (plus 2 unusable ones) and a held-out volume."""
    root = tmp_path_factory.mktemp("ssbr")
    train = root / "volumes"
    write_training_set(train, 12, seed=0)
    rng = np.random.default_rng(1)
    write_volume(train / "short", np.linspace(0.2, 0.3, 5), rng)
    write_volume(train / "gappy", np.linspace(0.2, 0.6, 8), rng, [1, 2, 3, 5, 8, 13, 21, 34])
    held_out = root / "held_out" / "999999_01_01"
    write_volume(held_out, np.linspace(0.03, 0.97, 24), np.random.default_rng(99))
    return {"root": root, "train": train, "held_out": held_out}


#: 20 steps of 2 groups at 32 px: 10-15 s on 2 CPU cores (10 steps already order the volume)
TRAIN_CONFIG = SSBRConfig(
    size=32, groups_per_batch=2, steps=20, seed=0, device="cpu", checkpoint_every=15
)


@pytest.fixture(scope="module")
def trained(synthetic, tmp_path_factory):
    out = tmp_path_factory.mktemp("ssbr_model") / "model"
    return train_ssbr(synthetic["train"], out, TRAIN_CONFIG, progress=False)


@pytest.fixture(scope="module")
def model(trained):
    return load_ssbr(trained.model_dir)


def ranks(values: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(values)).astype(float)


def spearman(x, y) -> float:
    return float(np.corrcoef(ranks(np.asarray(x)), ranks(np.asarray(y)))[0, 1])


# --- losses -------------------------------------------------------------------------------------


def test_equally_spaced_increasing_scores_have_no_spacing_loss_and_known_order_loss():
    scores = torch.arange(8, dtype=torch.float64)[None]
    assert spacing_loss(scores).item() == 0.0
    # 7 steps of +1: 7 * -log(sigmoid(1)) = 7 * log(1 + e^-1)
    assert order_loss(scores).item() == pytest.approx(7 * math.log(1 + math.exp(-1)))


def test_losses_on_hand_computed_numbers():
    scores = torch.tensor([[0.0, 1.0, 3.5, 3.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    # group 1: steps 1, 2.5, -0.5; step changes 1.5 (L1 part: 1.0) and -3 (2.5)
    # group 2: steps 0: each pair costs log 2
    order_1 = sum(math.log(1 + math.exp(-d)) for d in (1.0, 2.5, -0.5))
    assert order_loss(scores).item() == pytest.approx((order_1 + 3 * math.log(2)) / 2)
    assert spacing_loss(scores).item() == pytest.approx((1.0 + 2.5) / 2)
    small = torch.tensor([[0.0, 1.0, 1.5]], dtype=torch.float64)  # step change -0.5: 0.5^2 / 2
    assert spacing_loss(small).item() == pytest.approx(0.125)
    total, order, spacing = ssbr_loss(scores, dist_weight=2.0)
    assert total.item() == pytest.approx(order.item() + 2 * spacing.item())


def test_reversed_order_costs_more_than_the_right_one():
    up = torch.linspace(0, 3, 8)[None]
    assert order_loss(up) < order_loss(up.flip(1))


# --- groups of equidistant slices ---------------------------------------------------------------


def test_group_strides_and_starts_respect_gaps():
    # 0..4, then the 8 even numbers 10..24, then 30: only 10, 12, ..., 24 is a group of 8.
    numbers = np.array([0, 1, 2, 3, 4, *range(10, 25, 2), 30])
    assert group_strides(numbers, 8).tolist() == [2]
    assert group_starts(numbers, 2, 8).tolist() == [10]
    assert group_starts(numbers, 1, 8).tolist() == []
    assert group_strides(np.arange(7), 8).tolist() == []
    # 40 contiguous slices: strides 1..5 (5 * 7 = 35 <= 39 < 6 * 7)
    assert group_strides(np.arange(100, 140), 8).tolist() == [1, 2, 3, 4, 5]
    assert group_strides(np.arange(100, 140), 8, max_stride=3).tolist() == [1, 2, 3]


def test_sampled_groups_are_8_distinct_equidistant_existing_slices_and_seeded():
    contiguous = np.arange(100, 140)
    paths = tuple(Path(f"{n}.png") for n in contiguous)
    volume = Volume("v", Path("v"), contiguous, paths, group_strides(contiguous, 8))
    existing = set(contiguous.tolist())
    seen_strides = set()
    for seed in range(50):
        group = sample_group(volume, 8, np.random.default_rng(seed))
        steps = np.diff(group)
        assert len(set(group.tolist())) == 8
        assert set(group.tolist()) <= existing
        assert (steps == steps[0]).all() and steps[0] >= 1
        seen_strides.add(int(steps[0]))
        again = sample_group(volume, 8, np.random.default_rng(seed))
        assert again.tolist() == group.tolist()
    assert seen_strides == {1, 2, 3, 4, 5}
    capped = sample_group(volume, 8, np.random.default_rng(0), max_stride=1)
    assert np.diff(capped).tolist() == [1] * 7
    gappy = np.array([0, 1, 2, 3, 4, *range(10, 25, 2), 30])
    volume = Volume("g", Path("g"), gappy, (), group_strides(gappy, 8))
    assert sample_group(volume, 8, np.random.default_rng(3)).tolist() == list(range(10, 25, 2))


def test_scan_skips_and_counts_volumes_without_8_equidistant_slices(synthetic):
    scan = scan_volumes(synthetic["train"])
    assert len(scan.volumes) == 12
    assert dict(scan.skipped) == {
        "gappy": "8 slices, no 8 equidistant ones",
        "short": "5 slices, no 8 equidistant ones",
    }


def test_images_png_level_is_accepted(tmp_path):
    write_volume(
        tmp_path / "Images_png" / "000001_01_01", np.linspace(0, 1, 9), np.random.default_rng(0)
    )
    scan = scan_volumes(tmp_path)
    assert [v.name for v in scan.volumes] == ["000001_01_01"]


# --- training -----------------------------------------------------------------------------------


def test_a_few_steps_on_one_batch_lower_its_loss(synthetic):
    volume = scan_volumes(synthetic["train"]).volumes[0]
    group = sample_group(volume, 8, np.random.default_rng(0))
    hu = np.stack([read_hu_slice(volume.path_of(n)) for n in group])
    batch = preprocess_slices(hu, 32, (-1024.0, 1024.0))
    torch.manual_seed(0)
    network = SSBRNet()
    optimizer = torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.9)
    losses = []
    for _ in range(5):
        loss = ssbr_loss(network(batch).view(1, 8))[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_training_orders_the_slices_of_a_held_out_volume(trained, synthetic):
    predictions = predict_slices(trained.model_dir, [synthetic["held_out"]])
    assert [p.path.name for p in predictions] == [f"{n:03d}.png" for n in range(1, 25)]
    scores = [p.score for p in predictions]
    assert spearman(scores, np.arange(len(scores))) > 0.9
    zs = np.array([p.z for p in predictions])
    assert ((zs >= 0) & (zs <= 1)).all()
    assert zs[:3].mean() < 0.3 and zs[-3:].mean() > 0.7  # head near 0, feet near 1


def test_training_records_summary_metrics_and_files(trained):
    assert trained.steps == trained.steps_this_run == 20
    assert trained.volumes_used == 12 and trained.volumes_skipped == 2
    assert trained.calibration["median_rank_correlation"] > 0.9
    metrics = json.loads((trained.model_dir / "metrics.json").read_text())
    assert len(metrics["loss_history"]) == 20 and metrics["volumes_skipped"] == 2
    assert np.mean(metrics["loss_history"][-5:]) < np.mean(metrics["loss_history"][:5])
    header = json.loads((trained.model_dir / "config.json").read_text())
    assert header["kind"] == "ssbr"
    assert header["config"]["ssbr"]["backbone"] == "vgg16_bn"
    assert header["config"]["backbone_weights"] is None
    assert (trained.model_dir / "loss_curve.png").stat().st_size > 0
    saved = torch.load(trained.model_dir / OPTIMIZER_FILE, weights_only=True)
    assert saved["step"] == 20


def test_checkpoint_round_trip_gives_identical_scores(trained, model, synthetic):
    hu = np.stack([read_hu_slice(p) for p in sorted(synthetic["held_out"].glob("*.png"))])
    predicted = predict_slices(trained.model_dir, [synthetic["held_out"]])
    assert np.array_equal(model.score(hu), [p.score for p in predicted])
    assert np.array_equal(model.normalised_z(hu), [p.z for p in predicted])
    # The network trained and calibrated in memory gave the stored percentiles; the loaded one
    # gives them again on the same training slices.
    scores = np.concatenate(
        [
            model.score(np.stack([read_hu_slice(p) for p in volume.paths]))
            for volume in scan_volumes(synthetic["train"]).volumes
        ]
    )
    low, high = np.percentile(scores, [1, 99])
    assert low == pytest.approx(trained.calibration["low"], rel=1e-5, abs=1e-6)
    assert high == pytest.approx(trained.calibration["high"], rel=1e-5, abs=1e-6)


@pytest.mark.slow  # three trainings: 10-20 s
def test_resumed_training_equals_uninterrupted_training(synthetic, tmp_path):
    config = SSBRConfig(size=16, groups_per_batch=1, steps=4, device="cpu", calibration_slices=40)
    straight = train_ssbr(synthetic["train"], tmp_path / "a", config, progress=False)
    half = replace(config, steps=2)
    train_ssbr(synthetic["train"], tmp_path / "b", half, progress=False)
    resumed = train_ssbr(synthetic["train"], tmp_path / "b", config, progress=False)
    assert resumed.resumed_from == 2 and resumed.steps_this_run == 2
    assert resumed.sha256 == straight.sha256  # bit-identical weights
    other = replace(config, lr=0.02)
    with pytest.raises(ModelError, match=r"b/config\.json.*lr 0\.01 != 0\.02"):
        train_ssbr(synthetic["train"], tmp_path / "b", other, progress=False)


# --- bad inputs ---------------------------------------------------------------------------------


def test_empty_volumes_folder_is_a_model_error_naming_it(tmp_path):
    with pytest.raises(ModelError, match=f"{tmp_path}: no volume folders"):
        train_ssbr(tmp_path, tmp_path / "out", TRAIN_CONFIG, progress=False)
    (tmp_path / "v1").mkdir()
    write_volume(tmp_path / "v2", np.linspace(0, 1, 7), np.random.default_rng(0))
    with pytest.raises(ModelError, match=f"{tmp_path}: none of its 2 volume folders has 8"):
        scan_volumes(tmp_path)


def test_png_that_is_not_16_bit_is_an_invalid_input_error_naming_it(tmp_path):
    write_volume(tmp_path / "v", np.linspace(0, 1, 8), np.random.default_rng(0))
    bad = tmp_path / "v" / "004.png"
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(bad)
    with pytest.raises(InvalidInputError, match=rf"{bad}: PNG mode L: expected 16-bit"):
        scan_volumes(tmp_path)
    with pytest.raises(InvalidInputError, match=rf"{bad}: PNG mode L"):
        read_hu_slice(bad)
    not_png = tmp_path / "v" / "005.png"
    not_png.write_text("hello")
    with pytest.raises(InvalidInputError) as caught:
        scan_volumes(tmp_path)
    assert [p.source for p in caught.value.problems] == [str(bad), str(not_png)]


def test_predict_rejects_missing_and_bad_paths(trained, tmp_path):
    bad = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(bad)
    with pytest.raises(InvalidInputError) as caught:
        predict_slices(trained.model_dir, [bad, tmp_path / "nope.png", tmp_path])
    message = str(caught.value)
    assert f"{bad}: PNG mode RGB" in message
    assert f"{tmp_path / 'nope.png'}: not found" in message
    assert f"{tmp_path}: folder has no {{slice}}.png files" in message


def test_loading_a_folder_that_is_no_model_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match=rf"{tmp_path}/config\.json: not found"):
        load_ssbr(tmp_path)


def test_real_deeplesion_png_is_read_as_hu_and_scored(model, deeplesion_dir):
    hu = read_hu_slice(deeplesion_dir / "images" / "000069_02_01_058.png")
    assert hu.shape == (512, 512) and hu.min() >= -1100 and hu.max() < 3100
    [score] = model.score(hu[None])
    [z] = model.normalised_z(hu[None])
    assert math.isfinite(score) and 0 <= z <= 1


# --- CLI ----------------------------------------------------------------------------------------


TINY_RUN = ["--steps", "2", "--size", "16", "--device", "cpu", "--quiet", "--format", "json"]


def test_cli_trains_then_predicts_as_json(synthetic, tmp_path):
    runner = CliRunner()
    out = tmp_path / "model"
    trained = runner.invoke(
        main,
        ["ssbr", "train", "--volumes", str(synthetic["train"]), "--out", str(out), *TINY_RUN],
    )
    assert trained.exit_code == 0, trained.output
    summary = json.loads(trained.stdout)
    assert summary["steps"] == 2 and summary["volumes_used"] == 12
    assert summary["volumes_skipped"] == 2
    predicted = runner.invoke(
        main,
        ["ssbr", "predict", "--model", str(out), str(synthetic["held_out"]), "--format", "json"],
    )
    assert predicted.exit_code == 0, predicted.output
    rows = json.loads(predicted.stdout)
    assert len(rows) == 24 and set(rows[0]) == {"path", "score", "z"}
    text = runner.invoke(
        main, ["ssbr", "predict", "--model", str(out), str(synthetic["held_out"] / "001.png")]
    )
    assert text.exit_code == 0 and text.stdout.startswith(str(synthetic["held_out"] / "001.png"))


def test_cli_reports_errors_with_exit_1(tmp_path):
    result = CliRunner().invoke(
        main, ["ssbr", "train", "--volumes", str(tmp_path), "--out", str(tmp_path / "m"), "--quiet"]
    )
    assert result.exit_code == 1
    assert f"Error: {tmp_path}: no volume folders" in result.output
