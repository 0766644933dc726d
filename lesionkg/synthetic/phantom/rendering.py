"""Rendering of a SYNTHETIC CT slice: organ map, decorations, lesions, blur and noise in
Hounsfield units, and the DeepLesion 16-bit PNG encoding."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lesionkg.synthetic.phantom.anatomy import (
    AIR,
    AIRWAY,
    BLADDER,
    BODY_CENTRE_PX,
    CANAL,
    CORTEX,
    DISC,
    FAT,
    HEART,
    KIDNEY,
    LIVER,
    LUNG,
    MARROW,
    MEDIASTINUM,
    MUSCLE,
    PNG_OFFSET,
    SPLEEN,
    STOMACH,
    VESSEL,
    VISCERAL,
    Anatomy,
    body_levels,
)
from lesionkg.synthetic.phantom.decor import Decor, draw_decor
from lesionkg.synthetic.phantom.lesions import LIVER_RIM, NODE, Lesions, StudyLook
from lesionkg.synthetic.phantom.organs import label_map
from lesionkg.synthetic.phantom.shapes import Space, ellipse, heart_geom, kidney_geom, stomach_geom


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
    sp: Space,
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
    sp = Space.pixels(shape, step, x0, y0)
    lab = label_map(sp, anat, z)
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
    lv = body_levels(anat, z)
    if 0.3 < z < 0.65:  # lungs denser at the back
        lung = lab == LUNG
        grad = 45.0 * np.clip((sp.Y - lv.yc) / max(lv.bcb, 1.0), -1.0, 1.0)
        hu[lung] += np.broadcast_to(grad, hu.shape)[lung]
    for side in (-1.0, 1.0):  # kidney medulla
        present, ks, kx, ky, ang = kidney_geom(anat, lv, z, side)
        got = sp.sub(kx, ky, 40.0, 40.0) if present else None
        if got is not None:
            s, X, Y, _ = got
            med = ellipse(X, Y, kx - side * 6.0 * ks, ky, 15.0 * ks, 25.0 * ks, ang) < 1.0
            hu[s][(lab[s] == KIDNEY) & med] = 0.8 * look.kidney
    present, cx, cy, ga, gb = stomach_geom(anat, lv, z)
    got = sp.sub(cx, cy, ga, ga) if present else None
    if got is not None:  # gastric air above a fluid level, and the wall
        s, X, Y, _ = got
        e = ellipse(X, Y, cx, cy, ga, gb, 0.5)
        sto = lab[s] == STOMACH
        hu[s][sto & np.broadcast_to(cy - 0.45 * gb > Y, sto.shape)] = -1000.0
        hu[s][sto & (e > 0.8)] = 40.0
    present, hx, hy, ha, hb = heart_geom(anat, lv, z)
    got = sp.sub(hx, hy, max(ha, hb), max(ha, hb)) if present else None
    if got is not None:  # blood pool of the chambers
        s, X, Y, _ = got
        pool = (ellipse(X, Y, hx - 0.25 * ha, hy + 0.1 * hb, 0.45 * ha, 0.6 * hb, 0.45) < 1) | (
            ellipse(X, Y, hx + 0.3 * ha, hy - 0.15 * hb, 0.42 * ha, 0.5 * hb, 0.45) < 1
        )
        hu[s][(lab[s] == HEART) & pool] = 0.85 * look.aorta
    if decor is not None:
        draw_decor(hu, lab, sp, decor, z, look, anat, study_rng or np.random.default_rng(0))
    lesion_map = np.full(shape, -1, np.int32)
    if lesions is not None and len(lesions):
        _draw_lesions(hu, sp, lesions, z_mm, shift, lesion_map, float(anat.hu_fat))
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
