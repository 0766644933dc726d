"""The SYNTHETIC phantom's organ map: thorax, abdomen, vessels and bones painted at one level,
on a pixel grid (a slice) or at arbitrary points (:func:`labels_at`)."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import numpy as np

from lesionkg.synthetic.phantom.anatomy import (
    AIRWAY,
    BLADDER,
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
    SPLEEN,
    STOMACH,
    VESSEL,
    VISCERAL,
    Anatomy,
    as_float,
    body_levels,
    dome_z,
    interp_knots,
)
from lesionkg.synthetic.phantom.shapes import (
    Space,
    between,
    bone_ball,
    bone_capsule,
    capsule,
    disk,
    ellipse,
    ellipsoid_section,
    heart_geom,
    kidney_geom,
    level_active,
    paint,
    paint_bone,
    stomach_geom,
    superellipse,
    tube,
)

_MWZ = (0.27, 0.34, 0.39, 0.42, 0.46, 0.50, 0.54, 0.58)
_MWK = (24.0, 30.0, 38.0, 50.0, 52.0, 40.0, 30.0, 26.0)  # mediastinum half-width
_VERT_PERIOD = 0.026  # z per vertebra (body + disc)
_DISC_FRACTION = 0.2
_SACRUM_Z = 0.735


# ---- the organ map -------------------------------------------------------------------------------
def label_map(sp: Space, a: Anatomy, z: Any) -> np.ndarray:
    """Organ labels on ``sp`` at level ``z`` (painter's order: later structures win)."""
    lab = np.zeros(sp.shape, np.uint8)
    lv = body_levels(a, z)
    full, X, Y = sp.full()
    zz = z
    paint(lab, full, superellipse(X, Y, lv.yc, lv.ab, lv.bb, lv.bb, 2.4) < 1.0, FAT)
    inner = superellipse(X, Y, lv.yc, lv.ab - lv.fat, lv.bb - lv.fat, lv.bb - 0.6 * lv.fat, 2.4)
    paint(lab, full, inner < 1.0, MUSCLE)
    cav_q = superellipse(X, Y, lv.yc, lv.ac, lv.bcf, lv.bcb, 2.2)
    cavity = cav_q < 1.0
    # paraspinal muscles bulge into the cavity around the spine
    py, pa, pb = lv.yv + 0.4 * lv.rv + 22.0, lv.rv + 30.0, 0.6 * lv.rv + 34.0
    got = sp.sub(0.0, py, pa + 1.0, pb + 1.0, cavity)
    if got is not None:
        s, Xs, Ys, t = got
        para = ellipse(Xs, Ys, 0.0, t(py), t(pa), t(pb)) < 1.0
        paint(cavity, s, para, False)
    if np.ndim(z) == 0 and z < 0.50:
        thorax, abdomen = cavity, np.zeros_like(cavity)
    elif np.ndim(z) == 0 and z >= 0.70:
        thorax, abdomen = np.zeros_like(cavity), cavity
    else:
        below = zz >= dome_z(a, lv, X, Y)
        thorax, abdomen = cavity & ~below, cavity & below
    paint(lab, full, abdomen, VISCERAL)
    if level_active(z, 0.26, 0.64):
        _thorax(sp, lab, a, lv, z, thorax)
    if level_active(z, 0.50, 0.95):
        _abdomen(sp, lab, a, lv, z, abdomen)
    _vessels(sp, lab, lv, z)
    _bones(sp, lab, a, lv, z, cav_q)
    return lab


def _thorax(
    sp: Space, lab: np.ndarray, a: Anatomy, lv: SimpleNamespace, z: Any, thorax: np.ndarray
) -> None:
    """Lungs, mediastinum and heart in the thoracic part of the cavity (other parts: muscle)."""
    full = sp.full()[0]
    zz = z
    paint(lab, full, thorax, MUSCLE)
    f = np.sqrt(np.clip((zz - 0.335 - a.apex) / 0.09, 0.0, 1.0))
    fz = np.maximum(f, 1e-3)
    lung = np.zeros(sp.shape, bool)
    ly, la, lb = lv.yc + 0.2 * lv.bcb, 0.62 * lv.ac * fz, 1.3 * lv.bcb * fz
    for side in (-1.0, 1.0):
        lx = side * 0.5 * lv.ac
        got = sp.sub(lx, ly, la, lb, thorax & (f > 0))
        if got is not None:
            s, Xs, Ys, t = got
            paint(lung, s, ellipse(Xs, Ys, t(lx), t(ly), t(la), t(lb)) < 1.0, True)
    paint(lab, full, lung, LUNG)
    medi = np.zeros(sp.shape, bool)
    mw = interp_knots(z, _MWZ, _MWK)
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
            paint(medi, s, ellipse(Xs, Ys, t(cx), t(cy), t(ra), t(rb)) < 1.0, True)
    paint(lab, full, medi, MEDIASTINUM)
    present, hx, hy, ha, hb = heart_geom(a, lv, zz)
    hmax = np.maximum(ha, hb)
    got = sp.sub(hx, hy, hmax, hmax, thorax & present)
    if got is not None:
        s, Xs, Ys, t = got
        paint(lab, s, ellipse(Xs, Ys, t(hx), t(hy), t(ha), t(hb), 0.45) < 1.0, HEART)


def _abdomen(
    sp: Space, lab: np.ndarray, a: Anatomy, lv: SimpleNamespace, z: Any, abdomen: np.ndarray
) -> None:
    """Liver, spleen, stomach, kidneys, psoas and bladder below the diaphragm."""
    zz = z
    if level_active(z, 0.50, 0.72):
        lb = 0.688 + a.liver_dz
        tt = np.clip((zz - 0.55) / (lb - 0.55), 0.0, 1.0)
        xl, yl = -40.0 - 95.0 * tt, lv.yc - 8.0 + 30.0 * tt
        la, lbb = (165.0 - 110.0 * tt) * a.liver, (150.0 - 75.0 * tt) * a.liver
        ex, ey = 150.0 - 75.0 * tt, lv.yc + 70.0 - 30.0 * tt
        got = sp.sub(xl, yl, la, lbb, abdomen & (zz < lb))
        if got is not None:
            s, X, Y, t = got
            liver = ellipse(X, Y, t(xl), t(yl), t(la), t(lbb)) < 1.0
            # the medial edge: concave towards the stomach and the spine
            liver &= ellipse(X, Y, t(ex), t(ey), 160.0, 160.0) > 1.0
            paint(lab, s, liver, LIVER)
    if level_active(z, 0.52, 0.68):
        present, ss = ellipsoid_section(zz, 0.60 + a.dia, 0.045 * a.spleen)
        ss = ss * a.spleen
        cx, cy = 0.74 * lv.ac, lv.yc + 0.42 * lv.bcb
        got = sp.sub(cx, cy, 58.0 * ss, 58.0 * ss, abdomen & present)
        if got is not None:
            s, X, Y, t = got
            m = ellipse(X, Y, t(cx), t(cy), 28.0 * t(ss), 58.0 * t(ss), 0.9) < 1.0
            paint(lab, s, m, SPLEEN)
        present, cx, cy, ga, gb = stomach_geom(a, lv, zz)
        got = sp.sub(cx, cy, ga, ga, abdomen & present)
        if got is not None:
            s, X, Y, t = got
            paint(lab, s, ellipse(X, Y, t(cx), t(cy), t(ga), t(gb), 0.5) < 1.0, STOMACH)
    if level_active(z, 0.59, 0.74):
        for side in (-1.0, 1.0):
            present, ks, kx, ky, ang = kidney_geom(a, lv, zz, side)
            got = sp.sub(kx, ky, 42.0, 42.0, abdomen & present)
            if got is None:
                continue
            s, X, Y, t = got
            ks, kx, ky = t(ks), t(kx), t(ky)
            kid = ellipse(X, Y, kx, ky, 29.0 * ks, 39.0 * ks, ang) < 1.0
            sx, sy = kx - side * 17.0 * ks, ky - 7.0 * ks
            sinus = ellipse(X, Y, sx, sy, 9.0 * ks, 13.0 * ks, ang) < 1.0
            paint(lab, s, kid, KIDNEY)
            paint(lab, s, kid & sinus, VISCERAL)
    if level_active(z, 0.64, 0.90):  # psoas, moving anterolaterally into the pelvis (iliopsoas)
        pw = 5.0 + 16.0 * np.clip((zz - 0.64) / 0.14, 0.0, 1.0) + 1e-3
        drift = np.clip((zz - 0.77) / 0.1, 0.0, 1.0)
        for side in (-1.0, 1.0):
            px = side * (lv.rv + 8.0 + pw + 45.0 * drift)
            py = lv.yv - 0.2 * lv.rv - 55.0 * drift
            got = sp.sub(px, py, pw + 2.0, pw + 7.0, abdomen & (zz > 0.64))
            if got is not None:
                s, X, Y, t = got
                paint(lab, s, ellipse(X, Y, t(px), t(py), t(pw), 0.9 * t(pw) + 5.0) < 1.0, MUSCLE)
    if level_active(z, 0.80, 0.95):
        present, bs = ellipsoid_section(zz, 0.875, 0.05 * a.bladder)
        bs = bs * a.bladder
        cy, ba, bb = lv.yc - 0.35 * lv.bcf, 0.5 * lv.ac * bs, 0.38 * lv.bcf * bs
        got = sp.sub(0.0, cy, ba, bb, abdomen & present)
        if got is not None:
            s, X, Y, t = got
            paint(lab, s, ellipse(X, Y, 0.0, t(cy), t(ba), t(bb)) < 1.0, BLADDER)


def _vessels(sp: Space, lab: np.ndarray, lv: SimpleNamespace, z: Any) -> None:
    """Airways and great vessels (contrast-filled)."""
    zz = z
    yt = lv.yv - lv.rv - 20.0
    if level_active(z, 0.0, 0.445):  # trachea
        disk(sp, lab, 0.0, yt, 11.0, 9.5, zz < 0.445, AIRWAY)
    if level_active(z, 0.445, 0.475):  # main bronchi
        spread = np.clip((zz - 0.445) * 1400.0, 0.0, 48.0)
        m = between(zz, 0.445, 0.475)
        disk(sp, lab, -spread, yt + 0.2 * spread, 7.5, 7.0, m, AIRWAY)
        disk(sp, lab, spread, yt + 0.2 * spread, 7.0, 6.5, m, AIRWAY)
    # descending aorta moving from the left of the spine (chest) to its front (abdomen)
    k = np.clip((zz - 0.52) / 0.1, 0.0, 1.0)
    dx = (1 - k) * (lv.rv + 12.0) + k * 0.35 * lv.rv
    dy = (1 - k) * (lv.yv - 0.3 * lv.rv) + k * (lv.yv - lv.rv - 15.0)
    dr = 13.5 - 1.5 * k
    ax, ay = -12.0, lv.yc - 0.3 * lv.bcf
    if level_active(z, 0.39, 0.745):
        disk(sp, lab, dx, dy, dr, dr, between(zz, 0.39, 0.745), VESSEL)
    if level_active(z, 0.405, 0.47):  # ascending aorta
        disk(sp, lab, ax, ay, 15.5, 15.5, between(zz, 0.405, 0.47), VESSEL)
    if level_active(z, 0.388, 0.408):  # arch
        tube(sp, lab, (ax, ay), (dx, dy), 13.0, between(zz, 0.388, 0.408), VESSEL)
    if level_active(z, 0.43, 0.465):  # pulmonary trunk and arteries
        px, py = 22.0, lv.yc - 0.38 * lv.bcf
        disk(sp, lab, px, py, 14.0, 14.0, between(zz, 0.43, 0.465), VESSEL)
        m = between(zz, 0.448, 0.462)
        tube(sp, lab, (px, py), (-55.0, lv.yc + 5.0), 9.0, m, VESSEL)
        tube(sp, lab, (px, py), (60.0, lv.yc + 2.0), 9.0, m, VESSEL)
    if level_active(z, 0.335, 0.48):  # superior vena cava
        disk(sp, lab, -40.0, lv.yc - 0.2 * lv.bcf, 10.0, 11.0, between(zz, 0.335, 0.48), VESSEL)
    if level_active(z, 0.0, 0.39):  # supra-aortic arteries and jugular veins
        m = zz < 0.39
        for vx, vy, r in ((-22.0, -18.0, 6.5), (6.0, -22.0, 5.5), (24.0, -14.0, 5.5)):
            disk(sp, lab, vx, yt + vy, r, r, m & (zz >= 0.26), VESSEL)
        for side in (-1.0, 1.0):
            disk(sp, lab, side * 42.0, yt - 4.0, 8.0, 7.0, m, VESSEL)
    if level_active(z, 0.555, 0.745):  # inferior vena cava
        m = between(zz, 0.555, 0.745)
        disk(sp, lab, -lv.rv - 14.0, lv.yv - lv.rv - 10.0, 13.0, 10.5, m, VESSEL)
    if level_active(z, 0.745, 0.86):  # iliac arteries and veins
        spread = np.minimum(0.35 * lv.rv + (zz - 0.745) * 650.0, 0.62 * lv.ac)
        vy = lv.yv - lv.rv - 12.0 + (zz - 0.745) * 200.0
        m = between(zz, 0.745, 0.86)
        for side in (-1.0, 1.0):
            disk(sp, lab, side * spread, vy, 8.0, 8.0, m, VESSEL)
            disk(sp, lab, side * (spread - 8.0), vy + 15.0, 9.0, 8.0, m, VESSEL)


def _bones(sp: Space, lab: np.ndarray, a: Anatomy, lv: SimpleNamespace, z: Any, cav_q: Any) -> None:
    zz = z
    # ---- spine: vertebral bodies and discs, posterior elements and canal, sacrum, coccyx ----
    if level_active(z, 0.0, _SACRUM_Z):
        disc = np.asarray(((zz / _VERT_PERIOD) + a.vphase) % 1.0 < _DISC_FRACTION)
        m = zz < _SACRUM_Z
        got = sp.sub(0.0, lv.yv, lv.rv + 1.0, lv.rv + 1.0, m)
        if got is not None:
            s, X, Y, t = got
            rr = np.sqrt(ellipse(X, Y, 0.0, t(lv.yv), t(lv.rv), 0.85 * t(lv.rv)))
            d = t(disc)
            paint(lab, s, (rr < 1.0) & d, DISC)
            paint_bone(lab, s, rr, (rr < 1.0) & ~d, 0.14)
        got = sp.sub(0.0, lv.ycan + 16.0, lv.rv + 28.0, 34.0, m)
        if got is not None:
            s, X, Y, t = got
            yc, rv = t(lv.ycan), t(lv.rv)
            dcan = np.hypot(X, Y - yc)
            spin_len = np.where(t(zz) < 0.3, 16.0, 26.0)
            arch = (dcan < 15.5) & (yc - 3.0 < Y)
            spin = capsule(X, Y, 0.0, yc + 12.0, 0.0, yc + 12.0 + spin_len) < 4.5
            tp = np.minimum(
                capsule(X, Y, -11.0, yc, -(rv + 22.0), yc + 3.0),
                capsule(X, Y, 11.0, yc, rv + 22.0, yc + 3.0),
            )
            post = arch | spin | (tp < 4.5)
            paint(lab, s, post, CORTEX)
            paint(lab, s, post & (((dcan < 14.0) & (dcan > 11.0)) | (tp < 2.5)), MARROW)
            paint(lab, s, dcan < 9.0, CANAL)
    if level_active(z, _SACRUM_Z, 0.875):
        sw = np.clip(46.0 - (zz - _SACRUM_Z) * 300.0, 9.0, 46.0)
        ys = lv.yv + 12.0
        got = sp.sub(0.0, ys, 47.0, 26.0, between(zz, _SACRUM_Z, 0.875))
        if got is not None:
            s, X, Y, t = got
            ys, sw = t(ys), t(sw)
            rr = np.sqrt(ellipse(X, Y, 0.0, ys, sw, 0.35 * sw + 9.0))
            paint_bone(lab, s, rr, rr < 1.0, 0.2)
            paint(lab, s, (np.hypot(X, Y - ys - 4.0) < 4.0) & (t(zz) < 0.82), CANAL)
    # ---- ribs: a band just outside the cavity, cut obliquely (anterior ends lower) ----
    if level_active(z, 0.30, 0.675):
        scale = np.sqrt(np.maximum(lv.ac * lv.bcb, 1.0))
        hi = (1.0 + 12.0 / scale) ** 2.2
        band = (cav_q >= 1.0) & (cav_q < hi) & (lv.ac > 1.0) & between(zz, 0.30, 0.675)
        idx = np.nonzero(band)
        X = np.broadcast_to(sp.X, sp.shape)[idx]
        Y = np.broadcast_to(sp.Y, sp.shape)[idx]
        if np.ndim(zz) == 0:
            pz, apex, plv, sc = zz, a.apex + a.rphase, lv, scale
        else:
            i0 = idx[0]
            # per-point levels come with per-point anatomy arrays
            apex_z = np.asarray(a.apex)[i0] + np.asarray(a.rphase)[i0]
            pz, apex, sc = zz[i0], apex_z, scale[i0]
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
        para = ellipse(X, Y, 0.0, plv.yv + 0.4 * plv.rv + 22.0, plv.rv + 30.0, 0.6 * plv.rv + 34.0)
        zlow = np.where(np.abs(X) > 0.55 * plv.ac, 0.675, 0.60)  # lower ribs only laterally
        rib = (rr < 1.0) & (k >= 0) & (k <= 11) & (np.abs(X) > 28.0) & (para > 1.0)
        rib &= (pz > 0.30 + apex) & (pz < zlow)
        lab[tuple(i[rib] for i in idx)] = np.where(rr[rib] > 0.5, CORTEX, MARROW)
    # ---- sternum ----
    if level_active(z, 0.35, 0.56):
        ys = lv.yc - lv.bcf_full - 0.5 * a.muscle - 1.0
        sa = np.where(zz < 0.39, 26.0, 15.0)
        got = sp.sub(0.0, ys, 27.0, 8.0, between(zz, 0.35, 0.56))
        if got is not None:
            s, X, Y, t = got
            rr = np.sqrt(ellipse(X, Y, 0.0, t(ys), t(sa), 7.0))
            paint_bone(lab, s, rr, rr < 1.0, 0.35)
    # ---- shoulder girdle: clavicles, scapulae, humeral heads ----
    if level_active(z, 0.285, 0.45):
        for side in (-1.0, 1.0):
            p1 = (side * 22.0, lv.yc - 0.8 * lv.bb)
            p2 = (side * 0.62 * lv.ab, lv.yc - 0.62 * lv.bb)
            bone_capsule(sp, lab, p1, p2, 5.5, between(zz, 0.285, 0.312), 0.4)
            top = np.clip((zz - 0.30) / 0.02, 0.0, 1.0)
            p1 = (side * 0.40 * lv.ab, lv.yc + 0.80 * lv.bb)
            p2 = (side * (0.62 + 0.1 * top) * lv.ab, lv.yc + 0.55 * lv.bb)
            bone_capsule(sp, lab, p1, p2, 3.5, between(zz, 0.30, 0.45), 0.5)
            present, hr = ellipsoid_section(zz, 0.312, 0.026)
            bone_ball(sp, lab, side * 0.84 * lv.ab, lv.yc + 0.05 * lv.bb, 25.0 * hr, present, 0.2)
    # ---- pelvis: iliac wings, acetabula, femoral heads, necks and shafts, pubis, ischia ----
    if level_active(z, 0.70, 1.0):
        ys = lv.yv + 12.0
        wing = np.clip((zz - 0.70) / 0.11, 0.0, 1.0)  # 0 at the crest, 1 at the acetabulum
        sw = np.clip(46.0 - (zz - _SACRUM_Z) * 300.0, 9.0, 46.0)
        acf, bcb, bcf = lv.ac_full, lv.bcb_full, lv.bcf_full
        for side in (-1.0, 1.0):
            si = (side * (sw + 3.0), ys)
            mid = (side * (0.86 - 0.2 * wing) * acf, lv.yc + (0.25 - 0.1 * wing) * bcb)
            tip = (side * (0.98 - 0.3 * wing) * acf, lv.yc - (0.3 - 0.3 * wing) * bcf)
            m = between(zz, 0.70, 0.815)
            th = as_float(3.5 + 3.5 * wing)
            bone_capsule(sp, lab, si, mid, th, m, 0.55)
            bone_capsule(sp, lab, mid, tip, th, m, 0.55)
            fx, fy = side * 0.66 * acf, lv.yc + 0.05 * bcb
            present, hr = ellipsoid_section(zz, 0.855, 0.024)
            got = sp.sub(fx, fy, 40.0, 40.0, present & (hr > 0.5))
            if got is not None:  # acetabular roof around the femoral head
                s, X, Y, t = got
                d = np.hypot(X - t(fx), Y - t(fy))
                h = 26.0 * t(hr)
                paint(
                    lab, s, (d >= h + 2.5) & (d < h + 11.0) & (X * side < t(fx) * side + 8), CORTEX
                )
            bone_ball(sp, lab, fx, fy, 26.0 * hr, present, 0.15)
            neck = (fx + side * 58.0, fy + 10.0)
            bone_capsule(sp, lab, (fx, fy), neck, 15.0, between(zz, 0.862, 0.885), 0.25)
            bone_ball(sp, lab, fx + side * 50.0, fy + 12.0, 16.0, zz >= 0.885, 0.45)
            p1 = (side * 4.0, lv.yc - 0.85 * bcf)
            p2 = (side * 0.55 * acf, lv.yc - 0.2 * bcf)
            bone_capsule(sp, lab, p1, p2, 8.0, between(zz, 0.872, 0.925), 0.35)
            ix, iy = side * 0.42 * acf, lv.yc + 0.55 * bcb
            bone_ball(sp, lab, ix, iy, 14.0, between(zz, 0.865, 0.935), 0.3)


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
        return label_map(Space(X, Y, None), anat, z)
    # many points: evaluate by bands of z, so each band skips the structures of other levels
    band = np.searchsorted(_BAND_EDGES, z)
    order = np.argsort(band, kind="stable")
    starts = np.searchsorted(band[order], np.arange(len(_BAND_EDGES) + 2))
    out = np.empty(len(z), np.uint8)
    for b0, b1 in itertools.pairwise(starts):
        if b1 > b0:
            i = order[b0:b1]
            out[i] = label_map(Space(X[i], Y[i], None), anat.take(i), z[i])
    return out
