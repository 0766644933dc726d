"""The body in an axial CT slice, and a lesion's in-plane position relative to it.

DeepLesion's normalised location gives x (patient right to left) and y (anterior to posterior)
in 0..1 relative to the body, and z from body-part regression. For a new bookmark that carries no
location, :func:`relative_xy` computes x and y from the key slice itself: the body is the largest
connected region of tissue denser than air (``BODY_HU``), with its holes (lungs, bowel gas)
filled, and x, y are the lesion centre's place in the body's bounding box. Pure numpy/scipy: no
files, no database.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: tissue denser than this is body; air, and most of the CT table's foam, is far below it
BODY_HU = -500.0
#: a body region smaller than this share of the slice is noise or a table, not a body
MIN_BODY_FRACTION = 0.01


def body_mask(hu: np.ndarray) -> np.ndarray | None:
    """The body of one slice ``(H, W)`` float HU as a bool mask ``(H, W)``; None if none found.

    The largest connected region above :data:`BODY_HU`, holes filled (the lungs are air inside
    the body). The CT table is a thin shell below the body; opening the mask with a small
    structuring element first detaches it where it touches.
    """
    hu = np.asarray(hu, dtype=np.float32)
    if hu.ndim != 2:
        raise ValueError(f"expected one slice (H, W), got shape {hu.shape}")
    dense = hu > BODY_HU
    dense = ndimage.binary_opening(dense, structure=np.ones((3, 3), dtype=bool), iterations=2)
    labels, count = ndimage.label(dense)
    if count == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    largest = int(np.argmax(sizes)) + 1
    if sizes[largest - 1] < MIN_BODY_FRACTION * hu.size:
        return None
    return ndimage.binary_fill_holes(labels == largest)


def body_box(hu: np.ndarray) -> tuple[float, float, float, float] | None:
    """The body's bounding box ``(x0, y0, x1, y1)`` in pixels (x right, y down, inclusive
    pixel centres); None when the slice shows no body."""
    mask = body_mask(hu)
    if mask is None:
        return None
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    return float(xs[0]), float(ys[0]), float(xs[-1]), float(ys[-1])


def relative_xy(hu: np.ndarray, centre_px: tuple[float, float]) -> tuple[float, float] | None:
    """The point ``centre_px`` (x, y pixels) as x, y in 0..1 of the body's bounding box.

    0, 0 is the body's top-left in the image (patient right, anterior, for a standard axial
    slice); values are clipped to 0..1. None when the slice shows no body or the body's box is
    one pixel wide.
    """
    box = body_box(hu)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        return None
    x = (centre_px[0] - x0) / (x1 - x0)
    y = (centre_px[1] - y0) / (y1 - y0)
    return float(np.clip(x, 0.0, 1.0)), float(np.clip(y, 0.0, 1.0))
