"""Every lesion's picture: its key slice with the RECIST axes drawn, or else a body map.

A key slice is found from what the graph says about the lesion (its DeepLesion ``file_name``
under the configured image folders, else the ``image_path`` recorded at load time), else by its id
in the ETL's image store (``<lesion_id>.png``, :mod:`lesionkg.etl.image_store`), never from a
URL. It is drawn in the lesion's own display window (the DICOM window of its series; DeepLesion's
most common soft-tissue window when it has none), with the long axis, the short axis and the box.
Rendered PNGs go to a disk cache keyed by lesion id, so a 16-bit slice is decoded once; a lesion
without an image gets an SVG body map of its normalised location.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw

from lesionkg.core.errors import ModelError
from lesionkg.etl.image_store import stored_slice_path
from lesionkg.loaders.images import find_key_slice
from lesionkg.model.transforms import read_hu_png

log = logging.getLogger(__name__)

Variant = Literal["full", "thumb"]
#: DeepLesion's most common DICOM window (soft tissue), for lesions that carry none
DEFAULT_WINDOW_HU = (-175.0, 275.0)
THUMB_PX = 128
#: a thumbnail shows at least this many pixels of the slice around the lesion
THUMB_MIN_FIELD_PX = 96
#: bump when drawing changes, so that old cached renderings are not served
RENDER_VERSION = "2"
LONG_AXIS_RGB = (255, 64, 64)
SHORT_AXIS_RGB = (64, 200, 255)
BOX_RGB = (255, 210, 0)


@dataclass(frozen=True, slots=True)
class Overlay:
    """RECIST axes (x1, y1, x2, y2) and box (x1, y1, x2, y2), pixels of the key slice."""

    long_axis: tuple[float, float, float, float] | None
    short_axis: tuple[float, float, float, float] | None
    box: tuple[float, float, float, float] | None

    @classmethod
    def of(cls, src: dict[str, Any]) -> Overlay:
        recist = src.get("recist")
        long_axis = src.get("long_axis_px")
        short_axis = src.get("short_axis_px")
        if recist and len(recist) == 8:
            long_axis, short_axis = recist[:4], recist[4:]
        box = src.get("bbox")
        if not box and long_axis:
            # DeepLesion's boxes are the axes' extent plus 5 px; do the same where none is given.
            xs = [long_axis[0], long_axis[2], *(short_axis[0::2] if short_axis else [])]
            ys = [long_axis[1], long_axis[3], *(short_axis[1::2] if short_axis else [])]
            box = [min(xs) - 5, min(ys) - 5, max(xs) + 5, max(ys) + 5]

        def four(v: Any) -> tuple[float, float, float, float] | None:
            return (
                (float(v[0]), float(v[1]), float(v[2]), float(v[3])) if v and len(v) == 4 else None
            )

        return cls(four(long_axis), four(short_axis), four(box))


def window_of(src: dict[str, Any]) -> tuple[float, float]:
    window = src.get("window")
    if window and len(window) == 2 and float(window[1]) > float(window[0]):
        return float(window[0]), float(window[1])
    return DEFAULT_WINDOW_HU


def locate(
    src: dict[str, Any],
    roots: tuple[Path, ...],
    store: Path | None = None,
    lesion_id: str | None = None,
) -> Path | None:
    """The key slice file of the lesion described by ``src`` (graph values only), or None: its
    DeepLesion file, the path recorded at load time, or its slice in the ETL's image ``store``."""
    file_name = src.get("file_name")
    if file_name:
        for root in roots:
            found = find_key_slice(root, str(file_name))
            if found is not None:
                return found
    recorded = src.get("image_path")
    if recorded and str(recorded).endswith(".png"):
        path = Path(str(recorded))
        if path.is_file():
            return path
    if store is not None and lesion_id:
        stored = stored_slice_path(store, lesion_id)
        if stored is not None and stored.is_file():
            return stored
    return None


def windowed(hu: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """HU mapped through the display window to 8-bit grey."""
    lo, hi = window
    return (np.clip((hu - lo) / (hi - lo), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _draw(
    img: Image.Image, overlay: Overlay, scale: float, dx: float, dy: float, width: int
) -> None:
    draw = ImageDraw.Draw(img)

    def tr(v: tuple[float, float, float, float]) -> list[float]:
        return [(v[0] - dx) * scale, (v[1] - dy) * scale, (v[2] - dx) * scale, (v[3] - dy) * scale]

    if overlay.box:
        x0, y0, x1, y1 = tr(overlay.box)
        draw.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], outline=BOX_RGB)
    if overlay.long_axis:
        draw.line(tr(overlay.long_axis), fill=LONG_AXIS_RGB, width=width)
    if overlay.short_axis:
        draw.line(tr(overlay.short_axis), fill=SHORT_AXIS_RGB, width=width)


def render(hu: np.ndarray, src: dict[str, Any], variant: Variant) -> Image.Image:
    """The slice in the lesion's window with its axes and box: whole (``full``), or a square
    crop around the lesion scaled to :data:`THUMB_PX` (``thumb``)."""
    grey = windowed(hu, window_of(src))
    overlay = Overlay.of(src)
    if variant == "full":
        img = Image.fromarray(grey).convert("RGB")
        _draw(img, overlay, 1.0, 0.0, 0.0, 1)
        return img
    h, w = grey.shape
    if overlay.box:
        x0, y0, x1, y1 = overlay.box
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        side = max(THUMB_MIN_FIELD_PX, 2.2 * max(abs(x1 - x0), abs(y1 - y0)))
    else:
        cx, cy, side = w / 2, h / 2, float(max(h, w))
    side = min(side, float(max(h, w)))
    left = min(max(cx - side / 2, 0.0), max(w - side, 0.0))
    top = min(max(cy - side / 2, 0.0), max(h - side, 0.0))
    crop = Image.fromarray(grey).crop(
        (round(left), round(top), round(left + side), round(top + side))
    )
    scale = THUMB_PX / side
    img = crop.resize((THUMB_PX, THUMB_PX), Image.Resampling.LANCZOS).convert("RGB")
    _draw(img, overlay, scale, float(round(left)), float(round(top)), 2)
    return img


class PictureCache:
    """Rendered key slices on disk, keyed by lesion id, the image folders and the image store.

    ``lookup`` needs no database: a cached picture is served from its file alone. Lesion ids are
    derived from the measurement's content, so a cached rendering stays right for its id; the
    folders are part of the key because another folder may hold another image."""

    def __init__(self, folder: Path, roots: tuple[Path, ...], store: Path | None = None) -> None:
        places = [*(str(r.resolve()) for r in roots)]
        if store is not None:
            places.append(f"store:{store.resolve()}")
        key = hashlib.sha256("|".join([RENDER_VERSION, *places]).encode()).hexdigest()[:12]
        self.folder = folder / key
        self.roots = roots
        self.store = store

    def path(self, lesion_id: str, variant: Variant, suffix: str) -> Path:
        digest = hashlib.sha256(lesion_id.encode("utf-8")).hexdigest()
        return self.folder / digest[:2] / f"{digest}-{variant}{suffix}"

    def lookup(self, lesion_id: str, variant: Variant) -> Path | None:
        for suffix in (".png", ".svg"):
            path = self.path(lesion_id, variant, suffix)
            if path.is_file():
                return path
        return None

    def _store(self, path: Path, data: bytes) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename: a concurrent request never reads a half-written file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
        return path

    def create(self, lesion_id: str, variant: Variant, src: dict[str, Any]) -> Path:
        """Render (or draw the body map of) the lesion described by ``src`` and cache it."""
        slice_path = locate(src, self.roots, self.store, lesion_id)
        if slice_path is not None:
            try:
                hu = read_hu_png(slice_path)
            except ModelError as exc:
                log.warning(
                    "lesion %s: key slice not readable, body map instead: %s", lesion_id, exc
                )
            else:
                import io

                buf = io.BytesIO()
                render(hu, src, variant).save(buf, format="PNG", optimize=False)
                return self._store(self.path(lesion_id, variant, ".png"), buf.getvalue())
        svg = body_map_svg(src.get("location") or src.get("location_xy"), large=variant == "full")
        return self._store(self.path(lesion_id, variant, ".svg"), svg.encode("utf-8"))


# Outlines of a standing body, 100 units wide and 200 tall, front (patient's right on the
# viewer's left, as radiology shows it) and side (anterior on the left); z 0..1 maps to the
# trunk from the top of the chest (0) to the pelvis (1), which DeepLesion's z covers.
_FRONT = (
    "M50 6 a12 13 0 1 1 -0.1 0 Z "
    "M38 31 h24 l18 8 l8 60 l-8 2 l-8 -48 v50 l4 88 h-14 l-6 -70 h-4 l-6 70 h-14 l4 -88 v-50 "
    "l-8 48 l-8 -2 l8 -60 Z"
)
_SIDE = (
    "M50 6 a11 13 0 1 1 -0.1 0 Z "
    "M42 31 h18 q10 20 6 45 q-4 22 2 30 l-4 90 h-14 l-2 -90 q-10 -10 -12 -30 q-2 -25 6 -45 Z"
)
_TRUNK_TOP, _TRUNK_BOTTOM = 36.0, 110.0


def body_map_svg(location: Any, *, large: bool = False) -> str:
    """An SVG of the location on a front and a side outline (x, y, z in 0..1; z may be absent)."""
    width = 320 if large else THUMB_PX
    point_front = point_side = ""
    if location and len(location) >= 2:
        x, y = float(location[0]), float(location[1])
        z = float(location[2]) if len(location) >= 3 and location[2] is not None else None
        zy = _TRUNK_TOP + (z if z is not None else 0.5) * (_TRUNK_BOTTOM - _TRUNK_TOP)
        dash = "" if z is not None else ' stroke-dasharray="2 2"'
        # A bigger dot in a thumbnail, where the map is drawn at 128 px or less.
        radius = 4 if large else 7
        point_front = (
            f'<circle cx="{38 + x * 24:.1f}" cy="{zy:.1f}" r="{radius}" '
            f'fill="#e33" stroke="#fff"{dash}/>'
        )
        point_side = (
            f'<circle cx="{40 + y * 24:.1f}" cy="{zy:.1f}" r="{radius}" '
            f'fill="#e33" stroke="#fff"{dash}/>'
        )
    label = "no image: body location" if location else "no image, no location"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{width}" '
        f'viewBox="0 0 200 200" role="img" aria-label="{label}">'
        '<rect width="200" height="200" fill="#1b1f24"/>'
        f'<g transform="translate(0,0)"><path d="{_FRONT}" fill="#56606b" stroke="#8a96a3"/>'
        f"{point_front}</g>"
        f'<g transform="translate(100,0)"><path d="{_SIDE}" fill="#56606b" stroke="#8a96a3"/>'
        f"{point_side}</g>"
        '<g fill="#aab" font-size="9" text-anchor="middle" font-family="system-ui, sans-serif">'
        '<text x="50" y="198">front</text><text x="150" y="198">side</text></g>'
        "</svg>"
    )
