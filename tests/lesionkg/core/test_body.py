"""The body outline and in-plane locations (``lesionkg.core.body``), on real DeepLesion key
slices."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from lesionkg.core.body import body_box, body_mask, relative_xy
from lesionkg.model.transforms import read_hu_png


def test_relative_xy_agrees_with_deeplesion_locations(deeplesion_dir: Path) -> None:
    """x, y from the body's box against DeepLesion's own normalised x, y (from its body-part
    regression pipeline) for the lesions on the real key slices."""
    rows: dict[str, list[dict]] = {}
    for name in ("DL_info_val.csv", "DL_info_train_partial.csv"):
        with open(deeplesion_dir / "dl_info" / name, newline="") as fh:
            for row in csv.DictReader(fh):
                rows.setdefault(row["File_name"], []).append(row)
    errors = []
    for png in sorted((deeplesion_dir / "images").glob("*.png")):
        hu = read_hu_png(png)
        for row in rows.get(png.name, []):
            x1, y1, x2, y2 = (float(v) for v in row["Bounding_boxes"].split(","))
            given = [float(v) for v in row["Normalized_lesion_location"].split(",")][:2]
            found = relative_xy(hu, ((x1 + x2) / 2, (y1 + y2) / 2))
            assert found is not None, png.name
            errors.append(np.subtract(found, given))
    errors = np.abs(np.array(errors))
    assert len(errors) >= 23
    # Measured: mean absolute difference 0.039 (x) and 0.052 (y); medians 0.024 and 0.055.
    assert errors[:, 0].mean() < 0.06
    assert errors[:, 1].mean() < 0.08
    assert (errors < 0.2).all()


def test_an_empty_slice_has_no_body() -> None:
    air = np.full((64, 64), -1000.0, dtype=np.float32)
    assert body_mask(air) is None
    assert relative_xy(air, (32, 32)) is None


def test_body_box_of_a_disc_and_clipping() -> None:
    hu = np.full((100, 100), -1000.0, dtype=np.float32)
    yy, xx = np.mgrid[:100, :100]
    hu[(xx - 50) ** 2 + (yy - 40) ** 2 <= 20**2] = 40.0
    hu[(xx - 50) ** 2 + (yy - 40) ** 2 <= 8**2] = -900.0  # a lung-like hole inside: filled
    x0, y0, x1, y1 = body_box(hu)
    # The opening that detaches a CT table also trims the disc's one-pixel tips.
    assert (x0, y0, x1, y1) == pytest.approx((30.0, 20.0, 70.0, 60.0), abs=1.0)
    assert body_mask(hu)[40, 50]
    assert relative_xy(hu, (50, 40)) == (0.5, 0.5)
    assert relative_xy(hu, (0, 99)) == (0.0, 1.0)
