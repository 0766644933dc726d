"""Retrieval quality measures, pure NumPy: no files, no database.

Type precision@k (Yan et al., CVPR 2018, section 4): for each query lesion with a known coarse
type, the share of its ``k`` nearest lesions that have the same type. Neighbours from the query's
own patient are excluded by default, since a patient's other measurements of the same lesion would
make retrieval look easier than finding similar lesions in other patients is.
"""

from __future__ import annotations

import numpy as np
import torch

UNLABELLED = -1


def nearest_other_patients(
    vectors: np.ndarray, patients: np.ndarray, k: int, *, exclude_same_patient: bool = True
) -> np.ndarray:
    """Indices ``(N, k)`` of each row's ``k`` nearest rows (Euclidean), never itself.

    ``vectors (N, D)``; ``patients (N,)`` ids. Exact search, in chunks of 2,048 queries. A row
    with fewer than ``k`` candidates gets -1 in the missing places.
    """
    x = torch.as_tensor(np.asarray(vectors, dtype=np.float32))
    codes = np.unique(np.asarray(patients), return_inverse=True)[1]
    pid = torch.as_tensor(codes)
    n = len(x)
    k_eff = min(k, max(n - 1, 0))
    out = np.full((n, k), -1, dtype=np.int64)
    if k_eff == 0:
        return out
    for start in range(0, n, 2048):
        stop = min(start + 2048, n)
        dist = torch.cdist(x[start:stop], x)
        rows = torch.arange(start, stop)
        dist[rows - start, rows] = float("inf")
        if exclude_same_patient:
            dist[pid[start:stop, None] == pid[None, :]] = float("inf")
        values, idx = dist.topk(k_eff, largest=False)
        idx[torch.isinf(values)] = -1
        out[start:stop, :k_eff] = idx.numpy()
    return out


def type_precision_at_k(
    vectors: np.ndarray,
    types: np.ndarray,
    patients: np.ndarray,
    k: int = 5,
    *,
    exclude_same_patient: bool = True,
) -> float:
    """Mean over labelled queries of the share of the ``k`` nearest labelled lesions of its type.

    Only lesions with a known type (not ``UNLABELLED``) take part, as queries and as neighbours.
    """
    types = np.asarray(types)
    keep = np.flatnonzero(types != UNLABELLED)
    if len(keep) < 2:
        raise ValueError("type precision needs at least two labelled lesions")
    nearest = nearest_other_patients(
        np.asarray(vectors)[keep],
        np.asarray(patients)[keep],
        k,
        exclude_same_patient=exclude_same_patient,
    )
    t = types[keep]
    valid = nearest >= 0
    hits = (t[np.where(valid, nearest, 0)] == t[:, None]) & valid
    per_query = hits.sum(axis=1) / np.maximum(valid.sum(axis=1), 1)
    return float(per_query[valid.any(axis=1)].mean())
