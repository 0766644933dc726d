"""Per-patient 3D decorations of the SYNTHETIC phantom: lung and liver vessel trees, bowel loops,
mesenteric vessels and pancreas, drawn over the organ map."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lesionkg.synthetic.phantom.anatomy import (
    ANATOMY_FIELDS,
    LABEL_NAMES,
    LIVER,
    LUNG,
    REF_PX_PER_Z,
    VISCERAL,
    Anatomy,
    body_levels,
)
from lesionkg.synthetic.phantom.lesions import StudyLook
from lesionkg.synthetic.phantom.organs import labels_at
from lesionkg.synthetic.phantom.shapes import Space


# ---- per-patient 3D decorations: lung vessels, liver vessels, bowel ------------------------------
@dataclass
class Decor:
    """3D segments drawn over organs: (n, 3) ends in (X, Y, z * REF_PX_PER_Z), radius, kind."""

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
            one = Anatomy(**{k: np.full(m, getattr(anat, k)) for k in ANATOMY_FIELDS})
            ok = labels_at(one, p[:, 0], p[:, 1], p[:, 2]) == label
            return p[ok][:n]

        def tree(
            root: np.ndarray,
            ends: np.ndarray,
            n_mid: int,
            radii: tuple[float, float, float],
            kind: int,
        ) -> None:
            """Branches root -> n_mid branch points -> the nearest ends."""
            if len(ends) < n_mid:
                return
            mids = root + (ends[:n_mid] - root) * rng.uniform(0.35, 0.6, (n_mid, 1))
            parts.append((np.repeat(root[None], n_mid, 0), mids, np.full(n_mid, radii[0]), kind))
            near = np.argmin(((ends[:, None, :2] - mids[None, :, :2]) ** 2).sum(-1), axis=1)
            parts.append((mids[near], ends, rng.uniform(radii[1], radii[2], len(ends)), kind))

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
        lv = body_levels(anat, 0.625)  # pancreas: head by the duodenum, body over the aorta, tail
        yp = lv.yv - lv.rv - 38.0
        pts = np.array(
            [[-45.0, yp + 8.0, 0.632], [10.0, yp - 6.0, 0.622], [105.0, yp + 30.0, 0.612]]
        )
        parts.append((pts[:-1], pts[1:], np.array([13.0, 10.0]), 5))
        a = np.concatenate([p[0] for p in parts])
        b = np.concatenate([p[1] for p in parts])
        r = np.concatenate([p[2] for p in parts])
        kind = np.concatenate([np.full(len(p[0]), p[3]) for p in parts])
        a = a * (1.0, 1.0, REF_PX_PER_Z)
        b = b * (1.0, 1.0, REF_PX_PER_Z)
        return cls(a, b, r, kind, rng.random(len(r)))


def _draw_vessels(
    hu: np.ndarray,
    lab: np.ndarray,
    sp: Space,
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


def draw_decor(
    hu: np.ndarray,
    lab: np.ndarray,
    sp: Space,
    decor: Decor,
    z: float,
    look: StudyLook,
    anat: Anatomy,
    study_rng: np.random.Generator,
) -> None:
    zr = z * REF_PX_PER_Z
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
