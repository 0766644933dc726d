"""The sequential triplet loss of five-lesion sequences (Yan et al., CVPR 2018, section 3.2).

For a sequence ``(A, B, C, D, E)`` drawn by :mod:`lesionkg.model.sampling`, the embedding distance
to the anchor A must grow along the sequence:
``sum_i max(0, d(A, S_i) - d(A, S_{i+1}) + margin)`` over ``S = (B, C, D, E)``.
"""

from __future__ import annotations

import torch


def sequential_triplet_loss(embeddings: torch.Tensor, margin: float = 0.1) -> torch.Tensor:
    """Mean over sequences of the summed hinge on consecutive members.

    ``embeddings (n, 5, D)``: anchor then B, C, D, E. Distances are Euclidean.
    """
    anchor = embeddings[:, :1]
    dist = torch.linalg.vector_norm(embeddings[:, 1:] - anchor, dim=2)  # (n, 4)
    hinge = torch.relu(dist[:, :-1] - dist[:, 1:] + margin)
    return hinge.sum(dim=1).mean()
