"""The SYNTHETIC cohort with true types as labels, for tests of training mechanics."""

from __future__ import annotations

from dataclasses import replace

import pytest

from lesionkg.model.training import TrainingSet, read_training_rows


@pytest.fixture(scope="session")
def labelled_set(synthetic_images, true_types) -> TrainingSet:
    """Every synthetic lesion, with its true type as label."""
    rows = read_training_rows(synthetic_images / "DL_info_synthetic.csv", None)
    data = TrainingSet.from_records(rows, synthetic_images)
    assert len(data.lesions) == len(true_types)
    return replace(data, types=true_types)
