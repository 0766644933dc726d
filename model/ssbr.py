"""Self-supervised body-part regression (SSBR): each axial CT slice gets a scalar body position.

After Yan et al., *Unsupervised body part regression via spatially self-ordering convolutional
neural networks* (ISBI 2018), the body-location cue of *Deep Lesion Graphs in the Wild* (CVPR
2018): DeepLesion's ``Normalized_lesion_location`` z comes from such a regressor. It learns from
unlabelled volumes only, using the one thing every CT volume tells for free: the order of its
slices.

**Direction.** The score grows with the slice number, which we assume grows from head to feet, as
in DeepLesion's ``Images_png`` layout (its normalised z grows from head to feet too). A volume
stored the other way round would teach the opposite direction: do not mix both in one training
set. After calibration, :meth:`SSBRModel.normalised_z` maps the score to about [0, 1]: 0 at the
top of the body range seen in training (head), 1 at the bottom (feet), clipped.

**Network.** VGG-16's convolutional layers (:func:`lesionkg.model.network.vgg16_features`,
``vgg16_bn`` by default since training starts from random weights; ``vgg16`` takes torchvision's
ImageNet file), then a 1 x 1 convolution with 512 channels, ReLU, global average pooling and a
linear layer to one score per slice.

**Input.** One slice in HU, clipped to ``window`` (HU), mapped to [0, 1], normalised with the grey
mean and standard deviation of torchvision's ImageNet statistics (so optional ImageNet weights see
inputs on their usual scale), resized to ``size`` x ``size`` pixels (bilinear, antialiased) and
replicated to 3 channels.

**Training.** A sample is a group of m = ``slices_per_group`` (8) equidistant slices of one volume:
a random stride k, then a random start such that all m slice numbers start + j k exist (volumes
may have gaps, as DeepLesion's sub-volumes do). With s_j the score of slice j and
Delta_j = s_{j+1} - s_j, the loss of a group is

    L_order = -sum_{j=0}^{m-2} log sigmoid(Delta_j)              (slices come in order)
    L_dist  = sum_{j=0}^{m-3} smoothL1(Delta_{j+1} - Delta_j)    (equal steps, equal score steps)

and a batch's loss is the mean over its groups of L_order + ``dist_weight`` L_dist. The groups of
step t come from a random generator seeded with (seed, t), so a resumed run draws the same groups
as an uninterrupted one. Plain SGD with momentum at a constant learning rate: a schedule tied to
the total number of steps would change meaning when a finished run is continued with more steps.

**Calibration.** Raw scores have no unit. After training, the slices of randomly chosen training
volumes (up to ``calibration_slices``) are scored; their 1st and 99th percentiles (by default)
become 0 and 1 of the normalised z.

**Data.** A volume is a folder of 16-bit PNG slices ``{slice:03d}.png`` whose pixel is HU + 32768
(DeepLesion's ``Images_png/{patient}_{study}_{series}/`` layout); a training set is a folder of
such volume folders (or a folder holding ``Images_png/``). Volumes without m equidistant slices are
skipped and counted.

**Checkpoint** (kind ``"ssbr"``, see :mod:`lesionkg.model.checkpoint`): ``config.json`` holds this
module's :class:`SSBRConfig`, the backbone weights used at the start (file name and sha256, or
null) and the calibration; ``weights.pt`` the network; ``optimizer.pt`` the step and SGD state
(tensors and plain containers only, ``weights_only=True``); ``metrics.json`` the loss history,
timings and volume counts; ``loss_curve.png`` the loss curve.
"""

from __future__ import annotations

import math
import re
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from lesionkg.core.errors import InvalidInputError, ModelError, Problem
from lesionkg.model.checkpoint import CONFIG_FILE, file_sha256, load_checkpoint, save_checkpoint
from lesionkg.model.device import resolve_device
from lesionkg.model.network import BACKBONES, load_backbone_weights, vgg16_features
from lesionkg.model.transforms import HU_OFFSET, SIXTEEN_BIT_MODES, Window, read_hu_png

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


# --- slices and volumes -------------------------------------------------------------------------


def _problem(path: Path, reason: str) -> InvalidInputError:
    return InvalidInputError([Problem(str(path), None, None, reason)], outcome="nothing was read")


def _png_mode_problem(path: Path) -> str | None:
    """Why ``path`` is not a 16-bit grayscale PNG, or None; reads the header only."""
    try:
        with Image.open(path) as image:
            if image.format != "PNG":
                return f"not a PNG (Pillow reads it as {image.format})"
            if image.mode not in SIXTEEN_BIT_MODES:
                return (
                    f"PNG mode {image.mode}: expected 16-bit grayscale "
                    f"(pixel = HU + {HU_OFFSET}, DeepLesion Images_png)"
                )
    except OSError as exc:
        return f"not a readable image: {exc}"
    return None


def read_hu_slice(path: Path) -> np.ndarray:
    """A DeepLesion 16-bit PNG slice as HU, float32 ``(H, W)``.

    Raises :class:`InvalidInputError` naming ``path`` if it is not a 16-bit grayscale PNG.
    """
    path = Path(path)
    reason = _png_mode_problem(path)
    if reason is not None:
        raise _problem(path, reason)
    return read_hu_png(path)


def preprocess_slices(
    hu_slices: np.ndarray, size: int, window: tuple[float, float]
) -> torch.Tensor:
    """Network input ``(N, 1, size, size)`` float32 from HU slices ``(N, H, W)``.

    Clips to ``window`` (HU), maps to [0, 1], normalises like ImageNet grey levels
    (:class:`~lesionkg.model.transforms.Window`), and resizes (bilinear, antialiased). The network
    replicates the channel.
    """
    hu = np.asarray(hu_slices, dtype=np.float32)
    if hu.ndim != 3 or hu.shape[0] == 0 or min(hu.shape[1:]) < 2:
        raise ModelError(f"hu_slices: expected an array (N, H, W) of HU, got shape {hu.shape}")
    tensor = torch.from_numpy(Window(*window)(hu)).unsqueeze(1)
    if tensor.shape[-2:] != (size, size):
        tensor = F.interpolate(
            tensor, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
    return tensor.contiguous()


@dataclass(frozen=True, eq=False)
class Volume:
    """One volume folder: its slice numbers (ascending) and PNG paths."""

    name: str
    directory: Path
    numbers: np.ndarray  # (n,) int64, ascending
    paths: tuple[Path, ...]
    #: strides (slice numbers) at which at least one full group exists, ascending
    strides: np.ndarray

    def path_of(self, number: int) -> Path:
        return self.paths[int(np.searchsorted(self.numbers, number))]


def list_slices(directory: Path) -> list[tuple[int, Path]]:
    """``(slice number, path)`` of the ``{number}.png`` files in ``directory``, ascending."""
    found = []
    for path in directory.iterdir():
        match = SLICE_NAME.match(path.name)
        if match and path.is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def _presence(numbers: np.ndarray) -> np.ndarray:
    """Boolean mask over slice numbers ``numbers[0] .. numbers[-1]``: True where a slice exists."""
    mask = np.zeros(int(numbers[-1] - numbers[0]) + 1, dtype=bool)
    mask[numbers - numbers[0]] = True
    return mask


def group_starts(numbers: np.ndarray, stride: int, m: int) -> np.ndarray:
    """Slice numbers ``a`` such that ``a, a + stride, ..., a + (m - 1) stride`` all exist."""
    if len(numbers) < m:
        return np.zeros(0, dtype=np.int64)
    mask = _presence(numbers)
    length = len(mask) - (m - 1) * stride
    if length <= 0:
        return np.zeros(0, dtype=np.int64)
    ok = mask[:length].copy()
    for j in range(1, m):
        ok &= mask[j * stride : j * stride + length]
    return np.flatnonzero(ok).astype(np.int64) + int(numbers[0])


def group_strides(numbers: np.ndarray, m: int, max_stride: int | None = None) -> np.ndarray:
    """Strides at which ``numbers`` (ascending slice numbers) hold a group of ``m`` slices."""
    if len(numbers) < m:
        return np.zeros(0, dtype=np.int64)
    longest = int(numbers[-1] - numbers[0]) // (m - 1)
    if max_stride is not None:
        longest = min(longest, max_stride)
    return np.array(
        [k for k in range(1, longest + 1) if len(group_starts(numbers, k, m))], dtype=np.int64
    )


def sample_group(
    volume: Volume, m: int, rng: np.random.Generator, max_stride: int | None = None
) -> np.ndarray:
    """``m`` equidistant existing slice numbers of ``volume``, ascending: a uniform stride among
    those possible, then a uniform start among those possible for it."""
    strides = volume.strides if max_stride is None else volume.strides[volume.strides <= max_stride]
    if len(strides) == 0:
        raise ModelError(f"{volume.directory}: no {m} equidistant slices")
    stride = int(rng.choice(strides))
    start = int(rng.choice(group_starts(volume.numbers, stride, m)))
    return start + stride * np.arange(m, dtype=np.int64)


@dataclass(frozen=True)
class VolumeScan:
    """The usable volumes of a training folder and the skipped ones with why."""

    root: Path
    volumes: tuple[Volume, ...]
    skipped: tuple[tuple[str, str], ...]  # (volume name, reason)

    @property
    def slices(self) -> int:
        return sum(len(v.numbers) for v in self.volumes)


def scan_volumes(
    root: Path, m: int = 8, max_stride: int | None = None, progress: bool = False
) -> VolumeScan:
    """The volume folders under ``root`` (or ``root/Images_png``) usable for groups of ``m``.

    Volumes without ``m`` equidistant slices, and subfolders without slice PNGs, are skipped and
    listed. Every slice of a usable volume must be a 16-bit grayscale PNG: all offending files are
    reported together (:class:`InvalidInputError`). No usable volume is a :class:`ModelError`.
    """
    root = Path(root)
    if not root.is_dir():
        raise ModelError(f"{root}: volumes folder not found")
    if (root / "Images_png").is_dir():
        root = root / "Images_png"
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        hint = (
            " (it holds slice PNGs itself: give the folder above it)" if list_slices(root) else ""
        )
        raise ModelError(
            f"{root}: no volume folders ({{volume}}/{{slice:03d}}.png, 16-bit PNG){hint}"
        )
    volumes, skipped, problems = [], [], []
    for folder in tqdm(
        folders, desc="scanning volumes", unit="vol", disable=not progress, leave=False
    ):
        slices = list_slices(folder)
        if not slices:
            skipped.append((folder.name, "no {slice}.png files"))
            continue
        numbers = np.array([n for n, _ in slices], dtype=np.int64)
        strides = group_strides(numbers, m, max_stride)
        if len(strides) == 0:
            skipped.append((folder.name, f"{len(numbers)} slices, no {m} equidistant ones"))
            continue
        for _, path in slices:
            reason = _png_mode_problem(path)
            if reason is not None:
                problems.append(Problem(str(path), None, None, reason))
        volumes.append(Volume(folder.name, folder, numbers, tuple(p for _, p in slices), strides))
    if problems:
        raise InvalidInputError(problems, outcome="nothing was trained")
    if not volumes:
        raise ModelError(
            f"{root}: none of its {len(folders)} volume folders has {m} equidistant slices "
            f"(e.g. {skipped[0][0]}: {skipped[0][1]})"
        )
    return VolumeScan(root, tuple(volumes), tuple(skipped))


class SliceStore:
    """Preprocessed training slices, read on demand and kept up to ``cache_mb`` MiB."""

    def __init__(self, size: int, window: tuple[float, float], cache_mb: int) -> None:
        self.size, self.window = size, window
        self.capacity = (cache_mb << 20) // (size * size * 4)
        self._cache: dict[Path, torch.Tensor] = {}

    def load(self, paths: list[Path]) -> torch.Tensor:
        """Network input ``(len(paths), 1, size, size)``."""
        out = []
        for path in paths:
            tensor = self._cache.get(path)
            if tensor is None:
                # scan_volumes checked every slice's header already: read it once, not twice.
                tensor = preprocess_slices(read_hu_png(path)[None], self.size, self.window)[0]
                if len(self._cache) < self.capacity:
                    self._cache[path] = tensor
            out.append(tensor)
        return torch.stack(out)


# --- network and losses -------------------------------------------------------------------------


class SSBRNet(nn.Module):
    """VGG-16 conv layers, 1 x 1 conv (512) + ReLU, global average pooling, linear -> score."""

    def __init__(self, backbone: str = "vgg16_bn") -> None:
        super().__init__()
        self.features, _ = vgg16_features(backbone)
        self.conv6 = nn.Conv2d(512, 512, kernel_size=1)
        self.fc = nn.Linear(512, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Scores ``(B,)`` of slices ``(B, 1 or 3, S, S)`` (preprocessed, see the module doc)."""
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        maps = torch.relu(self.conv6(self.features(images)))
        return self.fc(maps.mean(dim=(2, 3))).squeeze(1)


def order_loss(scores: torch.Tensor) -> torch.Tensor:
    """Mean over groups of -sum_j log sigmoid(s_{j+1} - s_j); ``scores`` ``(G, m)`` in slice
    order."""
    return -F.logsigmoid(scores[:, 1:] - scores[:, :-1]).sum(dim=1).mean()


def spacing_loss(scores: torch.Tensor) -> torch.Tensor:
    """Mean over groups of sum_j smoothL1(Delta_{j+1} - Delta_j), Delta_j = s_{j+1} - s_j
    (smooth L1 with beta 1: x^2 / 2 below 1, |x| - 1/2 above); ``scores`` ``(G, m)``."""
    steps = scores[:, 1:] - scores[:, :-1]
    return (
        F.smooth_l1_loss(steps[:, 1:], steps[:, :-1], reduction="none", beta=1.0).sum(dim=1).mean()
    )


def ssbr_loss(
    scores: torch.Tensor, dist_weight: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(L_order + dist_weight L_dist, L_order, L_dist)`` of ``scores`` ``(G, m)``."""
    order, spacing = order_loss(scores), spacing_loss(scores)
    return order + dist_weight * spacing, order, spacing


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


def _plot_loss_curve(metrics: dict[str, Any], path: Path) -> None:
    # Figure + Agg canvas directly: no global matplotlib backend change inside a library.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    window = max(1, len(metrics["loss_history"]) // 50)
    for key, label in (
        ("loss_history", "L_order + L_dist"),
        ("order_loss_history", "L_order"),
        ("dist_loss_history", "L_dist"),
    ):
        values = np.asarray(metrics[key], dtype=float)
        if len(values) == 0:
            continue
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        axes.plot(np.arange(window, len(values) + 1), smooth, label=label)
    axes.set_xlabel("step")
    smoothing = f", moving mean over {window} steps" if window > 1 else ""
    axes.set_ylabel(f"loss per group{smoothing}")
    axes.set_yscale("log")
    axes.set_title("SSBR training loss")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)


def _score_batches(network: SSBRNet, inputs: torch.Tensor, device: torch.device) -> np.ndarray:
    scores = []
    with torch.no_grad():
        for start in range(0, len(inputs), SCORE_BATCH):
            batch = inputs[start : start + SCORE_BATCH].to(device)
            scores.append(network(batch).float().cpu().numpy())
    return np.concatenate(scores).astype(np.float64)


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
    scores, correlations, volumes = [], [], 0
    for index in rng.permutation(len(scan.volumes)):
        volume = scan.volumes[index]
        room = config.calibration_slices - sum(len(s) for s in scores)
        if room <= 0:
            break
        numbers = volume.numbers
        if len(numbers) > room:
            # Evenly spread slices of the last volume rather than its top part only.
            numbers = numbers[np.linspace(0, len(numbers) - 1, room).round().astype(int)]
        volume_scores = _score_batches(
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
        print(
            f"warning: {path}: not from step {step}; continuing with fresh SGD momentum",
            file=sys.stderr,
        )
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
        if progress:
            print(f"continuing {out_dir} from step {start_step}", file=sys.stderr)

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
        paths = []
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
        if progress:
            print("calibrating on training slices ...", file=sys.stderr)
        calibration = _calibrate(network, scan, store, config, device)
        metrics["seconds_per_step"] = metrics["seconds"] / max(1, metrics["step"])
        sha = save(calibration)
        if metrics["loss_history"]:
            _plot_loss_curve(metrics, out_dir / LOSS_CURVE_FILE)
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
        return _score_batches(self.network, inputs, self.device)

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
        reason = _png_mode_problem(path)
        if reason is not None:
            problems.append(Problem(str(path), None, None, reason))
    if problems:
        raise InvalidInputError(problems, outcome="nothing was scored")
    model = load_ssbr(model_dir, device)
    predictions = []
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
        scores = _score_batches(model.network, inputs, model.device)
        zs = model.z_from_scores(scores) if model.calibration is not None else [None] * len(chunk)
        predictions.extend(
            SlicePrediction(p, float(s), None if z is None else float(z))
            for p, s, z in zip(chunk, scores, zs, strict=True)
        )
    return predictions
