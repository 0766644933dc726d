"""Checkpoint directories: JSON config, tensor-only weights, checksums."""

from __future__ import annotations

import json

import pytest
import torch

from lesionkg.core.errors import ModelError
from lesionkg.model.checkpoint import load_checkpoint, save_checkpoint


def test_round_trip(tmp_path):
    net = torch.nn.Linear(4, 2)
    sha = save_checkpoint(tmp_path, "triplet", {"a": 1}, {"network": net.state_dict()}, {"m": 2})
    ckpt = load_checkpoint(tmp_path, kind="triplet")
    assert ckpt.sha256 == sha and len(sha) == 64
    assert ckpt.config == {"a": 1} and ckpt.metrics == {"m": 2} and ckpt.kind == "triplet"
    torch.testing.assert_close(ckpt.state_dicts["network"]["weight"], net.weight)
    header = json.loads((tmp_path / "config.json").read_text())
    assert header["format_version"] == 1 and header["weights_sha256"] == sha


def test_refuses_changed_weights_wrong_kind_and_version(tmp_path):
    save_checkpoint(tmp_path, "ssbr", {}, {"network": {"w": torch.zeros(2)}}, {})
    with pytest.raises(ModelError, match="field kind is 'ssbr', expected 'triplet'"):
        load_checkpoint(tmp_path, kind="triplet")
    weights = tmp_path / "weights.pt"
    torch.save({"network": {"w": torch.ones(2)}}, weights)
    with pytest.raises(ModelError, match="does not match weights_sha256"):
        load_checkpoint(tmp_path)
    header = json.loads((tmp_path / "config.json").read_text())
    header["format_version"] = 99
    (tmp_path / "config.json").write_text(json.dumps(header))
    with pytest.raises(ModelError, match="format_version is 99, expected 1"):
        load_checkpoint(tmp_path)
    with pytest.raises(ModelError, match="not found"):
        load_checkpoint(tmp_path / "nothing")


class Payload:
    """Not a tensor: loading it would need unpickling arbitrary code."""


def test_pickled_objects_are_not_loaded(tmp_path):
    save_checkpoint(tmp_path, "triplet", {}, {"network": {}}, {})
    weights = tmp_path / "weights.pt"
    torch.save({"network": {"x": Payload()}}, weights)
    header = json.loads((tmp_path / "config.json").read_text())
    from lesionkg.model.checkpoint import file_sha256

    header["weights_sha256"] = file_sha256(weights)
    (tmp_path / "config.json").write_text(json.dumps(header))
    with pytest.raises(ModelError, match="cannot load tensors"):
        load_checkpoint(tmp_path)
