"""Intra-patient lesion matching: which measurements of one patient are the same physical lesion.

Pure logic: lesions in, tracks out; no files, no database. After Yan et al. (CVPR 2018,
section 3.3), matching is a graph problem on one patient's lesions:

0. **Reader links** (``reader_links=True``, the default): lesions that share a ``tracking_uid`` (a
   PACS reader gave the lesion that tracking UID in several reports) are joined into one track
   first, in ``(volume, lesion_id)`` order. The reader's link outranks any inferred one: a join that
   would put two lesions of one volume in one track is refused and counted
   (``Tracks.reader_conflicts``), and no inferred edge ever joins two tracks with different UIDs
   (the reader said they are different lesions). A lesion with a UID can still get inferred
   partners, e.g. in an earlier study whose report gave none.
1. **Volumes.** A volume is one series of one study, keyed ``(study_index, series_id)``. The same
   lesion can appear in several volumes, also in two series of one study. ``series_id`` is
   DeepLesion's int or a PACS series' hashed string; one patient's lesions use one kind.
2. **Candidate edges.** For every pair of volumes, a Hungarian assignment (``scipy``'s
   ``linear_sum_assignment``) pairs their lesions at least total cost; pairs costing less than
   ``MatchConfig.max_cost`` become candidate edges. With reader links, pairs the reader already
   decided are left out of the assignment: a lesion whose reader track has a measurement in the
   other volume, and two lesions with different UIDs. The cost of lesions ``a`` and ``b`` adds

   - the normalised-location distance, each axis divided by its scale (``location_scale``):
     DeepLesion's x, y, z in 0..1; z comes from body-part regression and is about 4x steadier
     across studies than x and y, so it gets a smaller scale. Only the axes known in both lesions
     count (a PACS bookmark has no z without a body-part regression model); a lesion without any
     location (no image) costs +inf against every lesion, i.e. is never a candidate;
   - ``size_weight * |log(long_a / long_b)| / size_scale``: lesions grow and shrink, so size is a
     soft cue;
   - ``type_weight`` when both given types are known and differ (predicted types are not used:
     they are votes of nearby lesions, i.e. the location again);
   - ``embedding_weight * cosine distance / embedding_scale`` when both have an embedding.

3. **Pruning** (networkx's union-find): candidate edges are merged into tracks cheapest first; an
   edge is dropped when its two tracks already share a volume. So no track holds two lesions of one
   volume, and a lesion has at most one counterpart in any other volume.
4. **Tracks** are the resulting components, singletons included. Their members are ordered by
   ``(study_index, series_id)``, and consecutive members are linked (``FOLLOWED_BY``); a link
   ``by`` "reader" joins two lesions with one tracking UID, else "matching".

:func:`reader_agreement` measures how often matching without reader links agrees with the readers.

The issue's baseline is the same procedure with plain location distance plus 0.05 |log size
ratio| and a 0.2 cut (:data:`BASELINE`).
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from networkx.utils import UnionFind
from scipy.optimize import linear_sum_assignment

Volume = tuple[int, int | str]
"""``(study_index, series_id)`` of one series of one study (DeepLesion: int series, PACS: str)."""

#: ``TrackLink.by`` of a link between two lesions a reader gave one tracking UID
BY_READER = "reader"
#: ``TrackLink.by`` of a link that matching inferred
BY_MATCHING = "matching"


@dataclass(frozen=True, slots=True)
class MatchLesion:
    """What matching needs of one lesion of one patient.

    ``location``: normalised x, y, z in 0..1 (DeepLesion's, or a PACS bookmark's), a component NaN
    when unknown (z without body-part regression), ``None`` when there is none (no image);
    ``long_axis_mm``: RECIST long axis in mm; ``coarse_type``: the given type (1..8), ``None`` when
    unknown; ``embedding``: a unit vector ``(D,)`` in one space, or ``None``; ``tracking_uid``: the
    reader's lesion tracking UID (pseudonymised, ``TU-...``), ``None`` when the report gave none.
    """

    lesion_id: str
    study_index: int
    series_id: int | str
    location: tuple[float, float, float] | None
    long_axis_mm: float
    coarse_type: int | None = None
    embedding: tuple[float, ...] | None = None
    tracking_uid: str | None = None

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

    ``score`` in 0..1 is ``1 - cost / max_cost`` of the pair (1 = identical cues; 0 for a reader
    link whose cues disagree by ``max_cost`` or more, or that has no location to compare);
    ``same_study``: both in one study (two series); ``by``: :data:`BY_READER` when both carry one
    tracking UID (and reader links were used), else :data:`BY_MATCHING`.
    """

    source: str
    target: str
    score: float
    same_study: bool
    by: str = BY_MATCHING


@dataclass(frozen=True, slots=True)
class Tracks:
    """Matching result for one patient: ``track_of`` every lesion id, and the links in order.

    ``reader_conflicts``: reader links refused because they would put two lesions of one volume
    in one track (one tracking UID on two lesions of one series).
    """

    track_of: dict[str, str]
    links: tuple[TrackLink, ...]
    reader_conflicts: int = 0

    @property
    def count(self) -> int:
        return len(set(self.track_of.values()))


@dataclass(frozen=True, slots=True)
class ReaderAgreement:
    """How often matching without reader links agrees with the readers' tracking UIDs.

    ``pairs``: the reader links (:func:`reader_pairs`: consecutive lesions, in volume order, of one
    tracking UID; a reader conflict, a second lesion of the UID in one volume, is left out as no
    track can hold it); ``agree``: matching without reader links put the two in one track;
    ``disagree`` = ``pairs - agree``.
    """

    pairs: int = 0
    agree: int = 0
    disagree: int = 0

    def __add__(self, other: ReaderAgreement) -> ReaderAgreement:
        return ReaderAgreement(
            self.pairs + other.pairs, self.agree + other.agree, self.disagree + other.disagree
        )

    def as_dict(self) -> dict:
        return {"pairs": self.pairs, "agree": self.agree, "disagree": self.disagree}


def _order(lesion: MatchLesion) -> tuple:
    """Time order of a patient's lesions: volume, then id (ties within a volume)."""
    return (*lesion.volume, lesion.lesion_id)


def _locations(lesions: Sequence[MatchLesion]) -> np.ndarray:
    """``(N, 3)`` locations, NaN where an axis (or the whole location) is unknown."""
    unknown = (math.nan, math.nan, math.nan)
    rows = [unknown if x.location is None else x.location for x in lesions]
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def pair_costs(
    a: Sequence[MatchLesion], b: Sequence[MatchLesion], config: MatchConfig
) -> np.ndarray:
    """Cost matrix ``(len(a), len(b))`` of every lesion of ``a`` against every lesion of ``b``.

    The location term uses the axes known in both lesions; a pair with none in common (a lesion
    without location) costs +inf.
    """
    scale = np.asarray(config.location_scale, dtype=np.float64)
    diff = (_locations(a)[:, None, :] - _locations(b)[None, :, :]) / scale
    shared = np.isfinite(diff)
    if shared.all():
        # complete locations (all of DeepLesion): the plain norm, without the masking's overhead
        cost = np.linalg.norm(diff, axis=2)
    else:
        # Zeroing the unknown axes keeps each pair's known differences, hence their norm, as is.
        cost = np.linalg.norm(np.where(shared, diff, 0.0), axis=2)
        cost[~shared.any(axis=2)] = np.inf
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


def _assign(cost: np.ndarray) -> list[tuple[int, int]]:
    """Hungarian pairs ``(i, j)`` of a cost matrix whose forbidden entries are inf (or NaN).

    ``linear_sum_assignment`` refuses matrices with NaN, and those whose inf entries leave no
    complete assignment. So rows and columns with no allowed entry are left out, and the remaining
    forbidden entries get a finite penalty above any sum of allowed ones: the assignment then
    takes as many allowed pairs as it can, at least cost. A matrix with no forbidden entry is
    passed on untouched, so such results are unchanged.
    """
    allowed = np.isfinite(cost)
    if allowed.all():
        return list(zip(*linear_sum_assignment(cost), strict=True))
    rows = np.flatnonzero(allowed.any(axis=1))
    cols = np.flatnonzero(allowed.any(axis=0))
    if not rows.size or not cols.size:
        return []
    sub = cost[np.ix_(rows, cols)]
    ok = np.isfinite(sub)
    # A pair with one more penalty costs more than any difference in allowed costs.
    bound = float(np.abs(sub[ok]).max()) + 1.0
    sub = np.where(ok, sub, 2.0 * min(sub.shape) * bound + 1.0)
    return [(rows[i], cols[j]) for i, j in zip(*linear_sum_assignment(sub), strict=True)]


class _Forest:
    """Tracks under construction: union-find over lesion ids, with each track's volumes and UID.

    A join is refused when the two tracks share a volume, or carry different tracking UIDs (a
    track holds at most one UID: reader joins only join one UID, and this rule keeps inferred
    joins from mixing two).
    """

    def __init__(self, lesions: Sequence[MatchLesion], *, uids: bool = True) -> None:
        """``uids=False``: ignore the tracking UIDs (matching without reader links)."""
        self.groups = UnionFind(lesion.lesion_id for lesion in lesions)
        self.volumes = {lesion.lesion_id: {lesion.volume} for lesion in lesions}
        self.uid: dict[str, str | None] = {
            x.lesion_id: x.tracking_uid if uids else None for x in lesions
        }

    def volumes_of(self, lesion_id: str) -> set[Volume]:
        return self.volumes[self.groups[lesion_id]]

    def uid_of(self, lesion_id: str) -> str | None:
        return self.uid[self.groups[lesion_id]]

    def join(self, a: str, b: str) -> bool:
        """Join the tracks of lesions ``a`` and ``b``; False when refused or already one."""
        ra, rb = self.groups[a], self.groups[b]
        if ra == rb or self.volumes[ra] & self.volumes[rb]:
            return False
        ua, ub = self.uid[ra], self.uid[rb]
        if ua is not None and ub is not None and ua != ub:
            return False
        self.groups.union(ra, rb)
        root = self.groups[ra]
        self.volumes[root] = self.volumes[ra] | self.volumes[rb]
        self.uid[root] = ua if ua is not None else ub
        return True

    def tracks(self) -> dict[str, frozenset[str]]:
        members: dict[str, set[str]] = defaultdict(set)
        for lid in self.volumes:
            members[self.groups[lid]].add(lid)
        return {lid: frozenset(members[self.groups[lid]]) for lid in self.volumes}


def _check(lesions: Sequence[MatchLesion]) -> None:
    """Refuse what matching cannot order or key: repeated ids, int and str series ids mixed."""
    ids = [lesion.lesion_id for lesion in lesions]
    if len(set(ids)) != len(ids):
        raise ValueError("match_patient: a lesion id appears twice")
    if len({type(lesion.series_id) is str for lesion in lesions}) > 1:
        raise ValueError(
            "match_patient: one patient's lesions mix int and str series ids "
            f"(e.g. {lesions[0].lesion_id})"
        )


def _reader_forest(lesions: Sequence[MatchLesion]) -> tuple[_Forest, int]:
    """Tracks of the reader links alone, and how many reader joins were refused (conflicts)."""
    forest = _Forest(lesions)
    by_uid: dict[str, list[MatchLesion]] = defaultdict(list)
    for lesion in sorted(lesions, key=_order):
        if lesion.tracking_uid is not None:
            by_uid[lesion.tracking_uid].append(lesion)
    conflicts = 0
    for members in by_uid.values():
        for other in members[1:]:
            # A refusal can only be a shared volume: the members carry one UID.
            conflicts += not forest.join(members[0].lesion_id, other.lesion_id)
    return forest, conflicts


def candidate_edges(
    lesions: Sequence[MatchLesion],
    config: MatchConfig = MatchConfig(),
    *,
    reader_links: bool = True,
) -> list[CandidateEdge]:
    """Hungarian-assigned pairs below ``config.max_cost`` for each pair of volumes of a patient.

    With ``reader_links`` (as in :func:`match_patient`; no effect on lesions without tracking
    UIDs), the assignment leaves out what the readers decided: a lesion whose
    reader track already has a measurement in the other volume (so it does not take a partner
    from a lesion that needs one), and pairs of lesions with different tracking UIDs.
    """
    by_volume: dict[Volume, list[MatchLesion]] = defaultdict(list)
    for lesion in lesions:
        by_volume[lesion.volume].append(lesion)
    # Without any UID the readers decided nothing (DeepLesion): skip the per-pair mask.
    has_uid = any(lesion.tracking_uid is not None for lesion in lesions)
    forest = _reader_forest(lesions)[0] if reader_links and has_uid else None
    edges = []
    for va, vb in itertools.combinations(sorted(by_volume), 2):
        a, b = by_volume[va], by_volume[vb]
        cost = pair_costs(a, b, config)
        if forest is not None:
            cost[_reader_decided(forest, a, b, va, vb)] = np.inf
        for i, j in _assign(cost):
            if cost[i, j] < config.max_cost:
                edges.append(CandidateEdge(a[i].lesion_id, b[j].lesion_id, float(cost[i, j])))
    return edges


def _reader_decided(
    forest: _Forest, a: Sequence[MatchLesion], b: Sequence[MatchLesion], va: Volume, vb: Volume
) -> np.ndarray:
    """Boolean ``(len(a), len(b))``: pairs of volumes ``va`` x ``vb`` the reader links rule out."""
    row_done = np.array([vb in forest.volumes_of(x.lesion_id) for x in a], dtype=bool)
    col_done = np.array([va in forest.volumes_of(x.lesion_id) for x in b], dtype=bool)
    ua = [forest.uid_of(x.lesion_id) for x in a]
    ub = [forest.uid_of(x.lesion_id) for x in b]
    differ = np.array(
        [[u is not None and v is not None and u != v for v in ub] for u in ua], dtype=bool
    ).reshape(len(a), len(b))
    return row_done[:, None] | col_done[None, :] | differ


def _merge(
    lesions: Sequence[MatchLesion], edges: Iterable[CandidateEdge], reader_links: bool
) -> tuple[dict[str, frozenset[str]], int]:
    """Reader joins (if any), then the edges cheapest first: tracks and reader conflicts."""
    if reader_links and any(lesion.tracking_uid is not None for lesion in lesions):
        forest, conflicts = _reader_forest(lesions)
    else:
        # Without reader links the UIDs are ignored altogether, barrier included.
        forest, conflicts = _Forest(lesions, uids=False), 0
    for edge in sorted(
        edges, key=lambda e: (e.cost, min(e.source, e.target), max(e.source, e.target))
    ):
        forest.join(edge.source, edge.target)
    return forest.tracks(), conflicts


def prune(
    lesions: Sequence[MatchLesion],
    edges: Iterable[CandidateEdge],
    *,
    reader_links: bool = True,
) -> dict[str, frozenset[str]]:
    """Merge candidate edges cheapest first into tracks that never hold two lesions of one volume.

    With ``reader_links``, lesions sharing a tracking UID are joined first, and no edge joins two
    tracks with different UIDs. Returns each lesion id's track as the frozenset of its members.
    Ties in cost are broken by the lesion ids, so the result does not depend on input order.
    """
    return _merge(lesions, edges, reader_links)[0]


def track_id_of(first_lesion_id: str) -> str:
    """A track is named after its first measurement: ``DL-0123...`` -> ``T-0123...``."""
    return "T-" + first_lesion_id.split("-", 1)[-1]


def match_patient(
    lesions: Sequence[MatchLesion],
    config: MatchConfig = MatchConfig(),
    *,
    reader_links: bool = True,
) -> Tracks:
    """Tracks of one patient's lesions; see the module docstring.

    Every lesion gets a track (singletons too). A track's id comes from its first measurement in
    ``(study_index, series_id, lesion_id)`` order, so it is stable while that lesion stays first.
    ``reader_links=False`` ignores the tracking UIDs (what :func:`reader_agreement` compares).
    """
    _check(lesions)
    by_id = {lesion.lesion_id: lesion for lesion in lesions}
    edges = candidate_edges(lesions, config, reader_links=reader_links)
    tracks, conflicts = _merge(lesions, edges, reader_links)
    track_of: dict[str, str] = {}
    links: list[TrackLink] = []
    for members in set(tracks.values()):
        ordered = sorted((by_id[m] for m in members), key=_order)
        name = track_id_of(ordered[0].lesion_id)
        for lesion in ordered:
            track_of[lesion.lesion_id] = name
        for a, b in itertools.pairwise(ordered):
            cost = float(pair_costs([a], [b], config)[0, 0])
            by_reader = (
                reader_links and a.tracking_uid is not None and a.tracking_uid == b.tracking_uid
            )
            links.append(
                TrackLink(
                    a.lesion_id,
                    b.lesion_id,
                    # max() maps an inf cost (a reader link without location) to 0
                    score=max(0.0, 1.0 - cost / config.max_cost),
                    same_study=a.study_index == b.study_index,
                    by=BY_READER if by_reader else BY_MATCHING,
                )
            )
    links.sort(key=lambda link: (link.source, link.target))
    return Tracks(track_of=track_of, links=tuple(links), reader_conflicts=conflicts)


def match_cohort(
    lesions_by_patient: Mapping[str, Sequence[MatchLesion]], config: MatchConfig = MatchConfig()
) -> dict[str, Tracks]:
    """:func:`match_patient` for every patient (lesions never match across patients)."""
    return {pid: match_patient(rows, config) for pid, rows in lesions_by_patient.items()}


def reader_pairs(lesions: Sequence[MatchLesion]) -> list[tuple[str, str]]:
    """Consecutive members of each reader track (one tracking UID), in ``(volume, lesion_id)``
    order: the reader links. A lesion refused as a reader conflict (its UID already has a lesion
    in its volume) is in none."""
    forest, _ = _reader_forest(lesions)
    by_track: dict[str, list[str]] = defaultdict(list)
    for lesion in sorted(lesions, key=_order):
        if lesion.tracking_uid is not None:
            by_track[forest.groups[lesion.lesion_id]].append(lesion.lesion_id)
    return [pair for members in by_track.values() for pair in itertools.pairwise(members)]


def reader_agreement(
    lesions: Sequence[MatchLesion], config: MatchConfig = MatchConfig()
) -> ReaderAgreement:
    """Of one patient's :func:`reader_pairs`, how many matching WITHOUT reader links puts in one
    track (see :class:`ReaderAgreement`). Pure; no matching runs when there is no pair."""
    pairs = reader_pairs(lesions)
    if not pairs:
        return ReaderAgreement()
    track_of = match_patient(lesions, config, reader_links=False).track_of
    agree = sum(track_of[a] == track_of[b] for a, b in pairs)
    return ReaderAgreement(pairs=len(pairs), agree=agree, disagree=len(pairs) - agree)
