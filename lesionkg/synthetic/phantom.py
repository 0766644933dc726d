"""SYNTHETIC axial CT phantom: made-up bodies rendered in Hounsfield units, never real images.

A pure-NumPy, vectorised, seeded renderer of axial CT slices for the synthetic DeepLesion cohort
(:mod:`lesionkg.synthetic.cohort`). Nothing here comes from a real scan: the anatomy is a set of
smooth implicit shapes (superellipses, ellipsoids, capsules) whose sizes and positions follow
textbook proportions and the per-type lesion locations of the real ``DL_info_val.csv``.

Coordinates
    A slice is a function of normalised body position ``z`` in [0, 1] (the ``z`` of DeepLesion's
    ``Normalized_lesion_location``: 0 the vertex, 1 mid-thigh; ~0.34 lung apex, ~0.53 right
    diaphragm dome, ~0.6 liver, ~0.66 kidneys, ~0.79 pelvis) and of in-plane *reference pixels*
    ``X, Y``: the pixels of a 512 x 512 image relative to the body centre, where the generator's
    location-to-pixel map ``cx = 34.16 + 453.5 x``, ``cy = 82.44 + 348.4 y`` puts normalised
    ``x = y = 0.5``. ``X`` grows to the image right (the patient's left), ``Y`` to the back. A study
    shifts the whole body by its positioning offset. The body box is the same in pixels whatever
    the field of view (the reconstruction is assumed fitted to the body), so lesion sizes in mm
    come from the row's pixel spacing while the anatomy stays in pixels.

Anatomy (:class:`Anatomy`, drawn per patient, constant across the patient's studies)
    body width/height, subcutaneous fat and muscle thickness, diaphragm height, lung apex, liver,
    spleen, heart and bladder size, kidney height, vertebral phase and tissue HU. Structures: body
    outline (superellipse, flatter back), subcutaneous fat (~-100 HU), muscle (~50), thoracic
    cavity with lungs (~-850, denser posteriorly, vessel trees), mediastinum (fat ~-90) with heart,
    aorta (contrast ~130-210), venae cavae, trachea and bronchi, spine (vertebral bodies with
    cortex ~800 and marrow ~200-320, discs ~80, canal, posterior elements), ribs, sternum,
    clavicles, scapulae, humeral heads; below the diaphragm domes liver (~60-75), spleen (~50-60),
    stomach (fluid and air), kidneys (cortex ~130-205 with contrast, medulla, sinus fat), psoas,
    pancreas, small bowel (wall, fluid, sometimes gas) and colon (stool with gas bubbles) in
    mesenteric fat with small vessels; pelvic bones, femoral heads, bladder (~5-15); a CT table
    below the body. Contrast (aorta, kidney, liver enhancement) varies per study. Every slice
    gets a mild point-spread blur, so edges are smooth, and Gaussian noise (10 HU sd, seeded)
    inside the body; the air outside stays -1000.

Lesions (:class:`Lesions`)
    ellipsoids along the RECIST axes: in the key slice the section is exactly the row's long and
    short axis, crossing where the row's axes cross (four quarter-ellipses when the crossing is
    off-centre), and the z semi-axis is about half the short axis, so neighbouring slices show a
    smaller section. Appearance by (true) type: lung nodule 20-40 HU; liver lesion 10-30 HU,
    a third with an enhancing rim; kidney cyst 5-15 or solid 35-45; bone lytic 50-100 or
    sclerotic 750-900; lymph nodes (abdomen, mediastinum, pelvis, some soft tissue) 35-45 HU in a
    halo of fat; soft-tissue mass 25-38 HU (brighter than fat, darker than muscle).

:func:`labels_at` evaluates the organ map at arbitrary points (used by the generator to place
every lesion inside its organ); :func:`render_slice` draws a slice from the same map.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

__all__ = [
    "APPEARANCE_NAMES",
    "BODY_CENTRE_PX",
    "BODY_MM_PER_Z",
    "LABEL_NAMES",
    "PX_FROM_LOC",
    "TYPE_ORGANS",
    "Anatomy",
    "Decor",
    "Lesions",
    "SliceImage",
    "StudyLook",
    "hu_to_png16",
    "labels_at",
    "lesion_appearance",
    "render_slice",
    "write_png16",
]

#: mm of body height per unit of normalised z (the real slope) and the location-to-pixel map.
BODY_MM_PER_Z = 1100.0
PX_FROM_LOC = ((34.16, 453.5), (82.44, 348.4))
#: 512-frame pixel position of the body centre (normalised x = y = 0.5).
BODY_CENTRE_PX = (
    PX_FROM_LOC[0][0] + PX_FROM_LOC[0][1] / 2,
    PX_FROM_LOC[1][0] + PX_FROM_LOC[1][1] / 2,
)
_REF_PX_PER_Z = 1375.0  # reference pixels per unit z for 3D decorations (~0.8 mm pixels)
PNG_OFFSET = 32768  # DeepLesion: pixel value = HU + 32768

# ---- organ labels ------------------------------------------------------------------------------
(
    AIR,
    FAT,
    MUSCLE,
    LUNG,
    MEDIASTINUM,
    HEART,
    VESSEL,
    AIRWAY,
    CORTEX,
    MARROW,
    LIVER,
    SPLEEN,
    KIDNEY,
    STOMACH,
    VISCERAL,
    BLADDER,
    DISC,
    CANAL,
) = range(18)
LABEL_NAMES = (
    "air",
    "fat",
    "muscle",
    "lung",
    "mediastinum",
    "heart",
    "vessel",
    "airway",
    "cortex",
    "marrow",
    "liver",
    "spleen",
    "kidney",
    "stomach",
    "visceral",
    "bladder",
    "disc",
    "canal",
)
#: organ labels a lesion of each coarse type must sit in (1 bone ... 8 pelvis)
TYPE_ORGANS: dict[int, tuple[int, ...]] = {
    1: (CORTEX, MARROW),
    2: (VISCERAL,),
    3: (MEDIASTINUM,),
    4: (LIVER,),
    5: (LUNG,),
    6: (KIDNEY,),
    7: (FAT, MUSCLE),
    8: (VISCERAL,),
}

# ---- per-patient anatomy -----------------------------------------------------------------------
_ANATOMY_FIELDS = (
    "w",  # body half-width factor
    "h",  # body half-height factor
    "fat",  # subcutaneous fat thickness, reference px
    "muscle",  # body-wall muscle thickness, reference px
    "back",  # posterior wall (ribs and muscle) thickness
    "dia",  # diaphragm z offset
    "apex",  # lung apex z offset
    "liver",  # liver size factor
    "liver_dz",  # liver tip z offset
    "spleen",
    "kid_dz",  # kidney z offset
    "heart",
    "bladder",
    "vphase",  # vertebra / disc phase
    "rphase",  # rib z phase
    "hu_fat",
    "hu_muscle",
    "hu_liver",
    "hu_spleen",
    "hu_marrow",
    "hu_cortex",
    "hu_lung",
)


class Anatomy:
    """Anatomy parameters of one patient (floats) or of many (arrays of equal length)."""

    __slots__ = _ANATOMY_FIELDS

    def __init__(self, **fields: Any) -> None:
        for name in _ANATOMY_FIELDS:
            setattr(self, name, fields[name])

    @classmethod
    def draw(cls, rng: np.random.Generator, male: np.ndarray) -> Anatomy:
        """Draw one anatomy per patient (``male``: bool array, one per patient)."""
        n = len(male)
        u = rng.random((len(_ANATOMY_FIELDS), n))
        g = rng.standard_normal((5, n))
        fat = np.where(male, 9.0 + 20.0 * u[2], 13.0 + 26.0 * u[2])
        fields = dict(
            w=0.90 + 0.12 * u[0],
            h=0.86 + 0.14 * u[1] + 0.002 * (fat - 20.0),
            fat=fat,
            muscle=np.where(male, 11.0, 9.0) + 4.0 * u[3],
            back=24.0 + 10.0 * u[4],
            dia=np.clip(0.008 * g[0], -0.02, 0.02),
            apex=np.clip(0.006 * g[1], -0.015, 0.015),
            liver=0.92 + 0.18 * u[5],
            liver_dz=np.clip(0.01 * g[2], -0.025, 0.025),
            spleen=0.8 + 0.45 * u[6],
            kid_dz=np.clip(0.008 * g[3], -0.02, 0.02),
            heart=0.9 + 0.2 * u[7],
            bladder=0.55 + 0.6 * u[8],
            vphase=u[9],
            rphase=np.clip(0.004 * g[4], -0.01, 0.01),
            hu_fat=-112.0 + 20.0 * u[10],
            hu_muscle=48.0 + 12.0 * u[11],
            hu_liver=58.0 + 14.0 * u[12],
            hu_spleen=46.0 + 12.0 * u[13],
            hu_marrow=190.0 + 130.0 * u[14],
            hu_cortex=700.0 + 250.0 * u[15],
            hu_lung=-880.0 + 50.0 * u[16],
        )
        return cls(**{k: np.asarray(v, np.float32) for k, v in fields.items()})

    def take(self, index: np.ndarray) -> Anatomy:
        """Per-point parameters: the anatomy of patient ``index[i]`` for point ``i``."""
        return Anatomy(**{k: getattr(self, k)[index] for k in _ANATOMY_FIELDS})

    def one(self, i: int) -> Anatomy:
        """Patient ``i`` with plain float parameters (for rendering a pixel grid)."""
        return Anatomy(**{k: float(getattr(self, k)[i]) for k in _ANATOMY_FIELDS})


# ---- z profiles ----------------------------------------------------------------------------------
_ZK = (0.10, 0.22, 0.27, 0.31, 0.36, 0.45, 0.55, 0.65, 0.75, 0.85, 0.92, 1.00)
_WK = (0.34, 0.36, 0.72, 0.99, 0.95, 0.94, 0.94, 0.95, 0.98, 1.00, 0.97, 0.90)  # half-width
_HK = (0.50, 0.52, 0.70, 0.84, 0.88, 0.92, 0.93, 0.95, 0.95, 0.90, 0.85, 0.80)  # half-height
_YCK = (22.0, 20.0, 12.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)  # body centre Y
_FK = (0.35, 0.4, 0.6, 0.75, 0.8, 0.85, 0.95, 1.05, 1.1, 1.15, 1.1, 1.1)  # fat thickness
_CK = (0.0, 0.0, 0.0, 0.55, 0.93, 1.0, 1.0, 1.0, 1.0, 0.95, 0.85, 0.75)  # cavity scale
_MLK = (1.0, 1.0, 2.0, 2.6, 1.5, 1.0, 1.0, 1.1, 2.3, 3.4, 4.0, 4.2)  # lateral muscle factor
_RVK = (11.0, 12.0, 13.5, 15.0, 17.0, 19.0, 22.0, 26.0, 28.0, 28.0, 28.0, 28.0)  # vertebral body
_MWZ = (0.27, 0.34, 0.39, 0.42, 0.46, 0.50, 0.54, 0.58)
_MWK = (24.0, 30.0, 38.0, 50.0, 52.0, 40.0, 30.0, 26.0)  # mediastinum half-width
_VERT_PERIOD = 0.026  # z per vertebra (body + disc)
_DISC_FRACTION = 0.2
_SACRUM_Z = 0.735


def _interp(z: Any, xp: tuple[float, ...], fp: tuple[float, ...]) -> Any:
    out = np.interp(z, xp, fp)
    return float(out) if np.ndim(out) == 0 else out


_PROFILES = np.array([_WK, _HK, _YCK, _FK, _CK, _MLK, _RVK])  # (7, knots)


def _profiles(z: Any) -> Any:
    """The seven z profiles at z: floats for a scalar z, else (7, n) arrays (one bracket search)."""
    if np.ndim(z) == 0:
        return [float(np.interp(z, _ZK, p)) for p in _PROFILES]
    zk = np.asarray(_ZK)
    i = np.clip(np.searchsorted(zk, z, side="right") - 1, 0, len(zk) - 2)
    w = np.clip((z - zk[i]) / (zk[i + 1] - zk[i]), 0.0, 1.0)
    return _PROFILES[:, i] * (1.0 - w) + _PROFILES[:, i + 1] * w


def _levels(a: Anatomy, z: Any) -> SimpleNamespace:
    """Body outline and landmark positions at level ``z`` (floats, or arrays per point)."""
    wk, hk, yc, fk, cav, mlk, rv = _profiles(z)
    lv = SimpleNamespace()
    lv.ab = 226.0 * a.w * wk
    lv.bb = 166.0 * a.h * hk
    lv.yc = yc
    lv.fat = a.fat * fk
    lv.ac_full = lv.ab - lv.fat - a.muscle * mlk
    lv.bcf_full = lv.bb - lv.fat - a.muscle
    lv.bcb_full = lv.bb - 0.6 * lv.fat - a.back
    lv.ac = lv.ac_full * cav
    lv.bcf = lv.bcf_full * cav
    lv.bcb = lv.bcb_full * cav
    lv.rv = rv
    lv.yv = lv.yc + lv.bcb_full - 26.0 - lv.rv  # vertebral body centre
    lv.ycan = lv.yv + 0.85 * lv.rv + 10.0  # spinal canal centre
    return lv


def _dome_z(a: Anatomy, lv: SimpleNamespace, X: Any, Y: Any) -> Any:
    """z of the diaphragm above (X, Y): the abdomen lies at larger z (below it)."""
    ac = _f(np.maximum(lv.ac_full, 1.0))
    bc = _f(np.maximum(lv.bcf_full, 1.0))
    yr = (Y - lv.yc) / bc
    ty = 0.05 * (yr + 0.05) ** 2 + 0.03 * yr
    right = 0.528 + a.dia + 0.23 * ((X / ac + 0.45) ** 2) + ty
    left = 0.542 + a.dia + 0.23 * ((X / ac - 0.45) ** 2) + ty
    return np.minimum(right, left)


# ---- evaluation spaces: a pixel grid or a list of points ---------------------------------------
class _Space:
    """Where labels are evaluated: a pixel grid (X a row, Y a column) or flat point arrays.

    Structures ask for the part of the space inside their bounding box (:meth:`sub`): on a grid
    that is a small window, for points it is every point (the parameters are per-point arrays).
    """

    def __init__(self, X: np.ndarray, Y: np.ndarray, grid: tuple | None) -> None:
        self.X, self.Y, self.grid = X, Y, grid
        self.shape = (Y.shape[0], X.shape[1]) if grid is not None else X.shape

    @classmethod
    def pixels(cls, shape: tuple[int, int], step: float, x0: float, y0: float) -> _Space:
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


def _paint(lab: np.ndarray, sl: Any, mask: Any, code: int | bool) -> None:
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


def _active(z: Any, lo: float, hi: float) -> bool:
    """Whether any level in z (a float or per-point levels) lies in [lo, hi)."""
    if np.ndim(z) == 0:
        return bool(lo <= z < hi)
    return bool(z.min() < hi and z.max() >= lo)


def _within(z: Any, lo: float, hi: float) -> Any:
    return (z >= lo) & (z < hi)


def _ellipse(X: Any, Y: Any, cx: Any, cy: Any, a: Any, b: Any, angle: float = 0.0) -> Any:
    """Squared normalised radius of a (rotated) ellipse: < 1 inside."""
    dx, dy = X - _f(cx), Y - _f(cy)
    if angle:
        c, s = np.cos(angle), np.sin(angle)
        dx, dy = dx * c + dy * s, dy * c - dx * s
    return (dx / _pos(a)) ** 2 + (dy / _pos(b)) ** 2


def _f(v: Any) -> Any:
    """A scalar as a Python float (so float32 grids stay float32); arrays unchanged."""
    return float(v) if np.ndim(v) == 0 else v


def _pos(v: Any) -> Any:
    """v kept away from zero (a float stays a float, so float32 grids stay float32)."""
    return max(float(v), 1e-6) if np.ndim(v) == 0 else np.maximum(v, 1e-6)


def _capsule(X: Any, Y: Any, x1: Any, y1: Any, x2: Any, y2: Any) -> Any:
    """Distance from (X, Y) to the segment (x1, y1)-(x2, y2)."""
    x1, y1, x2, y2 = _f(x1), _f(y1), _f(x2), _f(y2)
    ex, ey = x2 - x1, y2 - y1
    t = np.clip(((X - x1) * ex + (Y - y1) * ey) / (ex * ex + ey * ey + 1e-9), 0.0, 1.0)
    return np.hypot(X - x1 - t * ex, Y - y1 - t * ey)


def _superellipse(X: Any, Y: Any, yc: Any, a: Any, bf: Any, bb: Any, p: float) -> Any:
    """sum |X/a|^p + |dY/b|^p (< 1 inside), b = bf in front of the centre, bb behind it."""
    dy = Y - _f(yc)
    b = np.where(dy < 0, _pos(bf), _pos(bb)).astype(dy.dtype)
    return np.abs(X / _pos(a)) ** p + np.abs(dy / b) ** p


def _bone(lab: np.ndarray, sl: Any, rr: Any, inside: Any, cortex: float) -> None:
    """Paint bone where ``inside``: cortex for the outer part (rr in [1 - cortex, 1])."""
    _paint(lab, sl, inside, MARROW)
    _paint(lab, sl, inside & (rr > 1.0 - cortex), CORTEX)


def _bone_capsule(
    sp: _Space, lab: np.ndarray, p1: tuple, p2: tuple, r: Any, where: Any, cortex: float
) -> None:
    got = sp.seg(p1[0], p1[1], p2[0], p2[1], float(np.max(r)), where)
    if got is not None:
        s, X, Y, t = got
        rr = _capsule(X, Y, t(p1[0]), t(p1[1]), t(p2[0]), t(p2[1])) / _pos(t(r))
        _bone(lab, s, rr, rr < 1.0, cortex)


def _bone_ball(
    sp: _Space, lab: np.ndarray, cx: Any, cy: Any, r: Any, where: Any, cortex: float
) -> None:
    rmax = float(np.max(r)) + 1.0
    got = sp.sub(cx, cy, rmax, rmax, where)
    if got is not None:
        s, X, Y, t = got
        rr = np.hypot(X - t(cx), Y - t(cy)) / _pos(t(r))
        _bone(lab, s, rr, rr < 1.0, cortex)


def _disk(
    sp: _Space, lab: np.ndarray, cx: Any, cy: Any, ra: Any, rb: Any, where: Any, code: int
) -> None:
    got = sp.sub(cx, cy, float(np.max(ra)) + 1, float(np.max(rb)) + 1, where)
    if got is not None:
        s, X, Y, t = got
        _paint(lab, s, _ellipse(X, Y, t(cx), t(cy), t(ra), t(rb)) < 1.0, code)


def _tube(
    sp: _Space, lab: np.ndarray, p1: tuple, p2: tuple, r: float, where: Any, code: int
) -> None:
    got = sp.seg(p1[0], p1[1], p2[0], p2[1], r, where)
    if got is not None:
        s, X, Y, t = got
        _paint(lab, s, _capsule(X, Y, t(p1[0]), t(p1[1]), t(p2[0]), t(p2[1])) < r, code)


def _section(z: Any, zc: Any, half: Any) -> tuple[Any, Any]:
    """Ellipsoid section at z: (present, radius factor sqrt(1 - ((z - zc) / half)^2))."""
    q = 1.0 - ((z - zc) / half) ** 2
    return q > 0, _f(np.sqrt(np.clip(q, 0.0, 1.0)) + 1e-3)


def _kidney_geom(a: Anatomy, lv: SimpleNamespace, z: Any, side: float) -> tuple:
    """(present, size factor, centre x, centre y, angle) of the right (-1) or left (+1) kidney."""
    present, ks = _section(z, (0.665 if side < 0 else 0.657) + a.kid_dz, 0.052)
    return present, ks, side * (lv.rv + 64.0), lv.yv - 14.0, -side * 0.6


def _heart_geom(a: Anatomy, lv: SimpleNamespace, z: Any) -> tuple:
    """(present, centre x, centre y, semi-axes a, b) of the heart section."""
    present, hs = _section(z, 0.508 + a.dia, 0.052)
    hs = hs * a.heart
    return present, 0.17 * lv.ac, lv.yc - 0.3 * lv.bcf, 0.45 * lv.ac * hs, 0.47 * lv.bcf * hs


def _stomach_geom(a: Anatomy, lv: SimpleNamespace, z: Any) -> tuple:
    present, gs = _section(z, 0.578 + a.dia, 0.045)
    return present, 0.36 * lv.ac, lv.yc - 0.3 * lv.bcf, 58.0 * gs, 42.0 * gs


# ---- the organ map -------------------------------------------------------------------------------
def _label_map(sp: _Space, a: Anatomy, z: Any) -> np.ndarray:
    """Organ labels on ``sp`` at level ``z`` (painter's order: later structures win)."""
    lab = np.zeros(sp.shape, np.uint8)
    lv = _levels(a, z)
    full, X, Y = sp.full()
    zz = z
    _paint(lab, full, _superellipse(X, Y, lv.yc, lv.ab, lv.bb, lv.bb, 2.4) < 1.0, FAT)
    inner = _superellipse(X, Y, lv.yc, lv.ab - lv.fat, lv.bb - lv.fat, lv.bb - 0.6 * lv.fat, 2.4)
    _paint(lab, full, inner < 1.0, MUSCLE)
    cav_q = _superellipse(X, Y, lv.yc, lv.ac, lv.bcf, lv.bcb, 2.2)
    cavity = cav_q < 1.0
    # paraspinal muscles bulge into the cavity around the spine
    py, pa, pb = lv.yv + 0.4 * lv.rv + 22.0, lv.rv + 30.0, 0.6 * lv.rv + 34.0
    got = sp.sub(0.0, py, pa + 1.0, pb + 1.0, cavity)
    if got is not None:
        s, Xs, Ys, t = got
        para = _ellipse(Xs, Ys, 0.0, t(py), t(pa), t(pb)) < 1.0
        _paint(cavity, s, para, False)
    if np.ndim(z) == 0 and z < 0.50:
        thorax, abdomen = cavity, np.zeros_like(cavity)
    elif np.ndim(z) == 0 and z >= 0.70:
        thorax, abdomen = np.zeros_like(cavity), cavity
    else:
        below = zz >= _dome_z(a, lv, X, Y)
        thorax, abdomen = cavity & ~below, cavity & below
    _paint(lab, full, abdomen, VISCERAL)
    if _active(z, 0.26, 0.64):
        _thorax(sp, lab, a, lv, z, thorax)
    if _active(z, 0.50, 0.95):
        _abdomen(sp, lab, a, lv, z, abdomen)
    _vessels(sp, lab, lv, z)
    _bones(sp, lab, a, lv, z, cav_q)
    return lab


def _thorax(
    sp: _Space, lab: np.ndarray, a: Anatomy, lv: SimpleNamespace, z: Any, thorax: np.ndarray
) -> None:
    """Lungs, mediastinum and heart in the thoracic part of the cavity (other parts: muscle)."""
    full = sp.full()[0]
    zz = z
    _paint(lab, full, thorax, MUSCLE)
    f = np.sqrt(np.clip((zz - 0.335 - a.apex) / 0.09, 0.0, 1.0))
    fz = np.maximum(f, 1e-3)
    lung = np.zeros(sp.shape, bool)
    ly, la, lb = lv.yc + 0.2 * lv.bcb, 0.62 * lv.ac * fz, 1.3 * lv.bcb * fz
    for side in (-1.0, 1.0):
        lx = side * 0.5 * lv.ac
        got = sp.sub(lx, ly, la, lb, thorax & (f > 0))
        if got is not None:
            s, Xs, Ys, t = got
            _paint(lung, s, _ellipse(Xs, Ys, t(lx), t(ly), t(la), t(lb)) < 1.0, True)
    _paint(lab, full, lung, LUNG)
    medi = np.zeros(sp.shape, bool)
    mw = _interp(z, _MWZ, _MWK)
    hr = 17.0 * np.exp(-(((zz - 0.465) / 0.03) ** 2)) + 1e-3
    parts = [
        (6.0, lv.yc - 0.3 * lv.bcf, mw, 1.25 * lv.bcf),
        (10.0, lv.yv - lv.rv, 32.0, 40.0),
        (-58.0, lv.yc + 8.0, 1.1 * hr, hr),
        (62.0, lv.yc + 8.0, 1.1 * hr, hr),
    ]
    for cx, cy, ra, rb in parts:
        got = sp.sub(cx, cy, ra, rb, thorax)
        if got is not None:
            s, Xs, Ys, t = got
            _paint(medi, s, _ellipse(Xs, Ys, t(cx), t(cy), t(ra), t(rb)) < 1.0, True)
    _paint(lab, full, medi, MEDIASTINUM)
    present, hx, hy, ha, hb = _heart_geom(a, lv, zz)
    hmax = np.maximum(ha, hb)
    got = sp.sub(hx, hy, hmax, hmax, thorax & present)
    if got is not None:
        s, Xs, Ys, t = got
        _paint(lab, s, _ellipse(Xs, Ys, t(hx), t(hy), t(ha), t(hb), 0.45) < 1.0, HEART)


def _abdomen(
    sp: _Space, lab: np.ndarray, a: Anatomy, lv: SimpleNamespace, z: Any, abdomen: np.ndarray
) -> None:
    """Liver, spleen, stomach, kidneys, psoas and bladder below the diaphragm."""
    zz = z
    if _active(z, 0.50, 0.72):
        lb = 0.688 + a.liver_dz
        tt = np.clip((zz - 0.55) / (lb - 0.55), 0.0, 1.0)
        xl, yl = -40.0 - 95.0 * tt, lv.yc - 8.0 + 30.0 * tt
        la, lbb = (165.0 - 110.0 * tt) * a.liver, (150.0 - 75.0 * tt) * a.liver
        ex, ey = 150.0 - 75.0 * tt, lv.yc + 70.0 - 30.0 * tt
        got = sp.sub(xl, yl, la, lbb, abdomen & (zz < lb))
        if got is not None:
            s, X, Y, t = got
            liver = _ellipse(X, Y, t(xl), t(yl), t(la), t(lbb)) < 1.0
            # the medial edge: concave towards the stomach and the spine
            liver &= _ellipse(X, Y, t(ex), t(ey), 160.0, 160.0) > 1.0
            _paint(lab, s, liver, LIVER)
    if _active(z, 0.52, 0.68):
        present, ss = _section(zz, 0.60 + a.dia, 0.045 * a.spleen)
        ss = ss * a.spleen
        cx, cy = 0.74 * lv.ac, lv.yc + 0.42 * lv.bcb
        got = sp.sub(cx, cy, 58.0 * ss, 58.0 * ss, abdomen & present)
        if got is not None:
            s, X, Y, t = got
            m = _ellipse(X, Y, t(cx), t(cy), 28.0 * t(ss), 58.0 * t(ss), 0.9) < 1.0
            _paint(lab, s, m, SPLEEN)
        present, cx, cy, ga, gb = _stomach_geom(a, lv, zz)
        got = sp.sub(cx, cy, ga, ga, abdomen & present)
        if got is not None:
            s, X, Y, t = got
            _paint(lab, s, _ellipse(X, Y, t(cx), t(cy), t(ga), t(gb), 0.5) < 1.0, STOMACH)
    if _active(z, 0.59, 0.74):
        for side in (-1.0, 1.0):
            present, ks, kx, ky, ang = _kidney_geom(a, lv, zz, side)
            got = sp.sub(kx, ky, 42.0, 42.0, abdomen & present)
            if got is None:
                continue
            s, X, Y, t = got
            ks, kx, ky = t(ks), t(kx), t(ky)
            kid = _ellipse(X, Y, kx, ky, 29.0 * ks, 39.0 * ks, ang) < 1.0
            sx, sy = kx - side * 17.0 * ks, ky - 7.0 * ks
            sinus = _ellipse(X, Y, sx, sy, 9.0 * ks, 13.0 * ks, ang) < 1.0
            _paint(lab, s, kid, KIDNEY)
            _paint(lab, s, kid & sinus, VISCERAL)
    if _active(z, 0.64, 0.90):  # psoas, moving anterolaterally into the pelvis (iliopsoas)
        pw = 5.0 + 16.0 * np.clip((zz - 0.64) / 0.14, 0.0, 1.0) + 1e-3
        drift = np.clip((zz - 0.77) / 0.1, 0.0, 1.0)
        for side in (-1.0, 1.0):
            px = side * (lv.rv + 8.0 + pw + 45.0 * drift)
            py = lv.yv - 0.2 * lv.rv - 55.0 * drift
            got = sp.sub(px, py, pw + 2.0, pw + 7.0, abdomen & (zz > 0.64))
            if got is not None:
                s, X, Y, t = got
                _paint(lab, s, _ellipse(X, Y, t(px), t(py), t(pw), 0.9 * t(pw) + 5.0) < 1.0, MUSCLE)
    if _active(z, 0.80, 0.95):
        present, bs = _section(zz, 0.875, 0.05 * a.bladder)
        bs = bs * a.bladder
        cy, ba, bb = lv.yc - 0.35 * lv.bcf, 0.5 * lv.ac * bs, 0.38 * lv.bcf * bs
        got = sp.sub(0.0, cy, ba, bb, abdomen & present)
        if got is not None:
            s, X, Y, t = got
            _paint(lab, s, _ellipse(X, Y, 0.0, t(cy), t(ba), t(bb)) < 1.0, BLADDER)


def _vessels(sp: _Space, lab: np.ndarray, lv: SimpleNamespace, z: Any) -> None:
    """Airways and great vessels (contrast-filled)."""
    zz = z
    yt = lv.yv - lv.rv - 20.0
    if _active(z, 0.0, 0.445):  # trachea
        _disk(sp, lab, 0.0, yt, 11.0, 9.5, zz < 0.445, AIRWAY)
    if _active(z, 0.445, 0.475):  # main bronchi
        spread = np.clip((zz - 0.445) * 1400.0, 0.0, 48.0)
        m = _within(zz, 0.445, 0.475)
        _disk(sp, lab, -spread, yt + 0.2 * spread, 7.5, 7.0, m, AIRWAY)
        _disk(sp, lab, spread, yt + 0.2 * spread, 7.0, 6.5, m, AIRWAY)
    # descending aorta moving from the left of the spine (chest) to its front (abdomen)
    k = np.clip((zz - 0.52) / 0.1, 0.0, 1.0)
    dx = (1 - k) * (lv.rv + 12.0) + k * 0.35 * lv.rv
    dy = (1 - k) * (lv.yv - 0.3 * lv.rv) + k * (lv.yv - lv.rv - 15.0)
    dr = 13.5 - 1.5 * k
    ax, ay = -12.0, lv.yc - 0.3 * lv.bcf
    if _active(z, 0.39, 0.745):
        _disk(sp, lab, dx, dy, dr, dr, _within(zz, 0.39, 0.745), VESSEL)
    if _active(z, 0.405, 0.47):  # ascending aorta
        _disk(sp, lab, ax, ay, 15.5, 15.5, _within(zz, 0.405, 0.47), VESSEL)
    if _active(z, 0.388, 0.408):  # arch
        _tube(sp, lab, (ax, ay), (dx, dy), 13.0, _within(zz, 0.388, 0.408), VESSEL)
    if _active(z, 0.43, 0.465):  # pulmonary trunk and arteries
        px, py = 22.0, lv.yc - 0.38 * lv.bcf
        _disk(sp, lab, px, py, 14.0, 14.0, _within(zz, 0.43, 0.465), VESSEL)
        m = _within(zz, 0.448, 0.462)
        _tube(sp, lab, (px, py), (-55.0, lv.yc + 5.0), 9.0, m, VESSEL)
        _tube(sp, lab, (px, py), (60.0, lv.yc + 2.0), 9.0, m, VESSEL)
    if _active(z, 0.335, 0.48):  # superior vena cava
        _disk(sp, lab, -40.0, lv.yc - 0.2 * lv.bcf, 10.0, 11.0, _within(zz, 0.335, 0.48), VESSEL)
    if _active(z, 0.0, 0.39):  # supra-aortic arteries and jugular veins
        m = zz < 0.39
        for vx, vy, r in ((-22.0, -18.0, 6.5), (6.0, -22.0, 5.5), (24.0, -14.0, 5.5)):
            _disk(sp, lab, vx, yt + vy, r, r, m & (zz >= 0.26), VESSEL)
        for side in (-1.0, 1.0):
            _disk(sp, lab, side * 42.0, yt - 4.0, 8.0, 7.0, m, VESSEL)
    if _active(z, 0.555, 0.745):  # inferior vena cava
        m = _within(zz, 0.555, 0.745)
        _disk(sp, lab, -lv.rv - 14.0, lv.yv - lv.rv - 10.0, 13.0, 10.5, m, VESSEL)
    if _active(z, 0.745, 0.86):  # iliac arteries and veins
        spread = np.minimum(0.35 * lv.rv + (zz - 0.745) * 650.0, 0.62 * lv.ac)
        vy = lv.yv - lv.rv - 12.0 + (zz - 0.745) * 200.0
        m = _within(zz, 0.745, 0.86)
        for side in (-1.0, 1.0):
            _disk(sp, lab, side * spread, vy, 8.0, 8.0, m, VESSEL)
            _disk(sp, lab, side * (spread - 8.0), vy + 15.0, 9.0, 8.0, m, VESSEL)


def _bones(
    sp: _Space, lab: np.ndarray, a: Anatomy, lv: SimpleNamespace, z: Any, cav_q: Any
) -> None:
    zz = z
    # ---- spine: vertebral bodies and discs, posterior elements and canal, sacrum, coccyx ----
    if _active(z, 0.0, _SACRUM_Z):
        disc = np.asarray(((zz / _VERT_PERIOD) + a.vphase) % 1.0 < _DISC_FRACTION)
        m = zz < _SACRUM_Z
        got = sp.sub(0.0, lv.yv, lv.rv + 1.0, lv.rv + 1.0, m)
        if got is not None:
            s, X, Y, t = got
            rr = np.sqrt(_ellipse(X, Y, 0.0, t(lv.yv), t(lv.rv), 0.85 * t(lv.rv)))
            d = t(disc)
            _paint(lab, s, (rr < 1.0) & d, DISC)
            _bone(lab, s, rr, (rr < 1.0) & ~d, 0.14)
        got = sp.sub(0.0, lv.ycan + 16.0, lv.rv + 28.0, 34.0, m)
        if got is not None:
            s, X, Y, t = got
            yc, rv = t(lv.ycan), t(lv.rv)
            dcan = np.hypot(X, Y - yc)
            spin_len = np.where(t(zz) < 0.3, 16.0, 26.0)
            arch = (dcan < 15.5) & (yc - 3.0 < Y)
            spin = _capsule(X, Y, 0.0, yc + 12.0, 0.0, yc + 12.0 + spin_len) < 4.5
            tp = np.minimum(
                _capsule(X, Y, -11.0, yc, -(rv + 22.0), yc + 3.0),
                _capsule(X, Y, 11.0, yc, rv + 22.0, yc + 3.0),
            )
            post = arch | spin | (tp < 4.5)
            _paint(lab, s, post, CORTEX)
            _paint(lab, s, post & (((dcan < 14.0) & (dcan > 11.0)) | (tp < 2.5)), MARROW)
            _paint(lab, s, dcan < 9.0, CANAL)
    if _active(z, _SACRUM_Z, 0.875):
        sw = np.clip(46.0 - (zz - _SACRUM_Z) * 300.0, 9.0, 46.0)
        ys = lv.yv + 12.0
        got = sp.sub(0.0, ys, 47.0, 26.0, _within(zz, _SACRUM_Z, 0.875))
        if got is not None:
            s, X, Y, t = got
            ys, sw = t(ys), t(sw)
            rr = np.sqrt(_ellipse(X, Y, 0.0, ys, sw, 0.35 * sw + 9.0))
            _bone(lab, s, rr, rr < 1.0, 0.2)
            _paint(lab, s, (np.hypot(X, Y - ys - 4.0) < 4.0) & (t(zz) < 0.82), CANAL)
    # ---- ribs: a band just outside the cavity, cut obliquely (anterior ends lower) ----
    if _active(z, 0.30, 0.675):
        scale = np.sqrt(np.maximum(lv.ac * lv.bcb, 1.0))
        hi = (1.0 + 12.0 / scale) ** 2.2
        band = (cav_q >= 1.0) & (cav_q < hi) & (lv.ac > 1.0) & _within(zz, 0.30, 0.675)
        idx = np.nonzero(band)
        X = np.broadcast_to(sp.X, sp.shape)[idx]
        Y = np.broadcast_to(sp.Y, sp.shape)[idx]
        if np.ndim(zz) == 0:
            pz, apex, plv, sc = zz, a.apex + a.rphase, lv, scale
        else:
            i0 = idx[0]
            pz, apex, sc = zz[i0], a.apex[i0] + a.rphase[i0], scale[i0]
            plv = SimpleNamespace(
                **{k: getattr(lv, k)[i0] for k in ("ac", "bcb", "yc", "yv", "rv")}
            )
        rad = (cav_q[idx] ** (1.0 / 2.2) - 1.0) * sc  # ~ px outside the cavity
        # angle around the body from the back (0) to the front (pi)
        ang = np.arctan2(
            np.abs(X) * np.maximum(plv.bcb, 1.0), (Y - plv.yc) * np.maximum(plv.ac, 1.0)
        )
        zr = (pz - (0.325 + apex) - 0.1 * ang / np.pi) / 0.0245
        k = np.rint(zr)
        rr = np.sqrt(((rad - 6.0) / 4.0) ** 2 + ((zr - k) / 0.15) ** 2)
        para = _ellipse(X, Y, 0.0, plv.yv + 0.4 * plv.rv + 22.0, plv.rv + 30.0, 0.6 * plv.rv + 34.0)
        zlow = np.where(np.abs(X) > 0.55 * plv.ac, 0.675, 0.60)  # lower ribs only laterally
        rib = (rr < 1.0) & (k >= 0) & (k <= 11) & (np.abs(X) > 28.0) & (para > 1.0)
        rib &= (pz > 0.30 + apex) & (pz < zlow)
        lab[tuple(i[rib] for i in idx)] = np.where(rr[rib] > 0.5, CORTEX, MARROW)
    # ---- sternum ----
    if _active(z, 0.35, 0.56):
        ys = lv.yc - lv.bcf_full - 0.5 * a.muscle - 1.0
        sa = np.where(zz < 0.39, 26.0, 15.0)
        got = sp.sub(0.0, ys, 27.0, 8.0, _within(zz, 0.35, 0.56))
        if got is not None:
            s, X, Y, t = got
            rr = np.sqrt(_ellipse(X, Y, 0.0, t(ys), t(sa), 7.0))
            _bone(lab, s, rr, rr < 1.0, 0.35)
    # ---- shoulder girdle: clavicles, scapulae, humeral heads ----
    if _active(z, 0.285, 0.45):
        for side in (-1.0, 1.0):
            p1 = (side * 22.0, lv.yc - 0.8 * lv.bb)
            p2 = (side * 0.62 * lv.ab, lv.yc - 0.62 * lv.bb)
            _bone_capsule(sp, lab, p1, p2, 5.5, _within(zz, 0.285, 0.312), 0.4)
            top = np.clip((zz - 0.30) / 0.02, 0.0, 1.0)
            p1 = (side * 0.40 * lv.ab, lv.yc + 0.80 * lv.bb)
            p2 = (side * (0.62 + 0.1 * top) * lv.ab, lv.yc + 0.55 * lv.bb)
            _bone_capsule(sp, lab, p1, p2, 3.5, _within(zz, 0.30, 0.45), 0.5)
            present, hr = _section(zz, 0.312, 0.026)
            _bone_ball(sp, lab, side * 0.84 * lv.ab, lv.yc + 0.05 * lv.bb, 25.0 * hr, present, 0.2)
    # ---- pelvis: iliac wings, acetabula, femoral heads, necks and shafts, pubis, ischia ----
    if _active(z, 0.70, 1.0):
        ys = lv.yv + 12.0
        wing = np.clip((zz - 0.70) / 0.11, 0.0, 1.0)  # 0 at the crest, 1 at the acetabulum
        sw = np.clip(46.0 - (zz - _SACRUM_Z) * 300.0, 9.0, 46.0)
        acf, bcb, bcf = lv.ac_full, lv.bcb_full, lv.bcf_full
        for side in (-1.0, 1.0):
            si = (side * (sw + 3.0), ys)
            mid = (side * (0.86 - 0.2 * wing) * acf, lv.yc + (0.25 - 0.1 * wing) * bcb)
            tip = (side * (0.98 - 0.3 * wing) * acf, lv.yc - (0.3 - 0.3 * wing) * bcf)
            m = _within(zz, 0.70, 0.815)
            th = _f(3.5 + 3.5 * wing)
            _bone_capsule(sp, lab, si, mid, th, m, 0.55)
            _bone_capsule(sp, lab, mid, tip, th, m, 0.55)
            fx, fy = side * 0.66 * acf, lv.yc + 0.05 * bcb
            present, hr = _section(zz, 0.855, 0.024)
            got = sp.sub(fx, fy, 40.0, 40.0, present & (hr > 0.5))
            if got is not None:  # acetabular roof around the femoral head
                s, X, Y, t = got
                d = np.hypot(X - t(fx), Y - t(fy))
                h = 26.0 * t(hr)
                _paint(
                    lab, s, (d >= h + 2.5) & (d < h + 11.0) & (X * side < t(fx) * side + 8), CORTEX
                )
            _bone_ball(sp, lab, fx, fy, 26.0 * hr, present, 0.15)
            neck = (fx + side * 58.0, fy + 10.0)
            _bone_capsule(sp, lab, (fx, fy), neck, 15.0, _within(zz, 0.862, 0.885), 0.25)
            _bone_ball(sp, lab, fx + side * 50.0, fy + 12.0, 16.0, zz >= 0.885, 0.45)
            p1 = (side * 4.0, lv.yc - 0.85 * bcf)
            p2 = (side * 0.55 * acf, lv.yc - 0.2 * bcf)
            _bone_capsule(sp, lab, p1, p2, 8.0, _within(zz, 0.872, 0.925), 0.35)
            ix, iy = side * 0.42 * acf, lv.yc + 0.55 * bcb
            _bone_ball(sp, lab, ix, iy, 14.0, _within(zz, 0.865, 0.935), 0.3)


_BAND_EDGES = np.array([0.3, 0.38, 0.44, 0.5, 0.56, 0.62, 0.68, 0.74, 0.8, 0.88], np.float32)
_BAND_POINTS = 10000


def labels_at(anat: Anatomy, X: np.ndarray, Y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Organ label of each point: reference pixels ``X, Y`` at level ``z`` of anatomy ``anat``.

    ``anat`` holds one parameter set per point (:meth:`Anatomy.take`). The map is the one
    :func:`render_slice` draws, so a point labelled ``LIVER`` here is liver in the image.
    """
    X, Y = np.asarray(X, np.float32), np.asarray(Y, np.float32)
    z = np.asarray(z, np.float32)
    if len(z) < 4 * _BAND_POINTS:
        return _label_map(_Space(X, Y, None), anat, z)
    # many points: evaluate by bands of z, so each band skips the structures of other levels
    band = np.searchsorted(_BAND_EDGES, z)
    order = np.argsort(band, kind="stable")
    starts = np.searchsorted(band[order], np.arange(len(_BAND_EDGES) + 2))
    out = np.empty(len(z), np.uint8)
    for b0, b1 in itertools.pairwise(starts):
        if b1 > b0:
            i = order[b0:b1]
            out[i] = _label_map(_Space(X[i], Y[i], None), anat.take(i), z[i])
    return out


# ---- appearance ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class StudyLook:
    """Per-study contrast: aorta HU, kidney cortex HU, liver enhancement."""

    aorta: float = 170.0
    kidney: float = 155.0
    liver_boost: float = 0.0
    bladder: float = 8.0

    @classmethod
    def draw(cls, rng: np.random.Generator) -> StudyLook:
        u = rng.random(4)
        aorta = 130.0 + 80.0 * u[0]
        return cls(aorta, 0.7 * aorta + 40.0 + 20.0 * u[1], -3.0 + 11.0 * u[2], 4.0 + 10.0 * u[3])


# appearance codes of a lesion
LUNG_NODULE, LIVER_HYPO, LIVER_RIM, KIDNEY_CYST, KIDNEY_SOLID, BONE_LYTIC, BONE_SCLEROTIC = range(7)
NODE, SOFT_MASS = 7, 8
APPEARANCE_NAMES = (
    "lung_nodule",
    "liver_hypodense",
    "liver_rim",
    "kidney_cyst",
    "kidney_solid",
    "bone_lytic",
    "bone_sclerotic",
    "node",
    "soft_tissue",
)


def lesion_appearance(
    rng: np.random.Generator, types: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Appearance code, core HU and rim HU of lesions of coarse ``types`` (1..8), vectorised."""
    n = len(types)
    u = rng.random((3, n))
    code = np.full(n, NODE, np.int64)
    hu = 35.0 + 10.0 * u[1]
    rim = hu.copy()
    code[types == 5] = LUNG_NODULE
    hu = np.where(types == 5, 20.0 + 20.0 * u[1], hu)
    liver_rim = (types == 4) & (u[0] < 0.33)
    code[types == 4] = np.where(liver_rim[types == 4], LIVER_RIM, LIVER_HYPO)
    hu = np.where(types == 4, 10.0 + 20.0 * u[1], hu)
    rim = np.where(liver_rim, 85.0 + 30.0 * u[2], rim)
    cyst = (types == 6) & (u[0] < 0.6)
    code[types == 6] = np.where(cyst[types == 6], KIDNEY_CYST, KIDNEY_SOLID)
    hu = np.where(types == 6, np.where(cyst, 5.0 + 10.0 * u[1], 35.0 + 10.0 * u[1]), hu)
    lytic = (types == 1) & (u[0] < 0.6)
    code[types == 1] = np.where(lytic[types == 1], BONE_LYTIC, BONE_SCLEROTIC)
    hu = np.where(types == 1, np.where(lytic, 50.0 + 50.0 * u[1], 750.0 + 150.0 * u[1]), hu)
    soft = (types == 7) & (u[0] < 0.55)
    code[soft] = SOFT_MASS
    hu = np.where(soft, 25.0 + 13.0 * u[1], hu)
    return code, hu, np.where(code == LIVER_RIM, rim, hu)


class Lesions:
    """Lesions of one volume: the RECIST geometry in image pixels and the z extent in mm.

    ``cx, cy``: where the axes cross; ``ux, uy`` / ``vx, vy``: long / short axis directions;
    ``a_neg, a_pos`` / ``b_neg, b_pos``: extent (px) from the crossing along -u, +u / -v, +v;
    ``zc``: centre z (mm, scan coordinates), ``cz``: z semi-axis (mm); ``code, hu, rim``: the
    appearance; ``ident``: an id written to the lesion map.
    """

    _FIELDS = (
        "cx",
        "cy",
        "ux",
        "uy",
        "vx",
        "vy",
        "a_neg",
        "a_pos",
        "b_neg",
        "b_pos",
        "zc",
        "cz",
        "code",
        "hu",
        "rim",
        "ident",
    )

    def __init__(self, **cols: np.ndarray) -> None:
        n = len(cols["cx"])
        defaults = {"code": np.full(n, NODE), "hu": np.full(n, 40.0), "ident": np.zeros(n, int)}
        defaults["rim"] = cols.get("hu", defaults["hu"])
        for k in self._FIELDS:
            setattr(self, k, np.asarray(cols[k] if k in cols else defaults[k]))

    @classmethod
    def from_recist(
        cls, recist: np.ndarray, zc: np.ndarray, cz: np.ndarray, **rest: np.ndarray
    ) -> Lesions:
        """Lesions from RECIST coordinates (rows of x1, y1, x2, y2 long, then short axis)."""
        r = np.asarray(recist, np.float64)
        p1, p2, q1, q2 = r[:, 0:2], r[:, 2:4], r[:, 4:6], r[:, 6:8]
        U, V = p2 - p1, q2 - q1
        lu = np.maximum(np.hypot(U[:, 0], U[:, 1]), 1e-9)
        lvv = np.maximum(np.hypot(V[:, 0], V[:, 1]), 1e-9)
        # crossing p1 + t U = q1 + s V
        det = U[:, 0] * (-V[:, 1]) + V[:, 0] * U[:, 1]
        det = np.where(np.abs(det) < 1e-9, 1e-9, det)
        d = q1 - p1
        t = np.clip((d[:, 0] * (-V[:, 1]) + V[:, 0] * d[:, 1]) / det, 0.0, 1.0)
        s = np.clip((U[:, 0] * d[:, 1] - U[:, 1] * d[:, 0]) / det, 0.0, 1.0)
        c = p1 + t[:, None] * U
        return cls(
            cx=c[:, 0],
            cy=c[:, 1],
            ux=U[:, 0] / lu,
            uy=U[:, 1] / lu,
            vx=V[:, 0] / lvv,
            vy=V[:, 1] / lvv,
            a_neg=t * lu,
            a_pos=(1 - t) * lu,
            b_neg=s * lvv,
            b_pos=(1 - s) * lvv,
            zc=zc,
            cz=cz,
            **rest,
        )

    def __len__(self) -> int:
        return len(self.cx)


# ---- per-patient 3D decorations: lung vessels, liver vessels, bowel ------------------------------
@dataclass
class Decor:
    """3D segments drawn over organs: (n, 3) ends in (X, Y, z * _REF_PX_PER_Z), radius, kind."""

    a: np.ndarray
    b: np.ndarray
    r: np.ndarray
    kind: np.ndarray  # 0 lung vessel, 1 liver vessel, 2 small bowel, 3 colon, 4 mesenteric
    # vessel, 5 pancreas
    phase: np.ndarray  # per-segment random number (bowel contents)

    @classmethod
    def build(cls, anat: Anatomy, rng: np.random.Generator) -> Decor:
        """Vessel trees and bowel loops of one patient (``anat`` from :meth:`Anatomy.one`)."""
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]] = []

        def inside(label: int, n: int, box: tuple[float, ...]) -> np.ndarray:
            x0, x1, y0, y1, z0, z1 = box
            x0, x1 = min(x0, x1), max(x0, x1)
            m = 6000
            p = np.stack(
                [rng.uniform(x0, x1, m), rng.uniform(y0, y1, m), rng.uniform(z0, z1, m)], 1
            )
            one = Anatomy(**{k: np.full(m, getattr(anat, k)) for k in _ANATOMY_FIELDS})
            ok = labels_at(one, p[:, 0], p[:, 1], p[:, 2]) == label
            return p[ok][:n]

        def tree(root: np.ndarray, ends: np.ndarray, n_mid: int, radii: tuple, kind: int) -> None:
            """Branches root -> n_mid branch points -> the nearest ends."""
            if len(ends) < n_mid:
                return
            mids = root + (ends[:n_mid] - root) * rng.uniform(0.35, 0.6, (n_mid, 1))
            parts.append((np.repeat(root[None], n_mid, 0), mids, np.full(n_mid, radii[0]), kind))
            near = np.argmin(((ends[:, None, :2] - mids[None, :, :2]) ** 2).sum(-1), axis=1)
            parts.append((mids[near], ends, rng.uniform(*radii[1:], len(ends)), kind))

        for side in (-1.0, 1.0):  # pulmonary trees from each hilum
            hil = np.array([side * 58.0, 8.0, 0.465])
            ends = inside(LUNG, 150, (side * 10.0, side * 240.0, -180.0, 180.0, 0.34, 0.62))
            lobar = inside(LUNG, 8, (side * 30.0, side * 150.0, -80.0, 100.0, 0.40, 0.54))
            if len(lobar):
                parts.append(
                    (np.repeat(hil[None], len(lobar), 0), lobar, np.full(len(lobar), 4.5), 0)
                )
                near = np.argmin(((ends[:, None] - lobar[None]) ** 2 * (1, 1, 1e5)).sum(-1), axis=1)
                seg = lobar[near] + (ends - lobar[near]) * rng.uniform(0.3, 0.5, (len(ends), 1))
                parts.append((lobar[near], seg, rng.uniform(2.0, 3.0, len(ends)), 0))
                parts.append((seg, ends, rng.uniform(0.9, 1.8, len(ends)), 0))
        ends = inside(LIVER, 18, (-240.0, 100.0, -160.0, 160.0, 0.55, 0.68))  # portal veins
        tree(np.array([-30.0, 10.0, 0.615]), ends, 4, (5.5, 2.0, 4.0), 1)
        loops = inside(VISCERAL, 46, (-190.0, 190.0, -170.0, 100.0, 0.63, 0.86))
        if len(loops):
            d = rng.normal(0.0, 1.0, (len(loops), 3)) * (30.0, 25.0, 0.03)
            parts.append((loops - d / 2, loops + d / 2, rng.uniform(9.0, 17.0, len(loops)), 2))
        colon = inside(VISCERAL, 6, (-200.0, 200.0, -60.0, 90.0, 0.64, 0.78))
        if len(colon):
            d = np.array([0.0, 0.0, 0.05])
            parts.append((colon - d, colon + d, rng.uniform(17.0, 24.0, len(colon)), 3))
        dots = inside(VISCERAL, 70, (-160.0, 160.0, -150.0, 90.0, 0.60, 0.88))  # mesenteric
        if len(dots):
            d = rng.normal(0.0, 1.0, (len(dots), 3)) * (6.0, 6.0, 0.02)
            parts.append((dots - d, dots + d, rng.uniform(1.2, 2.6, len(dots)), 4))
        lv = _levels(anat, 0.625)  # pancreas: head by the duodenum, body over the aorta, tail
        yp = lv.yv - lv.rv - 38.0
        pts = np.array(
            [[-45.0, yp + 8.0, 0.632], [10.0, yp - 6.0, 0.622], [105.0, yp + 30.0, 0.612]]
        )
        parts.append((pts[:-1], pts[1:], np.array([13.0, 10.0]), 5))
        a = np.concatenate([p[0] for p in parts])
        b = np.concatenate([p[1] for p in parts])
        r = np.concatenate([p[2] for p in parts])
        kind = np.concatenate([np.full(len(p[0]), p[3]) for p in parts])
        a = a * (1.0, 1.0, _REF_PX_PER_Z)
        b = b * (1.0, 1.0, _REF_PX_PER_Z)
        return cls(a, b, r, kind, rng.random(len(r)))


def _draw_vessels(
    hu: np.ndarray,
    lab: np.ndarray,
    sp: _Space,
    decor: Decor,
    idx: np.ndarray,
    zr: float,
    look: StudyLook,
    anat: Anatomy,
) -> None:
    """Vessel segments ``idx`` (lung, liver, mesenteric) cut by the plane, all in one pass."""
    if not len(idx) or sp.grid is None:
        return
    x0g, y0g, step, rows, cols = sp.grid
    a, b, r = decor.a[idx], decor.b[idx], decor.r[idx]
    d = b - a
    dz = np.where(np.abs(d[:, 2]) > 1e-6, d[:, 2], 1e-6)
    # the part of each segment within r of the plane, its box in pixel indices
    t0 = np.clip(np.minimum((zr - r - a[:, 2]) / dz, (zr + r - a[:, 2]) / dz), 0.0, 1.0)
    t1 = np.clip(np.maximum((zr - r - a[:, 2]) / dz, (zr + r - a[:, 2]) / dz), 0.0, 1.0)
    xs = np.stack([a[:, 0] + t0 * d[:, 0], a[:, 0] + t1 * d[:, 0]], 1)
    ys = np.stack([a[:, 1] + t0 * d[:, 1], a[:, 1] + t1 * d[:, 1]], 1)
    c0 = np.clip(np.ceil((xs.min(1) - r - 1 - x0g) / step), 0, cols).astype(np.int64)
    c1 = np.clip(np.floor((xs.max(1) + r + 1 - x0g) / step) + 1, 0, cols).astype(np.int64)
    r0 = np.clip(np.ceil((ys.min(1) - r - 1 - y0g) / step), 0, rows).astype(np.int64)
    r1 = np.clip(np.floor((ys.max(1) + r + 1 - y0g) / step) + 1, 0, rows).astype(np.int64)
    w, h = np.maximum(c1 - c0, 0), np.maximum(r1 - r0, 0)
    n = w * h
    if not n.sum():
        return
    seg = np.repeat(np.arange(len(idx)), n)
    k = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    row = r0[seg] + k // w[seg]
    col = c0[seg] + k % w[seg]
    X, Y = x0g + step * col, y0g + step * row
    ax, ay, az = a[seg, 0], a[seg, 1], a[seg, 2]
    ex, ey, ez = d[seg, 0], d[seg, 1], d[seg, 2]
    t = ((X - ax) * ex + (Y - ay) * ey + (zr - az) * ez) / (ex * ex + ey * ey + ez * ez + 1e-9)
    t = np.clip(t, 0.0, 1.0)
    dist = np.sqrt((X - ax - t * ex) ** 2 + (Y - ay - t * ey) ** 2 + (zr - az - t * ez) ** 2)
    alpha = np.clip(r[seg] - dist + 0.5, 0.0, 1.0)
    organ = np.array([LUNG, LIVER, 0, 0, VISCERAL])[decor.kind[idx]][seg]
    ok = (alpha > 0) & (lab[row, col] == organ)
    if not ok.any():
        return
    row, col = row[ok], col[ok]
    top, left = int(row.min()), int(col.min())
    weight = np.zeros((int(row.max()) - top + 1, int(col.max()) - left + 1), np.float32)
    np.maximum.at(weight, (row - top, col - left), alpha[ok].astype(np.float32))
    value = np.zeros(len(LABEL_NAMES), np.float32)
    value[LUNG] = 40.0 + 0.35 * look.aorta
    value[LIVER] = anat.hu_liver + look.liver_boost + 45.0 + 0.25 * look.aorta
    value[VISCERAL] = 0.7 * look.aorta
    box = (slice(top, top + weight.shape[0]), slice(left, left + weight.shape[1]))
    weight[lab[box] == LIVER] *= 0.9
    hu[box] += (value[lab[box]] - hu[box]) * weight


def _draw_decor(
    hu: np.ndarray,
    lab: np.ndarray,
    sp: _Space,
    decor: Decor,
    z: float,
    look: StudyLook,
    anat: Anatomy,
    study_rng: np.random.Generator,
) -> None:
    zr = z * _REF_PX_PER_Z
    a, b, r = decor.a, decor.b, decor.r
    zlo = np.minimum(a[:, 2], b[:, 2]) - r
    zhi = np.maximum(a[:, 2], b[:, 2]) + r
    contents = study_rng.random(len(r))  # bowel contents change between studies
    active = (zlo <= zr) & (zr <= zhi)
    vessel = np.isin(decor.kind, (0, 1, 4))
    _draw_vessels(hu, lab, sp, decor, np.flatnonzero(active & vessel), zr, look, anat)
    for i in np.flatnonzero(active & ~vessel).tolist():
        ax, ay, az = a[i]
        bx, by, bz = b[i]
        dz = bz - az
        if abs(dz) > 1e-6:  # part of the segment within r of the plane
            t0, t1 = sorted(((zr - r[i] - az) / dz, (zr + r[i] - az) / dz))
            t0, t1 = max(t0, 0.0), min(t1, 1.0)
        else:
            t0, t1 = 0.0, 1.0
        x0, x1 = ax + t0 * (bx - ax), ax + t1 * (bx - ax)
        y0, y1 = ay + t0 * (by - ay), ay + t1 * (by - ay)
        got = sp.sub(
            (x0 + x1) / 2, (y0 + y1) / 2, abs(x1 - x0) / 2 + r[i] + 1, abs(y1 - y0) / 2 + r[i] + 1
        )
        if got is None:
            continue
        s, X, Y, _ = got
        ex, ey, ez = bx - ax, by - ay, dz
        t = ((X - ax) * ex + (Y - ay) * ey + (zr - az) * ez) / (ex * ex + ey * ey + ez * ez + 1e-9)
        t = np.clip(t, 0.0, 1.0)
        d = np.sqrt((X - ax - t * ex) ** 2 + (Y - ay - t * ey) ** 2 + (zr - az - t * ez) ** 2)
        sub_hu, sub_lab = hu[s], lab[s]
        kind = decor.kind[i]
        alpha = np.clip(r[i] - d + 0.5, 0.0, 1.0)
        if kind == 5:
            weight = alpha * (sub_lab == VISCERAL)
            val: Any = 48.0 + 0.1 * look.aorta
        else:
            weight = alpha * (sub_lab == VISCERAL)
            c = contents[i]
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            if kind == 3 and c >= 0.3:  # colon: mottled stool with gas bubbles
                brng = np.random.default_rng(int(c * 2**31))
                n_b = 14
                bx_, by_ = brng.normal(0.0, 0.45 * r[i], (2, n_b))
                br_ = brng.uniform(1.2, 3.5, n_b)
                gas = np.zeros(np.broadcast(X, Y).shape, bool)
                for j in range(n_b):
                    gas |= (X - cx - bx_[j]) ** 2 + (Y - cy - by_[j]) ** 2 < br_[j] ** 2
                inner: Any = np.where(gas, -950.0, -60.0 + 100.0 * c)
            elif kind == 3 or c < 0.08:  # gas, with a fluid level at the back
                inner = np.where(cy + 0.45 * r[i] < Y, 15.0, -1000.0)
            else:
                inner = 5.0 + 28.0 * c
            val = np.where(d > r[i] - 2.0, 40.0, inner)
        sub_hu += (val - sub_hu) * weight


# ---- rendering -----------------------------------------------------------------------------------
def _lesion_sd(les: Lesions, i: int, X: np.ndarray, Y: np.ndarray, scale: float) -> np.ndarray:
    """Approximate signed distance (px, < 0 inside) to the boundary of lesion i's section.

    The section is four quarter-ellipses around the crossing of the axes, with extents a_neg,
    a_pos along the long axis and b_neg, b_pos along the short one (times ``scale`` off the key
    slice); (X, Y) are image coordinates.
    """
    dx, dy = X - float(les.cx[i]), Y - float(les.cy[i])
    ux, uy, vx, vy = (float(les.ux[i]), float(les.uy[i]), float(les.vx[i]), float(les.vy[i]))
    det = ux * vy - uy * vx
    ca = (dx * vy - dy * vx) / det  # coordinate along u
    cb = (ux * dy - uy * dx) / det  # coordinate along v
    ea = np.where(ca < 0, float(les.a_neg[i]) * scale, float(les.a_pos[i]) * scale)
    eb = np.where(cb < 0, float(les.b_neg[i]) * scale, float(les.b_pos[i]) * scale)
    r = np.sqrt((ca / np.maximum(ea, 1e-6)) ** 2 + (cb / np.maximum(eb, 1e-6)) ** 2)
    rho = np.hypot(dx, dy) / np.maximum(r, 1e-9)  # the boundary's distance along the ray
    return np.where(r > 1e-9, rho * (r - 1.0), -1e3)


def _draw_lesions(
    hu: np.ndarray,
    sp: _Space,
    lesions: Lesions,
    z_mm: float,
    shift: tuple[float, float],
    lesion_map: np.ndarray | None,
    fat_hu: float,
) -> None:
    # grid coordinates are reference px; lesion coordinates are image px = ref + centre + shift
    ox = BODY_CENTRE_PX[0] + shift[0]
    oy = BODY_CENTRE_PX[1] + shift[1]
    dz = z_mm - lesions.zc
    cut = np.abs(dz) < lesions.cz
    order = np.flatnonzero(cut)
    # larger sections first so that a small lesion inside a large one stays visible
    size = (lesions.a_neg + lesions.a_pos) * np.sqrt(np.clip(1 - (dz / lesions.cz) ** 2, 0, 1))
    order = order[np.argsort(-size[order], kind="stable")]
    for i in order.tolist():
        scale = float(np.sqrt(1.0 - (dz[i] / lesions.cz[i]) ** 2))
        ext = max(lesions.a_neg[i], lesions.a_pos[i], lesions.b_neg[i], lesions.b_pos[i]) * scale
        code = int(lesions.code[i])
        halo = (
            max(2.5, 0.35 * min(lesions.b_neg[i], lesions.b_pos[i]) * scale) if code == NODE else 0
        )
        got = sp.sub(lesions.cx[i] - ox, lesions.cy[i] - oy, ext + halo + 2, ext + halo + 2)
        if got is None:
            continue
        s, X, Y, _ = got
        sd = _lesion_sd(lesions, i, X + ox, Y + oy, scale)
        view = hu[s]
        if halo:
            ah = np.clip(halo + 0.5 - sd, 0.0, 1.0)
            view += (fat_hu - view) * ah
        alpha = np.clip(0.5 - sd, 0.0, 1.0)
        val = lesions.hu[i]
        if code == LIVER_RIM:
            rim_w = max(1.5, 0.18 * min(lesions.b_neg[i], lesions.b_pos[i]) * scale)
            val = np.where(sd > -rim_w, lesions.rim[i], lesions.hu[i])
        view += (val - view) * alpha
        if lesion_map is not None:
            lesion_map[s][alpha >= 0.5] = lesions.ident[i]


def _blur(img: np.ndarray) -> np.ndarray:
    """Separable [1, 2, 1] / 4 blur (the scanner's point spread), edges replicated."""
    h = 0.5 * img
    h[:, 1:] += 0.25 * img[:, :-1]
    h[:, :-1] += 0.25 * img[:, 1:]
    h[:, 0] += 0.25 * img[:, 0]
    h[:, -1] += 0.25 * img[:, -1]
    v = 0.5 * h
    v[1:] += 0.25 * h[:-1]
    v[:-1] += 0.25 * h[1:]
    v[0] += 0.25 * h[0]
    v[-1] += 0.25 * h[-1]
    return v


@dataclass
class SliceImage:
    """A rendered slice: HU (float32), organ labels and the lesion id map (-1: none)."""

    hu: np.ndarray
    labels: np.ndarray
    lesions: np.ndarray


def render_slice(
    anat: Anatomy,
    z: float,
    *,
    z_mm: float = 0.0,
    shape: tuple[int, int] = (512, 512),
    step: float = 1.0,
    shift: tuple[float, float] = (0.0, 0.0),
    look: StudyLook | None = None,
    lesions: Lesions | None = None,
    decor: Decor | None = None,
    noise_rng: np.random.Generator | None = None,
    study_rng: np.random.Generator | None = None,
    noise_sd: float = 10.0,
) -> SliceImage:
    """One axial slice of patient ``anat`` (floats, :meth:`Anatomy.one`) at level ``z``.

    Pixel (row i, col j) is centred at image coordinate (x, y) = (j, i) * ``step`` + (step - 1) / 2
    in the 512 frame (``step`` = 4 renders a 128 matrix of the same field of view). ``shift`` moves
    the body (study positioning, image px). ``lesions`` are cut at ``z_mm`` (scan mm).
    """
    look = look or StudyLook()
    x0 = (step - 1.0) / 2.0 - BODY_CENTRE_PX[0] - shift[0]
    y0 = (step - 1.0) / 2.0 - BODY_CENTRE_PX[1] - shift[1]
    sp = _Space.pixels(shape, step, x0, y0)
    lab = _label_map(sp, anat, z)
    lut = np.zeros(18, np.float32)
    lut[[AIR, FAT, MUSCLE, LUNG, MEDIASTINUM, HEART, VESSEL, AIRWAY, CORTEX, MARROW]] = (
        -1000.0,
        anat.hu_fat,
        anat.hu_muscle,
        anat.hu_lung,
        anat.hu_fat + 12.0,
        45.0,
        look.aorta,
        -990.0,
        anat.hu_cortex,
        anat.hu_marrow,
    )
    lut[[LIVER, SPLEEN, KIDNEY, STOMACH, VISCERAL, BLADDER, DISC, CANAL]] = (
        anat.hu_liver + look.liver_boost,
        anat.hu_spleen + 0.6 * look.liver_boost,
        look.kidney,
        18.0,
        anat.hu_fat + 8.0,
        look.bladder,
        85.0,
        25.0,
    )
    hu = lut[lab]
    lv = _levels(anat, z)
    if 0.3 < z < 0.65:  # lungs denser at the back
        lung = lab == LUNG
        grad = 45.0 * np.clip((sp.Y - lv.yc) / max(lv.bcb, 1.0), -1.0, 1.0)
        hu[lung] += np.broadcast_to(grad, hu.shape)[lung]
    for side in (-1.0, 1.0):  # kidney medulla
        present, ks, kx, ky, ang = _kidney_geom(anat, lv, z, side)
        got = sp.sub(kx, ky, 40.0, 40.0) if present else None
        if got is not None:
            s, X, Y, _ = got
            med = _ellipse(X, Y, kx - side * 6.0 * ks, ky, 15.0 * ks, 25.0 * ks, ang) < 1.0
            hu[s][(lab[s] == KIDNEY) & med] = 0.8 * look.kidney
    present, cx, cy, ga, gb = _stomach_geom(anat, lv, z)
    got = sp.sub(cx, cy, ga, ga) if present else None
    if got is not None:  # gastric air above a fluid level, and the wall
        s, X, Y, _ = got
        e = _ellipse(X, Y, cx, cy, ga, gb, 0.5)
        sto = lab[s] == STOMACH
        hu[s][sto & np.broadcast_to(cy - 0.45 * gb > Y, sto.shape)] = -1000.0
        hu[s][sto & (e > 0.8)] = 40.0
    present, hx, hy, ha, hb = _heart_geom(anat, lv, z)
    got = sp.sub(hx, hy, max(ha, hb), max(ha, hb)) if present else None
    if got is not None:  # blood pool of the chambers
        s, X, Y, _ = got
        pool = (_ellipse(X, Y, hx - 0.25 * ha, hy + 0.1 * hb, 0.45 * ha, 0.6 * hb, 0.45) < 1) | (
            _ellipse(X, Y, hx + 0.3 * ha, hy - 0.15 * hb, 0.42 * ha, 0.5 * hb, 0.45) < 1
        )
        hu[s][(lab[s] == HEART) & pool] = 0.85 * look.aorta
    if decor is not None:
        _draw_decor(hu, lab, sp, decor, z, look, anat, study_rng or np.random.default_rng(0))
    lesion_map = np.full(shape, -1, np.int32)
    if lesions is not None and len(lesions):
        _draw_lesions(hu, sp, lesions, z_mm, shift, lesion_map, anat.hu_fat)
    # CT table under the body: two thin arcs
    ty = 166.0 * anat.h * 0.97 + 34.0
    got = sp.sub(0.0, ty, 400.0, 60.0)
    if got is not None:
        s, X, Y, _ = got
        dyt = Y - ty + 0.0006 * X * X
        tab = ((np.abs(dyt) < 1.6) | (np.abs(dyt - 38.0) < 1.2)) & (lab[s] == AIR)
        hu[s][tab] = -150.0
    hu = _blur(hu)
    if noise_rng is not None and noise_sd > 0:  # in the body (and the table), not in the air
        noise = noise_rng.standard_normal(shape, dtype=np.float32)
        noise *= np.float32(noise_sd)
        noise[hu <= -999.0] = 0.0
        hu += noise
    return SliceImage(hu.astype(np.float32), lab, lesion_map)


def hu_to_png16(hu: np.ndarray) -> np.ndarray:
    """HU -> DeepLesion 16-bit pixel values (HU + 32768, rounded, clipped to [0, 65535])."""
    return np.clip(np.rint(hu) + PNG_OFFSET, 0, 65535).astype(np.uint16)


def write_png16(path: str | Path, hu: np.ndarray, compress_level: int = 1) -> None:
    """Write HU as a 16-bit grey PNG (mode I;16) in the DeepLesion convention."""
    from PIL import Image

    Image.fromarray(hu_to_png16(hu)).save(path, format="PNG", compress_level=compress_level)
