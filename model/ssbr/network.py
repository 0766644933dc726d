"""The SSBR network: VGG-16 conv layers, a 1 x 1 convolution, global average pooling and a
linear layer to one body-position score per slice."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lesionkg.model.network import vgg16_features
from lesionkg.model.ssbr.config import SCORE_BATCH

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


def score_batches(network: SSBRNet, inputs: torch.Tensor, device: torch.device) -> np.ndarray:
    scores = []
    with torch.no_grad():
        for start in range(0, len(inputs), SCORE_BATCH):
            batch = inputs[start : start + SCORE_BATCH].to(device)
            scores.append(network(batch).float().cpu().numpy())
    return np.concatenate(scores).astype(np.float64)
