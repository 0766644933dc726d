"""SYNTHETIC lesions and contrast: per-study contrast, lesion appearance by type and the
RECIST-based lesion geometry drawn into a slice."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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

    cx: np.ndarray
    cy: np.ndarray
    ux: np.ndarray
    uy: np.ndarray
    vx: np.ndarray
    vy: np.ndarray
    a_neg: np.ndarray
    a_pos: np.ndarray
    b_neg: np.ndarray
    b_pos: np.ndarray
    zc: np.ndarray
    cz: np.ndarray
    code: np.ndarray
    hu: np.ndarray
    rim: np.ndarray
    ident: np.ndarray

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
