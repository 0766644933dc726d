"""Sequential sampling of five-lesion sequences, and pseudo-labels for unlabelled lesions.

After Yan et al. (CVPR 2018), section 3.2. Clinical similarity is hierarchical: lesions of one
coarse type are more alike than lesions of different types; within a type, nearby body locations
are more alike than distant ones; and at one location, similar sizes more than different ones. A
sequence ``(A, B, C, D, E)`` encodes that order for an anchor A:

- B: same type as A, near A, similar size;
- C: same type, near A, more different size than B;
- D: same type, farther from A than B and C;
- E: another type.

The loss (:func:`lesionkg.model.losses.sequential_triplet_loss`) asks the embedding distance to
A to grow along the sequence.

Location (DeepLesion's normalised x, y, z) and size (long and short axis, mm) are each divided by
their maximum over the data set, so every dimension lies in [0, 1] and none dominates by its unit.
Everything here is pure NumPy / PyTorch with explicit seeds: no files, no database.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

UNLABELLED = -1


def normalise_columns(values: np.ndarray) -> np.ndarray:
    """``values (N, D)`` divided column-wise by the column's maximum absolute value (0 stays 0)."""
    values = np.asarray(values, dtype=np.float64)
    peak = np.abs(values).max(axis=0)
    return values / np.where(peak > 0, peak, 1.0)


@dataclass(frozen=True)
class SamplerConfig:
    """How sequences are drawn.

    ``candidates``: same-type lesions drawn at random per anchor; the ``near_fraction`` of them
    closest in location are the pool for B and C, the rest the pool for D.
    """

    candidates: int = 24
    near_fraction: float = 0.34


class SequenceSampler:
    """Draws ``(A, B, C, D, E)`` index sequences that respect the type > location > size order.

    ``types (N,)`` are coarse types, ``UNLABELLED`` (-1) for lesions to leave out;
    ``location (N, 3)`` normalised body position; ``size_mm (N, 2)`` long and short axis, mm.
    """

    def __init__(
        self,
        types: np.ndarray,
        location: np.ndarray,
        size_mm: np.ndarray,
        config: SamplerConfig | None = None,
    ) -> None:
        self.config = config or SamplerConfig()
        self.types = np.asarray(types, dtype=np.int64)
        self.location = normalise_columns(location)
        self.size = normalise_columns(size_mm)
        labelled = self.types != UNLABELLED
        self._by_type = {
            int(t): np.flatnonzero(self.types == t) for t in np.unique(self.types[labelled])
        }
        # An anchor needs three other lesions of its type (B, C, D) and a lesion of another type.
        usable = [t for t, idx in self._by_type.items() if len(idx) >= 4]
        self.anchor_types = usable if len(self._by_type) >= 2 else []
        self.anchors = (
            np.concatenate([self._by_type[t] for t in self.anchor_types])
            if self.anchor_types
            else np.empty(0, dtype=np.int64)
        )
        self._labelled = np.flatnonzero(labelled)

    def __len__(self) -> int:
        return len(self.anchors)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` sequences as an ``int64 (n, 5)`` array of lesion indices."""
        if len(self.anchors) == 0:
            raise ValueError(
                "no anchor: sequences need two labelled types, one with at least four lesions"
            )
        out = np.empty((n, 5), dtype=np.int64)
        for row in range(n):
            out[row] = self._one(rng)
        return out

    def _one(self, rng: np.random.Generator) -> np.ndarray:
        a = int(self.anchors[rng.integers(len(self.anchors))])
        same = self._by_type[int(self.types[a])]
        same = same[same != a]
        pick = rng.choice(same, size=min(self.config.candidates, len(same)), replace=False)
        loc_d = np.linalg.norm(self.location[pick] - self.location[a], axis=1)
        pick = pick[np.argsort(loc_d, kind="stable")]
        n_near = min(max(2, round(len(pick) * self.config.near_fraction)), len(pick) - 1)
        near, far = pick[:n_near], pick[n_near:]
        b, c = rng.choice(near, size=2, replace=False)
        size_d = np.linalg.norm(self.size[[b, c]] - self.size[a], axis=1)
        if size_d[1] < size_d[0]:
            b, c = c, b
        d = rng.choice(far)
        others = self._labelled[self.types[self._labelled] != self.types[a]]
        e = rng.choice(others)
        return np.array([a, b, c, d, e], dtype=np.int64)


def pseudo_label(
    embeddings: np.ndarray, types: np.ndarray, k: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """kNN vote for unlabelled lesions: ``(labels (N,), confidence (N,))``.

    Each lesion with type ``UNLABELLED`` gets the majority type among its ``k`` nearest labelled
    lesions (Euclidean on ``embeddings (N, D)``), and the majority's share of the votes as its
    confidence in [0, 1]. Labelled lesions keep their type with confidence 1.
    """
    types = np.asarray(types, dtype=np.int64)
    labels = types.copy()
    confidence = np.where(types != UNLABELLED, 1.0, 0.0)
    known = np.flatnonzero(types != UNLABELLED)
    unknown = np.flatnonzero(types == UNLABELLED)
    if len(known) == 0 or len(unknown) == 0:
        return labels, confidence
    k = min(k, len(known))
    ref = torch.as_tensor(np.asarray(embeddings)[known], dtype=torch.float32)
    for start in range(0, len(unknown), 4096):
        rows = unknown[start : start + 4096]
        query = torch.as_tensor(np.asarray(embeddings)[rows], dtype=torch.float32)
        nearest = torch.cdist(query, ref).topk(k, largest=False).indices.numpy()
        votes = types[known][nearest]  # (rows, k)
        for i, row in enumerate(rows):
            values, counts = np.unique(votes[i], return_counts=True)
            best = int(np.argmax(counts))
            labels[row] = values[best]
            confidence[row] = counts[best] / k
    return labels, confidence


def refine_types(
    types: np.ndarray, labels: np.ndarray, confidence: np.ndarray, min_confidence: float
) -> np.ndarray:
    """Types for the next round: the given ones plus pseudo-labels at ``min_confidence`` or more."""
    types = np.asarray(types, dtype=np.int64)
    use = (types == UNLABELLED) & (np.asarray(confidence) >= min_confidence)
    return np.where(use, labels, types)
