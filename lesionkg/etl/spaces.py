"""The similarity spaces of an import: each space's persisted hnswlib index and every lesion's
``SIMILAR_TO`` list, kept in memory for the whole run, and what each write transaction changes.

The graph's lists stay what ``lesionkg link`` gives on the same graph (up to the index's own
approximation). In its write transaction an import (1) locks the space (``graph/lock_space``:
imports update a space one at a time) and, when another process committed to it since, reads
its vectors and lists again; (2) finds each new lesion's ``k`` nearest among the indexed lesions
and the batch's others; (3) finds the older lesions the newcomers enter the top ``k`` of, a
reverse-kNN search (:func:`lesionkg.core.similarity.reverse_candidates`: the index's
neighbourhood of each newcomer, plus an exact check of every lesion whose k-th distance reaches
beyond it), merges the newcomers into their lists and rewrites those lesions' edges and type
votes. ``k`` and ``--other-patients`` are the space's, as recorded by ``link`` (or the first
import). The in-memory state takes the transaction's changes only once it committed.

The rows, the votes and the one-producer check are :mod:`lesionkg.graph.similarity`'s, as
``lesionkg link`` builds them. The saved index is merged under a file lock
(:meth:`LesionIndex.save_merged`), so concurrent imports never drop each other's lesions.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lesionkg.core import cues
from lesionkg.core.similarity import (
    MISSING,
    Metric,
    SimilarEdge,
    exact_knn,
    merge_knn_lists,
    reverse_candidates,
)
from lesionkg.db.driver import Driver, Tx, run_in, run_statement
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

log = logging.getLogger(__name__)

#: ef of a freshly built index; small indexes need no tuning beyond this for recall ~1
MIN_EF = 64
#: the triplet network's embedding size (lesionkg.model.network.EMBEDDING_DIM, not imported here
#: because that loads torch), for an empty triplet index
TRIPLET_DIM = 1408

#: per space: the new lesions with a vector, and their SIMILAR_TO rows
SimilarRows = dict[str, tuple[list[str], list[dict[str, Any]]]]

#: how many index neighbours of each newcomer the reverse-kNN search looks at, at least (and
#: 4 k): a larger neighbourhood leaves fewer older lesions to check exactly
REVERSE_SEARCH = 64


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


class KnnLists:
    """Every indexed lesion's kNN list, as rows of positions into the index (``-1`` / ``inf``
    where empty) and distances, nearest first: the graph's ``SIMILAR_TO`` edges of one space."""

    def __init__(self, k: int, count: int = 0) -> None:
        self.k = k
        self.pos = np.full((max(count, 16), k), MISSING, dtype=np.int64)
        self.dist = np.full((max(count, 16), k), np.inf, dtype=np.float64)

    def grow(self, count: int) -> None:
        """Room for ``count`` rows (geometric growth; new rows empty)."""
        if count <= len(self.pos):
            return
        size = max(count, 2 * len(self.pos))
        pos = np.full((size, self.k), MISSING, dtype=np.int64)
        dist = np.full((size, self.k), np.inf, dtype=np.float64)
        pos[: len(self.pos)], dist[: len(self.dist)] = self.pos, self.dist
        self.pos, self.dist = pos, dist

    @classmethod
    def from_records(cls, k: int, index: LesionIndex, records: Sequence[Any]) -> KnnLists:
        """The lists of ``graph/similar_lists`` records; targets outside the index are left out."""
        lists = cls(k, index.count)
        for r in records:
            row = index.position(r["source"])
            if row is None:
                continue
            place = 0
            for target, d in zip(r["targets"], r["distances"], strict=True):
                col = index.position(target)
                if col is None or place >= k:
                    continue
                lists.pos[row, place], lists.dist[row, place] = col, float(d)
                place += 1
        return lists


@dataclass
class Pending:
    """What one space's write transaction changes, applied to the in-memory state on commit."""

    generation: int
    new_ids: list[str]
    new_vectors: np.ndarray
    new_patients: list[str]
    new_types: list[int | None]
    new_pos: np.ndarray
    new_dist: np.ndarray
    changed_rows: np.ndarray
    changed_pos: np.ndarray
    changed_dist: np.ndarray
    edges: int


@dataclass
class SpaceIndex:
    """One similarity space's index, with each indexed lesion's patient, given type and kNN list,
    and the space's generation (``graph/lock_space``) they are of."""

    space: Space
    producer: str
    index: LesionIndex
    types: dict[str, int | None]
    prefix: Path
    patients: list[str] = field(default_factory=list)
    lists: KnnLists = field(default_factory=lambda: KnnLists(1))
    k: int = 10
    other_patients: bool = False
    generation: int = 0
    dirty: bool = False
    pending: Pending | None = None
    #: lesions of each patient in the index (for --other-patients searches)
    per_patient: Counter = field(default_factory=Counter)

    def load_lists(self, records: Sequence[Any]) -> None:
        self.lists = KnnLists.from_records(self.k, self.index, records)

    def add_indexed(self, rows: Sequence[Any]) -> None:
        """Add lesions committed by others (``graph/space_vectors_of`` rows) to the index."""
        rows = [r for r in rows if self.index.position(r["lesion_id"]) is None]
        if not rows:
            return
        self.index.add(
            [r["lesion_id"] for r in rows],
            np.array([r["vector"] for r in rows], dtype=np.float32),
        )
        for r in rows:
            self.patients.append(r["patient_id"])
            self.per_patient[r["patient_id"]] += 1
            self.types[r["lesion_id"]] = r["coarse_type"]
        self.lists.grow(self.index.count)
        self.dirty = True


class Spaces:
    """The similarity spaces an import keeps exact: ``k`` ``SIMILAR_TO`` edges per lesion."""

    def __init__(self, spaces: dict[str, SpaceIndex], k: int) -> None:
        self.spaces = spaces
        self.k = k

    @classmethod
    def open(
        cls, driver: Driver, database: str, index_dir: Path, producers: dict[str, str], k: int
    ) -> Spaces:
        """The index and lists of each space in ``producers`` (space name -> the producer of the
        vectors this import adds), updated from the graph's vectors; a
        :class:`~lesionkg.core.errors.ConfigurationError` when the graph's come from another."""
        index_dir.mkdir(parents=True, exist_ok=True)
        spaces: dict[str, SpaceIndex] = {}
        for name, producer in producers.items():
            spec = SPACES[name]
            # The generation first: lists read after it are at least that new.
            state = run_statement(
                driver, database, "graph/space_state", "reading the space", read=True, space=name
            )
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
            patient_of = {r["lesion_id"]: r["patient_id"] for r in rows}
            space_k, other = k, False
            if state:
                space_k = state[0]["k"] or k
                other = bool(state[0]["other_patients"])
                if space_k != k:
                    log.warning(
                        "the %s space's SIMILAR_TO lists have k = %d (recorded by `lesionkg "
                        "link`); the import keeps that k, not %d",
                        name,
                        space_k,
                        k,
                    )
            patients = [patient_of[lid] for lid in index.ids]
            spaces[name] = SpaceIndex(
                spec,
                producer,
                index,
                {r["lesion_id"]: r["coarse_type"] for r in rows},
                index_dir / name,
                patients=patients,
                k=space_k,
                other_patients=other,
                generation=state[0]["generation"] if state else 0,
                per_patient=Counter(patients),
            )
            spaces[name].load_lists(
                run_statement(
                    driver,
                    database,
                    "graph/similar_lists",
                    "reading SIMILAR_TO lists",
                    read=True,
                    space=name,
                )
            )
        return cls(spaces, k)

    def producer(self, name: str) -> str:
        return self.spaces[name].producer

    # -- in the write transaction --

    def lock(self, tx: Tx) -> None:
        """Lock every space of the import in ``tx`` and catch up with what other processes
        committed to it since. Call first in the transaction, before any lesion is written."""
        for name, state in self.spaces.items():
            state.pending = None
            found = run_in(tx, "graph/lock_space", space=name, k=state.k)[0]
            seen = found["generation"] - 1
            state.k, state.other_patients = found["k"], bool(found["other_patients"])
            if seen != state.generation or state.lists.k != state.k:
                self._catch_up(tx, name, state)
            state.generation = seen
            state.pending = Pending(
                found["generation"],
                [],
                np.zeros((0, state.index.dim), np.float32),
                [],
                [],
                np.zeros((0, state.k), np.int64),
                np.zeros((0, state.k)),
                np.zeros(0, np.int64),
                np.zeros((0, state.k), np.int64),
                np.zeros((0, state.k)),
                0,
            )

    @staticmethod
    def _catch_up(tx: Tx, name: str, state: SpaceIndex) -> None:
        """Read the lesions others added to the space and every list again (under the lock)."""
        members = [r["lesion_id"] for r in run_in(tx, "graph/space_members", space=name)]
        missing = [lid for lid in members if state.index.position(lid) is None]
        if missing:
            rows = run_in(tx, "graph/space_vectors_of", ids=missing, space=name)
            state.add_indexed([r for r in rows if r["producer"] == state.producer])
        state.load_lists(run_in(tx, "graph/similar_lists", space=name))
        log.info(
            "%s space: caught up with other imports (+%d lesions, lists re-read)",
            name,
            len(missing),
        )

    def write(self, tx: Tx, new: Sequence[PreparedLesion]) -> int:
        """Write the ``SIMILAR_TO`` edges of the ``new`` lesions (already written in ``tx``) and
        rewrite those of the older lesions they enter the top ``k`` of, with type votes; the
        number of the new lesions' edges. Needs :meth:`lock` earlier in ``tx``; the in-memory
        state changes on :meth:`add`, after the commit."""
        similar: SimilarRows = {}
        for name, state in self.spaces.items():
            if state.pending is None:
                raise RuntimeError("Spaces.write needs Spaces.lock earlier in the transaction")
            members = [lesion for lesion in new if name in lesion.vectors]
            if not members:
                continue
            pending = self._compute(state, members)
            rows = self._rows(state, pending)[: pending.edges]
            run_in(
                tx,
                "graph/write_similar",
                sources=pending.new_ids,
                rows=rows,
                space=name,
                producer=state.producer,
            )
            if len(pending.changed_rows):
                dropped, moved, added = self._changes(state, pending)
                run_in(
                    tx,
                    "graph/update_similar",
                    dropped=dropped,
                    moved=moved,
                    added=added,
                    space=name,
                    producer=state.producer,
                )
            similar[name] = (pending.new_ids, rows)
            old_votes = self._old_votes(state, pending)
            if old_votes:
                run_in(tx, "graph/update_similar_types", rows=old_votes, space=name)
            state.pending = pending
            if len(pending.changed_rows):
                log.debug(
                    "%s: %d new lesions changed the lists of %d older ones",
                    name,
                    len(pending.new_ids),
                    len(pending.changed_rows),
                )
        for space, vote_rows in self.votes(new, similar).items():
            run_in(tx, "graph/set_predicted_types", rows=vote_rows, space=space)
        return sum(len(rows) for _, rows in similar.values())

    def _compute(self, state: SpaceIndex, members: Sequence[PreparedLesion]) -> Pending:
        """The newcomers' lists and the older lists they change (nothing is modified here: a
        transaction may be run again)."""
        assert state.pending is not None
        k, other = state.k, state.other_patients
        index = state.index
        n_old, metric = index.count, state.space.metric
        ids = [lesion.lesion_id for lesion in members]
        patients = [lesion.patient_id for lesion in members]
        vectors = np.stack([lesion.vectors[state.space.name] for lesion in members]).astype(
            np.float32
        )
        n_new = len(ids)
        names = [*index.ids, *ids]
        patient_arr = np.asarray([*state.patients, *patients], dtype=object)
        batch_count = Counter(patients)
        worst = max(state.per_patient[p] for p in batch_count) if other else 0
        big_k = min(n_old, max(REVERSE_SEARCH, 4 * k) + worst)
        q_pos, q_dist = index.query(vectors, big_k)

        # The newcomers' own lists: index candidates and the batch's others.
        rows_i = np.repeat(np.arange(n_new), big_k)
        cand_pos, cand_dist = q_pos.ravel(), q_dist.ravel().astype(np.float64)
        keep = cand_pos >= 0
        in_batch = min(n_new, k + 1 + (max(batch_count.values()) if other else 0))
        b_pos, b_dist = exact_knn(vectors, vectors, in_batch, metric=metric)
        rows_b = np.repeat(np.arange(n_new), in_batch)
        b_flat = b_pos.ravel()
        b_keep = (b_flat >= 0) & (b_flat != rows_b)
        add_row = np.concatenate([rows_i[keep], rows_b[b_keep]])
        add_pos = np.concatenate([cand_pos[keep], n_old + b_flat[b_keep]])
        add_dist = np.concatenate([cand_dist[keep], b_dist.ravel()[b_keep].astype(np.float64)])
        if other:
            mine = np.asarray(patients, dtype=object)
            ok = patient_arr[add_pos] != mine[add_row]
            add_row, add_pos, add_dist = add_row[ok], add_pos[ok], add_dist[ok]
        # A newcomer whose index candidates fell short of what exists is searched exactly.
        have = np.bincount(add_row[add_pos < n_old], minlength=n_new)
        lost = np.array([state.per_patient[p] if other else 0 for p in patients])
        short = np.flatnonzero(have < np.minimum(k, n_old - lost))
        if len(short) and big_k < n_old:
            e_pos, e_dist = exact_knn(vectors[short], index.vectors, n_old, metric=metric)
            e_rows = np.repeat(short, n_old)
            e_flat = e_pos.ravel()
            ok = e_flat >= 0
            if other:
                ok &= patient_arr[np.where(ok, e_flat, 0)] != np.asarray(patients, object)[e_rows]
            add_row = np.concatenate([add_row, e_rows[ok]])
            add_pos = np.concatenate([add_pos, e_flat[ok]])
            add_dist = np.concatenate([add_dist, e_dist.ravel()[ok].astype(np.float64)])
        empty_pos = np.full((n_new, k), MISSING, dtype=np.int64)
        new_pos, new_dist, _ = merge_knn_lists(
            empty_pos, np.full((n_new, k), np.inf), add_row, add_pos, add_dist, names, k
        )

        # Older lesions the newcomers enter the top k of.
        kth = state.lists.dist[:n_old, k - 1]
        r_old, r_new, r_dist = reverse_candidates(
            kth, q_pos, q_dist, vectors, index.vectors, metric=metric
        )
        if other:
            ok = patient_arr[r_old] != np.asarray(patients, dtype=object)[r_new]
            r_old, r_new, r_dist = r_old[ok], r_new[ok], r_dist[ok]
        rows_old, inverse = np.unique(r_old, return_inverse=True)
        merged_pos, merged_dist, changed = merge_knn_lists(
            state.lists.pos[rows_old],
            state.lists.dist[rows_old],
            inverse,
            n_old + r_new,
            r_dist,
            names,
            k,
        )
        edges = int((new_pos >= 0).sum())
        return Pending(
            state.pending.generation,
            ids,
            vectors,
            patients,
            [lesion.coarse_type for lesion in members],
            new_pos,
            new_dist,
            rows_old[changed],
            merged_pos[changed],
            merged_dist[changed],
            edges,
        )

    @staticmethod
    def _rows(state: SpaceIndex, pending: Pending) -> list[dict[str, Any]]:
        """``graph/write_similar`` rows: the newcomers' edges first, then the changed lists'
        (whole)."""
        names = [*state.index.ids, *pending.new_ids]
        sources = [*pending.new_ids, *(state.index.ids[r] for r in pending.changed_rows)]
        pos = np.concatenate([pending.new_pos, pending.changed_pos])
        dist = np.concatenate([pending.new_dist, pending.changed_dist])
        # Lists are filled from the left: the valid places of a row are its first ones.
        row, col = np.nonzero(pos >= 0)
        return similar_rows(
            SimilarEdge(sources[r], names[p], d, c + 1)
            for r, c, p, d in zip(
                row.tolist(),
                col.tolist(),
                pos[row, col].tolist(),
                dist[row, col].tolist(),
                strict=True,
            )
        )

    @staticmethod
    def _changes(
        state: SpaceIndex, pending: Pending
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        """``graph/update_similar``'s rows: what changed in the older lists, against the lists
        the graph holds (the in-memory ones, of the generation locked)."""
        names = [*state.index.ids, *pending.new_ids]
        dropped: list[dict[str, Any]] = []
        moved: list[dict[str, Any]] = []
        added: list[dict[str, Any]] = []
        before_rows = state.lists.pos[pending.changed_rows].tolist()
        after_rows = pending.changed_pos.tolist()
        after_dist = pending.changed_dist.tolist()
        for row, old, new, dist in zip(
            pending.changed_rows.tolist(), before_rows, after_rows, after_dist, strict=True
        ):
            source = state.index.ids[row]
            before = {p: rank for rank, p in enumerate(old, start=1) if p >= 0}
            after = {
                p: (rank, d)
                for rank, (p, d) in enumerate(zip(new, dist, strict=True), start=1)
                if p >= 0
            }
            dropped.extend({"source": source, "target": names[p]} for p in before if p not in after)
            for p, (rank, d) in after.items():
                if p not in before:
                    added.append(
                        {"source": source, "target": names[p], "distance": d, "rank": rank}
                    )
                elif before[p] != rank:
                    moved.append({"source": source, "target": names[p], "rank": rank})
        return dropped, moved, added

    @staticmethod
    def _old_votes(state: SpaceIndex, pending: Pending) -> list[dict[str, Any]]:
        """Type votes of the older lesions without a given type whose list changed."""
        if not len(pending.changed_rows):
            return []
        ids = [state.index.ids[r] for r in pending.changed_rows]
        todo = [i for i, lid in enumerate(ids) if state.types.get(lid) is None]
        if not todo:
            return []
        known = [state.types.get(lid) for lid in state.index.ids] + list(pending.new_types)
        types_arr = np.array([MISSING if t is None else t for t in known], dtype=np.int64)
        pos = pending.changed_pos[todo]
        nb_types = np.where(pos >= 0, types_arr[np.where(pos >= 0, pos, 0)], MISSING)
        return type_votes([ids[i] for i in todo], nb_types, pending.changed_dist[todo])

    # -- after the commit --

    def add(self, lesions: Sequence[PreparedLesion]) -> int:
        """The transaction that wrote ``lesions`` committed: take its changes into the in-memory
        indexes and lists. Returns the new lesions' ``SIMILAR_TO`` edges (every space)."""
        given = {lesion.lesion_id for lesion in lesions}
        edges = 0
        for state in self.spaces.values():
            pending, state.pending = state.pending, None
            if pending is None or not set(pending.new_ids) <= given:
                continue
            state.generation = pending.generation
            if not pending.new_ids:
                continue
            first = state.index.count
            state.index.add(pending.new_ids, pending.new_vectors)
            state.lists.grow(state.index.count)
            state.lists.pos[first : state.index.count] = pending.new_pos
            state.lists.dist[first : state.index.count] = pending.new_dist
            state.lists.pos[pending.changed_rows] = pending.changed_pos
            state.lists.dist[pending.changed_rows] = pending.changed_dist
            for lid, pid, t in zip(
                pending.new_ids, pending.new_patients, pending.new_types, strict=True
            ):
                state.patients.append(pid)
                state.per_patient[pid] += 1
                state.types[lid] = t
            state.dirty = True
            edges += pending.edges
        return edges

    def votes(
        self, new: Sequence[PreparedLesion], similar: SimilarRows
    ) -> dict[str, list[dict[str, Any]]]:
        """Predicted types of new lesions without a given type, from one space's neighbours
        (the triplet space when the lesion has an embedding, as ``link`` does, else cues)."""
        type_of = {lesion.lesion_id: lesion.coarse_type for lesion in new}
        out: dict[str, list[dict[str, Any]]] = {}
        done: set[str] = set()
        for space in ("triplet", "cues"):
            if space not in similar:
                continue
            k = self.spaces[space].k
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

    def save(self) -> None:
        """Save the indexes that grew, merged with what other processes saved meanwhile (under
        the index's file lock), so a later run or ``link`` starts from all of them."""
        for state in self.spaces.values():
            if state.dirty:
                state.index.save_merged(state.prefix)
                state.dirty = False
