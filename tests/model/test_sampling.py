"""Sequential sampling invariants, the sequential triplet loss and pseudo-labels (pure logic)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lesionkg.model.losses import sequential_triplet_loss
from lesionkg.model.sampling import (
    UNLABELLED,
    SequenceSampler,
    normalise_columns,
    pseudo_label,
    refine_types,
)


def _cohort(n: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    types = rng.integers(1, 9, n)
    types[rng.random(n) < 0.2] = UNLABELLED
    location = rng.random((n, 3))
    size = np.column_stack([rng.lognormal(3, 0.6, n), rng.lognormal(2.5, 0.6, n)])
    return types, location, size


def test_normalise_columns_sets_each_maximum_to_one():
    out = normalise_columns(np.array([[1.0, 10.0, 0.0], [2.0, 40.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.5, 0.25, 0.0], [1.0, 1.0, 0.0]])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sequences_follow_type_then_location_then_size(seed):
    types, location, size = _cohort(seed=seed)
    sampler = SequenceSampler(types, location, size)
    seqs = sampler.sample(500, np.random.default_rng(seed))
    loc, sz = normalise_columns(location), normalise_columns(size)
    for a, b, c, d, e in seqs:
        assert len({a, b, c, d, e}) == 5
        assert UNLABELLED not in types[[a, b, c, d, e]]
        assert types[a] == types[b] == types[c] == types[d] != types[e]
        near = max(np.linalg.norm(loc[b] - loc[a]), np.linalg.norm(loc[c] - loc[a]))
        assert np.linalg.norm(loc[d] - loc[a]) >= near
        assert np.linalg.norm(sz[b] - sz[a]) <= np.linalg.norm(sz[c] - sz[a])


def test_sampling_is_seeded():
    types, location, size = _cohort()
    sampler = SequenceSampler(types, location, size)
    one = sampler.sample(50, np.random.default_rng(7))
    two = sampler.sample(50, np.random.default_rng(7))
    np.testing.assert_array_equal(one, two)
    assert not np.array_equal(one, sampler.sample(50, np.random.default_rng(8)))


def test_no_anchor_without_two_labelled_types():
    types = np.array([3, 3, 3, 3, 3, UNLABELLED])
    sampler = SequenceSampler(types, np.random.rand(6, 3), np.random.rand(6, 2))
    assert len(sampler) == 0
    with pytest.raises(ValueError, match="two labelled types"):
        sampler.sample(1, np.random.default_rng(0))


def test_loss_by_hand():
    # Distances to A along the sequence: B 1, C 0.5, D 2, E 2 (margin 0.1):
    # hinge(1 - 0.5 + .1) + hinge(0.5 - 2 + .1) + hinge(2 - 2 + .1) = 0.6 + 0 + 0.1 = 0.7.
    seq = torch.tensor([[[0.0, 0], [1, 0], [0, 0.5], [-2, 0], [0, -2]]])
    assert sequential_triplet_loss(seq, margin=0.1).item() == pytest.approx(0.7)
    ordered = torch.tensor([[[0.0, 0], [0.1, 0], [0.5, 0], [1.0, 0], [1.8, 0]]])
    assert sequential_triplet_loss(ordered, margin=0.1).item() == 0.0


def test_pseudo_labels_vote_among_labelled_neighbours():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0], [10, 0], [0, 10]])
    points = np.concatenate([c + rng.normal(0, 0.5, (30, 2)) for c in centres])
    truth = np.repeat([1, 5, 8], 30)
    types = truth.copy()
    hidden = rng.random(90) < 0.3
    types[hidden] = UNLABELLED
    labels, confidence = pseudo_label(points, types, k=5)
    np.testing.assert_array_equal(labels, truth)
    assert (confidence[~hidden] == 1).all() and (confidence[hidden] == 1).all()
    # A point between two clusters gets a split vote and a lower confidence.
    mixed = np.concatenate([points, [[5.0, 0.0]]])
    labels, confidence = pseudo_label(mixed, np.append(types, UNLABELLED), k=10)
    assert labels[-1] in (1, 5) and confidence[-1] < 1
    kept = refine_types(np.append(types, UNLABELLED), labels, confidence, min_confidence=1.0)
    assert kept[-1] == UNLABELLED and (kept[:90][hidden] == truth[hidden]).all()
