"""Similarity edges in the graph: the kNN of every lesion in one embedding space.

``link_graph`` reads the vectors of a space from the graph (``triplet``: ``Lesion.embedding``
written by ``lesionkg embed``; ``cues``: computed here from each lesion's metadata by
:mod:`lesionkg.core.cues` and written as ``Lesion.cues``), updates that space's persisted HNSW
index (:class:`lesionkg.graph.vector_index.LesionIndex`, ``INDEX_DIR/SPACE.bin`` + ``.json``),
tunes its ``ef`` to recall@10 >= 0.99 against exact search, and replaces the space's
``(:Lesion)-[:SIMILAR_TO {space, distance, rank, producer}]->(:Lesion)`` edges. Lesions without a
given type get ``predicted_type`` and ``predicted_type_confidence`` from a vote of their
neighbours. An ``(:EmbeddingSpace {name})`` node records the space's dimension, metric, producer,
index file, ``ef`` and measured recall.

The rows of those edges and votes and the one-producer check are built here once, for ``link``
and for the incremental import (:mod:`lesionkg.etl`) alike.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from lesionkg.core import cues
from lesionkg.core.errors import ConfigurationError, QueryError
from lesionkg.core.similarity import (
    MISSING,
    Metric,
    SimilarEdge,
    knn_edges,
    neighbours,
    predict_types,
)
from lesionkg.db.driver import Driver, run_statement
from lesionkg.db.schema import apply_schema
from lesionkg.graph.vector_index import LesionIndex

WRITE_BATCH = 1000
TUNE_QUERIES = 1000
TARGET_RECALL = 0.99


@dataclass(frozen=True, slots=True)
class Space:
    """An embedding space: the Lesion property holding its vectors and how they compare."""

    name: str
    property: str
    metric: Metric
    #: the Neo4j vector index on that property (cypher/schema.cypher)
    vector_index: str


SPACES: dict[str, Space] = {
    "triplet": Space("triplet", "embedding", "cosine", "lesion_triplet"),
    "cues": Space("cues", "cues", "l2", "lesion_cues"),
}


def similar_rows(edges: Iterable[SimilarEdge]) -> list[dict[str, Any]]:
    """The ``$rows`` of ``graph/write_similar`` for these kNN edges (``link`` and ``etl``)."""
    return [
        {"source": e.source, "target": e.target, "distance": e.distance, "rank": e.rank}
        for e in edges
    ]


def type_votes(
    lesion_ids: Sequence[str], neighbour_types: np.ndarray, distances: np.ndarray
) -> list[dict[str, Any]]:
    """The ``$rows`` of ``graph/set_predicted_types`` (``link`` and ``etl``): each lesion's type
    by a distance-weighted vote of its neighbours' given types (:func:`predict_types`).

    ``neighbour_types (N, K)``: ``MISSING`` for an unlabelled or absent neighbour; ``type`` is
    None where no neighbour has a type.
    """
    predicted, confidence = predict_types(neighbour_types, distances)
    return [
        {"lesion_id": lid, "type": int(p) if p != MISSING else None, "confidence": float(c)}
        for lid, p, c in zip(lesion_ids, predicted, confidence, strict=True)
    ]


def space_producer(space: str, producers: Iterable[object], adding: str | None = None) -> str:
    """The one producer of a space's vectors: a space never mixes models (``link`` and ``etl``).

    ``producers``: those of the vectors in the graph. ``link`` (``adding`` None) needs exactly
    one, else :class:`QueryError`; an import ``adding`` vectors of its own producer needs the
    graph's to be that one or none, else :class:`ConfigurationError`.
    """
    found = set(producers)
    if adding is None:
        if len(found) != 1:
            raise QueryError(
                f"the {space} vectors come from {len(found)} producers "
                f"({', '.join(sorted(map(str, found)))}); re-run `lesionkg embed`"
            )
        return str(found.pop())
    others = {str(p) for p in found} - {adding}
    if others:
        raise ConfigurationError(
            f"the graph's {space} vectors come from {', '.join(sorted(others))}, not "
            f"{adding}: run `lesionkg embed` (triplet) or `lesionkg link` (cues) with "
            "the same model first, so that the space never mixes producers"
        )
    return adding


@dataclass
class LinkSummary:
    """What one ``link`` run did."""

    space: str
    k: int
    other_patients: bool
    lesions: int = 0
    dim: int = 0
    producer: str = ""
    index_path: str = ""
    index_built: bool = False
    index_added: int = 0
    ef: int = 0
    recall_at_10: float = 0.0
    edges: int = 0
    stale_edges_removed: int = 0
    predicted_types: int = 0
    seconds: float = 0.0
    edges_per_s: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        built = "built" if self.index_built else f"updated (+{self.index_added})"
        return (
            f"{self.space}: {self.lesions} lesions of {self.dim}-D; index {built}, ef "
            f"{self.ef} (recall@10 {self.recall_at_10:.3f} against exact search) -> "
            f"{self.index_path}\n{self.edges} SIMILAR_TO edges ({self.edges_per_s:.0f}/s), "
            f"{self.stale_edges_removed} stale removed; {self.predicted_types} lesions without "
            f"a given type got a predicted type; {self.seconds:.1f} s"
        )


def write_cues(driver: Driver, database: str = "neo4j", *, progress: bool = False) -> int:
    """Compute the cue vector of every lesion that has a location and a window (see
    :func:`lesionkg.core.cues.cueable`) and store it as ``Lesion.cues``; returns how many."""
    rows = [
        cues.with_short_axis(dict(r))
        for r in run_statement(driver, database, "graph/cue_inputs", "reading lesions", read=True)
    ]
    rows = [r for r in rows if cues.cueable(r)]
    if not rows:
        return 0
    matrix = cues.cue_matrix_from_props(rows)
    bar = tqdm(total=len(rows), desc="cues", unit="lesion", disable=not progress)
    for start in range(0, len(rows), WRITE_BATCH):
        batch = [
            {"lesion_id": r["lesion_id"], "cues": v.tolist()}
            for r, v in zip(
                rows[start : start + WRITE_BATCH],
                matrix[start : start + WRITE_BATCH],
                strict=True,
            )
        ]
        run_statement(
            driver,
            database,
            "graph/set_cues",
            "writing cue vectors",
            rows=batch,
            version=cues.CUES_VERSION,
        )
        bar.update(len(batch))
    bar.close()
    return len(rows)


def default_index_dir(database: str) -> Path:
    """``$LESIONKG_HOME/index/DATABASE``. An index that does not fit the graph it is used with
    (other lesions, another producer) is rebuilt, so sharing the folder is safe, only slower."""
    from lesionkg.config.paths import default_data_dir

    return default_data_dir().parent / "index" / database


def space_index(
    prefix: Path, space: Space, ids: list[str], vectors: np.ndarray, producer: str
) -> tuple[LesionIndex, bool, int]:
    """The space's index holding exactly ``ids``: the saved one plus the new lesions when it is
    of the same producer and holds no lesion that is gone, else a fresh build.

    Returns ``(index, built, added)``.
    """
    if prefix.with_suffix(".json").is_file() and prefix.with_suffix(".bin").is_file():
        try:
            saved = LesionIndex.load(prefix)
        except ConfigurationError:
            saved = None
        if (
            saved is not None
            and saved.producer_sha256 == producer
            and saved.metric == space.metric
            and saved.dim == vectors.shape[1]
            and set(saved.ids) <= set(ids)
        ):
            position = {lid: i for i, lid in enumerate(ids)}
            new = [lid for lid in ids if saved.position(lid) is None]
            # Vectors of indexed lesions may have changed too (a re-embedded lesion): re-add the
            # ones that differ, which hnswlib updates in place.
            old = np.array([position[lid] for lid in saved.ids], dtype=np.int64)
            changed = (
                [
                    saved.ids[i]
                    for i in np.flatnonzero(
                        np.abs(saved.vectors - _comparable(vectors[old], space)).max(axis=1) > 1e-5
                    )
                ]
                if len(old)
                else []
            )
            todo = new + changed
            if todo:
                saved.add(todo, vectors[[position[lid] for lid in todo]])
            return saved, False, len(new)
    return (
        LesionIndex.build(space.name, ids, vectors, metric=space.metric, producer_sha256=producer),
        True,
        len(ids),
    )


def _comparable(vectors: np.ndarray, space: Space) -> np.ndarray:
    """Vectors as the index stores them (hnswlib keeps unit vectors for cosine)."""
    if space.metric != "cosine":
        return vectors
    norm = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norm > 0, norm, 1.0)


def link_graph(
    driver: Driver,
    *,
    space: str = "cues",
    k: int = 10,
    other_patients: bool = False,
    index_dir: Path | None = None,
    database: str = "neo4j",
    progress: bool = True,
) -> LinkSummary:
    """Write the ``k`` nearest-neighbour ``SIMILAR_TO`` edges of every lesion in ``space``.

    ``other_patients`` keeps only neighbours of other patients (cohort retrieval); by default a
    patient's own other lesions may be neighbours too. Re-running replaces the space's edges.
    """
    if space not in SPACES:
        raise QueryError(f"unknown embedding space {space!r}: expected one of {', '.join(SPACES)}")
    if k < 1:
        raise QueryError(f"k must be at least 1, got {k}")
    spec = SPACES[space]
    started = time.perf_counter()
    summary = LinkSummary(space=space, k=k, other_patients=other_patients)
    apply_schema(driver, database)
    if space == "cues":
        write_cues(driver, database, progress=progress)
    rows = run_statement(
        driver, database, "graph/space_vectors", "reading vectors", read=True, space=space
    )
    if not rows:
        hint = "run `lesionkg embed` first" if space == "triplet" else "load lesions first"
        raise QueryError(f"no lesion of the graph has a {space} vector: {hint}")
    producer = space_producer(space, (r["producer"] for r in rows))
    ids = [r["lesion_id"] for r in rows]
    patients = [r["patient_id"] for r in rows]
    vectors = np.array([r["vector"] for r in rows], dtype=np.float32)
    summary.lesions, summary.dim, summary.producer = len(ids), vectors.shape[1], producer

    prefix = Path(index_dir or default_index_dir(database)) / space
    prefix.parent.mkdir(parents=True, exist_ok=True)
    index, summary.index_built, summary.index_added = space_index(
        prefix, spec, ids, vectors, producer
    )
    # The index's own row order (an updated index keeps its old order): map it back to ours.
    row_of = {lid: i for i, lid in enumerate(ids)}
    order = np.array([row_of[lid] for lid in index.ids]) if index.ids != ids else None
    rng = np.random.default_rng(0)
    sample = rng.choice(len(ids), size=min(TUNE_QUERIES, len(ids)), replace=False)
    summary.ef, recall = index.tune_ef(
        vectors[sample], k=min(10, len(ids)), target_recall=TARGET_RECALL
    )
    summary.recall_at_10 = round(recall, 4)
    index.save(prefix)
    summary.index_path = str(prefix.with_suffix(".bin"))

    index_patients = patients if order is None else [patients[i] for i in order]
    positions, distances = neighbours(index, k, index_patients, other_patients)
    edges = knn_edges(
        index.ids, index_patients, positions, distances, k, other_patients=other_patients
    )

    by_source: dict[str, list[dict]] = {}
    for row in similar_rows(edges):
        by_source.setdefault(row["source"], []).append(row)
    write_started = time.perf_counter()
    bar = tqdm(total=len(index.ids), desc=f"link {space}", unit="lesion", disable=not progress)
    sources = list(index.ids)
    per_batch = max(1, WRITE_BATCH // k)
    for start in range(0, len(sources), per_batch):
        batch = sources[start : start + per_batch]
        run_statement(
            driver,
            database,
            "graph/write_similar",
            "writing SIMILAR_TO edges",
            sources=batch,
            rows=[row for s in batch for row in by_source.get(s, [])],
            space=space,
            producer=producer,
        )
        bar.update(len(batch))
    bar.close()
    summary.edges = len(edges)
    summary.edges_per_s = round(len(edges) / max(time.perf_counter() - write_started, 1e-9), 1)
    removed = run_statement(
        driver,
        database,
        "graph/clear_stale_similar",
        "removing stale edges",
        space=space,
        producer=producer,
    )
    summary.stale_edges_removed = removed[0]["removed"] if removed else 0

    # Type votes for lesions without a given type, from their neighbours' given types.
    types = np.array(
        [MISSING if r["coarse_type"] is None else r["coarse_type"] for r in rows], dtype=np.int64
    )
    index_types = types if order is None else types[order]
    unlabelled = np.flatnonzero(index_types == MISSING)
    if len(unlabelled):
        nb = positions[unlabelled]
        nb_types = np.where(nb >= 0, index_types[np.where(nb >= 0, nb, 0)], MISSING)
        vote_rows = type_votes([index.ids[i] for i in unlabelled], nb_types, distances[unlabelled])
        for start in range(0, len(vote_rows), WRITE_BATCH):
            run_statement(
                driver,
                database,
                "graph/set_predicted_types",
                "writing predicted types",
                rows=vote_rows[start : start + WRITE_BATCH],
                space=space,
            )
        summary.predicted_types = sum(1 for r in vote_rows if r["type"] is not None)

    summary.seconds = round(time.perf_counter() - started, 3)
    run_statement(
        driver,
        database,
        "graph/record_space",
        "recording the embedding space",
        space=space,
        props={
            "dim": summary.dim,
            "metric": spec.metric,
            "property": spec.property,
            "vector_index": spec.vector_index,
            "producer": producer,
            "index_path": summary.index_path,
            "ef": summary.ef,
            "recall_at_10": summary.recall_at_10,
            "k": k,
            "other_patients": other_patients,
            "lesions": summary.lesions,
            "edges": summary.edges,
        },
    )
    # A new generation of the space's lists: a running import reads them again (graph/lock_space).
    run_statement(
        driver, database, "graph/lock_space", "recording the space's generation", space=space, k=k
    )
    return summary
