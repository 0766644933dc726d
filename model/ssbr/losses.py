"""The SSBR losses of a batch of slice groups: slice order (L_order) and equal score steps for
equal slice steps (L_dist)."""

from __future__ import annotations

import torch
from torch.nn import functional as F


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
