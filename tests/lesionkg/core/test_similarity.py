"""Tests of lesionkg.core.similarity: exact search, HNSW index, kNN edges, type votes (no Neo4j)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from lesionkg.core.errors import ConfigurationError
from lesionkg.core.records import LesionRecord
from lesionkg.core.similarity import (
    SimilarEdge,
    exact_knn,
    knn_edges,
    merge_knn_lists,
    neighbours,
    pair_distances,
    predict_types,
    recall_at_k,
    reverse_candidates,
    type_accuracy,
)
from lesionkg.graph.vector_index import LesionIndex
from lesionkg.loaders.deeplesion import parse_dl_info


def brute_force(queries: np.ndarray, base: np.ndarray, metric: str) -> np.ndarray:
    """The full (Q, N) distance matrix in float64, hnswlib's conventions."""
    q, b = queries.astype(np.float64), base.astype(np.float64)
    if metric == "l2":
        return ((q[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return 1.0 - q @ b.T


def clusters(rng, n_per: int, dim: int, centres: int = 3, spread: float = 0.05) -> np.ndarray:
    """``centres`` well separated gaussian clusters of ``n_per`` points each, in order."""
    means = rng.normal(size=(centres, dim)) * 10
    points = [m + spread * rng.normal(size=(n_per, dim)) for m in means]
    return np.concatenate(points).astype(np.float32)


def lesion_ids(n: int, prefix: str = "L") -> list[str]:
    return [f"{prefix}{i:06d}" for i in range(n)]


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_exact_knn_matches_brute_force(metric):
    rng = np.random.default_rng(1)
    base = rng.normal(size=(700, 12)).astype(np.float32)
    queries = rng.normal(size=(40, 12)).astype(np.float32)
    idx, dist = exact_knn(queries, base, 7, metric=metric)
    full = brute_force(queries, base, metric)
    assert idx.shape == dist.shape == (40, 7)
    assert idx.dtype == np.int64 and dist.dtype == np.float32
    np.testing.assert_array_equal(idx, np.argsort(full, axis=1, kind="stable")[:, :7])
    np.testing.assert_allclose(dist, np.sort(full, axis=1)[:, :7], atol=1e-5)


def test_exact_knn_pads_when_k_exceeds_the_base_and_keeps_hnswlib_conventions():
    base = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]], dtype=np.float32)
    idx, dist = exact_knn(np.array([[3.0, 0.0]], dtype=np.float32), base, 5, metric="cosine")
    # 1 - cos: same direction 0, orthogonal 1, and a zero vector 1 (as hnswlib normalises it).
    assert idx[0].tolist() == [0, 1, 2, -1, -1]
    np.testing.assert_allclose(dist[0, :3], [0.0, 1.0, 1.0], atol=1e-6)
    assert np.isinf(dist[0, 3:]).all()
    idx, dist = exact_knn(np.array([[3.0, 0.0]], dtype=np.float32), base, 2, metric="l2")
    # squared Euclidean, not Euclidean
    assert idx[0].tolist() == [0, 2]
    np.testing.assert_allclose(dist[0], [4.0, 9.0])


def test_index_distances_follow_exact_knn_conventions():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(300, 6)).astype(np.float32)
    for metric in ("cosine", "l2"):
        index = LesionIndex.build("t", lesion_ids(300), base, metric=metric, producer_sha256="x")
        index.ef = 300
        pos, dist = index.query(base[:20], 5)
        ex_pos, ex_dist = exact_knn(base[:20], base, 5, metric=metric)
        np.testing.assert_array_equal(pos, ex_pos)
        np.testing.assert_allclose(dist, ex_dist, atol=1e-5)


def test_knn_edges_stay_in_their_cluster():
    rng = np.random.default_rng(3)
    vectors = clusters(rng, 60, 16)
    cluster = np.repeat(np.arange(3), 60)
    ids = lesion_ids(len(vectors))
    patients = [f"P{i}" for i in range(len(vectors))]
    index = LesionIndex.build("t", ids, vectors, metric="l2", producer_sha256="x")
    pos, dist = neighbours(index, 5, patients, other_patients=False)
    edges = knn_edges(ids, patients, pos, dist, 5, other_patients=False)
    assert len(edges) == 5 * len(ids)
    by_id = {lesion_id: c for lesion_id, c in zip(ids, cluster, strict=True)}
    assert all(by_id[e.source] == by_id[e.target] for e in edges)
    assert all(e.source != e.target for e in edges)
    assert [e.rank for e in edges[:5]] == [1, 2, 3, 4, 5]
    assert all(
        a.distance <= b.distance for a, b in itertools.pairwise(edges) if a.source == b.source
    )


def test_knn_edges_break_ties_by_id_and_drop_self_duplicates_and_missing():
    ids = ["c", "a", "b", "d"]
    patients = ["P1", "P2", "P3", "P4"]
    # Row 0 ("c") lists itself, a missing place, "d" twice and a tie between "b" and "a".
    inf = np.inf
    indices = np.array(
        [[0, 3, -1, 2, 1, 3], [0, 2, 3, -1, -1, -1], [0, 1, 3, -1, -1, -1], [0, 0, 0, 0, 0, 0]]
    )
    distances = np.array(
        [
            [0.0, 0.5, inf, 0.2, 0.2, 0.9],
            [0.1, 0.3, 0.2, inf, inf, inf],
            [0.1, 0.1, 0.1, inf, inf, inf],
            [0.4, inf, inf, inf, inf, inf],
        ]
    )
    edges = knn_edges(ids, patients, indices, distances, 3, other_patients=False)
    assert edges[:3] == [
        SimilarEdge("c", "a", 0.2, 1),
        SimilarEdge("c", "b", 0.2, 2),
        SimilarEdge("c", "d", 0.5, 3),
    ]
    assert [(e.source, e.target, e.rank) for e in edges[3:]] == [
        ("a", "c", 1),
        ("a", "d", 2),
        ("a", "b", 3),
        ("b", "a", 1),
        ("b", "c", 2),
        ("b", "d", 3),
        ("d", "c", 1),
    ]


def test_other_patients_never_links_a_patient_to_itself_and_still_gives_k():
    rng = np.random.default_rng(4)
    # Each patient's lesions sit together, so the nearest ones are mostly the same patient's.
    n_patients, per = 40, 6
    centres = rng.normal(size=(n_patients, 8)) * 3
    vectors = np.repeat(centres, per, axis=0) + 0.01 * rng.normal(size=(n_patients * per, 8))
    vectors = vectors.astype(np.float32)
    patients = np.repeat([f"P{p:03d}" for p in range(n_patients)], per).tolist()
    ids = lesion_ids(len(vectors))
    index = LesionIndex.build("t", ids, vectors, metric="l2", producer_sha256="x")
    index.ef = 64
    pos, dist = neighbours(index, 10, patients, other_patients=True)
    assert (pos >= 0).all()
    edges = knn_edges(ids, patients, pos, dist, 10, other_patients=True)
    assert len(edges) == 10 * len(ids)
    patient_of = dict(zip(ids, patients, strict=True))
    assert all(patient_of[e.source] != patient_of[e.target] for e in edges)
    # The same result as exact search among other patients' lesions.
    full = brute_force(vectors, vectors, "l2")
    same = np.array(patients)[:, None] == np.array(patients)[None, :]
    full[same] = np.inf
    expected = np.sort(full, axis=1)[:, :10]
    np.testing.assert_allclose(dist, expected, rtol=1e-4, atol=1e-6)


def test_neighbours_fall_back_to_exact_search_and_pad_when_too_few_exist():
    vectors = np.array([[0.0], [1.0], [2.0], [10.0]], dtype=np.float32)
    ids = ["a", "b", "c", "d"]
    index = LesionIndex.build("t", ids, vectors, metric="l2", producer_sha256="x")
    pos, dist = neighbours(index, 3, ["P1", "P1", "P2", "P2"], other_patients=True)
    # Each lesion has only two lesions of another patient.
    assert pos.tolist() == [[2, 3, -1], [2, 3, -1], [1, 0, -1], [1, 0, -1]]
    assert np.isinf(dist[:, 2]).all()


def _tuned_recall(vectors: np.ndarray, queries: np.ndarray, metric: str) -> tuple[int, float]:
    index = LesionIndex.build(
        "t", lesion_ids(len(vectors)), vectors, metric=metric, producer_sha256="x"
    )
    ef, recall = index.tune_ef(queries, k=10, target_recall=0.99)
    # Measured again, independently of tune_ef's bookkeeping.
    _, found = index.query(queries, 10)
    _, exact = exact_knn(queries, vectors, 10, metric=metric)
    assert recall_at_k(found, exact) == pytest.approx(recall)
    assert index.ef == ef and index.recall_at_10 == pytest.approx(recall, abs=1e-5)
    return ef, recall


@pytest.mark.parametrize(("dim", "metric"), [(1408, "cosine"), (8, "l2")])
def test_tuned_index_reaches_recall_099(dim, metric):
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(3000, dim)).astype(np.float32)
    queries = rng.normal(size=(100, dim)).astype(np.float32)
    _, recall = _tuned_recall(vectors, queries, metric)
    assert recall >= 0.99


def test_recall_at_k_counts_ties_at_the_kth_place_as_hits():
    exact = np.array([[0.1, 0.2, 0.3], [0.1, 0.2, 0.2]])
    assert recall_at_k(exact, exact) == 1.0
    assert recall_at_k(np.array([[0.1, 0.2, 0.4], [0.1, 0.2, 0.2]]), exact) == pytest.approx(5 / 6)
    assert recall_at_k(np.array([[0.1, np.inf, np.inf], [0.1, 0.2, 0.2]]), exact) == pytest.approx(
        4 / 6
    )


def test_incremental_adds_give_the_neighbours_of_a_full_build():
    rng = np.random.default_rng(6)
    vectors = clusters(rng, 400, 24, centres=5, spread=1.0)
    ids = lesion_ids(len(vectors))
    full = LesionIndex.build("t", ids, vectors, metric="cosine", producer_sha256="x")
    grown = LesionIndex.build("t", ids[:100], vectors[:100], metric="cosine", producer_sha256="x")
    for start in range(100, len(ids), 350):
        grown.add(ids[start : start + 350], vectors[start : start + 350])
    assert grown.ids == ids
    np.testing.assert_array_equal(grown.vectors, vectors)
    queries = vectors[rng.choice(len(vectors), 50)] + 0.1 * rng.normal(size=(50, 24))
    queries = queries.astype(np.float32)
    full.ef = grown.ef = 200
    a_pos, a_dist = full.query(queries, 10)
    b_pos, b_dist = grown.query(queries, 10)
    _, exact_dist = exact_knn(queries, vectors, 10, metric="cosine")
    assert recall_at_k(a_dist, exact_dist) == 1.0
    assert recall_at_k(b_dist, exact_dist) == 1.0
    np.testing.assert_array_equal(a_pos, b_pos)


def test_adding_an_existing_id_replaces_its_vector():
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(200, 8)).astype(np.float32)
    ids = lesion_ids(200)
    original = vectors.copy()
    index = LesionIndex.build("t", ids, vectors, metric="l2", producer_sha256="x")
    far = np.full((1, 8), 100.0, dtype=np.float32)
    index.add(["L000005", "NEW"], np.concatenate([far, far + 1]))
    # build() keeps the caller's array by reference: add() must copy before writing.
    np.testing.assert_array_equal(vectors, original)
    assert index.count == 201 and index.ids[5] == "L000005" and index.ids[200] == "NEW"
    assert index.position("L000005") == 5
    np.testing.assert_array_equal(index.vectors[5], far[0])
    pos, dist = index.query(far, 2)
    assert pos[0].tolist() == [5, 200]
    np.testing.assert_allclose(dist[0], [0.0, 8.0])
    # Its old place is gone: the old vector's nearest lesion is no longer lesion 5.
    pos, _ = index.query(original[5:6], 1)
    assert pos[0, 0] != 5


def test_duplicate_ids_are_refused():
    vectors = np.zeros((3, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="duplicate lesion ids in the index input: a"):
        LesionIndex.build("t", ["a", "b", "a"], vectors, metric="l2", producer_sha256="x")
    index = LesionIndex.build("t", ["a", "b", "c"], vectors, metric="l2", producer_sha256="x")
    with pytest.raises(ValueError, match="duplicate lesion ids"):
        index.add(["d", "d"], vectors[:2])
    with pytest.raises(ValueError, match="2 dimensions, expected 4"):
        index.add(["e"], np.zeros((1, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        index.add(["e"], np.full((1, 4), np.nan, dtype=np.float32))


def test_query_with_k_above_the_count_pads():
    vectors = np.eye(3, dtype=np.float32)
    index = LesionIndex.build("t", ["a", "b", "c"], vectors, metric="cosine", producer_sha256="x")
    pos, dist = index.query(vectors[:1], 5)
    assert pos.shape == (1, 5) and pos[0, 0] == 0 and pos[0, 3:].tolist() == [-1, -1]
    assert sorted(pos[0, :3].tolist()) == [0, 1, 2] and np.isinf(dist[0, 3:]).all()


def test_save_and_load_round_trip(tmp_path):
    rng = np.random.default_rng(8)
    vectors = rng.normal(size=(500, 16)).astype(np.float32)
    ids = lesion_ids(500)
    index = LesionIndex.build(
        "triplet", ids, vectors, metric="cosine", producer_sha256="ab" * 32, M=12
    )
    index.tune_ef(vectors[:50])
    bin_path, json_path = index.save(tmp_path / "idx" / "triplet")
    assert bin_path.name == "triplet.bin" and json_path.name == "triplet.json"
    # No temporary file is left; the lock file stays for the next save.
    assert sorted(p.name for p in bin_path.parent.iterdir()) == [
        "triplet.bin",
        "triplet.json",
        "triplet.lock",
    ]
    manifest = json.loads(json_path.read_text())
    assert manifest["format_version"] == 1
    assert {
        k: manifest[k] for k in ("space", "metric", "dim", "count", "M", "ef_construction")
    } == {
        "space": "triplet",
        "metric": "cosine",
        "dim": 16,
        "count": 500,
        "M": 12,
        "ef_construction": 200,
    }
    assert manifest["ids"] == ids and manifest["producer_sha256"] == "ab" * 32
    assert manifest["ef"] == index.ef and manifest["recall_at_10"] == index.recall_at_10 > 0.9

    loaded = LesionIndex.load(tmp_path / "idx" / "triplet")
    assert (loaded.space, loaded.metric, loaded.dim, loaded.ids) == ("triplet", "cosine", 16, ids)
    assert (loaded.M, loaded.ef, loaded.producer_sha256) == (12, index.ef, "ab" * 32)
    assert loaded.recall_at_10 == index.recall_at_10
    queries = rng.normal(size=(30, 16)).astype(np.float32)
    a_pos, a_dist = index.query(queries, 10)
    b_pos, b_dist = loaded.query(queries, 10)
    np.testing.assert_array_equal(a_pos, b_pos)
    np.testing.assert_allclose(a_dist, b_dist, atol=1e-6)
    # Cosine vectors come back as hnswlib's unit vectors: same directions.
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    np.testing.assert_allclose(loaded.vectors, unit, atol=1e-6)
    loaded.add(["more"], vectors[:1])
    assert loaded.count == 501


def _saved(tmp_path) -> tuple[LesionIndex, object]:
    vectors = np.random.default_rng(9).normal(size=(50, 4)).astype(np.float32)
    index = LesionIndex.build("cues", lesion_ids(50), vectors, metric="l2", producer_sha256="v1")
    index.save(tmp_path / "cues")
    return index, tmp_path / "cues"


def _edit_manifest(tmp_path, **changes) -> None:
    path = tmp_path / "cues.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"count": 49, "ids": lesion_ids(49)}, "disagree on the number of vectors: the manifest "
         "says 49, the index file holds 50"),
        ({"dim": 5}, "disagree on the dimension: the manifest says 5, the index file holds 4"),
        ({"M": 32}, "disagree on M"),
        ({"count": 51}, "lists 50 ids but count is 51"),
        ({"metric": "ip"}, "unknown metric 'ip'"),
        ({"format_version": 2}, "unsupported index manifest format_version 2"),
        ({"ids": ["x"] * 50}, "duplicate lesion ids"),
    ],
)  # fmt: skip
def test_manifest_disagreement_is_a_configuration_error(tmp_path, changes, message):
    _saved(tmp_path)
    _edit_manifest(tmp_path, **changes)
    with pytest.raises(ConfigurationError, match=message) as info:
        LesionIndex.load(tmp_path / "cues")
    assert "cues.json" in str(info.value)


def test_missing_or_broken_index_files_are_configuration_errors(tmp_path):
    _saved(tmp_path)
    (tmp_path / "cues.bin").write_bytes(b"short")
    with pytest.raises(ConfigurationError, match=r"cues\.bin: not an hnswlib index"):
        LesionIndex.load(tmp_path / "cues")
    (tmp_path / "cues.bin").unlink()
    with pytest.raises(ConfigurationError, match=r"cues\.bin: similarity index file not found"):
        LesionIndex.load(tmp_path / "cues")
    _saved(tmp_path)
    (tmp_path / "cues.json").write_text("{not json")
    with pytest.raises(ConfigurationError, match=r"cues\.json: unreadable index manifest"):
        LesionIndex.load(tmp_path / "cues")


def test_predict_types_hand_computed_votes():
    types = np.array(
        [
            [2, 3, 3, -1],  # weighted: 2 gets 1/0.1 = 10, 3 gets 1/1 + 1/1 = 2
            [-1, -1, -1, -1],  # no labelled neighbour
            [4, 5, 5, 4],  # majority tie 2-2: the nearest voter (type 4) wins
            [1, 1, 1, 2],
        ]
    )
    distances = np.array(
        [
            [0.1, 1.0, 1.0, 0.0],
            [0.1, 0.2, 0.3, 0.4],
            [1.0, 1.0, 1.0, 1.0],
            [1.0, 1.0, np.inf, 0.5],
        ]
    )
    predicted, confidence = predict_types(types, distances, eps=1e-12)
    assert predicted.tolist() == [2, -1, 4, 2]
    np.testing.assert_allclose(confidence, [10 / 12, 0.0, 0.5, 2 / 4])
    predicted, confidence = predict_types(types, distances, weighting="majority")
    assert predicted.tolist() == [3, -1, 4, 1]
    np.testing.assert_allclose(confidence, [2 / 3, 0.0, 0.5, 2 / 3])
    with pytest.raises(ValueError, match="must be >= 0, or -1"):
        predict_types(np.array([[-2]]), np.array([[0.0]]))


def test_type_from_location_of_other_patients_on_real_deeplesion(val_csv):
    records = [r for r in parse_dl_info(val_csv) if isinstance(r, LesionRecord)]
    ids = [r.lesion_id for r in records]
    patients = [r.patient_id for r in records]
    location = np.array([r.location for r in records], dtype=np.float32)
    truth = np.array([-1 if r.coarse_type is None else r.coarse_type for r in records])
    index = LesionIndex.build("location", ids, location, metric="l2", producer_sha256="dl-v1")
    ef, recall = index.tune_ef(location[::10])
    assert recall >= 0.99
    pos, dist = neighbours(index, 10, patients, other_patients=True)
    assert (pos >= 0).all()
    patient = np.array(patients)
    assert not (patient[pos] == patient[:, None]).any()
    predicted, confidence = predict_types(np.where(pos >= 0, truth[pos], -1), dist)
    labelled = truth[truth >= 0]
    majority_rate = np.bincount(labelled).max() / len(labelled)
    accuracy = type_accuracy(predicted, truth)
    print(
        f"\nDeepLesion val: {len(records)} lesions, ef={ef} recall@10={recall:.4f}, "
        f"type accuracy from location (k=10, other patients) {accuracy:.4f}, "
        f"majority class rate {majority_rate:.4f}, mean confidence {confidence.mean():.3f}"
    )
    assert accuracy >= majority_rate + 0.2


# -- incremental kNN ------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_pair_distances_follow_the_brute_force(metric: str) -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(50, 7)).astype(np.float32), rng.normal(size=(50, 7)).astype(np.float32)
    full = brute_force(a, b, metric)
    assert np.allclose(pair_distances(a, b, metric=metric), np.diag(full), atol=1e-5)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("search", [0, 8, 40])
def test_incremental_lists_equal_the_exact_knn_of_the_grown_set(metric: str, search: int) -> None:
    """Old lists merged with the newcomers that reverse_candidates finds equal the exact kNN of
    old + new, whatever the neighbourhood searched (0: all from the exact check)."""
    rng = np.random.default_rng(5)
    k = 4
    # Dense clusters and a few far outliers: outliers have large k-th distances.
    old = np.concatenate([clusters(rng, 60, 5), rng.normal(size=(6, 5)).astype(np.float32) * 40])
    new = np.concatenate([clusters(rng, 10, 5), rng.normal(size=(3, 5)).astype(np.float32) * 40])
    ids = [f"L{i:04d}" for i in range(len(old) + len(new))]
    both = np.concatenate([old, new])
    # The old lists: exact kNN among the old.
    d_old = brute_force(old, old, metric)
    np.fill_diagonal(d_old, np.inf)
    pos = np.argsort(d_old, axis=1, kind="stable")[:, :k]
    dist = np.take_along_axis(d_old, pos, axis=1)
    # The newcomers' neighbourhood among the old, as an index search would give it.
    d_new = brute_force(new, old, metric)
    q_pos = np.argsort(d_new, axis=1, kind="stable")[:, :search]
    q_dist = np.take_along_axis(d_new, q_pos, axis=1)
    r_old, r_new, r_dist = reverse_candidates(dist[:, -1], q_pos, q_dist, new, old, metric=metric)
    # Every pair found qualifies (up to float32 rounding), and every clear one is found.
    found = set(zip(r_old.tolist(), r_new.tolist(), strict=True))
    kth = dist[:, -1:]
    loose = set(zip(*np.nonzero(kth + 1e-4 >= d_new.T), strict=True))
    strict = set(zip(*np.nonzero(kth - 1e-4 >= d_new.T), strict=True))
    assert strict <= found <= loose
    assert len(strict) > 10
    rows, inverse = np.unique(r_old, return_inverse=True)
    merged_pos, merged_dist, changed = merge_knn_lists(
        pos[rows], dist[rows], inverse, len(old) + r_new, r_dist, ids, k
    )
    assert changed.all()
    pos[rows], dist[rows] = merged_pos, merged_dist
    d_all = brute_force(both, both, metric)
    np.fill_diagonal(d_all, np.inf)
    expected = np.argsort(d_all[: len(old)], axis=1, kind="stable")[:, :k]
    assert (pos == expected).all()


def test_merge_knn_lists_orders_ties_by_name_and_skips_repeats() -> None:
    names = ["b", "a", "c", "d"]
    positions = np.array([[0, -1]])
    distances = np.array([[1.0, np.inf]])
    # "a" ties with "b" at 1.0 and comes first by name; "b" given again is not added twice.
    out_pos, out_dist, changed = merge_knn_lists(
        positions,
        distances,
        np.array([0, 0, 0]),
        np.array([1, 0, 2]),
        np.array([1.0, 1.0, 3.0]),
        names,
        2,
    )
    assert out_pos.tolist() == [[1, 0]] and out_dist.tolist() == [[1.0, 1.0]] and changed.all()
    same_pos, _, same = merge_knn_lists(
        out_pos, out_dist, np.array([0]), np.array([3]), np.array([5.0]), names, 2
    )
    assert same_pos.tolist() == [[1, 0]] and not same.any()
