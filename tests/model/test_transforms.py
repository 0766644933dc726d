"""The input pipeline against hand-computed NumPy on the real DeepLesion key slices."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lesionkg.core.errors import ModelError
from lesionkg.model.transforms import (
    IMAGENET_GREY_MEAN,
    IMAGENET_GREY_STD,
    CropSpec,
    InputConfig,
    LesionImage,
    Window,
    box_in_crop,
    neighbour_path,
    read_hu_png,
    read_slice_stack,
    resample_crop,
)


@pytest.fixture(scope="module")
def real_rows(deeplesion_dir: Path) -> list[dict]:
    with open(deeplesion_dir / "images" / "images_DL_info_rows.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _floats(cell: str) -> list[float]:
    return [float(v) for v in cell.split(",")]


def _bilinear(img: np.ndarray, x: float, y: float) -> float:
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    fx, fy = x - x0, y - y0
    return float(
        img[y0, x0] * (1 - fx) * (1 - fy)
        + img[y0, x0 + 1] * fx * (1 - fy)
        + img[y0 + 1, x0] * (1 - fx) * fy
        + img[y0 + 1, x0 + 1] * fx * fy
    )


def test_read_hu_png_is_pixel_minus_32768(deeplesion_dir):
    path = deeplesion_dir / "images" / "000069_02_01_058.png"
    raw = np.asarray(Image.open(path), dtype=np.int64)
    hu = read_hu_png(path)
    assert hu.dtype == np.float32 and hu.shape == (512, 512)
    np.testing.assert_array_equal(hu, raw - 32768)
    # A CT slice: air around the body, soft tissue inside.
    assert hu[0, 0] <= -1000 and -200 < np.median(hu[200:300, 200:300]) < 200


def test_read_hu_png_rejects_8_bit_and_missing(tmp_path):
    grey = tmp_path / "eight_bit.png"
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(grey)
    with pytest.raises(ModelError, match=r"eight_bit\.png: image mode 'L', expected a 16-bit"):
        read_hu_png(grey)
    with pytest.raises(ModelError, match=r"nope\.png: image not found"):
        read_hu_png(tmp_path / "nope.png")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png")
    with pytest.raises(ModelError, match=r"junk\.png: not a readable PNG"):
        read_hu_png(junk)


def test_neighbours_of_flat_and_images_png_layouts():
    flat = Path("/x/000069_02_01_058.png")
    assert neighbour_path(flat, flat.name, -1) == Path("/x/000069_02_01_057.png")
    nested = Path("/x/Images_png/000069_02_01/058.png")
    assert neighbour_path(nested, "000069_02_01_058.png", 1) == Path(
        "/x/Images_png/000069_02_01/059.png"
    )


def test_slice_stack_repeats_key_without_neighbours(deeplesion_dir):
    path = deeplesion_dir / "images" / "000069_02_01_058.png"
    stack = read_slice_stack(path, path.name)
    assert stack.shape == (3, 512, 512)
    key = read_hu_png(path)
    for channel in stack:
        np.testing.assert_array_equal(channel, key)


def test_slice_stack_uses_neighbours(deeplesion_dir, tmp_path):
    src = deeplesion_dir / "images" / "000069_02_01_058.png"
    volume = tmp_path / "Images_png" / "000069_02_01"
    volume.mkdir(parents=True)
    shutil.copy(src, volume / "058.png")
    raw = np.asarray(Image.open(src), dtype=np.uint16)
    Image.fromarray(raw - 10).save(volume / "057.png")
    Image.fromarray(raw + 20).save(volume / "059.png")
    stack = read_slice_stack(volume / "058.png", "000069_02_01_058.png")
    key = raw.astype(np.float32) - 32768
    np.testing.assert_array_equal(stack[0], key - 10)
    np.testing.assert_array_equal(stack[1], key)
    np.testing.assert_array_equal(stack[2], key + 20)


def test_crop_at_source_spacing_is_a_plain_slice(deeplesion_dir):
    hu = read_hu_png(deeplesion_dir / "images" / "000069_02_01_058.png")[None]
    # Centre on a pixel boundary (x.5): the 64 output pixels fall exactly on source pixels.
    crop = resample_crop(hu, (0.7, 0.7), (200.5, 250.5), CropSpec(64, 0.7))
    np.testing.assert_array_equal(crop[0], hu[0, 219:283, 169:233])


def test_crop_at_double_spacing_takes_every_second_pixel(deeplesion_dir):
    hu = read_hu_png(deeplesion_dir / "images" / "000069_02_01_058.png")[None]
    crop = resample_crop(hu, (0.8, 0.8), (200, 250), CropSpec(32, 1.6))
    # Output pixel j samples source 200 + (j + 0.5 - 16) * 2 = 169 + 2 j.
    np.testing.assert_array_equal(crop[0], hu[0, 219:283:2, 169:233:2])


def test_crop_interpolates_bilinearly_and_pads_with_air(deeplesion_dir):
    hu = read_hu_png(deeplesion_dir / "images" / "000069_02_01_058.png")
    crop = resample_crop(hu[None], (1.0, 1.0), (300.25, 100.75), CropSpec(4, 0.5))[0]
    for j in range(4):
        for i in range(4):
            x = 300.25 + (i + 0.5 - 2) * 0.5
            y = 100.75 + (j + 0.5 - 2) * 0.5
            assert crop[j, i] == pytest.approx(_bilinear(hu, x, y), abs=1e-3)
    corner = resample_crop(hu[None], (1.0, 1.0), (0.0, 0.0), CropSpec(8, 1.0))[0]
    assert (corner[:3, :] == -1024).all() and (corner[:, :3] == -1024).all()


def test_crops_are_centred_on_the_real_lesions(deeplesion_dir, real_rows):
    config = InputConfig()
    for row in real_rows:
        path = deeplesion_dir / "images" / row["File_name"]
        hu = read_hu_png(path)
        x1, y1, x2, y2 = _floats(row["Bounding_boxes"])
        sx, sy, _ = _floats(row["Spacing_mm_px_"])
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        for spec in config.crops:
            crop = resample_crop(hu[None], (sx, sy), (cx, cy), spec)[0]
            half = spec.size_px // 2
            # The four crop pixels around the centre straddle the lesion centre: their mean is the
            # bilinear HU at (cx, cy) smoothed over +-0.5 crop pixels.
            centre = crop[half - 1 : half + 1, half - 1 : half + 1].mean()
            step_x, step_y = spec.spacing_mm / sx / 2, spec.spacing_mm / sy / 2
            expected = np.mean(
                [
                    _bilinear(hu, cx + dx, cy + dy)
                    for dx in (-step_x, step_x)
                    for dy in (-step_y, step_y)
                ]
            )
            assert centre == pytest.approx(expected, abs=1e-2)
            # A liver or abdominal lesion is soft tissue, not air or bone.
            assert -100 < centre < 250, row["File_name"]
            box = box_in_crop((x1, y1, x2, y2), (sx, sy), (cx, cy), spec)
            assert (box[0] + box[2]) / 2 == pytest.approx(half, abs=1e-3) or box[0] == 0
            width_mm = (x2 - x1) * sx
            if width_mm < spec.size_px * spec.spacing_mm:
                assert (box[2] - box[0]) * spec.spacing_mm == pytest.approx(width_mm, rel=1e-4)


def test_box_is_clipped_to_the_crop():
    box = box_in_crop((0, 0, 400, 400), (1.0, 1.0), (200, 200), CropSpec(64, 1.0))
    np.testing.assert_array_equal(box, [0, 0, 64, 64])


def test_window_maps_hu_to_normalised_unit_range():
    window = Window(-1000, 1000)
    out = window(np.array([-2000.0, -1000.0, 0.0, 1000.0, 3000.0]))
    unit = np.array([0, 0, 0.5, 1, 1])
    np.testing.assert_allclose(out, (unit - IMAGENET_GREY_MEAN) / IMAGENET_GREY_STD, rtol=1e-6)


def test_prepare_gives_crops_and_boxes(deeplesion_dir, real_rows):
    row = real_rows[0]
    path = deeplesion_dir / "images" / row["File_name"]
    bbox = tuple(_floats(row["Bounding_boxes"]))
    sx, sy, _ = _floats(row["Spacing_mm_px_"])
    config = InputConfig((CropSpec(48, 1.0), CropSpec(48, 2.5)), Window(-160, 240))
    crops, boxes = config.prepare(LesionImage("x", row["File_name"], path, bbox, (sx, sy)))
    assert crops.shape == (2, 3, 48, 48) and crops.dtype == np.float32
    assert boxes.shape == (2, 4)
    # The context crop shows the lesion smaller than the tight one.
    assert (boxes[1, 2] - boxes[1, 0]) < (boxes[0, 2] - boxes[0, 0])
    assert InputConfig.from_json(config.to_json()) == config


def test_crops_of_one_input_share_a_size():
    with pytest.raises(ModelError, match="one size"):
        InputConfig((CropSpec(64, 1.0), CropSpec(32, 2.0)))


def test_context_crop_pools_the_whole_crop(deeplesion_dir, real_rows):
    row = real_rows[0]
    path = deeplesion_dir / "images" / row["File_name"]
    bbox = tuple(_floats(row["Bounding_boxes"]))
    config = InputConfig((CropSpec(32, 1.0, "box"), CropSpec(32, 3.0, "crop")))
    _, boxes = config.prepare(LesionImage("x", row["File_name"], path, bbox, (0.8, 0.8)))
    np.testing.assert_array_equal(boxes[1], [0, 0, 32, 32])
    assert boxes[0, 2] - boxes[0, 0] < 32
    assert InputConfig.from_json(config.to_json()) == config
    # Checkpoints written before the roi field existed read as "box".
    assert (
        InputConfig.from_json({"crops": [[32, 1.0]], "window_hu": [-1024, 1024]}).crops[0].roi
        == "box"
    )
    with pytest.raises(ModelError, match="roi 'lesion'"):
        CropSpec(32, 1.0, "lesion")
