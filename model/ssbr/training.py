"""SSBR training: SGD steps on seeded groups of slices, resumable checkpoints, the calibration
of scores to normalised z, and what a run did (:class:`SSBRResult`)."""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from lesionkg.core.errors import ModelError
from lesionkg.model.checkpoint import CONFIG_FILE, file_sha256, load_checkpoint, save_checkpoint
from lesionkg.model.device import resolve_device
from lesionkg.model.network import load_backbone_weights
from lesionkg.model.plots import plot_ssbr_loss
from lesionkg.model.ssbr.config import (
    DIRECTION,
    KIND,
    LOSS_CURVE_FILE,
    OPTIMIZER_FILE,
    TRAJECTORY_FIELDS,
    SSBRConfig,
)
from lesionkg.model.ssbr.losses import ssbr_loss
from lesionkg.model.ssbr.network import SSBRNet, score_batches
from lesionkg.model.ssbr.volumes import SliceStore, VolumeScan, sample_group, scan_volumes

log = logging.getLogger(__name__)


def rank_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho of two 1-D arrays (ranks by argsort; ties broken by position)."""
    rx = np.argsort(np.argsort(np.asarray(x), kind="stable"), kind="stable").astype(float)
    ry = np.argsort(np.argsort(np.asarray(y), kind="stable"), kind="stable").astype(float)
    rx -= rx.mean()
    ry -= ry.mean()
    denominator = math.sqrt(float((rx * rx).sum() * (ry * ry).sum()))
    return float((rx * ry).sum() / denominator) if denominator else 0.0


# --- training -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SSBRResult:
    """What :func:`train_ssbr` did. ``seconds`` counts this run's training steps only."""

    model_dir: Path
    sha256: str
    steps: int
    steps_this_run: int
    resumed_from: int | None
    seconds: float
    seconds_per_step: float | None
    final_loss: float | None
    volumes_used: int
    volumes_skipped: int
    skipped: tuple[tuple[str, str], ...]
    slices: int
    device: str
    calibration: dict[str, Any] | None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["model_dir"] = str(self.model_dir)
        data["skipped"] = [{"volume": v, "reason": r} for v, r in self.skipped]
        return data

    def describe(self) -> str:
        lines = [f"SSBR model {self.model_dir} (sha256 {self.sha256[:12]})"]
        run = f"{self.steps_this_run} steps this run on {self.device}"
        if self.resumed_from is not None:
            run += f", resumed from step {self.resumed_from}"
        if self.seconds_per_step is not None:
            run += f", {self.seconds:.1f} s ({self.seconds_per_step:.3f} s/step)"
        lines.append(f"  steps: {self.steps} ({run})")
        if self.final_loss is not None:
            lines.append(f"  loss (mean of the last steps): {self.final_loss:.4f}")
        lines.append(
            f"  volumes: {self.volumes_used} used ({self.slices} slices), "
            f"{self.volumes_skipped} skipped"
        )
        lines.extend(f"    skipped {name}: {reason}" for name, reason in self.skipped[:10])
        if self.volumes_skipped > 10:
            lines.append(f"    ... and {self.volumes_skipped - 10} more (see --format json)")
        if self.calibration is not None:
            c = self.calibration
            lines.append(
                f"  calibration: score {c['low']:.4f} -> z 0 (head), {c['high']:.4f} -> z 1 "
                f"(feet); {c['slices']} slices of {c['volumes']} volumes, median Spearman rho "
                f"of score vs slice number {c['median_rank_correlation']:.3f}"
            )
        return "\n".join(lines)


def _recent_mean(history: list[float], n: int = 50) -> float | None:
    return float(np.mean(history[-n:])) if history else None


def _calibrate(
    network: SSBRNet,
    scan: VolumeScan,
    store: SliceStore,
    config: SSBRConfig,
    device: torch.device,
) -> dict[str, Any]:
    """Score whole training volumes in a seeded random order until ``calibration_slices``."""
    rng = np.random.default_rng([config.seed, 1 << 20])
    network.eval()
    scores: list[np.ndarray] = []
    correlations: list[float] = []
    volumes = 0
    for index in rng.permutation(len(scan.volumes)):
        volume = scan.volumes[index]
        room = config.calibration_slices - sum(len(s) for s in scores)
        if room <= 0:
            break
        numbers = volume.numbers
        if len(numbers) > room:
            # Evenly spread slices of the last volume rather than its top part only.
            numbers = numbers[np.linspace(0, len(numbers) - 1, room).round().astype(int)]
        volume_scores = score_batches(
            network, store.load([volume.path_of(n) for n in numbers]), device
        )
        scores.append(volume_scores)
        volumes += 1
        if len(numbers) >= 3:
            correlations.append(rank_correlation(volume_scores, numbers))
    everything = np.concatenate(scores)
    low, high = np.percentile(everything, config.calibration_percentiles)
    return {
        "low": float(low),
        "high": float(high),
        "percentiles": list(config.calibration_percentiles),
        "slices": len(everything),
        "volumes": volumes,
        "median_rank_correlation": float(np.median(correlations)) if correlations else 0.0,
    }


def _checkpoint_config(
    config: SSBRConfig, weights: dict[str, str] | None, calibration: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "ssbr": config.to_json(),
        "backbone_weights": weights,
        "calibration": calibration,
        "direction": DIRECTION,
    }


def _check_resumable(
    directory: Path,
    stored: dict[str, Any],
    config: SSBRConfig,
    weights: dict[str, str] | None,
) -> None:
    path = directory / CONFIG_FILE
    try:
        previous = SSBRConfig.from_json(stored["ssbr"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{path}: field config.ssbr is not an SSBR config: {exc}") from exc
    differ = [
        f"{name} {getattr(previous, name)!r} != {getattr(config, name)!r}"
        for name in TRAJECTORY_FIELDS
        if getattr(previous, name) != getattr(config, name)
    ]
    recorded = stored.get("backbone_weights")
    # Initial weights only matter before the first step: not naming them again is fine.
    if weights is not None and (recorded or {}).get("sha256") != weights["sha256"]:
        differ.append(f"backbone_weights {recorded!r} != {weights!r}")
    if differ:
        raise ModelError(
            f"{path}: holds an SSBR checkpoint of another configuration ({'; '.join(differ)}): "
            "choose another output folder or delete it"
        )


def _load_optimizer_state(directory: Path, step: int) -> dict[str, Any] | None:
    path = directory / OPTIMIZER_FILE
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a bad file
        raise ModelError(f"{path}: cannot load the optimizer state: {exc}") from exc
    if not isinstance(saved, dict) or saved.get("step") != step:
        # A crash between writing optimizer.pt and config.json: fresh momentum is harmless.
        log.warning("%s: not from step %d; continuing with fresh SGD momentum", path, step)
        return None
    return saved["optimizer"]


def train_ssbr(
    volumes: Path,
    out_dir: Path,
    config: SSBRConfig | None = None,
    backbone_weights: Path | None = None,
    progress: bool = True,
) -> SSBRResult:
    """Train (or continue training) an SSBR model on the volume folders in ``volumes``.

    If ``out_dir`` holds an SSBR checkpoint with the same training configuration (the fields in
    :data:`TRAJECTORY_FIELDS`), training continues from its step with its optimizer state up to
    ``config.steps``; another configuration there is a :class:`ModelError`. Writes a checkpoint
    every ``checkpoint_every`` steps and at the end, then calibrates (module docstring) and writes
    the final checkpoint with the calibration and ``loss_curve.png``.
    """
    config = config or SSBRConfig()
    out_dir = Path(out_dir)
    device = resolve_device(config.device)
    m = config.slices_per_group
    weights_record = None
    if backbone_weights is not None:
        backbone_weights = Path(backbone_weights)
        if not backbone_weights.is_file():
            raise ModelError(f"{backbone_weights}: backbone weights file not found")
        weights_record = {"file": backbone_weights.name, "sha256": file_sha256(backbone_weights)}

    existing = None
    if (out_dir / CONFIG_FILE).is_file():
        existing = load_checkpoint(out_dir, kind=KIND)
        _check_resumable(out_dir, existing.config, config, weights_record)
        weights_record = existing.config.get("backbone_weights")

    scan = scan_volumes(volumes, m, config.max_stride, progress=progress)
    store = SliceStore(config.size, config.window, config.cache_mb)

    torch.manual_seed(config.seed)
    network = SSBRNet(config.backbone)
    if existing is None and backbone_weights is not None:
        load_backbone_weights(network.features, backbone_weights)
    network.to(device)
    optimizer = torch.optim.SGD(
        network.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    metrics: dict[str, Any] = {
        "step": 0,
        "loss_history": [],
        "order_loss_history": [],
        "dist_loss_history": [],
        "seconds": 0.0,
    }
    start_step = 0
    if existing is not None:
        try:
            network.load_state_dict(existing.state_dicts["network"])
        except (KeyError, RuntimeError) as exc:
            raise ModelError(f"{out_dir}: weights do not fit the SSBR network: {exc}") from exc
        metrics.update(existing.metrics)
        start_step = int(metrics.get("step", 0))
        state = _load_optimizer_state(out_dir, start_step)
        if state is not None:
            optimizer.load_state_dict(state)
        log.info("continuing %s from step %d", out_dir, start_step)

    calibration = existing.config.get("calibration") if existing is not None else None
    metrics.update(
        {
            "volumes": str(scan.root),
            "volumes_used": len(scan.volumes),
            "volumes_skipped": len(scan.skipped),
            "skipped": [{"volume": v, "reason": r} for v, r in scan.skipped],
            "slices": scan.slices,
            "device": str(device),
        }
    )

    def save(calibration: dict[str, Any] | None) -> str:
        # Optimizer state first, config.json (in save_checkpoint) last; see _load_optimizer_state.
        tmp = out_dir / (OPTIMIZER_FILE + ".tmp")
        torch.save({"step": metrics["step"], "optimizer": optimizer.state_dict()}, tmp)
        tmp.replace(out_dir / OPTIMIZER_FILE)
        return save_checkpoint(
            out_dir,
            KIND,
            _checkpoint_config(config, weights_record, calibration),
            {"network": network.state_dict()},
            metrics,
        )

    out_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(
        total=max(config.steps, start_step),
        initial=start_step,
        desc="ssbr train",
        unit="step",
        disable=not progress,
        file=sys.stderr,
    )
    run_seconds, steps_run = 0.0, 0
    sha = existing.sha256 if existing is not None else ""
    network.train()
    for step in range(start_step, config.steps):
        began = time.perf_counter()
        rng = np.random.default_rng([config.seed, step])
        chosen = rng.choice(
            len(scan.volumes),
            size=config.groups_per_batch,
            replace=len(scan.volumes) < config.groups_per_batch,
        )
        paths: list[Path] = []
        for index in chosen:
            volume = scan.volumes[index]
            paths.extend(volume.path_of(n) for n in sample_group(volume, m, rng, config.max_stride))
        batch = store.load(paths).to(device)
        scores = network(batch).view(config.groups_per_batch, m)
        loss, order, spacing = ssbr_loss(scores, config.dist_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if not math.isfinite(loss.item()):
            raise ModelError(
                f"{out_dir}: loss became {loss.item()} at step {step + 1} (lower the learning "
                f"rate, now {config.lr})"
            )
        elapsed = time.perf_counter() - began
        run_seconds += elapsed
        steps_run += 1
        metrics["step"] = step + 1
        metrics["seconds"] = float(metrics["seconds"]) + elapsed
        metrics["loss_history"].append(loss.item())
        metrics["order_loss_history"].append(order.item())
        metrics["dist_loss_history"].append(spacing.item())
        bar.update(1)
        bar.set_postfix(loss=f"{_recent_mean(metrics['loss_history'], 20):.3f}")
        if (step + 1) % config.checkpoint_every == 0 and step + 1 < config.steps:
            sha = save(None)
    bar.close()
    if steps_run or calibration is None or existing is None:
        log.info("calibrating on training slices")
        calibration = _calibrate(network, scan, store, config, device)
        metrics["seconds_per_step"] = metrics["seconds"] / max(1, metrics["step"])
        sha = save(calibration)
        if metrics["loss_history"]:
            plot_ssbr_loss(metrics, out_dir / LOSS_CURVE_FILE)
        if not calibration["high"] > calibration["low"]:
            raise ModelError(
                f"{out_dir}: every calibration slice has the same score "
                f"({calibration['low']}): the model did not learn (train more steps)"
            )
    return SSBRResult(
        model_dir=out_dir,
        sha256=sha,
        steps=int(metrics["step"]),
        steps_this_run=steps_run,
        resumed_from=start_step if existing is not None else None,
        seconds=run_seconds,
        seconds_per_step=run_seconds / steps_run if steps_run else None,
        final_loss=_recent_mean(metrics["loss_history"]),
        volumes_used=len(scan.volumes),
        volumes_skipped=len(scan.skipped),
        skipped=scan.skipped,
        slices=scan.slices,
        device=str(device),
        calibration=calibration,
    )
