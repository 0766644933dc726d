"""How an SSBR model is built and trained (:class:`SSBRConfig`, stored as JSON in its checkpoint),
the checkpoint's file names and the fields a resumed run must agree on."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from lesionkg.core.errors import ModelError
from lesionkg.model.network import BACKBONES

KIND = "ssbr"
OPTIMIZER_FILE = "optimizer.pt"
LOSS_CURVE_FILE = "loss_curve.png"
SLICE_NAME = re.compile(r"^(\d+)\.png$")
#: slices per forward pass when scoring
SCORE_BATCH = 64

DIRECTION = "score grows with slice number, assumed head to feet; normalised z: 0 head, 1 feet"


@dataclass(frozen=True)
class SSBRConfig:
    """How an SSBR model is built and trained; stored as plain JSON in its checkpoint."""

    #: side of the square network input (pixels); the paper uses 128, 64 keeps a CPU usable
    size: int = 64
    #: HU range mapped to [0, 1] before normalisation (HU)
    window: tuple[float, float] = (-1024.0, 1024.0)
    backbone: str = "vgg16_bn"
    #: optimisation steps in all (a run on a checkpoint continues up to this number)
    steps: int = 2000
    #: groups of equidistant slices per step (each group from one volume)
    groups_per_batch: int = 4
    slices_per_group: int = 8
    #: largest stride between the slices of a group (slice numbers); None: any
    max_stride: int | None = None
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    dist_weight: float = 1.0
    seed: int = 0
    #: "cpu", "cuda" or "auto" (CUDA when available)
    device: str = "auto"
    #: steps between checkpoints (one is always written at the end)
    checkpoint_every: int = 250
    #: at most this many slices are scored for the calibration
    calibration_slices: int = 5000
    #: percentiles of the calibration scores that become normalised z 0 and 1
    calibration_percentiles: tuple[float, float] = (1.0, 99.0)
    #: memory for preprocessed training slices (MiB); slices beyond it are re-read from disk
    cache_mb: int = 1024

    def __post_init__(self) -> None:
        problems = []
        if self.size < 16:
            problems.append(f"size {self.size} < 16 (VGG-16 halves it four times)")
        if not self.window[0] < self.window[1]:
            problems.append(f"window {list(self.window)} is not (low, high) with low < high")
        if self.backbone not in BACKBONES:
            problems.append(f"backbone {self.backbone!r} is not one of {', '.join(BACKBONES)}")
        if self.steps < 0:
            problems.append(f"steps {self.steps} < 0")
        if self.groups_per_batch < 1:
            problems.append(f"groups_per_batch {self.groups_per_batch} < 1")
        if self.slices_per_group < 3:
            problems.append(f"slices_per_group {self.slices_per_group} < 3 (L_dist needs 3)")
        if self.max_stride is not None and self.max_stride < 1:
            problems.append(f"max_stride {self.max_stride} < 1")
        if self.device not in ("cpu", "cuda", "auto"):
            problems.append(f"device {self.device!r} is not cpu, cuda or auto")
        if self.checkpoint_every < 1:
            problems.append(f"checkpoint_every {self.checkpoint_every} < 1")
        if self.calibration_slices < 2:
            problems.append(f"calibration_slices {self.calibration_slices} < 2")
        low, high = self.calibration_percentiles
        if not 0 <= low < high <= 100:
            problems.append(f"calibration_percentiles {[low, high]} not 0 <= low < high <= 100")
        if problems:
            raise ModelError("SSBR config: " + "; ".join(problems))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["window"] = list(self.window)
        data["calibration_percentiles"] = list(self.calibration_percentiles)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SSBRConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name in ("window", "calibration_percentiles"):
            if name in values:
                values[name] = tuple(float(v) for v in values[name])
        return cls(**values)


#: config fields that shape the training trajectory: a checkpoint continues only if they agree
TRAJECTORY_FIELDS = (
    "size",
    "window",
    "backbone",
    "groups_per_batch",
    "slices_per_group",
    "max_stride",
    "lr",
    "momentum",
    "weight_decay",
    "dist_weight",
    "seed",
)
