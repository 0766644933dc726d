"""lesionkg.web.images and charts on the real key slices: windowing, axes, thumbnails, the disk
cache, body maps; no database."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from PIL import Image

from lesionkg.model.transforms import read_hu_png
from lesionkg.web import charts
from lesionkg.web.images import (
    DEFAULT_WINDOW_HU,
    LONG_AXIS_RGB,
    SHORT_AXIS_RGB,
    THUMB_PX,
    PictureCache,
    body_map_svg,
    render,
    window_of,
)

SLICE = "000069_02_01_058.png"


@pytest.fixture(scope="module")
def source(deeplesion_dir, val_csv) -> dict:
    """The lesion facts the graph would give, from the real DL_info_val.csv row."""
    with open(val_csv, newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if r["File_name"] == SLICE)

    def floats(key: str) -> list[float]:
        return [float(v) for v in row[key].split(",")]

    return {
        "file_name": SLICE,
        "recist": floats("Measurement_coordinates"),
        "bbox": floats("Bounding_boxes"),
        "window": floats("DICOM_windows"),
        "location": floats("Normalized_lesion_location"),
    }


def _count(img: Image.Image, rgb: tuple[int, int, int]) -> int:
    return int((np.asarray(img) == np.array(rgb, dtype=np.uint8)).all(axis=2).sum())


def test_full_rendering_is_windowed_with_axes_and_box(deeplesion_dir, source):
    hu = read_hu_png(deeplesion_dir / "images" / SLICE)
    img = render(hu, source, "full")
    assert img.size == (hu.shape[1], hu.shape[0]) and img.mode == "RGB"
    grey = np.asarray(img.convert("L"), dtype=np.float32)
    assert grey.std() > 20  # a real slice, not blank
    # Soft-tissue window -175..275 HU: air is black, bone is white.
    assert grey[0, 0] == 0 and (grey == 255).sum() > 100
    assert _count(img, LONG_AXIS_RGB) >= 10 and _count(img, SHORT_AXIS_RGB) >= 5
    assert window_of(source) == (-175.0, 275.0)
    assert window_of({}) == DEFAULT_WINDOW_HU


def test_thumbnail_is_a_crop_around_the_lesion(deeplesion_dir, source):
    hu = read_hu_png(deeplesion_dir / "images" / SLICE)
    thumb = render(hu, source, "thumb")
    assert thumb.size == (THUMB_PX, THUMB_PX)
    # The lesion fills much more of a thumbnail than of the whole slice.
    assert _count(thumb, LONG_AXIS_RGB) / THUMB_PX**2 > 10 * _count(
        render(hu, source, "full"), LONG_AXIS_RGB
    ) / (512 * 512)


def test_cache_renders_once_and_draws_body_maps_without_a_slice(deeplesion_dir, source, tmp_path):
    cache = PictureCache(tmp_path, (deeplesion_dir / "images",))
    assert cache.lookup("DL-x", "thumb") is None
    path = cache.create("DL-x", "thumb", source)
    assert cache.lookup("DL-x", "thumb") == path and path.suffix == ".png"
    assert Image.open(io.BytesIO(path.read_bytes())).size == (THUMB_PX, THUMB_PX)
    # Another image folder is another cache: the same id may mean another picture there.
    assert PictureCache(tmp_path, ()).lookup("DL-x", "thumb") is None
    missing = cache.create("DL-y", "full", {**source, "file_name": "999999_01_01_001.png"})
    text = missing.read_text()
    assert missing.suffix == ".svg" and text.startswith("<svg") and "<circle" in text
    assert "<circle" not in body_map_svg(None)


def test_charts_are_svg_with_round_axes():
    growth = charts.growth_chart([(1, 15.0), (2, 12.0), (3, 12.6)])
    assert growth.startswith("<svg") and growth.count("<circle") == 3
    assert ">5<" in growth and ">15<" in growth and "6.2" not in growth
    bars = charts.type_bars([{"type": "liver <b>", "given": 3, "predicted": 1}])
    assert "liver &lt;b&gt;" in bars
