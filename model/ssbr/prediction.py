"""SSBR inference: a trained model loaded from its checkpoint (:class:`SSBRModel`) and the
normalised body position of slices (:func:`predict_slices`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from lesionkg.core.errors import InvalidInputError, ModelError, Problem
from lesionkg.model.checkpoint import CONFIG_FILE, load_checkpoint
from lesionkg.model.device import resolve_device
from lesionkg.model.ssbr.config import KIND, SCORE_BATCH, SSBRConfig
from lesionkg.model.ssbr.network import SSBRNet, score_batches
from lesionkg.model.ssbr.volumes import list_slices, png_mode_problem, preprocess_slices
from lesionkg.model.transforms import read_hu_png

# --- inference ----------------------------------------------------------------------------------


class SSBRModel:
    """A trained SSBR network with its preprocessing and calibration, in eval mode."""

    def __init__(
        self,
        network: SSBRNet,
        config: SSBRConfig,
        calibration: dict[str, Any] | None,
        directory: Path,
        sha256: str,
        device: torch.device,
    ) -> None:
        self.network = network.to(device).eval()
        self.config = config
        self.calibration = calibration
        self.directory = directory
        self.sha256 = sha256
        self.device = device

    def score(self, hu_slices: np.ndarray) -> np.ndarray:
        """Raw scores ``(N,)`` (grow from head to feet) of HU slices ``(N, H, W)`` (float HU)."""
        inputs = preprocess_slices(hu_slices, self.config.size, self.config.window)
        return score_batches(self.network, inputs, self.device)

    def z_from_scores(self, scores: np.ndarray) -> np.ndarray:
        """Normalised z ``(N,)`` in [0, 1] (0 head, 1 feet) of raw scores, clipped."""
        if self.calibration is None:
            raise ModelError(
                f"{self.directory / CONFIG_FILE}: field config.calibration is null "
                "(training did not finish: run ssbr train again to finish it)"
            )
        low, high = self.calibration["low"], self.calibration["high"]
        return np.clip((np.asarray(scores, dtype=np.float64) - low) / (high - low), 0.0, 1.0)

    def normalised_z(self, hu_slices: np.ndarray) -> np.ndarray:
        """Normalised z ``(N,)`` in [0, 1] (0 head, 1 feet) of HU slices ``(N, H, W)``."""
        return self.z_from_scores(self.score(hu_slices))


def load_ssbr(model_dir: Path, device: str = "cpu") -> SSBRModel:
    """Load an SSBR checkpoint directory (:class:`ModelError` if it is not one)."""
    model_dir = Path(model_dir)
    checkpoint = load_checkpoint(model_dir, kind=KIND)
    path = model_dir / CONFIG_FILE
    try:
        config = SSBRConfig.from_json(checkpoint.config["ssbr"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{path}: field config.ssbr is not an SSBR config: {exc}") from exc
    network = SSBRNet(config.backbone)
    try:
        network.load_state_dict(checkpoint.state_dicts["network"])
    except (KeyError, RuntimeError) as exc:
        raise ModelError(f"{model_dir}: weights do not fit the SSBR network: {exc}") from exc
    calibration = checkpoint.config.get("calibration")
    if calibration is not None and not (
        isinstance(calibration, dict)
        and isinstance(calibration.get("low"), int | float)
        and isinstance(calibration.get("high"), int | float)
        and calibration["high"] > calibration["low"]
    ):
        raise ModelError(f"{path}: field config.calibration needs numbers low < high")
    return SSBRModel(
        network, config, calibration, model_dir, checkpoint.sha256, resolve_device(device)
    )


class SlicePrediction(NamedTuple):
    """One slice's raw score and normalised z (None when the model is not calibrated)."""

    path: Path
    score: float
    z: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "score": self.score, "z": self.z}

    def describe(self) -> str:
        z = "-" if self.z is None else f"{self.z:.4f}"
        return f"{self.path}\t{self.score:.6f}\t{z}"


def predict_slices(
    model_dir: Path, paths: list[Path], device: str = "cpu"
) -> list[SlicePrediction]:
    """Score PNG slices and volume folders (every ``{slice}.png`` in them, ascending).

    Slices come back in the order given, a folder's in slice order. A path that is neither a
    16-bit PNG nor a folder of them is an :class:`InvalidInputError`, all such paths together.
    """
    files: list[Path] = []
    problems = []
    for path in map(Path, paths):
        if path.is_dir():
            slices = list_slices(path)
            if not slices:
                problems.append(Problem(str(path), None, None, "folder has no {slice}.png files"))
            files.extend(p for _, p in slices)
        elif path.is_file():
            files.append(path)
        else:
            problems.append(Problem(str(path), None, None, "not found"))
    for path in files:
        reason = png_mode_problem(path)
        if reason is not None:
            problems.append(Problem(str(path), None, None, reason))
    if problems:
        raise InvalidInputError(problems, outcome="nothing was scored")
    model = load_ssbr(model_dir, device)
    predictions: list[SlicePrediction] = []
    for start in range(0, len(files), SCORE_BATCH):
        chunk = files[start : start + SCORE_BATCH]
        # Slices of different sizes: preprocess one by one, then score together. Every file's
        # header was checked above, so each is read once.
        inputs = torch.cat(
            [
                preprocess_slices(read_hu_png(p)[None], model.config.size, model.config.window)
                for p in chunk
            ]
        )
        scores = score_batches(model.network, inputs, model.device)
        zs = model.z_from_scores(scores) if model.calibration is not None else [None] * len(chunk)
        predictions.extend(
            SlicePrediction(p, float(s), None if z is None else float(z))
            for p, s, z in zip(chunk, scores, zs, strict=True)
        )
    return predictions
