"""Checkpoint directories: plain-JSON config and metrics beside tensor-only weight files.

A checkpoint is a directory::

    config.json     {"format_version": 1, "kind": "triplet"|"ssbr", "config": {...},
                     "weights": "weights.pt", "weights_sha256": "..."}
    weights.pt      {module name: state_dict}: tensors only, loaded with ``weights_only=True``
    metrics.json    whatever the trainer measured (loss history, step, timings)

Nothing in it needs pickled Python objects to load: the weights file is read by
``torch.load(weights_only=True)``, which refuses anything but tensors and plain containers. The
checkpoint's identity (the ``sha256`` that embeddings, indexes and edges record) is the SHA-256 of
``weights.pt``: two directories with the same weights are the same model.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lesionkg.core.errors import ModelError

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.pt"
METRICS_FILE = "metrics.json"


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint. ``state_dicts`` maps a module name (``"network"``) to its state."""

    directory: Path
    kind: str
    config: dict[str, Any]
    state_dicts: dict[str, dict[str, torch.Tensor]]
    metrics: dict[str, Any]
    sha256: str


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_atomic(path: Path, write) -> None:
    # Write beside the target then rename: a crash never leaves a half-written checkpoint file.
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _dump_json(data: Any, path: Path) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def save_checkpoint(
    directory: Path,
    kind: str,
    config: dict[str, Any],
    state_dicts: dict[str, dict[str, torch.Tensor]],
    metrics: dict[str, Any],
) -> str:
    """Write a checkpoint into ``directory`` (created if needed) and return its sha256.

    ``config`` and ``metrics`` must be JSON-serialisable; tensors are moved to the CPU.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cpu = {
        name: {key: value.detach().cpu() for key, value in state.items()}
        for name, state in state_dicts.items()
    }
    weights = directory / WEIGHTS_FILE
    _write_atomic(weights, lambda p: torch.save(cpu, p))
    sha = file_sha256(weights)
    header = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "config": config,
        "weights": WEIGHTS_FILE,
        "weights_sha256": sha,
    }
    _write_atomic(directory / METRICS_FILE, lambda p: _dump_json(metrics, p))
    # config.json last: its presence with a matching checksum marks a complete checkpoint.
    _write_atomic(directory / CONFIG_FILE, lambda p: _dump_json(header, p))
    return sha


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelError(f"{path}: not found (is this a LesionKG model directory?)") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: not readable JSON: {exc}") from exc


def load_checkpoint(directory: Path, kind: str | None = None) -> Checkpoint:
    """Read a checkpoint directory onto the CPU, checking format version, kind and checksum."""
    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    header = _read_json(config_path)
    if not isinstance(header, dict):
        raise ModelError(f"{config_path}: expected a JSON object")
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelError(
            f"{config_path}: field format_version is {version!r}, expected {FORMAT_VERSION}"
        )
    found_kind = header.get("kind")
    if kind is not None and found_kind != kind:
        raise ModelError(f"{config_path}: field kind is {found_kind!r}, expected {kind!r}")
    if not isinstance(header.get("config"), dict):
        raise ModelError(f"{config_path}: field config must be a JSON object")
    weights = directory / str(header.get("weights", WEIGHTS_FILE))
    if not weights.is_file():
        raise ModelError(f"{weights}: weights file not found")
    sha = file_sha256(weights)
    if sha != header.get("weights_sha256"):
        raise ModelError(
            f"{weights}: sha256 {sha} does not match weights_sha256 in {config_path} "
            "(file changed or truncated)"
        )
    try:
        state_dicts = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a bad file
        raise ModelError(f"{weights}: cannot load tensors: {exc}") from exc
    if not isinstance(state_dicts, dict):
        raise ModelError(f"{weights}: expected a mapping of module name to state_dict")
    metrics_path = directory / METRICS_FILE
    metrics = _read_json(metrics_path) if metrics_path.is_file() else {}
    return Checkpoint(directory, str(found_kind), header["config"], state_dicts, metrics, sha)
