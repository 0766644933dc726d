"""Which torch device a command runs on."""

from __future__ import annotations

import torch

from lesionkg.core.errors import ModelError


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without CUDA is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("device cuda: CUDA is not available on this machine (use cpu or auto)")
    return torch.device(device)
