"""Intra-patient lesion matching: which measurements of one patient are the same physical lesion.

Pure logic: lesions in, tracks out; no files, no database. After Yan et al. (CVPR 2018,
section 3.3), matching is a graph problem on one patient's lesions:

1. **Volumes.** A volume is one series of one study, keyed ``(study_index, series_id)``. The same
   lesion can appear in several volumes, also in two series of one study.
2. **Candidate edges.** For every pair of volumes, a Hungarian assignment (``scipy``'s
   ``linear_sum_assignment``) pairs their lesions at least total cost; pairs costing less than
   ``MatchConfig.max_cost`` become candidate edges. The cost of lesions ``a`` and ``b`` adds

   - the normalised-location distance, each axis divided by its scale (``location_scale``):
     DeepLesion's x, y, z in 0..1; z comes from body-part regression and is about 4x steadier
     across studies than x and y, so it gets a smaller scale;
   - ``size_weight * |log(long_a / long_b)| / size_scale``: lesions grow and shrink, so size is a
     soft cue;
   - ``type_weight`` when both given types are known and differ (predicted types are not used:
     they are votes of nearby lesions, i.e. the location again);
   - ``embedding_weight * cosine distance / embedding_scale`` when both have an embedding.

3. **Pruning** (networkx's union-find): candidate edges are merged into tracks cheapest first; an
   edge is dropped when its two tracks already share a volume. So no track holds two lesions of one
   volume, and a lesion has at most one counterpart in any other volume.
4. **Tracks** are the resulting components, singletons included. Their members are ordered by
   ``(study_index, series_id)``, and consecutive members are linked (``FOLLOWED_BY``).

The issue's baseline is the same procedure with plain location distance plus 0.05 |log size
ratio| and a 0.2 cut (:data:`BASELINE`).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from networkx.utils import UnionFind
from scipy.optimize import linear_sum_assignment

Volume = tuple[int, int]
"""``(study_index, series_id)`` of one series of one study."""


@dataclass(frozen=True, slots=True)
class MatchLesion:
    """What matching needs of one lesion of one patient.

    ``location``: DeepLesion's normalised x, y, z in 0..1; ``long_axis_mm``: RECIST long axis;
    ``coarse_type``: the given type (1..8), ``None`` when unknown; ``embedding``: a unit
    vector ``(D,)`` in one space, or ``None``.
    """

    lesion_id: str
    study_index: int
    series_id: int
    location: tuple[float, float, float]
    long_axis_mm: float
    coarse_type: int | None = None
    embedding: tuple[float, ...] | None = None

    @property
    def volume(self) -> Volume:
        return (self.study_index, self.series_id)


@dataclass(frozen=True, slots=True)
class MatchConfig:
    """Weights of the matching cost (dimensionless; a cost of 1 is one "scale" of disagreement).

    The defaults were chosen on the real DeepLesion validation split's same-lesion pairs with a
    cross-check on two halves of its patients: the 90th percentile of the absolute location
    difference of true pairs is about (0.054, 0.068, 0.016), of |log size ratio| about 0.28.
    """

    location_scale: tuple[float, float, float] = (0.054, 0.068, 0.016)
    size_weight: float = 1.0
    size_scale: float = 0.28
    type_weight: float = 2.0
    embedding_weight: float = 1.0
    #: cosine distance (1 - cos) that counts as one unit of cost
    embedding_scale: float = 0.2
    max_cost: float = 4.0

    def as_dict(self) -> dict:
        return {
            "location_scale": list(self.location_scale),
            "size_weight": self.size_weight,
            "size_scale": self.size_scale,
            "type_weight": self.type_weight,
            "embedding_weight": self.embedding_weight,
            "embedding_scale": self.embedding_scale,
            "max_cost": self.max_cost,
        }


#: The issue's baseline: Euclidean normalised-location distance + 0.05 |log size ratio|, cut 0.2.
BASELINE = MatchConfig(
    location_scale=(1.0, 1.0, 1.0),
    size_weight=0.05,
    size_scale=1.0,
    type_weight=0.0,
    embedding_weight=0.0,
    max_cost=0.2,
)


@dataclass(frozen=True, slots=True)
class CandidateEdge:
    """A Hungarian-assigned pair of lesions in two volumes, ``cost`` below the cut."""

    source: str
    target: str
    cost: float


@dataclass(frozen=True, slots=True)
class TrackLink:
    """Consecutive measurements of one track: ``source`` is the earlier one.

    ``score`` in 0..1 is ``1 - cost / max_cost`` of the pair (1 = identical cues);
    ``same_study``: both in one study (two series).
    """

    source: str
    target: str
    score: float
    same_study: bool


@dataclass(frozen=True, slots=True)
class Tracks:
    """Matching result for one patient: ``track_of`` every lesion id, and the links in order."""

    track_of: dict[str, str]
    links: tuple[TrackLink, ...]

    @property
    def count(self) -> int:
        return len(set(self.track_of.values()))


def pair_costs(
    a: Sequence[MatchLesion], b: Sequence[MatchLesion], config: MatchConfig
) -> np.ndarray:
    """Cost matrix ``(len(a), len(b))`` of every lesion of ``a`` against every lesion of ``b``."""
    la = np.array([x.location for x in a], dtype=np.float64).reshape(-1, 3)
    lb = np.array([x.location for x in b], dtype=np.float64).reshape(-1, 3)
    scale = np.asarray(config.location_scale, dtype=np.float64)
    cost = np.linalg.norm((la[:, None, :] - lb[None, :, :]) / scale, axis=2)
    if config.size_weight:
        sa = np.log([max(x.long_axis_mm, 1e-3) for x in a])
        sb = np.log([max(x.long_axis_mm, 1e-3) for x in b])
        cost += config.size_weight * np.abs(sa[:, None] - sb[None, :]) / config.size_scale
    if config.type_weight:
        ta = np.array([-1 if x.coarse_type is None else x.coarse_type for x in a])
        tb = np.array([-1 if x.coarse_type is None else x.coarse_type for x in b])
        differ = (ta[:, None] != tb[None, :]) & (ta[:, None] >= 0) & (tb[None, :] >= 0)
        cost += config.type_weight * differ
    if config.embedding_weight:
        cost += config.embedding_weight * _embedding_cost(a, b) / config.embedding_scale
    return cost


def _embedding_cost(a: Sequence[MatchLesion], b: Sequence[MatchLesion]) -> np.ndarray:
    """Cosine distance where both lesions have an embedding, else 0 (no evidence either way)."""
    out = np.zeros((len(a), len(b)))
    ia = [i for i, x in enumerate(a) if x.embedding is not None]
    ib = [j for j, x in enumerate(b) if x.embedding is not None]
    if ia and ib:
        ea = np.array([a[i].embedding for i in ia], dtype=np.float64)
        eb = np.array([b[j].embedding for j in ib], dtype=np.float64)
        ea /= np.linalg.norm(ea, axis=1, keepdims=True)
        eb /= np.linalg.norm(eb, axis=1, keepdims=True)
        out[np.ix_(ia, ib)] = 1.0 - ea @ eb.T
    return out


def candidate_edges(
    lesions: Sequence[MatchLesion], config: MatchConfig = MatchConfig()
) -> list[CandidateEdge]:
    """Hungarian-assigned pairs below ``config.max_cost`` for each pair of volumes of a patient."""
    by_volume: dict[Volume, list[MatchLesion]] = defaultdict(list)
    for lesion in lesions:
        by_volume[lesion.volume].append(lesion)
    edges = []
    for va, vb in itertools.combinations(sorted(by_volume), 2):
        a, b = by_volume[va], by_volume[vb]
        cost = pair_costs(a, b, config)
        for i, j in zip(*linear_sum_assignment(cost), strict=True):
            if cost[i, j] < config.max_cost:
                edges.append(CandidateEdge(a[i].lesion_id, b[j].lesion_id, float(cost[i, j])))
    return edges


def prune(
    lesions: Sequence[MatchLesion], edges: Iterable[CandidateEdge]
) -> dict[str, frozenset[str]]:
    """Merge candidate edges cheapest first into tracks that never hold two lesions of one volume.

    Returns each lesion id's track as the frozenset of its members. Ties in cost are broken by
    the lesion ids, so the result does not depend on input order.
    """
    volume_of = {lesion.lesion_id: lesion.volume for lesion in lesions}
    groups = UnionFind(volume_of)
    volumes = {lid: {v} for lid, v in volume_of.items()}
    for edge in sorted(
        edges, key=lambda e: (e.cost, min(e.source, e.target), max(e.source, e.target))
    ):
        ra, rb = groups[edge.source], groups[edge.target]
        if ra == rb or volumes[ra] & volumes[rb]:
            continue
        groups.union(ra, rb)
        root = groups[ra]
        volumes[root] = volumes[ra] | volumes[rb]
    members: dict[str, set[str]] = defaultdict(set)
    for lid in volume_of:
        members[groups[lid]].add(lid)
    return {lid: frozenset(members[groups[lid]]) for lid in volume_of}


def track_id_of(first_lesion_id: str) -> str:
    """A track is named after its first measurement: ``DL-0123...`` -> ``T-0123...``."""
    return "T-" + first_lesion_id.split("-", 1)[-1]


def match_patient(lesions: Sequence[MatchLesion], config: MatchConfig = MatchConfig()) -> Tracks:
    """Tracks of one patient's lesions; see the module docstring.

    Every lesion gets a track (singletons too). A track's id comes from its first measurement in
    ``(study_index, series_id, lesion_id)`` order, so it is stable while that lesion stays first.
    """
    ids = [lesion.lesion_id for lesion in lesions]
    if len(set(ids)) != len(ids):
        raise ValueError("match_patient: a lesion id appears twice")
    by_id = {lesion.lesion_id: lesion for lesion in lesions}
    tracks = prune(lesions, candidate_edges(lesions, config))
    track_of: dict[str, str] = {}
    links: list[TrackLink] = []
    for members in set(tracks.values()):
        ordered = sorted((by_id[m] for m in members), key=lambda x: (*x.volume, x.lesion_id))
        name = track_id_of(ordered[0].lesion_id)
        for lesion in ordered:
            track_of[lesion.lesion_id] = name
        for a, b in itertools.pairwise(ordered):
            cost = float(pair_costs([a], [b], config)[0, 0])
            links.append(
                TrackLink(
                    a.lesion_id,
                    b.lesion_id,
                    score=max(0.0, 1.0 - cost / config.max_cost),
                    same_study=a.study_index == b.study_index,
                )
            )
    links.sort(key=lambda link: (link.source, link.target))
    return Tracks(track_of=track_of, links=tuple(links))


def match_cohort(
    lesions_by_patient: Mapping[str, Sequence[MatchLesion]], config: MatchConfig = MatchConfig()
) -> dict[str, Tracks]:
    """:func:`match_patient` for every patient (lesions never match across patients)."""
    return {pid: match_patient(rows, config) for pid, rows in lesions_by_patient.items()}
