"""The input pipeline: DeepLesion 16-bit PNG slices to windowed, resampled multi-crop tensors.

Each step is a small typed transform, tested against hand-computed NumPy on the real PNGs:

1. :func:`read_hu_png`: a 16-bit PNG to Hounsfield units (DeepLesion stores HU + 32768).
2. :func:`read_slice_stack`: the key slice and its two neighbours (slice - 1, key, slice + 1) as a
   ``(3, H, W)`` stack, the three channels the network sees (a "2.5-D" input); a missing neighbour
   is replaced by the key slice, as in DeepLesion subsets that keep key slices only.
3. :func:`resample_crop`: a square crop centred on the lesion, resampled by bilinear interpolation
   to a fixed mm/pixel, padded with air (-1024 HU) outside the image. Source pixel centres are at
   integer coordinates (0-based, as DeepLesion's RECIST coordinates); output pixel ``j`` lies at
   ``centre + (j + 0.5 - S / 2) * spacing_out / spacing_in``.
4. :class:`Window`: HU clipped to a window and mapped to [0, 1], then normalised with ImageNet's
   grey-level mean and standard deviation (what a torchvision backbone expects).

:class:`InputConfig` chains them: several :class:`CropSpec` crops (multi-crop: a tight one at fine
spacing and a context one at coarse spacing, i.e. also multi-scale), each with the region the
network pools in it: the lesion box mapped into the crop's pixels (``roi="box"``), or the whole
crop (``roi="crop"``: the lesion's surroundings), ready for
:class:`lesionkg.model.network.LesionEmbedder`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from lesionkg.core.errors import ModelError
from lesionkg.core.limits import DEFAULT_LIMITS, IMAGE_PIXELS, InputLimits
from lesionkg.loaders.guards import read_png_info

HU_OFFSET = 32768
AIR_HU = -1024.0
#: modes Pillow gives a 16-bit grayscale PNG ("I" in older Pillow versions)
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
#: ImageNet's RGB means and standard deviations averaged over the channels (grey CT input)
IMAGENET_GREY_MEAN = 0.449
IMAGENET_GREY_STD = 0.226


def read_hu_png(path: Path, limits: InputLimits | None = None) -> np.ndarray:
    """A DeepLesion 16-bit PNG as HU, ``float32 (H, W)``.

    The pixel count is checked from the header, before decoding, against ``limits.image_pixels``
    (default :data:`~lesionkg.core.limits.DEFAULT_LIMITS`): a 10,000 x 10,000 PNG would take
    3 GB as int32 pixels.
    """
    limits = limits if limits is not None else DEFAULT_LIMITS
    try:
        with open(path, "rb") as f:
            # A PNG's size is in its first 33 bytes: checked before Pillow sees the file, whose
            # own guard would refuse a 15,000 x 15,000 image in its own words.
            info = read_png_info(f.read(33))
        if info is not None:
            _check_pixels(path, info.width, info.height, limits)
        with warnings.catch_warnings():
            # Pillow warns (on stderr) about images above its own bound; the limit below is
            # lower and says so as an error.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
        with img:
            # Image.open reads the header only; nothing is decoded before this check.
            _check_pixels(path, *img.size, limits)
            if img.mode not in SIXTEEN_BIT_MODES:
                raise ModelError(
                    f"{path}: image mode {img.mode!r}, expected a 16-bit grey PNG (HU + 32768)"
                )
            pixels = np.asarray(img, dtype=np.int32)
    except FileNotFoundError as exc:
        raise ModelError(f"{path}: image not found") from exc
    except Image.DecompressionBombError as exc:
        # Pillow's own guard, raised by Image.open beyond twice its MAX_IMAGE_PIXELS
        raise ModelError(
            f"{path}: image too large to decode ({exc}) (rule {IMAGE_PIXELS})"
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ModelError(f"{path}: not a readable PNG: {exc}") from exc
    return (pixels - HU_OFFSET).astype(np.float32)


def _check_pixels(path: Path, width: int, height: int, limits: InputLimits) -> None:
    if width * height > limits.image_pixels:
        raise ModelError(
            f"{path}: image of {width} x {height} = {width * height:,} pixels exceeds "
            f"the limit of {limits.image_pixels:,} pixels (rule {IMAGE_PIXELS})"
        )


def neighbour_path(key_path: Path, file_name: str, offset: int) -> Path:
    """Where slice ``key + offset`` of the key slice at ``key_path`` would be.

    ``Images_png/{volume}/{slice:03d}.png`` has its neighbours beside it by number; a flat
    ``{volume}_{slice:03d}.png`` (curated subsets) has them beside it by ``File_name``.
    """
    stem = file_name.removesuffix(".png")
    volume, _, slice_part = stem.rpartition("_")
    target = int(slice_part) + offset
    if key_path.name == file_name:
        return key_path.with_name(f"{volume}_{target:03d}.png")
    return key_path.with_name(f"{target:03d}.png")


def read_slice_stack(key_path: Path, file_name: str) -> np.ndarray:
    """Slices ``key - 1, key, key + 1`` as HU ``float32 (3, H, W)``; missing neighbours = key."""
    key = read_hu_png(key_path)
    channels = []
    for offset in (-1, 0, 1):
        if offset == 0:
            channels.append(key)
            continue
        path = neighbour_path(key_path, file_name, offset)
        neighbour = read_hu_png(path) if path.is_file() else None
        channels.append(key if neighbour is None or neighbour.shape != key.shape else neighbour)
    return np.stack(channels)


@dataclass(frozen=True)
class CropSpec:
    """A square crop of ``size_px`` pixels at ``spacing_mm`` mm per pixel."""

    size_px: int
    spacing_mm: float
    #: what the network pools in this crop: the lesion's box ("box") or the whole crop ("crop",
    #: the lesion's surroundings: which organ, which tissue around it)
    roi: str = "box"

    def __post_init__(self) -> None:
        if self.roi not in ("box", "crop"):
            raise ModelError(f"crop roi {self.roi!r} is not 'box' or 'crop'")


def _sample_coords(centre: float, spec: CropSpec, spacing_in: float) -> np.ndarray:
    step = spec.spacing_mm / spacing_in
    return centre + (np.arange(spec.size_px) + 0.5 - spec.size_px / 2) * step


def resample_crop(
    stack: np.ndarray,
    spacing_xy_mm: tuple[float, float],
    centre_px: tuple[float, float],
    spec: CropSpec,
    fill: float = AIR_HU,
) -> np.ndarray:
    """Bilinear crop ``(C, S, S)`` of ``stack (C, H, W)`` around ``centre_px`` (x, y) at ``spec``.

    ``spacing_xy_mm`` is the source's (x, y) pixel spacing; values outside the image are ``fill``.
    """
    _, height, width = stack.shape
    # One pixel of fill around the image makes out-of-range samples read the fill value.
    padded = np.pad(stack, ((0, 0), (1, 1), (1, 1)), constant_values=fill)
    xs = np.clip(_sample_coords(centre_px[0], spec, spacing_xy_mm[0]) + 1, 0, width + 1)
    ys = np.clip(_sample_coords(centre_px[1], spec, spacing_xy_mm[1]) + 1, 0, height + 1)
    x0 = np.minimum(np.floor(xs).astype(np.intp), width)
    y0 = np.minimum(np.floor(ys).astype(np.intp), height)
    wx = (xs - x0).astype(np.float32)
    wy = (ys - y0).astype(np.float32)[:, None]
    top = padded[:, y0[:, None], x0] * (1 - wx) + padded[:, y0[:, None], x0 + 1] * wx
    bottom = padded[:, y0[:, None] + 1, x0] * (1 - wx) + padded[:, y0[:, None] + 1, x0 + 1] * wx
    return (top * (1 - wy) + bottom * wy).astype(np.float32)


def box_in_crop(
    bbox_px: tuple[float, float, float, float],
    spacing_xy_mm: tuple[float, float],
    centre_px: tuple[float, float],
    spec: CropSpec,
) -> np.ndarray:
    """The lesion box (x1, y1, x2, y2 source pixels) in the crop's pixel coordinates, clipped."""
    scale_x = spacing_xy_mm[0] / spec.spacing_mm
    scale_y = spacing_xy_mm[1] / spec.spacing_mm
    half = spec.size_px / 2
    # Inverse of _sample_coords; crop pixel j's centre is at j + 0.5 in RoI-align's convention.
    x1, y1, x2, y2 = bbox_px
    box = np.array(
        [
            (x1 - centre_px[0]) * scale_x + half,
            (y1 - centre_px[1]) * scale_y + half,
            (x2 - centre_px[0]) * scale_x + half,
            (y2 - centre_px[1]) * scale_y + half,
        ],
        dtype=np.float32,
    )
    return np.clip(box, 0, spec.size_px)


@dataclass(frozen=True)
class Window:
    """HU window mapped to [0, 1] then normalised like ImageNet grey levels."""

    low_hu: float = -1024.0
    high_hu: float = 1024.0

    def __call__(self, hu: np.ndarray) -> np.ndarray:
        unit = (np.clip(hu, self.low_hu, self.high_hu) - self.low_hu) / (self.high_hu - self.low_hu)
        return ((unit - IMAGENET_GREY_MEAN) / IMAGENET_GREY_STD).astype(np.float32)


@dataclass(frozen=True)
class LesionImage:
    """What the pipeline needs of one lesion: its key slice and box (source pixels, 0-based)."""

    lesion_id: str
    file_name: str
    key_path: Path
    bbox_px: tuple[float, float, float, float]
    spacing_xy_mm: tuple[float, float]


def _default_crops() -> tuple[CropSpec, ...]:
    # The tight crop pools the lesion; the context crop pools all of its 128 mm field of view,
    # which tells the organ around the lesion (measured: bench/embedding_quality.py).
    return (CropSpec(64, 1.0, "box"), CropSpec(64, 2.0, "crop"))


@dataclass(frozen=True)
class InputConfig:
    """Crops and window of the network input; stored as plain JSON in checkpoints."""

    crops: tuple[CropSpec, ...] = field(default_factory=_default_crops)
    window: Window = field(default_factory=Window)

    def __post_init__(self) -> None:
        sizes = {c.size_px for c in self.crops}
        if len(sizes) != 1:
            raise ModelError(f"all crops must have one size in pixels (they are batched): {sizes}")

    def to_json(self) -> dict[str, Any]:
        return {
            "crops": [[c.size_px, c.spacing_mm, c.roi] for c in self.crops],
            "window_hu": [self.window.low_hu, self.window.high_hu],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InputConfig:
        crops = tuple(CropSpec(int(c[0]), float(c[1]), *c[2:]) for c in data["crops"])
        low, high = data["window_hu"]
        return cls(crops, Window(float(low), float(high)))

    def prepare(self, lesion: LesionImage) -> tuple[np.ndarray, np.ndarray]:
        """Network input of one lesion: crops ``(C, 3, S, S)`` float32 and boxes ``(C, 4)``."""
        stack = read_slice_stack(lesion.key_path, lesion.file_name)
        return self.prepare_stack(stack, lesion.bbox_px, lesion.spacing_xy_mm)

    def prepare_stack(
        self,
        stack: np.ndarray,
        bbox_px: tuple[float, float, float, float],
        spacing_xy_mm: tuple[float, float],
    ) -> tuple[np.ndarray, np.ndarray]:
        """Network input from slices already read: ``stack`` HU ``(3, H, W)`` (key slice in the
        middle), ``bbox_px`` x1, y1, x2, y2 pixels, ``spacing_xy_mm`` x, y mm per pixel. Returns
        crops ``(C, 3, S, S)`` float32 and boxes ``(C, 4)``. DICOM inputs come this way."""
        x1, y1, x2, y2 = bbox_px
        centre = ((x1 + x2) / 2, (y1 + y2) / 2)
        crops = np.stack(
            [self.window(resample_crop(stack, spacing_xy_mm, centre, c)) for c in self.crops]
        )
        boxes = np.stack(
            [
                box_in_crop(bbox_px, spacing_xy_mm, centre, c)
                if c.roi == "box"
                else np.array([0, 0, c.size_px, c.size_px], dtype=np.float32)
                for c in self.crops
            ]
        )
        return crops, boxes
