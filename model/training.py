"""Training the triplet network: seeded, resumable, CPU or CUDA, with pseudo-label rounds.

One step draws ``sequences_per_batch`` five-lesion sequences (:mod:`lesionkg.model.sampling`),
embeds every distinct lesion in them once, and takes an SGD step on the sequential triplet loss.
The sequences of step ``s`` come from ``numpy.random.default_rng([seed, s])``, so a run resumed
from a checkpoint draws exactly what an uninterrupted run would have drawn.

Training runs in ``rounds``: the first uses the given coarse types only; at the start of each
later round every lesion is embedded, unlabelled ones get a kNN-vote pseudo-label, and those with
a confidence of at least ``pseudo_min_confidence`` join the sampler as if labelled.

Every lesion's crops are prepared once and kept in memory as float16:
``N x crops x 3 x S^2 x 2`` bytes (49 KB a lesion with two 64-pixel crops).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lesionkg.core.errors import InvalidInputError, ModelError, Problem
from lesionkg.core.records import SPLITS, LesionRecord
from lesionkg.loaders.deeplesion import RejectedRow, parse_dl_info
from lesionkg.loaders.images import find_key_slice
from lesionkg.model.checkpoint import (
    CONFIG_FILE,
    file_sha256,
    load_checkpoint,
    save_checkpoint,
)
from lesionkg.model.device import resolve_device
from lesionkg.model.embedder import KIND
from lesionkg.model.losses import sequential_triplet_loss
from lesionkg.model.network import LesionEmbedder, NetworkConfig, load_backbone_weights
from lesionkg.model.plots import plot_triplet_loss
from lesionkg.model.sampling import SamplerConfig, SequenceSampler, pseudo_label, refine_types
from lesionkg.model.transforms import InputConfig, LesionImage

TRAINING_STATE_FILE = "training_state.pt"
LOSS_CURVE_FILE = "loss_curve.png"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines the trained weights; stored as plain JSON in the checkpoint."""

    seed: int = 0
    steps: int = 300
    sequences_per_batch: int = 24
    #: "sgd" (the paper's) or "adam"
    optimizer: str = "sgd"
    lr: float = 0.002
    momentum: float = 0.9
    weight_decay: float = 5e-4
    #: on Euclidean distances between unit vectors (range 0..2)
    margin: float = 0.1
    rounds: int = 2
    pseudo_k: int = 10
    pseudo_min_confidence: float = 0.7
    checkpoint_every: int = 50
    network: NetworkConfig = field(default_factory=NetworkConfig)
    input: InputConfig = field(default_factory=InputConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)

    def to_json(self) -> dict[str, Any]:
        plain = {k: getattr(self, k) for k in self.__dataclass_fields__}
        plain["network"] = self.network.to_json()
        plain["input"] = self.input.to_json()
        plain["sampler"] = asdict(self.sampler)
        return plain

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        scalars = {
            k: data[k]
            for k in cls.__dataclass_fields__
            if k in data and k not in ("network", "input", "sampler")
        }
        return cls(
            **scalars,
            network=NetworkConfig.from_json(data.get("network", {})),
            input=InputConfig.from_json(data["input"]) if "input" in data else InputConfig(),
            sampler=SamplerConfig(**data.get("sampler", {})),
        )


@dataclass(frozen=True)
class TrainingSet:
    """Lesions with an image, and the cues the sampler orders them by.

    ``types (N,)`` coarse type or -1; ``location (N, 3)`` normalised x, y, z; ``size_mm (N, 2)``
    long and short axis; ``patients (N,)`` patient ids. ``without_image`` lists the file names of
    rows that were left out because their key slice was not found.
    """

    lesions: list[LesionImage]
    types: np.ndarray
    location: np.ndarray
    size_mm: np.ndarray
    patients: np.ndarray
    without_image: list[str]

    @classmethod
    def from_records(cls, records: Sequence[LesionRecord], images: Path) -> TrainingSet:
        """The records whose key slice is under ``images`` (see :func:`find_key_slice`)."""
        kept: list[tuple[LesionRecord, Path]] = []
        missing: list[str] = []
        for rec in records:
            path = find_key_slice(images, rec.file_name)
            if path is None:
                missing.append(rec.file_name)
            else:
                kept.append((rec, path))
        lesions = [
            LesionImage(r.lesion_id, r.file_name, p, r.bbox_px, r.spacing_mm[:2]) for r, p in kept
        ]
        return cls(
            lesions=lesions,
            types=np.array(
                [-1 if r.coarse_type is None else r.coarse_type for r, _ in kept], dtype=np.int64
            ),
            location=np.array([r.location for r, _ in kept], dtype=np.float64).reshape(-1, 3),
            size_mm=np.array(
                [(r.long_axis_mm, r.short_axis_mm) for r, _ in kept], dtype=np.float64
            ).reshape(-1, 2),
            patients=np.array([r.patient_id for r, _ in kept], dtype=object),
            without_image=missing,
        )


def read_training_rows(csv_path: Path, splits: Sequence[str] | None = None) -> list[LesionRecord]:
    """Rows of a ``DL_info.csv`` in ``splits`` (names from ``SPLITS``; None = all).

    Any invalid row is an error listing every problem: a model is not trained on part of a file
    without the user knowing.
    """
    wanted = set(splits) if splits is not None else None
    if wanted is not None and not wanted <= set(SPLITS.values()):
        raise ModelError(f"unknown split(s) {sorted(wanted - set(SPLITS.values()))}")
    records: list[LesionRecord] = []
    problems: list[Problem] = []
    for item in parse_dl_info(csv_path):
        if isinstance(item, RejectedRow):
            problems.extend(item.problems)
        elif wanted is None or item.split in wanted:
            records.append(item)
    if problems:
        raise InvalidInputError(problems, outcome="nothing was trained")
    return records


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    out_dir: Path
    sha256: str
    steps: int
    final_loss: float
    seconds: float
    lesions: int
    without_image: int
    device: str

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "out_dir": str(self.out_dir)}

    def describe(self) -> str:
        return (
            f"trained {self.steps} steps on {self.lesions} lesions ({self.without_image} rows "
            f"without image left out) in {self.seconds:.0f} s on {self.device}; "
            f"final loss {self.final_loss:.4f}\nmodel {self.sha256} -> {self.out_dir}"
        )


@dataclass
class _Cache:
    crops: torch.Tensor  # (N, C, 3, S, S) float16
    boxes: torch.Tensor  # (N, C, 4) float32


def _prepare_all(data: TrainingSet, inputs: InputConfig, progress: bool) -> _Cache:
    from tqdm import tqdm

    n, c, s = len(data.lesions), len(inputs.crops), inputs.crops[0].size_px
    crops = torch.empty((n, c, 3, s, s), dtype=torch.float16)
    boxes = torch.empty((n, c, 4), dtype=torch.float32)
    bar = tqdm(total=n, desc="crops", unit="lesion", disable=not progress, leave=False)
    for i, lesion in enumerate(data.lesions):
        crop, box = inputs.prepare(lesion)
        crops[i] = torch.from_numpy(crop)
        boxes[i] = torch.from_numpy(box)
        bar.update()
    bar.close()
    return _Cache(crops, boxes)


def train_step(
    net: LesionEmbedder,
    optimizer: torch.optim.Optimizer,
    crops: torch.Tensor,
    boxes: torch.Tensor,
    sequences: np.ndarray,
    margin: float,
) -> float:
    """One optimisation step on ``sequences (n, 5)`` of indices into ``crops (N, C, 3, S, S)`` and
    ``boxes (N, C, 4)``; returns the loss before the step. Each distinct lesion is embedded once.
    """
    device = next(net.parameters()).device
    unique, inverse = np.unique(sequences, return_inverse=True)
    idx = torch.from_numpy(unique)
    embeddings = net(crops[idx].float().to(device), boxes[idx].to(device))
    members = torch.from_numpy(inverse.reshape(sequences.shape)).to(device)
    loss = sequential_triplet_loss(embeddings[members], margin)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.item())


@torch.no_grad()
def _embed_cache(net: LesionEmbedder, cache: _Cache, device: torch.device) -> np.ndarray:
    net.eval()
    parts = [
        net(cache.crops[i : i + 64].float().to(device), cache.boxes[i : i + 64].to(device)).cpu()
        for i in range(0, len(cache.crops), 64)
    ]
    net.train()
    return torch.cat(parts).numpy()


def _optimizer(net: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            net.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    raise ModelError(f"optimizer {config.optimizer!r} is not one of sgd, adam")


def _resume(
    out_dir: Path, config_json: dict[str, Any], net: LesionEmbedder, opt: torch.optim.Optimizer
) -> dict[str, Any] | None:
    if not (out_dir / CONFIG_FILE).is_file():
        return None
    ckpt = load_checkpoint(out_dir, kind=KIND)
    saved = {k: v for k, v in ckpt.config.items() if k != "steps"}
    if saved != {k: v for k, v in config_json.items() if k != "steps"}:
        raise ModelError(
            f"{out_dir / CONFIG_FILE}: a checkpoint with another configuration is already there; "
            "choose another --out or the same options (only --steps may change)"
        )
    state_path = out_dir / TRAINING_STATE_FILE
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise ModelError(f"{state_path}: missing, cannot resume training") from exc
    net.load_state_dict(ckpt.state_dicts["network"])
    opt.load_state_dict(state["optimizer"])
    return {
        "step": int(state["step"]),
        "types": state["types"].numpy(),
        "metrics": ckpt.metrics,
        "sha256": ckpt.sha256,
    }


def train(
    data: TrainingSet,
    out_dir: Path,
    config: TrainConfig | None = None,
    *,
    backbone_weights: Path | None = None,
    device: str = "auto",
    progress: bool = True,
) -> TrainResult:
    """Train (or resume training) the triplet network on ``data``; checkpoint in ``out_dir``.

    Resuming: if ``out_dir`` holds a checkpoint with the same configuration (``steps`` may grow),
    training continues from its step; one with another configuration is an error.
    """
    from tqdm import tqdm

    config = config or TrainConfig()
    out_dir = Path(out_dir)
    dev = resolve_device(device)
    torch.manual_seed(config.seed)
    net = LesionEmbedder(config.network)
    init: dict[str, Any] = {"source": "random", "seed": config.seed}
    if backbone_weights is not None:
        load_backbone_weights(net.features, backbone_weights)
        init = {"source": "file", "name": backbone_weights.name}
        init["sha256"] = file_sha256(backbone_weights)
    config_json = {**config.to_json(), "backbone_init": init}
    net.to(dev).train()
    opt = _optimizer(net, config)
    resumed = _resume(out_dir, config_json, net, opt)
    types = data.types.copy()
    metrics: dict[str, Any] = {"loss": [], "rounds": [], "seconds": 0.0}
    step = 0
    if resumed is not None:
        step, types, metrics = resumed["step"], resumed["types"], resumed["metrics"]
        if len(types) != len(data.types):
            raise ModelError(
                f"{out_dir}: checkpoint was trained on {len(types)} lesions, this data has "
                f"{len(data.types)}; resume with the same data or choose another --out"
            )
    sha = resumed["sha256"] if resumed is not None else ""
    if step >= config.steps:
        return _result(out_dir, sha, metrics, data, dev)

    cache = _prepare_all(data, config.input, progress)
    per_round = math.ceil(config.steps / max(1, config.rounds))
    sampler = SequenceSampler(types, data.location, data.size_mm, config.sampler)
    if len(sampler) == 0:
        raise ModelError(
            "no training sequence can be drawn: it needs lesions of at least two labelled coarse "
            "types, one of them with four or more lesions that have images"
        )
    bar = tqdm(total=config.steps, initial=step, desc="train", unit="step", disable=not progress)
    started = time.perf_counter()
    spent = float(metrics.get("seconds", 0.0))

    def save() -> str:
        metrics["seconds"] = spent + time.perf_counter() - started
        metrics["steps_done"] = step
        metrics["device"] = str(dev)
        metrics["lesions"] = len(data.lesions)
        metrics["without_image"] = len(data.without_image)
        digest = save_checkpoint(out_dir, KIND, config_json, {"network": net.state_dict()}, metrics)
        torch.save(
            {"optimizer": opt.state_dict(), "step": step, "types": torch.from_numpy(types)},
            out_dir / TRAINING_STATE_FILE,
        )
        boundaries = [r["step"] for r in metrics["rounds"]]
        plot_triplet_loss(metrics["loss"], boundaries, out_dir / LOSS_CURVE_FILE)
        return digest

    while step < config.steps:
        if step > 0 and step % per_round == 0 and (step // per_round) < config.rounds:
            labels, confidence = pseudo_label(
                _embed_cache(net, cache, dev), data.types, config.pseudo_k
            )
            types = refine_types(data.types, labels, confidence, config.pseudo_min_confidence)
            sampler = SequenceSampler(types, data.location, data.size_mm, config.sampler)
            unlabelled = data.types == -1
            metrics["rounds"].append(
                {
                    "round": step // per_round,
                    "step": step,
                    "unlabelled": int(unlabelled.sum()),
                    "pseudo_labelled": int((unlabelled & (types != -1)).sum()),
                    "mean_confidence": float(confidence[unlabelled].mean())
                    if unlabelled.any()
                    else None,
                }
            )
        sequences = sampler.sample(
            config.sequences_per_batch, np.random.default_rng([config.seed, step])
        )
        loss = train_step(net, opt, cache.crops, cache.boxes, sequences, config.margin)
        metrics["loss"].append(loss)
        step += 1
        bar.update()
        bar.set_postfix(loss=f"{metrics['loss'][-1]:.4f}")
        if step % config.checkpoint_every == 0 or step == config.steps:
            sha = save()
    bar.close()
    return _result(out_dir, sha, metrics, data, dev)


def _result(
    out_dir: Path, sha: str, metrics: dict[str, Any], data: TrainingSet, dev: torch.device
) -> TrainResult:
    losses = metrics.get("loss", [])
    tail = losses[-10:]
    return TrainResult(
        out_dir=out_dir,
        sha256=sha,
        steps=len(losses),
        final_loss=float(np.mean(tail)) if tail else math.nan,
        seconds=float(metrics.get("seconds", 0.0)),
        lesions=len(data.lesions),
        without_image=len(data.without_image),
        device=str(dev),
    )


def train_from_csv(
    csv_path: Path,
    images: Path,
    out_dir: Path,
    config: TrainConfig | None = None,
    *,
    splits: Sequence[str] | None = ("train", "val"),
    backbone_weights: Path | None = None,
    device: str = "auto",
    progress: bool = True,
) -> TrainResult:
    """Train on the rows of ``csv_path`` in ``splits`` that have a key slice under ``images``.

    The test split is left out by default so that it stays a held-out set.
    """
    data = TrainingSet.from_records(read_training_rows(csv_path, splits), images)
    if not data.lesions:
        raise ModelError(
            f"{csv_path}: none of its rows in split(s) {', '.join(splits or SPLITS.values())} "
            f"has a key slice under {images}"
        )
    return train(
        data,
        out_dir,
        config,
        backbone_weights=backbone_weights,
        device=device,
        progress=progress,
    )
