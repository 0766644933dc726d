"""SYNTHETIC phantom anatomy: organ labels, per-patient body parameters and the z profiles of
the body outline and landmarks (made-up proportions, never a real patient)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

#: mm of body height per unit of normalised z (the real slope) and the location-to-pixel map.
BODY_MM_PER_Z = 1100.0
PX_FROM_LOC = ((34.16, 453.5), (82.44, 348.4))
#: 512-frame pixel position of the body centre (normalised x = y = 0.5).
BODY_CENTRE_PX = (
    PX_FROM_LOC[0][0] + PX_FROM_LOC[0][1] / 2,
    PX_FROM_LOC[1][0] + PX_FROM_LOC[1][1] / 2,
)
REF_PX_PER_Z = 1375.0  # reference pixels per unit z for 3D decorations (~0.8 mm pixels)
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
ANATOMY_FIELDS = (
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


#: One patient's parameter (a float: a pixel grid is rendered in float32 around it) or one per
#: patient or point (a float32 array).
Param = float | np.ndarray


class Anatomy:
    """Anatomy parameters of one patient (floats) or of many (arrays of equal length)."""

    __slots__ = ANATOMY_FIELDS
    w: Param
    h: Param
    fat: Param
    muscle: Param
    back: Param
    dia: Param
    apex: Param
    liver: Param
    liver_dz: Param
    spleen: Param
    kid_dz: Param
    heart: Param
    bladder: Param
    vphase: Param
    rphase: Param
    hu_fat: Param
    hu_muscle: Param
    hu_liver: Param
    hu_spleen: Param
    hu_marrow: Param
    hu_cortex: Param
    hu_lung: Param

    def __init__(self, **fields: Any) -> None:
        for name in ANATOMY_FIELDS:
            setattr(self, name, fields[name])

    @classmethod
    def draw(cls, rng: np.random.Generator, male: np.ndarray) -> Anatomy:
        """Draw one anatomy per patient (``male``: bool array, one per patient)."""
        n = len(male)
        u = rng.random((len(ANATOMY_FIELDS), n))
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
        return Anatomy(**{k: getattr(self, k)[index] for k in ANATOMY_FIELDS})

    def one(self, i: int) -> Anatomy:
        """Patient ``i`` with plain float parameters (for rendering a pixel grid)."""
        return Anatomy(**{k: float(getattr(self, k)[i]) for k in ANATOMY_FIELDS})


# ---- z profiles ----------------------------------------------------------------------------------
_ZK = (0.10, 0.22, 0.27, 0.31, 0.36, 0.45, 0.55, 0.65, 0.75, 0.85, 0.92, 1.00)
_WK = (0.34, 0.36, 0.72, 0.99, 0.95, 0.94, 0.94, 0.95, 0.98, 1.00, 0.97, 0.90)  # half-width
_HK = (0.50, 0.52, 0.70, 0.84, 0.88, 0.92, 0.93, 0.95, 0.95, 0.90, 0.85, 0.80)  # half-height
_YCK = (22.0, 20.0, 12.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)  # body centre Y
_FK = (0.35, 0.4, 0.6, 0.75, 0.8, 0.85, 0.95, 1.05, 1.1, 1.15, 1.1, 1.1)  # fat thickness
_CK = (0.0, 0.0, 0.0, 0.55, 0.93, 1.0, 1.0, 1.0, 1.0, 0.95, 0.85, 0.75)  # cavity scale
_MLK = (1.0, 1.0, 2.0, 2.6, 1.5, 1.0, 1.0, 1.1, 2.3, 3.4, 4.0, 4.2)  # lateral muscle factor
_RVK = (11.0, 12.0, 13.5, 15.0, 17.0, 19.0, 22.0, 26.0, 28.0, 28.0, 28.0, 28.0)  # vertebral body


def interp_knots(z: Any, xp: tuple[float, ...], fp: tuple[float, ...]) -> Any:
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


def body_levels(a: Anatomy, z: Any) -> SimpleNamespace:
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


def dome_z(a: Anatomy, lv: SimpleNamespace, X: Any, Y: Any) -> Any:
    """z of the diaphragm above (X, Y): the abdomen lies at larger z (below it)."""
    ac = as_float(np.maximum(lv.ac_full, 1.0))
    bc = as_float(np.maximum(lv.bcf_full, 1.0))
    yr = (Y - lv.yc) / bc
    ty = 0.05 * (yr + 0.05) ** 2 + 0.03 * yr
    right = 0.528 + a.dia + 0.23 * ((X / ac + 0.45) ** 2) + ty
    left = 0.542 + a.dia + 0.23 * ((X / ac - 0.45) ** 2) + ty
    return np.minimum(right, left)


def as_float(v: Any) -> Any:
    """A scalar as a Python float (so float32 grids stay float32); arrays unchanged."""
    return float(v) if np.ndim(v) == 0 else v


def positive(v: Any) -> Any:
    """v kept away from zero (a float stays a float, so float32 grids stay float32)."""
    return max(float(v), 1e-6) if np.ndim(v) == 0 else np.maximum(v, 1e-6)
