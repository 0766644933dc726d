"""The cues space: hand-computed vectors, missing values, the three input paths, the real val split.

No Neo4j: the property path is fed with :func:`lesionkg.db.writes.lesion_props`, the very dicts the
graph store writes as Lesion nodes.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from lesionkg.core.cues import (
    CUE_DIM,
    CUE_NAMES,
    CUE_WEIGHTS,
    CUES_VERSION,
    CueInputError,
    compute_cues,
    cue_matrix,
    cue_matrix_from_props,
    cue_vector,
)
from lesionkg.core.metrics import type_precision_at_k
from lesionkg.core.records import LesionRecord
from lesionkg.db.writes import lesion_props
from lesionkg.loaders.deeplesion import RejectedRow, parse_dl_info

LUNG = (-1500.0, 500.0)
SOFT_TISSUE = (-175.0, 275.0)


def _record(lesion_id: str = "DL-a", **fields) -> LesionRecord:
    """A made-up lesion; only the fields passed matter to the test."""
    base = {
        "lesion_id": lesion_id,
        "patient_id": "000001",
        "study_id": "000001_01",
        "study_index": 1,
        "series_id": 1,
        "file_name": "000001_01_01_100.png",
        "key_slice": 100,
        "recist_px": (10.0, 10.0, 30.0, 10.0, 20.0, 5.0, 20.0, 15.0),
        "bbox_px": (5.0, 0.0, 35.0, 20.0),
        "diameters_px": (20.0, 10.0),
        "long_axis_mm": 20.0,
        "short_axis_mm": 10.0,
        "location": (0.2, 0.4, 0.6),
        "coarse_type": 5,
        "noisy": False,
        "slice_range": (94, 106),
        "spacing_mm": (1.0, 1.0, 5.0),
        "image_size_px": (512, 512),
        "window_hu": LUNG,
        "sex": "F",
        "age_years": 60.0,
        "split": "val",
    }
    base.update(fields)
    return LesionRecord(**base)


def test_definition_constants():
    assert CUE_DIM == len(CUE_NAMES) == len(CUE_WEIGHTS) == 6
    assert CUE_NAMES[:4] == ("location_x", "location_y", "location_z", "lung_window")
    assert CUES_VERSION == "cues-v1"


def test_vectors_by_hand():
    # x, y weight 1; z weight 3.5; lung flag 1; sizes 0.01 * ln(mm / 10), sizes below 1 mm -> 1 mm.
    lung_nodule = _record(location=(0.2, 0.4, 0.6), long_axis_mm=20.0, short_axis_mm=10.0)
    flat = _record(
        "DL-b",
        location=(0.5, 0.5, 0.8),
        long_axis_mm=10.0,
        short_axis_mm=0.0,
        window_hu=SOFT_TISSUE,
    )
    bone_window = _record(
        "DL-c", location=(1.0, 0.0, 0.0), long_axis_mm=100.0, short_axis_mm=0.5,
        window_hu=(-1000.0, 1700.0),
    )  # fmt: skip
    expected = {
        lung_nodule: [0.2, 0.4, 2.1, 1.0, 0.01 * math.log(2.0), 0.0],
        flat: [0.5, 0.5, 2.8, 0.0, 0.0, 0.01 * math.log(0.1)],
        bone_window: [1.0, 0.0, 0.0, 0.0, 0.01 * math.log(10.0), 0.01 * math.log(0.1)],
    }
    for rec, values in expected.items():
        vec = cue_vector(rec)
        assert vec.dtype == np.float32 and vec.shape == (CUE_DIM,)
        np.testing.assert_allclose(vec, values, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("window", "lung"),
    [
        (LUNG, 1.0),
        ((-1350.0, 150.0), 1.0),
        ((-1537.5, 767.5), 1.0),  # wide lung window, level -385 HU
        ((-700.0, 300.0), 1.0),  # level exactly -200 HU
        (SOFT_TISSUE, 0.0),
        ((-160.0, 240.0), 0.0),
        ((-620.0, 1680.0), 0.0),  # bone window
        ((-1300.0, 2700.0), 0.0),
    ],
)
def test_lung_window_flag_follows_the_window_level(window, lung):
    assert cue_vector(_record(window_hu=window))[3] == lung


def test_matrix_is_the_stacked_vectors():
    records = [
        _record("DL-a"),
        _record("DL-b", location=(0.9, 0.1, 0.3), window_hu=SOFT_TISSUE, long_axis_mm=55.5),
        _record("DL-c", location=(0.0, 1.0, 1.0), short_axis_mm=3.25),
    ]
    matrix = cue_matrix(records)
    assert matrix.dtype == np.float32 and matrix.shape == (3, CUE_DIM)
    np.testing.assert_array_equal(matrix, np.stack([cue_vector(r) for r in records]))
    assert cue_matrix([]).shape == (0, CUE_DIM)
    assert cue_matrix_from_props([]).shape == (0, CUE_DIM)


def test_props_and_arrays_give_the_record_vectors():
    records = [
        _record("DL-a"),
        _record("DL-b", location=(0.7, 0.3, 0.45), window_hu=SOFT_TISSUE, long_axis_mm=8.0),
    ]
    from_records = cue_matrix(records)
    np.testing.assert_array_equal(
        cue_matrix_from_props([lesion_props(r) for r in records]), from_records
    )
    from_arrays = compute_cues(
        np.array([r.location for r in records]),
        np.array([r.long_axis_mm for r in records]),
        np.array([r.short_axis_mm for r in records]),
        np.array([r.window_hu for r in records]),
    )
    np.testing.assert_array_equal(from_arrays, from_records)


def test_the_type_is_never_used():
    rec = _record()
    reference = cue_vector(rec)
    for coarse_type in (None, 1, 2, 3, 4, 5, 6, 7, 8):
        changed = dataclasses.replace(rec, coarse_type=coarse_type)
        np.testing.assert_array_equal(cue_vector(changed), reference)
    # Nor anything else outside the documented inputs (location, axes, window).
    other = dataclasses.replace(
        rec, sex=None, age_years=None, noisy=True, spacing_mm=(0.5, 0.5, 1.0), key_slice=3,
        slice_range=(0, 6), image_size_px=(1024, 1024), split="train",
    )  # fmt: skip
    np.testing.assert_array_equal(cue_vector(other), reference)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"location": None}, "lesion DL-bad: location is missing"),
        ({"window_hu": None}, "lesion DL-bad: window_hu is missing"),
        ({"long_axis_mm": None}, "lesion DL-bad: long_axis_mm is missing"),
        ({"short_axis_mm": float("nan")}, "lesion DL-bad: short_axis_mm must be finite"),
        ({"location": (0.1, float("nan"), 0.3)}, "lesion DL-bad: location must be finite"),
        ({"location": (0.1, 0.2, 1.5)}, r"lesion DL-bad: location must be in \[0, 1\]"),
        ({"location": (0.1, 0.2)}, "lesion DL-bad: location must be 3 numbers"),
        ({"long_axis_mm": -2.0}, "lesion DL-bad: long_axis_mm must be >= 0 mm"),
        ({"window_hu": (275.0, -175.0)}, "lesion DL-bad: window_hu must be min < max"),
    ],
)
def test_bad_record_values_name_the_lesion_and_field(fields, message):
    records = [_record("DL-good"), _record("DL-bad", **fields)]
    with pytest.raises(CueInputError, match=message):
        cue_matrix(records)


def test_bad_props_name_the_lesion_and_property():
    good = lesion_props(_record("DL-good"))
    absent = {k: v for k, v in lesion_props(_record("DL-bad")).items() if k != "window"}
    with pytest.raises(CueInputError, match="lesion DL-bad: property window is missing"):
        cue_matrix_from_props([good, absent])
    with pytest.raises(CueInputError, match="lesion DL-bad: property location is missing"):
        cue_matrix_from_props([good, {**good, "lesion_id": "DL-bad", "location": None}])
    with pytest.raises(CueInputError, match="lesion DL-bad: window must be 2 numbers"):
        cue_matrix_from_props([good, {**good, "lesion_id": "DL-bad", "window": [-175.0]}])
    # A CueInputError is a ValueError: callers that catch ValueError see it too.
    with pytest.raises(ValueError, match="lesion DL-bad: long_axis_mm must be finite"):
        cue_matrix_from_props([good, {**good, "lesion_id": "DL-bad", "long_axis_mm": math.nan}])


def test_bad_arrays_name_the_row_or_the_input():
    with pytest.raises(CueInputError, match="row 1: window_hu must be min < max"):
        compute_cues([[0.5] * 3] * 2, [10.0, 10.0], [5.0, 5.0], [LUNG, (100.0, 100.0)])
    with pytest.raises(CueInputError, match="short_axis_mm: expected 2 values"):
        compute_cues([[0.5] * 3] * 2, [10.0, 10.0], [5.0], [LUNG, LUNG])
    with pytest.raises(CueInputError, match="long_axis_mm: expected one value per lesion"):
        compute_cues([[0.5] * 3], 10.0, [5.0], [LUNG])


def test_real_val_split_type_precision(val_csv):
    records = [r for r in parse_dl_info(val_csv) if not isinstance(r, RejectedRow)]
    assert len(records) == 4889
    types = np.array([-1 if r.coarse_type is None else r.coarse_type for r in records])
    patients = np.array([r.patient_id for r in records])
    location = np.array([r.location for r in records])
    cues = cue_matrix(records)
    location_only = type_precision_at_k(location, types, patients, k=5)
    with_lung = type_precision_at_k(np.c_[location, cues[:, 3]], types, patients, k=5)
    ours = type_precision_at_k(cues, types, patients, k=5)
    # Measured: location only 0.751, location + lung-window flag 0.804, cues-v1 0.815 (0.813 when
    # the weights are chosen on other patients). The issue's 0.82 is not reached from metadata.
    assert location_only == pytest.approx(0.751, abs=0.002)
    assert ours >= 0.81
    assert ours > with_lung > location_only + 0.04
