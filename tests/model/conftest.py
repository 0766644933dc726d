"""A tiny SYNTHETIC cohort with CT images, shared by the model tests."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lesionkg.loaders.synthetic import write_synthetic_dl_info
from lesionkg.model.training import TrainingSet, read_training_rows


@pytest.fixture(scope="session")
def synthetic_images(tmp_path_factory) -> Path:
    """12 SYNTHETIC patients in DeepLesion format with Images_png slices."""
    out = tmp_path_factory.mktemp("synthetic_cohort")
    write_synthetic_dl_info(out, patients=12, seed=4, images=True)
    return out


@pytest.fixture(scope="session")
def true_types(synthetic_images) -> np.ndarray:
    """The generator's true coarse type of every row (train rows carry -1 in the CSV)."""
    with open(synthetic_images / "lesion_truth_synthetic.csv", newline="") as fh:
        return np.array([int(row["true_type"]) for row in csv.DictReader(fh)])


@pytest.fixture(scope="session")
def labelled_set(synthetic_images, true_types) -> TrainingSet:
    """Every synthetic lesion, with its true type as label (for tests of training mechanics)."""
    rows = read_training_rows(synthetic_images / "DL_info_synthetic.csv", None)
    data = TrainingSet.from_records(rows, synthetic_images)
    assert len(data.lesions) == len(true_types)
    return replace(data, types=true_types)
