"""Implicit shapes of the SYNTHETIC phantom: where a structure is evaluated (a pixel grid or a
list of points) and the primitives (ellipses, capsules, bones, tubes) that paint organ labels."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from lesionkg.synthetic.phantom.anatomy import CORTEX, MARROW, Anatomy, as_float, positive


# ---- evaluation spaces: a pixel grid or a list of points ---------------------------------------
class Space:
    """Where labels are evaluated: a pixel grid (X a row, Y a column) or flat point arrays.

    Structures ask for the part of the space inside their bounding box (:meth:`sub`): on a grid
    that is a small window, for points it is every point (the parameters are per-point arrays).
    """

    def __init__(self, X: np.ndarray, Y: np.ndarray, grid: tuple | None) -> None:
        self.X, self.Y, self.grid = X, Y, grid
        self.shape = (Y.shape[0], X.shape[1]) if grid is not None else X.shape

    @classmethod
    def pixels(cls, shape: tuple[int, int], step: float, x0: float, y0: float) -> Space:
        rows, cols = shape
        X = (x0 + step * np.arange(cols, dtype=np.float32))[None, :]
        Y = (y0 + step * np.arange(rows, dtype=np.float32))[:, None]
        return cls(X, Y, (x0, y0, step, rows, cols))

    def sub(self, cx: Any, cy: Any, rx: Any, ry: Any, where: Any = True) -> tuple | None:
        """(window, X, Y, take) of a structure's box, or None when nothing there.

        On a grid the window is the box around (cx, cy) with half-sizes rx, ry (the parameters
        are floats). For points it is the index array of the points where ``where`` holds, and
        ``take`` picks those points' values out of per-point parameter arrays.
        """
        if self.grid is None:
            if np.ndim(where) == 0:
                if not where:
                    return None
                idx = np.arange(self.shape[0])
            else:
                idx = np.flatnonzero(where)
                if not len(idx):
                    return None
            return idx, self.X[idx], self.Y[idx], lambda v: v[idx] if np.ndim(v) else v
        if np.ndim(where) == 0 and not where:
            return None
        x0, y0, k, rows, cols = self.grid
        c0 = max(0, int(np.ceil((cx - rx - x0) / k)))
        c1 = min(cols, int(np.floor((cx + rx - x0) / k)) + 1)
        r0 = max(0, int(np.ceil((cy - ry - y0) / k)))
        r1 = min(rows, int(np.floor((cy + ry - y0) / k)) + 1)
        if c1 <= c0 or r1 <= r0:
            return None
        box: Any = (slice(r0, r1), slice(c0, c1))
        if np.ndim(where):  # a mask over the grid: painting stays inside it
            w = np.broadcast_to(where, self.shape)[box]
            if not w.any():
                return None
            box = _Window(box, w)
        return box, self.X[:, c0:c1], self.Y[r0:r1, :], _same

    def seg(self, x1: Any, y1: Any, x2: Any, y2: Any, r: float, where: Any = True) -> tuple | None:
        """The box around a segment widened by r."""
        if self.grid is None:
            return self.sub(0.0, 0.0, 0.0, 0.0, where)
        return self.sub(
            (x1 + x2) / 2, (y1 + y2) / 2, abs(x2 - x1) / 2 + r + 1, abs(y2 - y1) / 2 + r + 1, where
        )

    def full(self) -> tuple[Any, Any, Any]:
        return (slice(None), slice(None)) if self.grid is not None else ..., self.X, self.Y


def _same(v: Any) -> Any:
    return v


class _Window:
    """A grid box plus the mask that painting inside it must respect."""

    __slots__ = ("box", "mask")

    def __init__(self, box: tuple[slice, slice], mask: np.ndarray) -> None:
        self.box, self.mask = box, mask


def paint(lab: np.ndarray, sl: Any, mask: Any, code: int | bool) -> None:
    mask = np.asarray(mask)
    if mask.dtype != bool:
        raise TypeError("mask must be boolean")
    if isinstance(sl, np.ndarray):  # point indices
        lab[sl[np.broadcast_to(mask, sl.shape)]] = code
    elif isinstance(sl, _Window):
        view = lab[sl.box]
        view[np.broadcast_to(mask, view.shape) & sl.mask] = code
    else:
        view = lab[sl]
        view[np.broadcast_to(mask, view.shape)] = code


def level_active(z: Any, lo: float, hi: float) -> bool:
    """Whether any level in z (a float or per-point levels) lies in [lo, hi)."""
    if np.ndim(z) == 0:
        return bool(lo <= z < hi)
    return bool(z.min() < hi and z.max() >= lo)


def between(z: Any, lo: float, hi: float) -> Any:
    return (z >= lo) & (z < hi)


def ellipse(X: Any, Y: Any, cx: Any, cy: Any, a: Any, b: Any, angle: float = 0.0) -> Any:
    """Squared normalised radius of a (rotated) ellipse: < 1 inside."""
    dx, dy = X - as_float(cx), Y - as_float(cy)
    if angle:
        c, s = np.cos(angle), np.sin(angle)
        dx, dy = dx * c + dy * s, dy * c - dx * s
    return (dx / positive(a)) ** 2 + (dy / positive(b)) ** 2


def capsule(X: Any, Y: Any, x1: Any, y1: Any, x2: Any, y2: Any) -> Any:
    """Distance from (X, Y) to the segment (x1, y1)-(x2, y2)."""
    x1, y1, x2, y2 = as_float(x1), as_float(y1), as_float(x2), as_float(y2)
    ex, ey = x2 - x1, y2 - y1
    t = np.clip(((X - x1) * ex + (Y - y1) * ey) / (ex * ex + ey * ey + 1e-9), 0.0, 1.0)
    return np.hypot(X - x1 - t * ex, Y - y1 - t * ey)


def superellipse(X: Any, Y: Any, yc: Any, a: Any, bf: Any, bb: Any, p: float) -> Any:
    """sum |X/a|^p + |dY/b|^p (< 1 inside), b = bf in front of the centre, bb behind it."""
    dy = Y - as_float(yc)
    b = np.where(dy < 0, positive(bf), positive(bb)).astype(dy.dtype)
    return np.abs(X / positive(a)) ** p + np.abs(dy / b) ** p


def paint_bone(lab: np.ndarray, sl: Any, rr: Any, inside: Any, cortex: float) -> None:
    """Paint bone where ``inside``: cortex for the outer part (rr in [1 - cortex, 1])."""
    paint(lab, sl, inside, MARROW)
    paint(lab, sl, inside & (rr > 1.0 - cortex), CORTEX)


def bone_capsule(
    sp: Space, lab: np.ndarray, p1: tuple, p2: tuple, r: Any, where: Any, cortex: float
) -> None:
    got = sp.seg(p1[0], p1[1], p2[0], p2[1], float(np.max(r)), where)
    if got is not None:
        s, X, Y, t = got
        rr = capsule(X, Y, t(p1[0]), t(p1[1]), t(p2[0]), t(p2[1])) / positive(t(r))
        paint_bone(lab, s, rr, rr < 1.0, cortex)


def bone_ball(
    sp: Space, lab: np.ndarray, cx: Any, cy: Any, r: Any, where: Any, cortex: float
) -> None:
    rmax = float(np.max(r)) + 1.0
    got = sp.sub(cx, cy, rmax, rmax, where)
    if got is not None:
        s, X, Y, t = got
        rr = np.hypot(X - t(cx), Y - t(cy)) / positive(t(r))
        paint_bone(lab, s, rr, rr < 1.0, cortex)


def disk(
    sp: Space, lab: np.ndarray, cx: Any, cy: Any, ra: Any, rb: Any, where: Any, code: int
) -> None:
    got = sp.sub(cx, cy, float(np.max(ra)) + 1, float(np.max(rb)) + 1, where)
    if got is not None:
        s, X, Y, t = got
        paint(lab, s, ellipse(X, Y, t(cx), t(cy), t(ra), t(rb)) < 1.0, code)


def tube(sp: Space, lab: np.ndarray, p1: tuple, p2: tuple, r: float, where: Any, code: int) -> None:
    got = sp.seg(p1[0], p1[1], p2[0], p2[1], r, where)
    if got is not None:
        s, X, Y, t = got
        paint(lab, s, capsule(X, Y, t(p1[0]), t(p1[1]), t(p2[0]), t(p2[1])) < r, code)


def ellipsoid_section(z: Any, zc: Any, half: Any) -> tuple[Any, Any]:
    """Ellipsoid section at z: (present, radius factor sqrt(1 - ((z - zc) / half)^2))."""
    q = 1.0 - ((z - zc) / half) ** 2
    return q > 0, as_float(np.sqrt(np.clip(q, 0.0, 1.0)) + 1e-3)


def kidney_geom(a: Anatomy, lv: SimpleNamespace, z: Any, side: float) -> tuple:
    """(present, size factor, centre x, centre y, angle) of the right (-1) or left (+1) kidney."""
    present, ks = ellipsoid_section(z, (0.665 if side < 0 else 0.657) + a.kid_dz, 0.052)
    return present, ks, side * (lv.rv + 64.0), lv.yv - 14.0, -side * 0.6


def heart_geom(a: Anatomy, lv: SimpleNamespace, z: Any) -> tuple:
    """(present, centre x, centre y, semi-axes a, b) of the heart section."""
    present, hs = ellipsoid_section(z, 0.508 + a.dia, 0.052)
    hs = hs * a.heart
    return present, 0.17 * lv.ac, lv.yc - 0.3 * lv.bcf, 0.45 * lv.ac * hs, 0.47 * lv.bcf * hs


def stomach_geom(a: Anatomy, lv: SimpleNamespace, z: Any) -> tuple:
    present, gs = ellipsoid_section(z, 0.578 + a.dia, 0.045)
    return present, 0.36 * lv.ac, lv.yc - 0.3 * lv.bcf, 58.0 * gs, 42.0 * gs
