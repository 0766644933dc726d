"""The similarity spaces of an import: each space's persisted hnswlib index, kept in memory for the
whole run, the ``SIMILAR_TO`` rows and type votes of new lesions, and the index's growth.

New lesions find their neighbours among the indexed lesions (the graph's) and among each other
(exactly: they are not in the index until their transaction committed). The rows, the votes and
the one-producer check are :mod:`lesionkg.graph.similarity`'s, as ``lesionkg link`` builds them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lesionkg.core import cues
from lesionkg.core.similarity import MISSING, Metric, SimilarEdge, exact_knn
from lesionkg.db.driver import Driver, run_statement
from lesionkg.etl.preparation import PreparedLesion
from lesionkg.graph.similarity import (
    SPACES,
    Space,
    similar_rows,
    space_index,
    space_producer,
    type_votes,
)
from lesionkg.graph.vector_index import LesionIndex

#: ef of a freshly built index; small indexes need no tuning beyond this for recall ~1
MIN_EF = 64
#: the triplet network's embedding size (lesionkg.model.network.EMBEDDING_DIM, not imported here
#: because that loads torch), for an empty triplet index
TRIPLET_DIM = 1408

#: per space: the new lesions with a vector, and their SIMILAR_TO rows
SimilarRows = dict[str, tuple[list[str], list[dict[str, Any]]]]


def merge_neighbours(
    index_pos: np.ndarray,
    index_dist: np.ndarray,
    index_ids: Sequence[str],
    batch_ids: Sequence[str],
    batch_vectors: np.ndarray,
    metric: Metric,
    k: int,
) -> list[list[tuple[str, float]]]:
    """The ``k`` nearest lesions of each new lesion: index candidates and the batch's others.

    ``index_pos (N, K)`` / ``index_dist (N, K)`` are an index query for the ``N`` new lesions
    (``batch_ids``, vectors ``(N, D)``), -1 / inf where missing; the new lesions are not yet in
    the index, so their distances to each other are computed exactly here. Ties are broken by
    lesion id. Never the lesion itself.
    """
    n = len(batch_ids)
    if n and n > 1:
        exact_i, exact_d = exact_knn(batch_vectors, batch_vectors, min(n, k + 1), metric=metric)
    else:
        exact_i = np.full((n, 0), MISSING, dtype=np.int64)
        exact_d = np.zeros((n, 0), dtype=np.float32)
    out = []
    for row in range(n):
        found: dict[str, float] = {}
        for j, d in zip(index_pos[row], index_dist[row], strict=True):
            if j >= 0 and np.isfinite(d):
                found[index_ids[j]] = float(d)
        for j, d in zip(exact_i[row], exact_d[row], strict=True):
            if j >= 0 and j != row and np.isfinite(d):
                found[batch_ids[j]] = float(d)
        found.pop(batch_ids[row], None)
        out.append(sorted(found.items(), key=lambda kv: (kv[1], kv[0]))[:k])
    return out


@dataclass
class SpaceIndex:
    """One similarity space's index, with the given types of its lesions for type votes."""

    space: Space
    producer: str
    index: LesionIndex
    types: dict[str, int | None]
    prefix: Path
    dirty: bool = False


class Spaces:
    """The similarity spaces an import writes ``SIMILAR_TO`` edges in, ``k`` per new lesion."""

    def __init__(self, spaces: dict[str, SpaceIndex], k: int) -> None:
        self.spaces = spaces
        self.k = k

    @classmethod
    def open(
        cls, driver: Driver, database: str, index_dir: Path, producers: dict[str, str], k: int
    ) -> Spaces:
        """The index of each space in ``producers`` (space name -> the producer of the vectors
        this import adds), updated from the graph's vectors; a
        :class:`~lesionkg.core.errors.ConfigurationError` when the graph's come from another."""
        index_dir.mkdir(parents=True, exist_ok=True)
        spaces: dict[str, SpaceIndex] = {}
        for name, producer in producers.items():
            spec = SPACES[name]
            rows = run_statement(
                driver, database, "graph/space_vectors", "reading vectors", read=True, space=name
            )
            space_producer(name, (r["producer"] for r in rows), adding=producer)
            ids = [r["lesion_id"] for r in rows]
            vectors = (
                np.array([r["vector"] for r in rows], dtype=np.float32)
                if rows
                else np.zeros(
                    (0, TRIPLET_DIM if name == "triplet" else cues.CUE_DIM), dtype=np.float32
                )
            )
            index, _, _ = space_index(index_dir / name, spec, ids, vectors, producer)
            index.ef = max(index.ef, MIN_EF)
            spaces[name] = SpaceIndex(
                spec,
                producer,
                index,
                {r["lesion_id"]: r["coarse_type"] for r in rows},
                index_dir / name,
            )
        return cls(spaces, k)

    def producer(self, name: str) -> str:
        return self.spaces[name].producer

    def similar(self, new: Sequence[PreparedLesion]) -> SimilarRows:
        """Per space: the new lesions with a vector, and their SIMILAR_TO rows."""
        out: SimilarRows = {}
        for name, state in self.spaces.items():
            members = [lesion for lesion in new if name in lesion.vectors]
            if not members:
                continue
            ids = [lesion.lesion_id for lesion in members]
            # hnswlib and exact_knn normalise cosine vectors themselves.
            vectors = np.stack([lesion.vectors[name] for lesion in members]).astype(np.float32)
            pos, dist = state.index.query(vectors, self.k)
            found = merge_neighbours(
                pos, dist, state.index.ids, ids, vectors, state.space.metric, self.k
            )
            edges = (
                SimilarEdge(source, target, d, rank)
                for source, neighbours in zip(ids, found, strict=True)
                for rank, (target, d) in enumerate(neighbours, start=1)
            )
            out[name] = (ids, similar_rows(edges))
        return out

    def votes(
        self, new: Sequence[PreparedLesion], similar: SimilarRows
    ) -> dict[str, list[dict[str, Any]]]:
        """Predicted types of new lesions without a given type, from one space's neighbours
        (the triplet space when the lesion has an embedding, as ``link`` does, else cues)."""
        type_of = {lesion.lesion_id: lesion.coarse_type for lesion in new}
        out: dict[str, list[dict[str, Any]]] = {}
        done: set[str] = set()
        k = self.k
        for space in ("triplet", "cues"):
            if space not in similar:
                continue
            known = {**self.spaces[space].types, **type_of}
            by_source: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for row in similar[space][1]:
                by_source[row["source"]].append(row)
            todo = [s for s in similar[space][0] if type_of[s] is None and s not in done]
            if not todo:
                continue
            types = np.full((len(todo), k), MISSING, dtype=np.int64)
            dist = np.full((len(todo), k), np.inf)
            for i, source in enumerate(todo):
                for j, row in enumerate(by_source[source][:k]):
                    t = known.get(row["target"])
                    types[i, j] = MISSING if t is None else t
                    dist[i, j] = row["distance"]
            out[space] = type_votes(todo, types, dist)
            done.update(todo)
        return out

    def add(self, lesions: Sequence[PreparedLesion]) -> None:
        """Add lesions now in the graph to the in-memory indexes (those not there yet)."""
        for name, state in self.spaces.items():
            todo = [
                lesion
                for lesion in lesions
                if name in lesion.vectors and state.index.position(lesion.lesion_id) is None
            ]
            if todo:
                state.index.add(
                    [lesion.lesion_id for lesion in todo],
                    np.stack([lesion.vectors[name] for lesion in todo]).astype(np.float32),
                )
                for lesion in todo:
                    state.types[lesion.lesion_id] = lesion.coarse_type
                state.dirty = True

    def save(self) -> None:
        """Save the indexes that grew (a later run or ``link`` starts from them)."""
        for state in self.spaces.values():
            if state.dirty:
                state.index.save(state.prefix)
                state.dirty = False
