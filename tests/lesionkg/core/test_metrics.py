"""Type precision@k on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from lesionkg.core.metrics import nearest_other_patients, type_precision_at_k


def test_nearest_skips_self_and_same_patient():
    vectors = np.array([[0.0], [0.1], [0.2], [5.0]])
    patients = np.array(["a", "a", "b", "c"])
    nearest = nearest_other_patients(vectors, patients, k=2)
    np.testing.assert_array_equal(nearest[0], [2, 3])
    np.testing.assert_array_equal(nearest[2], [1, 0])
    all_patients = nearest_other_patients(vectors, patients, k=1, exclude_same_patient=False)
    np.testing.assert_array_equal(all_patients[:, 0], [1, 0, 1, 2])


def test_type_precision_by_hand():
    # Two tight clusters, one lesion (index 2) sitting in the wrong cluster.
    vectors = np.array([[0.0], [0.1], [0.2], [10.0], [10.1], [10.2]])
    types = np.array([1, 1, 2, 2, 2, 1])
    patients = np.array(["p1", "p2", "p3", "p4", "p5", "p6"])
    # k = 2. Query 0: 1, 2 -> 1/2; query 1: 0, 2 -> 1/2; query 2: 1, 0 -> 0;
    # query 3: 4, 5 -> 1/2; query 4: 3, 5 -> 1/2; query 5: 4, 3 -> 0.  Mean 2/6.
    assert type_precision_at_k(vectors, types, patients, k=2) == pytest.approx(2 / 6)


def test_unlabelled_lesions_take_no_part():
    vectors = np.array([[0.0], [0.1], [0.05], [10.0]])
    types = np.array([1, 1, -1, 2])
    patients = np.array(["a", "b", "c", "d"])
    assert type_precision_at_k(vectors, types, patients, k=1) == pytest.approx(2 / 3)
