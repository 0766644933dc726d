"""Retrieval quality measures, pure NumPy: no files, no database.

Type precision@k (Yan et al., CVPR 2018, section 4): for each query lesion with a known coarse
type, the share of its ``k`` nearest lesions that have the same type. Neighbours from the query's
own patient are excluded by default, since a patient's other measurements of the same lesion would
make retrieval look easier than finding similar lesions in other patients is.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def label_precision_at_k(
    vectors: np.ndarray,
    labels: list[frozenset[str]],
    patients: np.ndarray,
    k: int = 5,
    *,
    exclude_same_patient: bool = True,
) -> float:
    """Mean share of the ``k`` nearest labelled lesions sharing at least one label with the query.

    ``labels`` (N,): LesaNet's relevant terms per lesion (empty = no labels: neither query nor
    neighbour). Fine-grained labels are multi-label, so "shares a term" is the relevance test.
    """
    keep = np.flatnonzero([bool(s) for s in labels])
    if len(keep) < 2:
        raise ValueError("label precision needs at least two labelled lesions")
    nearest = nearest_other_patients(
        np.asarray(vectors)[keep],
        np.asarray(patients)[keep],
        k,
        exclude_same_patient=exclude_same_patient,
    )
    kept = [labels[i] for i in keep]
    scores = []
    for q, row in enumerate(nearest):
        found = [j for j in row if j >= 0]
        if found:
            scores.append(sum(bool(kept[q] & kept[j]) for j in found) / len(found))
    return float(np.mean(scores))


@dataclass(frozen=True, slots=True)
class PairLesion:
    """A lesion a ground-truth pair may name: its key slice and (long, short) axes in mm."""

    lesion_id: str
    file_name: str
    long_axis_mm: float
    short_axis_mm: float


def resolve_pair_lesion(
    file_name: str, diameters_mm: tuple[float, float] | None, candidates: list[PairLesion]
) -> str | None:
    """The lesion a pair means on ``file_name``: the only one there, else the closest diameters.

    ``None`` when the key slice has no lesion, or several and the pair gives no diameters.
    """
    if not candidates:
        return None
    if len(candidates) == 1:
        return candidates[0].lesion_id
    if diameters_mm is None:
        return None
    long_mm, short_mm = diameters_mm
    best = min(
        candidates,
        key=lambda c: (
            abs(c.long_axis_mm - long_mm) + abs(c.short_axis_mm - short_mm),
            c.lesion_id,
        ),
    )
    return best.lesion_id


@dataclass(frozen=True, slots=True)
class MatchingScores:
    """Same-lesion pair scores of a track assignment (see :func:`score_matching`)."""

    pairs: int
    hits: int
    wrongs: int
    misses: int
    tracks: int
    multi_tracks: int
    mixed_type_tracks: int

    @property
    def recall(self) -> float:
        return self.hits / self.pairs if self.pairs else 0.0

    @property
    def precision(self) -> float:
        found = self.hits + self.wrongs
        return self.hits / found if found else 0.0

    @property
    def mixed_type_share(self) -> float:
        """Share of tracks with two or more measurements whose known coarse types differ."""
        return self.mixed_type_tracks / self.multi_tracks if self.multi_tracks else 0.0

    def as_dict(self) -> dict:
        return {
            "pairs": self.pairs,
            "hits": self.hits,
            "wrongs": self.wrongs,
            "misses": self.misses,
            "recall": round(self.recall, 4),
            "precision": round(self.precision, 4),
            "tracks": self.tracks,
            "multi_tracks": self.multi_tracks,
            "mixed_type_tracks": self.mixed_type_tracks,
            "mixed_type_share": round(self.mixed_type_share, 4),
        }


def score_matching(
    pairs: list[tuple[str, str]],
    track_of: dict[str, str],
    volume_of: dict[str, tuple],
    type_of: dict[str, int | None],
) -> MatchingScores:
    """Score tracks on same-lesion pairs ``(a, b)`` of lesion ids (issue 4's definition).

    Let c be the lesion of a's track in b's volume. Hit: c is b. Wrong: c exists and is not b
    (or a's track holds several lesions there). Miss: no c. ``volume_of`` maps every lesion id to
    its (patient, study_index, series_id); ``type_of`` to its coarse type or ``None``.
    """
    in_volume: dict[tuple, list[str]] = {}
    members: dict[str, list[str]] = {}
    for lesion_id, track in track_of.items():
        in_volume.setdefault((track, volume_of[lesion_id]), []).append(lesion_id)
        members.setdefault(track, []).append(lesion_id)
    hits = wrongs = misses = 0
    for a, b in pairs:
        found = in_volume.get((track_of[a], volume_of[b]), [])
        if not found:
            misses += 1
        elif found == [b]:
            hits += 1
        else:
            wrongs += 1
    multi = [m for m in members.values() if len(m) > 1]
    mixed = sum(1 for m in multi if len({type_of[x] for x in m if type_of.get(x) is not None}) > 1)
    return MatchingScores(
        pairs=len(pairs),
        hits=hits,
        wrongs=wrongs,
        misses=misses,
        tracks=len(members),
        multi_tracks=len(multi),
        mixed_type_tracks=mixed,
    )
