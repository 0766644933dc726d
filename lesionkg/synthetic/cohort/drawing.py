"""Drawing of the SYNTHETIC cohort's rows: one vectorised chunk of patients at a time, from its
own random stream (patients, studies, lesion tracks, series, places inside the phantom's organs,
RECIST axes), as column arrays in output order."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from lesionkg.synthetic import phantom
from lesionkg.synthetic.cohort.tables import (
    BOX_PAD_PX,
    BURDEN_SHAPE,
    COMMON_FOV,
    COMMON_FOV_P,
    EDGE_PX,
    FOV_RANGE,
    LOC_CUM,
    LOC_MEAN,
    LOC_SD,
    LOG_SD_LONG,
    LUNG_WIN_CUM,
    MAX_SLICES,
    MAX_STUDIES,
    P_COMMON_FOV,
    P_DOUBLE_READ,
    P_MAIN_TYPE,
    P_MALE,
    P_NOISY,
    P_REMEASURE,
    P_SPLIT_CLASS,
    P_SURVIVE,
    SOFT_WIN_CUM,
    SOFT_WINDOWS,
    SPLIT_CUM,
    STUDIES_PMF,
    SUBVOLUME_HALF_MM,
    TYPE_MEDIAN_MM,
    TYPE_P,
    TYPE_P_LUNG_WINDOW,
    Z_P_LUNG,
    Z_P_SOFT,
    Z_P_THICK,
    Z_P_THIN,
    Z_SPACINGS,
)
from lesionkg.synthetic.phantom import BODY_MM_PER_Z, PX_FROM_LOC, Anatomy


def group_starts(sizes: np.ndarray) -> np.ndarray:
    """Index of the first element of each group for groups laid out contiguously."""
    return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)


def rank_in_group(group: np.ndarray) -> np.ndarray:
    """0-based position of each element inside its run of equal ``group`` values (sorted input)."""
    n = len(group)
    if n == 0:
        return np.zeros(0, np.int64)
    starts = np.flatnonzero(np.concatenate([[True], group[1:] != group[:-1]]))
    sizes = np.diff(np.concatenate([starts, [n]]))
    return np.arange(n) - np.repeat(starts, sizes)


def pick(rng: np.random.Generator, cum: np.ndarray, n: int) -> np.ndarray:
    """Indices drawn from a categorical distribution given by its cumulative weights."""
    return np.minimum(np.searchsorted(cum, rng.random(n), side="right"), len(cum) - 1)


class Chunk:
    """Column arrays of one chunk's rows, in output order."""

    __slots__ = (
        "age",
        "bbox",
        "diam",
        "key",
        "loc",
        "noisy",
        "patient",
        "recist",
        "scene",
        "series",
        "sex",
        "slice_hi",
        "slice_lo",
        "split",
        "study",
        "track_no",
        "type",
        "window",
        "xy_spacing",
        "z_spacing",
    )
    age: np.ndarray
    bbox: np.ndarray
    diam: np.ndarray
    key: np.ndarray
    loc: np.ndarray
    noisy: np.ndarray
    patient: np.ndarray
    recist: np.ndarray
    scene: SimpleNamespace
    series: np.ndarray
    sex: np.ndarray
    slice_hi: np.ndarray
    slice_lo: np.ndarray
    split: np.ndarray
    study: np.ndarray
    track_no: np.ndarray
    type: np.ndarray
    window: np.ndarray
    xy_spacing: np.ndarray
    z_spacing: np.ndarray

    def __init__(self, **cols: np.ndarray | SimpleNamespace) -> None:
        for name, value in cols.items():
            setattr(self, name, value)


def _expand_tracks(
    rng: np.random.Generator,
    birth: np.ndarray,
    last_study_of: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Studies of tracks born at global study rows ``birth``.

    Returns (track index, study row) of the measurements, then of the gaps. A track lives a
    geometric number of studies (cut at the patient's last study); after its birth it is
    bookmarked again in each study with p = P_REMEASURE. A gap is a study where the lesion is
    present but not bookmarked (it is still drawn in the images, as in real data).
    """
    life = rng.geometric(1 - P_SURVIVE, len(birth))
    span = np.minimum(life, last_study_of[birth] - birth + 1)
    m_track = np.repeat(np.arange(len(birth)), span)
    m_study = birth[m_track] + rank_in_group(m_track)
    keep = (m_study == birth[m_track]) | (rng.random(len(m_track)) < P_REMEASURE)
    return m_track[keep], m_study[keep], m_track[~keep], m_study[~keep]


# ---- lesion placement inside the phantom's organs ------------------------------------------------
_PLACE_ROUNDS = 12  # rounds of redraws before the nearest-candidate fallback
# a lesion is drawn on its key slice, within half a slice (<= 2.5 mm) of the track's z
_Z_MARGIN = 2.6 / (BODY_MM_PER_Z * 0.85)
_ORGAN_OK = np.zeros((9, len(phantom.LABEL_NAMES)), bool)
for _t, _labels in phantom.TYPE_ORGANS.items():
    _ORGAN_OK[_t, list(_labels)] = True


def _draw_locations(rng: np.random.Generator, types: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised locations from the per-type mixtures and per-lesion pixel offsets."""
    n = len(types)
    comp = (rng.random(n)[:, None] >= LOC_CUM[types - 1]).sum(axis=1)
    loc = LOC_MEAN[types - 1, comp] + rng.standard_normal((n, 3)) * LOC_SD[types - 1, comp]
    px_off = rng.normal(0.0, 1.0, (n, 2)) * (8.0, 15.0)  # real residuals of the px fit
    return loc, px_off


def _body_xy(loc: np.ndarray, px_off: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference-pixel position (relative to the body centre) of a location plus pixel offset."""
    x = PX_FROM_LOC[0][1] * (loc[:, 0] - 0.5) + px_off[:, 0]
    y = PX_FROM_LOC[1][1] * (loc[:, 1] - 0.5) + px_off[:, 1]
    return x, y


def _in_organ(
    anatomy: Anatomy,
    pat: np.ndarray,
    types: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
) -> np.ndarray:
    """True where the point lies in its type's organ at z and half a slice above and below."""
    lab = phantom.labels_at(anatomy.take(pat), x, y, z)
    live = np.flatnonzero(_ORGAN_OK[types, lab])
    if len(live):  # the survivors half a slice above and below, in one call
        both = np.concatenate([live, live])
        dz = np.repeat([-_Z_MARGIN, _Z_MARGIN], len(live))
        lab = phantom.labels_at(anatomy.take(pat[both]), x[both], y[both], z[both] + dz)
        good = _ORGAN_OK[types[both], lab].reshape(2, -1).all(axis=0)
        live = live[good]
    ok = np.zeros(len(pat), bool)
    ok[live] = True
    return ok


def _place_in_organs(
    rng: np.random.Generator,
    anatomy: Anatomy,
    pat: np.ndarray,
    types: np.ndarray,
    loc: np.ndarray,
    px_off: np.ndarray,
) -> None:
    """Redraw (in place) every lesion location whose centre is not inside its organ.

    Rejection sampling from the type's location mixture, so accepted locations keep the
    mixture's shape restricted to the organ. Each round draws several candidates per pending
    lesion (more in later rounds) and keeps the first that fits. Lesions still outside after
    _PLACE_ROUNDS rounds (never seen in practice) move to the nearest in-organ point of a grid.
    """
    x, y = _body_xy(loc, px_off)
    ok = _in_organ(anatomy, pat, types, x, y, loc[:, 2])
    pending = np.flatnonzero(~ok)
    # candidates per pending lesion: about 1 / (acceptance rate of its type), from the last round
    tried = np.bincount(types, minlength=9).astype(float)
    hits = np.bincount(types[ok], minlength=9).astype(float)
    for _ in range(_PLACE_ROUNDS):
        if not len(pending):
            return
        rate = np.clip((hits + 0.5) / (tried + 1.0), 1 / 64, 1.0)
        k_of = np.ceil(1.0 / rate).astype(np.int64)
        k = k_of[types[pending]]
        cand = np.repeat(pending, k)
        c_loc, c_off = _draw_locations(rng, types[cand])
        x, y = _body_xy(c_loc, c_off)
        good = _in_organ(anatomy, pat[cand], types[cand], x, y, c_loc[:, 2])
        tried = np.bincount(types[cand], minlength=9).astype(float)
        hits = np.bincount(types[cand][good], minlength=9).astype(float)
        # the first good candidate of each pending lesion
        starts = group_starts(k)
        first_good = np.minimum.reduceat(np.where(good, np.arange(len(cand)), len(cand)), starts)
        found = first_good < len(cand)
        loc[pending[found]] = c_loc[first_good[found]]
        px_off[pending[found]] = c_off[first_good[found]]
        pending = pending[~found]
    # fallback: the nearest in-organ point of a 41 x 41 x 5 grid (8 px, 0.01 z) around each
    g = np.arange(-20, 21) * 8.0
    gx, gy, gz = (a.ravel() for a in np.meshgrid(g, g, np.arange(-2, 3) * 0.01, indexing="ij"))
    for i in pending.tolist():
        x, y = _body_xy(loc[i : i + 1], px_off[i : i + 1])
        n = len(gx)
        cand_ok = _in_organ(
            anatomy, np.full(n, pat[i]), np.full(n, types[i]), x + gx, y + gy, loc[i, 2] + gz
        )
        if cand_ok.any():
            best = np.flatnonzero(cand_ok)[np.argmin((gx**2 + gy**2 + (gz * 800) ** 2)[cand_ok])]
            loc[i, 2] += gz[best]
            px_off[i] += (gx[best], gy[best])


def generate_chunk(
    rng: np.random.Generator, first_patient: int, n_pat: int, burden_mean: float
) -> Chunk:
    """All rows of ``n_pat`` consecutive patients, vectorised over the chunk."""
    # ---- patients and studies ----
    n_studies = rng.choice(np.arange(1, MAX_STUDIES + 1), size=n_pat, p=STUDIES_PMF)
    burden = rng.gamma(BURDEN_SHAPE, burden_mean / BURDEN_SHAPE, n_pat)
    male = rng.random(n_pat) < P_MALE
    u_split = rng.random(n_pat)
    split = np.where(u_split < SPLIT_CUM[0], 1, np.where(u_split < SPLIT_CUM[1], 2, 3))
    age0 = 5.0 + 90.0 * rng.beta(2.97, 2.72, n_pat)
    body_scale = np.clip(rng.normal(1.0, 0.06, n_pat), 0.85, 1.15)  # patient height
    # independent streams: anatomy, lesion placement retries, lesion appearance
    anat_rng, place_rng, look_rng = rng.spawn(3)
    anatomy = Anatomy.draw(anat_rng, male)

    n_st = int(n_studies.sum())
    st_pat = np.repeat(np.arange(n_pat), n_studies)
    st_first = group_starts(n_studies)
    st_no = np.arange(n_st) - np.repeat(st_first, n_studies) + 1  # 1-based study index
    st_last = np.repeat(st_first + n_studies - 1, n_studies)  # global row of patient's last study
    gap = rng.exponential(0.3, n_st)
    gap[st_no == 1] = 0.0
    cum_gap = np.cumsum(gap)
    age = np.minimum(np.floor(age0[st_pat] + cum_gap - np.repeat(cum_gap[st_first], n_studies)), 99)
    fov = np.where(
        rng.random(n_st) < P_COMMON_FOV,
        COMMON_FOV[pick(rng, np.cumsum(COMMON_FOV_P), n_st)],
        rng.integers(FOV_RANGE[0], FOV_RANGE[1] + 1, n_st),
    )
    st_spacing = fov / 512.0
    st_shift = rng.normal(0.0, 4.0, (n_st, 2))  # patient positioning on the table, px

    # ---- lesion tracks: births, lifetimes, measurements ----
    rate = burden[st_pat] * np.where(st_no == 1, 1.0, 1 - P_SURVIVE)
    birth = np.repeat(np.arange(n_st), rng.poisson(rate))
    m_track, m_study, gap_track, gap_study = _expand_tracks(rng, birth, st_last)
    empty = np.flatnonzero(np.bincount(m_study, minlength=n_st) == 0)
    if len(empty):  # every study has at least one bookmark: add a new lesion there
        f_track, f_study, fg_track, fg_study = _expand_tracks(rng, empty, st_last)
        m_track = np.concatenate([m_track, f_track + len(birth)])
        m_study = np.concatenate([m_study, f_study])
        gap_track = np.concatenate([gap_track, fg_track + len(birth)])
        gap_study = np.concatenate([gap_study, fg_study])
        birth = np.concatenate([birth, empty])
    n_tr = len(birth)

    # number tracks per patient in birth order (ties broken at random) -> track_id
    order = np.lexsort((rng.random(n_tr), birth))
    rank = np.empty(n_tr, np.int64)
    rank[order] = np.arange(n_tr)
    tr_pat = st_pat[birth]
    pat_tracks = np.bincount(tr_pat, minlength=n_pat)
    tr_no = rank - group_starts(pat_tracks)[tr_pat] + 1

    # ---- per-track properties ----
    # A patient's lesions share a disease (lung cancer -> lung nodules, lymphoma -> nodes): each
    # track takes the patient's main type with p = P_MAIN_TYPE, else an independent draw. The
    # marginal type mix is unchanged; studies mix fewer types and windows, as in the real data.
    main_type = pick(rng, np.cumsum(TYPE_P), n_pat) + 1
    tr_type = np.where(
        rng.random(n_tr) < P_MAIN_TYPE, main_type[tr_pat], pick(rng, np.cumsum(TYPE_P), n_tr) + 1
    )
    tr_loc, tr_px_off = _draw_locations(rng, tr_type)
    tr_log_long = np.log(TYPE_MEDIAN_MM[tr_type - 1]) + rng.normal(0.0, LOG_SD_LONG, n_tr)
    tr_trend = rng.normal(0.0, 0.12, n_tr)  # log growth per study: grows, shrinks, stable
    tr_ratio = rng.beta(4.62, 1.71, n_tr)
    tr_theta = rng.uniform(-np.pi, np.pi, n_tr)
    tr_cross = np.clip(rng.normal(0.5, 0.08, (n_tr, 2)), 0.22, 0.78)  # where the axes cross
    # every lesion inside its organ in the phantom anatomy (redraws from its own stream)
    _place_in_organs(place_rng, anatomy, tr_pat, tr_type, tr_loc, tr_px_off)

    # ---- double reads: one measurement of ~5% of tracks is read again on another series ----
    m_order = np.lexsort((m_study, m_track))
    m_track, m_study = m_track[m_order], m_study[m_order]
    n_meas = np.bincount(m_track, minlength=n_tr)
    dbl_tracks = np.flatnonzero(rng.random(n_tr) < P_DOUBLE_READ)
    dbl_src = group_starts(n_meas)[dbl_tracks] + (
        rng.random(len(dbl_tracks)) * n_meas[dbl_tracks]
    ).astype(np.int64)
    is_dup = np.concatenate([np.zeros(len(m_track), bool), np.ones(len(dbl_src), bool)])
    src = np.concatenate([np.arange(len(m_track)), dbl_src])  # measurement each row copies
    r_track = m_track[src]
    r_study = m_study[src]
    n_rows = len(src)

    # ---- window class and series ----
    m_lung = rng.random(len(m_track)) < TYPE_P_LUNG_WINDOW[tr_type[m_track] - 1]
    r_cls = m_lung[src].astype(np.int64)
    sc = r_study * 2 + r_cls  # (study, window class)
    split_sc = rng.random(n_st * 2) < P_SPLIT_CLASS
    split_sc[sc[is_dup]] = True  # a second read needs a second reconstruction of that window
    m_sub = rng.random(len(m_track)) < 0.5
    r_sub = np.where(split_sc[sc], m_sub[src] ^ is_dup, False).astype(np.int64)
    group = sc * 2 + r_sub
    groups, r_group = np.unique(group, return_inverse=True)
    g_study = groups // 4
    g_cls = (groups // 2) % 2
    g_split = split_sc[groups // 2]
    g_sub = groups % 2
    # Series_ID: order of the series inside the study is random
    g_order = np.lexsort((rng.random(len(groups)), g_study))
    g_series = np.empty(len(groups), np.int64)
    g_series[g_order] = rank_in_group(g_study[g_order]) + 1
    g_window = np.where(
        g_cls == 1,
        len(SOFT_WINDOWS) + pick(rng, LUNG_WIN_CUM, len(groups)),
        pick(rng, SOFT_WIN_CUM, len(groups)),
    )
    z_p = np.where(
        g_split[:, None],
        np.where(g_sub[:, None] == 0, Z_P_THICK, Z_P_THIN),
        np.where(g_cls[:, None] == 1, Z_P_LUNG, Z_P_SOFT),
    )
    z_idx = (rng.random(len(groups))[:, None] >= np.cumsum(z_p, axis=1)).sum(axis=1)
    g_z = Z_SPACINGS[np.minimum(z_idx, len(Z_SPACINGS) - 1)]

    # ---- per-row geometry ----
    r_no = st_no[r_study]
    steps = r_no - st_no[birth[r_track]]
    jitter = np.where(is_dup, 0.04, 0.08)  # a second read the same day differs less
    long_mm = np.exp(
        tr_log_long[r_track] + tr_trend[r_track] * steps + rng.normal(0, 1, n_rows) * jitter
    )
    spacing = st_spacing[r_study]
    long_mm = np.clip(long_mm, 2.0, np.minimum(250.0, 470.0 * spacing))
    ratio = np.clip(tr_ratio[r_track] + rng.normal(0.0, 0.05, n_rows), 0.12, 1.0)
    long_px = long_mm / spacing
    short_px = long_px * ratio
    loc = np.clip(tr_loc[r_track] + rng.normal(0.0, 0.008, (n_rows, 3)), 0.01, 0.99)

    # the same ellipsoid in every study: each read finds about the same axes
    theta = tr_theta[r_track] + rng.normal(0.0, 0.08, n_rows)
    perp = theta + np.where(rng.random(n_rows) < 0.5, 0.5, -0.5) * np.pi
    perp += np.clip(rng.normal(0.0, np.radians(1.0), n_rows), -np.radians(3), np.radians(3))
    ux, uy = np.cos(theta), np.sin(theta)
    vx, vy = np.cos(perp), np.sin(perp)
    t = np.clip(tr_cross[r_track, 0] + rng.normal(0.0, 0.03, n_rows), 0.2, 0.8)
    s = np.clip(tr_cross[r_track, 1] + rng.normal(0.0, 0.03, n_rows), 0.2, 0.8)
    # pixel position: the track's anatomical place (the written location is a noisy estimate)
    cx = PX_FROM_LOC[0][0] + PX_FROM_LOC[0][1] * tr_loc[r_track, 0] + tr_px_off[r_track, 0]
    cy = PX_FROM_LOC[1][0] + PX_FROM_LOC[1][1] * tr_loc[r_track, 1] + tr_px_off[r_track, 1]
    cx += st_shift[r_study, 0]
    cy += st_shift[r_study, 1]
    xs = np.stack(
        [cx - t * long_px * ux, cx + (1 - t) * long_px * ux,
         cx - s * short_px * vx, cx + (1 - s) * short_px * vx], axis=1
    )  # fmt: skip
    ys = np.stack(
        [cy - t * long_px * uy, cy + (1 - t) * long_px * uy,
         cy - s * short_px * vy, cy + (1 - s) * short_px * vy], axis=1
    )  # fmt: skip
    hi_edge = 511.0 - EDGE_PX
    xs += (np.maximum(0, EDGE_PX - xs.min(1)) - np.maximum(0, xs.max(1) - hi_edge))[:, None]
    ys += (np.maximum(0, EDGE_PX - ys.min(1)) - np.maximum(0, ys.max(1) - hi_edge))[:, None]

    # ---- key slices and slice ranges per series ----
    r_z = g_z[r_group]
    z_mm = tr_loc[r_track, 2] * BODY_MM_PER_Z * body_scale[st_pat[r_study]]
    n_groups = len(groups)
    # rows sorted by series group so that per-series reductions are contiguous
    by_group = np.argsort(r_group, kind="stable")
    g_sizes = np.bincount(r_group, minlength=n_groups)
    g_start = group_starts(g_sizes)
    g_zmin = np.minimum.reduceat(z_mm[by_group], g_start)
    g_zmax = np.maximum.reduceat(z_mm[by_group], g_start)
    g_head = rng.uniform(20.0, 250.0, n_groups)  # scan starts this far above the top lesion
    g_tail = rng.uniform(20.0, 250.0, n_groups)
    too_long = (g_zmax - g_zmin + g_head + g_tail) / g_z > MAX_SLICES
    g_z = np.where(too_long, 5.0, g_z)  # such a long scan is a thick reconstruction
    r_z = g_z[r_group]
    g_top = g_zmin - g_head
    g_nslices = np.floor((g_zmax + g_tail - g_top) / g_z).astype(np.int64) + 1
    key = np.floor((z_mm - g_top[r_group]) / r_z).astype(np.int64) + 1
    half = np.rint(SUBVOLUME_HALF_MM / r_z).astype(np.int64)
    lo = np.maximum(1, key - half)
    hi = np.minimum(g_nslices[r_group], key + half)
    lo, hi = _merge_ranges(r_group, lo, hi)

    # ---- output order: patient, study, series, track ----
    out = np.lexsort((is_dup, tr_no[r_track], g_series[r_group], r_study))
    rs, rg, rt = r_study[out], r_group[out], r_track[out]
    rp = st_pat[rs]
    xs, ys = xs[out], ys[out]
    recist = np.empty((n_rows, 8))
    recist[:, 0::2] = xs
    recist[:, 1::2] = ys
    bbox = np.stack(
        [xs.min(1) - BOX_PAD_PX, ys.min(1) - BOX_PAD_PX, xs.max(1) + BOX_PAD_PX,
         ys.max(1) + BOX_PAD_PX], axis=1
    )  # fmt: skip
    diam = np.stack(
        [np.hypot(xs[:, 1] - xs[:, 0], ys[:, 1] - ys[:, 0]),
         np.hypot(xs[:, 3] - xs[:, 2], ys[:, 3] - ys[:, 2])], axis=1
    )  # fmt: skip
    chunk = Chunk(
        patient=rp + first_patient,
        study=st_no[rs],
        series=g_series[rg],
        key=key[out],
        recist=recist,
        bbox=bbox,
        diam=diam,
        loc=loc[out],
        type=np.where(split[rp] == 1, -1, tr_type[rt]),
        noisy=(rng.random(n_rows) < P_NOISY).astype(np.int64),
        slice_lo=lo[out],
        slice_hi=hi[out],
        xy_spacing=spacing[out],
        z_spacing=r_z[out],
        window=g_window[rg],
        sex=male[rp],
        age=age[rs].astype(np.int64),
        split=split[rp],
        track_no=tr_no[rt],
        scene=SimpleNamespace(  # what the image renderer needs (references, no copies)
            anatomy=anatomy,
            first_patient=first_patient,
            body_scale=body_scale,
            look_rng=look_rng,
            st_pat=st_pat,
            st_no=st_no,
            st_gap_years=gap,  # study intervals behind the ages: dates of synthetic bookmarks
            st_shift=st_shift,
            st_spacing=st_spacing,
            g_top=g_top,
            g_z=g_z,
            r_study=rs,
            r_group=rg,
            r_track=rt,
            z_mm=z_mm[out],
            tr_pat=tr_pat,
            tr_type=tr_type,
            tr_loc=tr_loc,
            tr_px_off=tr_px_off,
            tr_log_long=tr_log_long,
            tr_trend=tr_trend,
            tr_ratio=tr_ratio,
            tr_theta=tr_theta,
            tr_cross=tr_cross,
            tr_birth_no=st_no[birth],
            gap_track=gap_track,
            gap_study=gap_study,
        ),
    )
    _separate_duplicates(chunk)
    return chunk


def _merge_ranges(
    group: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Union of overlapping [lo, hi] slice ranges within each group (one series).

    DeepLesion released one sub-volume per run of overlapping key-slice neighbourhoods, so two key
    slices close to each other share the same Slice_range.
    """
    n = len(lo)
    if n == 0:
        return lo, hi
    order = np.lexsort((lo, group))
    g, lo_s, hi_s = group[order], lo[order], hi[order]
    # running max of hi inside each group: offset groups so a max never leaks across them
    big = int(hi_s.max()) + 2
    run = np.maximum.accumulate(hi_s + g * big) - g * big
    new_group = np.concatenate([[True], g[1:] != g[:-1]])
    new_block = new_group | np.concatenate([[False], lo_s[1:] > run[:-1] + 1])
    block = np.cumsum(new_block) - 1
    starts = np.flatnonzero(new_block)
    b_lo = lo_s[starts]
    b_hi = np.maximum.reduceat(hi_s, starts)
    out_lo = np.empty(n, np.int64)
    out_hi = np.empty(n, np.int64)
    out_lo[order] = b_lo[block]
    out_hi[order] = b_hi[block]
    return out_lo, out_hi


def _separate_duplicates(chunk: Chunk) -> None:
    """Guarantee that no two rows share File_name and coordinates (a real-data duplicate).

    Continuous random coordinates make a clash practically impossible; if one happens anyway the
    later row is moved by one pixel, which keeps all the RECIST / box / diameter invariants. Only
    the ~2% of rows whose key slice holds another lesion need to be compared.
    """
    file_key = ((chunk.patient * 100 + chunk.study) * 10 + chunk.series) * 10_000 + chunk.key
    order = np.argsort(file_key, kind="stable")
    shared = np.flatnonzero(file_key[order[1:]] == file_key[order[:-1]])
    rows = np.unique(np.concatenate([order[shared], order[shared + 1]]))
    seen: set[tuple[int, tuple[float, ...]]] = set()
    for i in rows.tolist():  # row order: the later row of a clash moves
        while (ident := (int(file_key[i]), tuple(np.round(chunk.recist[i], 4).tolist()))) in seen:
            step = -1.0 if chunk.recist[i, 0::2].max() > 400 else 1.0
            chunk.recist[i, 0::2] += step
            chunk.bbox[i, 0::2] += step
        seen.add(ident)


# ---- vectorised CSV formatting -------------------------------------------------------------------
# Python's per-value "%.6g" costs ~0.3-1 us, i.e. ~10 us per 30-number row: too slow for 1M rows.
# Instead a block of rows is drawn on a byte canvas with one canvas line per character position:
# every field has fixed places, unused places hold NUL, and the transposed canvas without its NULs
# is the CSV text. Only integer and correctly rounded IEEE operations are used, so the same numbers
# give the same bytes on every machine, equal to Python's "%.6g" / "%d" / "%03d" output.
