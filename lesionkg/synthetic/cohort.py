"""SYNTHETIC DeepLesion-style cohort generator: made-up patients, never real data.

Writes a cohort in the exact official ``DL_info.csv`` format (18 columns, list cells quoted as
``"238.314, 261.228, ..."``, numbers with 6 significant digits) so that the demo runs on machines
without the real annotations and the benchmark can load a million lesions. Every value is drawn
from seeded random distributions; nothing is copied from a real patient. Output is byte-identical
for given arguments with the same NumPy and zlib (random streams and libm-level exp/log/sin/cos
are only guaranteed stable within a NumPy build; the CSV formatting itself is exact integer
arithmetic). The rows never depend on whether images are written.

Files written into ``out_dir``:

- ``DL_info_synthetic.csv``: the lesion rows.
- ``DL_info_synthetic.json``: metadata (``"synthetic": true``, seed, counts, whether images are
  included, a note).
- ``tracks_synthetic.csv``: ground truth ``row_number, File_name, track_id``; every row belongs to
  exactly one physical-lesion track (one measurement per study, except that ~5% of tracks are
  measured on two series of one study, as radiologists do on thick and thin reconstructions).
- With ``images=True``: ``Images_png/{patient}_{study}_{series}/{slice:03d}.png``, every row's key
  slice and its two neighbours within the Slice_range, rendered by
  :mod:`lesionkg.synthetic.phantom` (16-bit PNG, pixel = HU + 32768, the DeepLesion convention);
  every lesion present in the study is drawn (the volume's own rows at their key slice, rows of
  the study's other series and unmeasured track gaps at the track's z). Beside them
  ``lesion_truth_synthetic.csv``: per row the true coarse type (also for the unlabelled train
  rows), appearance, organ under the centre, centre and study offset in pixels, anatomical place
  and z.
- With ``ssbr_volumes=N``: ``ssbr_volumes_synthetic/{volume}/{slice:03d}.png``, N unlabelled
  volumes of 40-80 contiguous slices 5 mm apart from a random chest-to-pelvis range, 128 x 128,
  for self-supervised body-part regression, and ``ssbr_volumes_synthetic.json`` (z range, slice
  and pixel spacing per volume).

Distributions (figures measured on the real ``DL_info_val.csv``: 4,889 rows, 703 patients, 1,599
studies; the generator only keeps these summary figures):

- Studies per patient: P(1) = 0.53 (real 0.53), then a truncated geometric tail up to 20 studies
  tuned so the mean is 2.36 (real val 2.27, full DeepLesion 10,594 / 4,427 = 2.39).
- Lesion rows per study: birth-death process of lesion *tracks* per patient. A patient's burden
  ``lambda ~ Gamma(shape 1.4)``; lesions present at the first study ~ Poisson(lambda), each track
  survives to the next study with p = 0.65 and is re-measured there with p = 0.85, new lesions
  appear ~ Poisson(lambda * 0.35) per later study, so the number of tracks alive is stationary. A
  study with no measured lesion gets one new lesion (every real study has at least one bookmark).
  The mean is calibrated to ``lesions_per_study_mean`` (default 3.03; real 3.06) and the shape
  gives the real, roughly geometric count distribution (P(1) ~ 0.35, tail beyond 10).
- Coarse type mix (real val): bone .028, abdomen .205, mediastinum .165, liver .120, lung .265,
  kidney .053, soft tissue .070, pelvis .094. A lesion takes its patient's main type with p = 0.6
  (else an independent draw), so studies mix few types (1/2/3+ types: 54/29/17%, real 55/24/21%).
  Written for val/test rows; train rows carry -1 like every real train row.
- Lesion place per type: 1-3 component normal mixtures fitted by eye to the real per-type
  histograms (lungs and kidneys left/right, liver at x 0.30, pelvis at z 0.79, ...), restricted
  by rejection sampling to the lesion's organ in the patient's phantom anatomy (lung in lung,
  liver in liver, bone in cortex or marrow, kidney in kidney, mediastinal nodes in mediastinal
  fat, abdominal and pelvic lesions in the abdominal cavity, soft tissue in subcutaneous fat or
  muscle) at the track's z and half a slice above and below, so every lesion centre is inside
  its organ on its key slice. Mixture weights for bone (chest 0.68 / pelvis 0.32) and soft
  tissue (chest wall 0.50 / abdominal wall 0.15 / inguinal 0.35) compensate for the thin target
  organs. Resulting median x, y, z per type (real val in brackets): bone 0.50 0.68 0.51 (0.50
  0.63 0.54), abdomen 0.57 0.48 0.66 (0.53 0.50 0.64), mediastinum 0.50 0.48 0.43 (0.48 0.48
  0.45), liver 0.30 0.45 0.60 (0.27 0.45 0.60), lung right / left x 0.28 / 0.70, y 0.56, z 0.47
  (0.30 / 0.69, 0.58, 0.48), kidney 0.28 / 0.70, 0.61, 0.67 (0.29 / 0.68, 0.61, 0.66), soft
  tissue 0.45 0.35 0.55 (0.53 0.39 0.61), pelvis 0.49 0.47 0.79 (0.50 0.50 0.80).
  ``Normalized_lesion_location`` is the track's place plus per-read noise (sd 0.008), like an
  SSBR estimate.
- Long axis: lognormal per type with the real per-type medians (lung 12 mm ... pelvis 23 mm,
  overall median ~17.6 mm) and log-sd 0.66 (real pooled log-sd 0.72 includes the type spread),
  clipped to [2, 250] mm; short / long ~ Beta(4.6, 1.7) (real mean 0.73, sd 0.16). Across studies
  a track grows or shrinks by a per-track log trend N(0, 0.12) per study plus measurement noise.
- RECIST: long and short axes perpendicular within 3 degrees (real: 95% within 8 degrees), crossing
  at 20-80% of each axis (real 5-95%: 34-67%); bbox = endpoints' extent padded by exactly 5 px
  (as in every real row); ``Lesion_diameters_Pixel_`` = the axis lengths in pixels. A track is one
  physical lesion: its axis direction (sd 0.08 rad per read) and crossing fractions (sd 0.03 per
  read) are kept across studies, only its size changes.
- Pixel position from the track's place: cx = 34 + 454 x, cy = 82 + 348 y (real least-squares
  fit) plus a per-lesion offset (part of its anatomical place) and the study's positioning shift
  (which moves the whole body in the images).
- Series: each measurement uses the lung window (lung type 83%, bone 60%, else ~0%) or the
  soft-tissue window; a study has one series per window class used, and a class is sometimes
  split into a thick and a thin reconstruction (always when a lesion is read twice), giving
  1/2/3/4 series per study 66/29/4/0.2% (real 68/27/5/0.3%). Windows, like in the real data, are
  constant per series: soft tissue mostly ``-175, 275`` (also ``-160, 240`` ...), lung mostly
  ``-1500, 500`` (also ``-1400, 200`` ...).
- Spacing: x = y = FOV / 512 with common real FOVs (418, 500, 440, 400 ... mm), within [0.6, 1.0]
  mm, constant per study; z per series in {0.625, 1, 1.25, 2.5, 5} mm (real: 1 and 5 dominate).
  Image_size ``512, 512``. Key slice from the track's z (1,100 mm per unit of normalised z, the
  real slope); Slice_range = key slice +- 30 mm clipped to the series, overlapping ranges of one
  series merged (the real sub-volume rule).
- Patient: sex M 53% (real), constant; first age 5 + 90 Beta(3.0, 2.7) (real mean 52, sd 17);
  age constant within a study and non-decreasing across studies (gaps ~ Exponential(0.3 years)
  give the real 73% / 25% of +0 / +1 year steps). Split 70/15/15 by patient. Possibly_noisy 0.1%.

Rows are generated in vectorised chunks of patients and streamed to disk; memory stays bounded
whatever the cohort size.

:func:`write_synthetic_bookmarks` writes the same cohort as a SYNTHETIC PACS export instead: JSON
Lines bookmarks (the :mod:`lesionkg.loaders.jsonl` format), one file per study, with study dates,
optional tracking UIDs of the true lesions, optional key-slice PNGs and ``SYNTHETIC.json``.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import multiprocessing
import os
import sys
import uuid
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from lesionkg.loaders.deeplesion import COLUMNS
from lesionkg.synthetic import phantom
from lesionkg.synthetic.phantom import Anatomy

__all__ = [
    "BOOKMARKS_METADATA_NAME",
    "CSV_NAME",
    "DL_INFO_COLUMNS",
    "IMAGES_DIR",
    "METADATA_NAME",
    "SSBR_DIR",
    "SSBR_METADATA_NAME",
    "TRACKS_NAME",
    "TRUTH_NAME",
    "SyntheticBookmarks",
    "SyntheticCohort",
    "write_synthetic_bookmarks",
    "write_synthetic_dl_info",
    "write_synthetic_pairs",
]

#: The 18 official DL_info.csv columns, in order (the parser owns the list).
DL_INFO_COLUMNS: tuple[str, ...] = COLUMNS
CSV_NAME = "DL_info_synthetic.csv"
METADATA_NAME = "DL_info_synthetic.json"
TRACKS_NAME = "tracks_synthetic.csv"
TRUTH_NAME = "lesion_truth_synthetic.csv"
IMAGES_DIR = "Images_png"  # the DeepLesion archive layout: Images_png/{volume}/{slice:03d}.png
SSBR_DIR = "ssbr_volumes_synthetic"
SSBR_METADATA_NAME = "ssbr_volumes_synthetic.json"
GENERATOR = "lesionkg.synthetic.cohort"
VERSION = 2

# Patients per vectorised chunk: a fixed constant because each chunk has its own random stream,
# so changing it would change the output. ~4k patients = ~30k rows = a few MB of arrays.
_CHUNK_PATIENTS = 4096

# ---- studies per patient -------------------------------------------------------------------------
_MAX_STUDIES = 20
_P_ONE_STUDY = 0.53
_STUDY_TAIL_RATIO = 0.656  # geometric ratio of the 2..20 tail; gives a mean of 2.36


def _studies_pmf() -> np.ndarray:
    tail = _STUDY_TAIL_RATIO ** np.arange(_MAX_STUDIES - 1)
    return np.concatenate([[_P_ONE_STUDY], (1 - _P_ONE_STUDY) * tail / tail.sum()])


_STUDIES_PMF = _studies_pmf()
_MEAN_STUDIES = float((_STUDIES_PMF * np.arange(1, _MAX_STUDIES + 1)).sum())

# ---- lesion tracks -------------------------------------------------------------------------------
_BURDEN_SHAPE = 1.4  # gamma shape of the per-patient lesion burden: overdispersed counts
_P_SURVIVE = 0.65  # a lesion present at one study is still there at the next
_P_REMEASURE = 0.85  # a surviving lesion is bookmarked again (otherwise a gap in its track)
_P_DOUBLE_READ = 0.05  # track measured on two series of one of its studies
_DEFAULT_LESIONS_PER_STUDY = 3.03  # 140k patients x 2.36 studies x 3.03 = ~1.0M rows

# ---- types and locations -------------------------------------------------------------------------
_TYPE_P = np.array([0.0284, 0.2052, 0.1653, 0.1195, 0.2647, 0.0534, 0.0700, 0.0937])
_TYPE_P = _TYPE_P / _TYPE_P.sum()
_P_MAIN_TYPE = 0.6
# median long axis per type, mm (real val, types 1..8)
_TYPE_MEDIAN_MM = np.array([14.0, 21.4, 17.7, 21.9, 12.0, 18.1, 20.2, 23.1])
_LOG_SD_LONG = 0.66
# P(lung window) per type: real share of lung-class windows (-1500,500 / -1400,200 / ...)
_TYPE_P_LUNG_WINDOW = np.array([0.60, 0.0, 0.01, 0.0, 0.83, 0.0, 0.01, 0.0])

# Location mixtures per type: (weight, (mean x, y, z), (sd x, y, z)); real per-type histograms.
_LocComp = tuple[float, tuple[float, float, float], tuple[float, float, float]]
_LOCATION_MIXTURES: dict[int, list[_LocComp]] = {
    1: [  # bone: spine/ribs around the midline, thoracic and pelvic levels
        (0.68, (0.51, 0.62, 0.46), (0.15, 0.14, 0.06)),
        (0.32, (0.52, 0.56, 0.74), (0.17, 0.14, 0.07)),
    ],
    2: [(1.0, (0.53, 0.50, 0.645), (0.127, 0.10, 0.04))],  # abdomen
    3: [(1.0, (0.49, 0.465, 0.444), (0.08, 0.10, 0.06))],  # mediastinum
    4: [(1.0, (0.30, 0.46, 0.603), (0.13, 0.126, 0.034))],  # liver: patient right = image left
    5: [  # lung: two lateral lungs, upper chest
        (0.5, (0.28, 0.56, 0.483), (0.08, 0.15, 0.062)),
        (0.5, (0.67, 0.56, 0.483), (0.08, 0.15, 0.062)),
    ],
    6: [  # kidneys left and right
        (0.5, (0.29, 0.609, 0.66), (0.05, 0.073, 0.028)),
        (0.5, (0.69, 0.609, 0.66), (0.05, 0.073, 0.028)),
    ],
    7: [  # soft tissue: axillary / chest wall, abdominal wall, inguinal
        (0.50, (0.30, 0.38, 0.41), (0.13, 0.16, 0.07)),
        (0.15, (0.50, 0.42, 0.62), (0.25, 0.16, 0.06)),
        (0.35, (0.72, 0.41, 0.85), (0.14, 0.16, 0.05)),
    ],
    8: [(1.0, (0.49, 0.495, 0.791), (0.115, 0.105, 0.034))],  # pelvis
}


def _mixture_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ncomp = max(len(v) for v in _LOCATION_MIXTURES.values())
    cum = np.ones((8, ncomp))  # cumulative weights; padding components are never picked
    mean = np.zeros((8, ncomp, 3))
    sd = np.zeros((8, ncomp, 3))
    for t, comps in _LOCATION_MIXTURES.items():
        w = np.array([c[0] for c in comps])
        cum[t - 1, : len(comps)] = np.cumsum(w / w.sum())
        cum[t - 1, len(comps) - 1] = 1.0  # rounding must never select a padding component
        for j, (_, m, s) in enumerate(comps):
            mean[t - 1, j] = m
            sd[t - 1, j] = s
    return cum, mean, sd


_LOC_CUM, _LOC_MEAN, _LOC_SD = _mixture_tables()
# Pixel position from normalised location (least squares on the real rows) and body scale.
_PX_FROM_LOC = phantom.PX_FROM_LOC  # ((34.16, 453.5), (82.44, 348.4))
_BODY_MM_PER_Z = phantom.BODY_MM_PER_Z  # 1100 mm per unit of normalised z

# ---- series: windows and spacing -----------------------------------------------------------------
_P_SPLIT_CLASS = 0.03  # a window class shown as thick + thin reconstructions
_SOFT_WINDOWS = (
    ("-175, 275", 0.952),
    ("-160, 240", 0.015),
    ("-182.5, 322.5", 0.006),
    ("-177.5, 307.5", 0.004),
    ("-180, 260", 0.004),
    ("-125, 225", 0.004),
    ("-180, 300", 0.003),
    ("-182.5, 312.5", 0.003),
    ("-185, 335", 0.002),
    ("-167.5, 237.5", 0.002),
    ("-220, 380", 0.002),
    ("-400, 1000", 0.002),
    ("-1000, 1700", 0.001),
)
_LUNG_WINDOWS = (
    ("-1500, 500", 0.905),
    ("-1400, 200", 0.045),
    ("-1350, 250", 0.020),
    ("-1350, 150", 0.008),
    ("-1250, 250", 0.008),
    ("-620, 1680", 0.007),
    ("-1525, 705", 0.004),
    ("-1537.5, 767.5", 0.003),
)
_WINDOW_STRINGS: tuple[str, ...] = tuple(w for w, _ in _SOFT_WINDOWS + _LUNG_WINDOWS)
_SOFT_WIN_CUM = np.cumsum([p for _, p in _SOFT_WINDOWS]) / sum(p for _, p in _SOFT_WINDOWS)
_LUNG_WIN_CUM = np.cumsum([p for _, p in _LUNG_WINDOWS]) / sum(p for _, p in _LUNG_WINDOWS)

_Z_SPACINGS = np.array([0.625, 1.0, 1.25, 2.5, 5.0])
# P(z spacing) per series kind: single soft-tissue series, single lung series, thick, thin
_Z_P_SOFT = np.array([0.02, 0.40, 0.02, 0.03, 0.53])
_Z_P_LUNG = np.array([0.03, 0.65, 0.03, 0.02, 0.27])
_Z_P_THICK = np.array([0.0, 0.0, 0.0, 0.06, 0.94])
_Z_P_THIN = np.array([0.06, 0.90, 0.04, 0.0, 0.0])
_MAX_SLICES = 999  # keeps Key_slice_index at 3 digits, like every real file name

# Field of view (mm) -> x/y spacing = FOV / 512: the most common real values, else uniform.
_COMMON_FOV = np.array([418, 500, 440, 400, 460, 354, 420, 480, 380, 375, 360, 340, 320])
_COMMON_FOV_P = np.array([491, 402, 374, 301, 287, 255, 216, 188, 135, 134, 132, 121, 37], float)
_COMMON_FOV_P /= _COMMON_FOV_P.sum()
_P_COMMON_FOV = 0.75
_FOV_RANGE = (310, 500)  # spacing within [0.6, 1.0]

_SUBVOLUME_HALF_MM = 30.0  # DeepLesion sub-volumes reach >= 30 mm each side of the key slice
_BOX_PAD_PX = 5.0
_EDGE_PX = 6.0  # endpoints stay inside [6, 505] so the padded box stays on the 512 image

_P_MALE = 0.53
_SPLIT_CUM = (0.70, 0.85)  # train / val / test by patient
_P_NOISY = 0.001


@dataclass(frozen=True)
class SyntheticCohort:
    """Where a synthetic cohort was written, and its size."""

    csv_path: Path
    metadata_path: Path
    tracks_path: Path
    patients: int
    studies: int
    lesions: int
    seed: int
    images: int = 0  # key-slice PNGs written (0: no images)
    truth_path: Path | None = None  # per-lesion ground truth of the images
    ssbr_volumes: int = 0
    ssbr_metadata_path: Path | None = None


def _expected_rows_per_study(mu: float) -> float:
    """Analytic mean rows per study of the track process for a mean burden ``mu``.

    First studies see Poisson(lambda) lesions, later ones Poisson(a * lambda) measured lesions with
    a = 1 - p_s + p_s * q; an empty study gets one forced lesion (probability E[exp(-c lambda)] =
    (1 + c mu / k)^-k for a gamma burden), which survives into later studies; each newly born track
    adds a second read with p = 0.05.
    """
    k, ps, q = _BURDEN_SHAPE, _P_SURVIVE, _P_REMEASURE
    a = 1 - ps + ps * q
    f1 = 1 / _MEAN_STUDIES  # share of studies that are a patient's first

    def p0(c: float) -> float:
        return (1 + c * mu / k) ** -k

    forced = f1 * p0(1.0) + (1 - f1) * p0(a)
    # a forced track is still there j studies later with p = ps^j and is then measured with p = q;
    # r_j = share of studies (study-weighted) followed by at least j more studies of the patient
    n = np.arange(1, _MAX_STUDIES + 1)
    r = [
        (_STUDIES_PMF * np.maximum(n - j, 0)).sum() / _MEAN_STUDIES for j in range(1, _MAX_STUDIES)
    ]
    persist = sum(ps**j * q * r_j for j, r_j in enumerate(r, start=1))
    births = f1 * mu + (1 - f1) * mu * (1 - ps) + forced
    measured = f1 * mu + (1 - f1) * a * mu + forced * (1 + persist)
    return measured + _P_DOUBLE_READ * births


def _burden_mean_for(lesions_per_study: float) -> float:
    """Invert :func:`_expected_rows_per_study` by bisection (monotone in ``mu``)."""
    lo, hi = 0.0, 100.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if _expected_rows_per_study(mid) < lesions_per_study:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _group_starts(sizes: np.ndarray) -> np.ndarray:
    """Index of the first element of each group for groups laid out contiguously."""
    return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)


def _rank_in_group(group: np.ndarray) -> np.ndarray:
    """0-based position of each element inside its run of equal ``group`` values (sorted input)."""
    n = len(group)
    if n == 0:
        return np.zeros(0, np.int64)
    starts = np.flatnonzero(np.concatenate([[True], group[1:] != group[:-1]]))
    sizes = np.diff(np.concatenate([starts, [n]]))
    return np.arange(n) - np.repeat(starts, sizes)


def _pick(rng: np.random.Generator, cum: np.ndarray, n: int) -> np.ndarray:
    """Indices drawn from a categorical distribution given by its cumulative weights."""
    return np.minimum(np.searchsorted(cum, rng.random(n), side="right"), len(cum) - 1)


class _Chunk:
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

    def __init__(self, **cols: np.ndarray) -> None:
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
    bookmarked again in each study with p = _P_REMEASURE. A gap is a study where the lesion is
    present but not bookmarked (it is still drawn in the images, as in real data).
    """
    life = rng.geometric(1 - _P_SURVIVE, len(birth))
    span = np.minimum(life, last_study_of[birth] - birth + 1)
    m_track = np.repeat(np.arange(len(birth)), span)
    m_study = birth[m_track] + _rank_in_group(m_track)
    keep = (m_study == birth[m_track]) | (rng.random(len(m_track)) < _P_REMEASURE)
    return m_track[keep], m_study[keep], m_track[~keep], m_study[~keep]


# ---- lesion placement inside the phantom's organs ------------------------------------------------
_PLACE_ROUNDS = 12  # rounds of redraws before the nearest-candidate fallback
# a lesion is drawn on its key slice, within half a slice (<= 2.5 mm) of the track's z
_Z_MARGIN = 2.6 / (_BODY_MM_PER_Z * 0.85)
_ORGAN_OK = np.zeros((9, len(phantom.LABEL_NAMES)), bool)
for _t, _labels in phantom.TYPE_ORGANS.items():
    _ORGAN_OK[_t, list(_labels)] = True


def _draw_locations(rng: np.random.Generator, types: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised locations from the per-type mixtures and per-lesion pixel offsets."""
    n = len(types)
    comp = (rng.random(n)[:, None] >= _LOC_CUM[types - 1]).sum(axis=1)
    loc = _LOC_MEAN[types - 1, comp] + rng.standard_normal((n, 3)) * _LOC_SD[types - 1, comp]
    px_off = rng.normal(0.0, 1.0, (n, 2)) * (8.0, 15.0)  # real residuals of the px fit
    return loc, px_off


def _body_xy(loc: np.ndarray, px_off: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference-pixel position (relative to the body centre) of a location plus pixel offset."""
    x = _PX_FROM_LOC[0][1] * (loc[:, 0] - 0.5) + px_off[:, 0]
    y = _PX_FROM_LOC[1][1] * (loc[:, 1] - 0.5) + px_off[:, 1]
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
        starts = _group_starts(k)
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


def _generate_chunk(
    rng: np.random.Generator, first_patient: int, n_pat: int, burden_mean: float
) -> _Chunk:
    """All rows of ``n_pat`` consecutive patients, vectorised over the chunk."""
    # ---- patients and studies ----
    n_studies = rng.choice(np.arange(1, _MAX_STUDIES + 1), size=n_pat, p=_STUDIES_PMF)
    burden = rng.gamma(_BURDEN_SHAPE, burden_mean / _BURDEN_SHAPE, n_pat)
    male = rng.random(n_pat) < _P_MALE
    u_split = rng.random(n_pat)
    split = np.where(u_split < _SPLIT_CUM[0], 1, np.where(u_split < _SPLIT_CUM[1], 2, 3))
    age0 = 5.0 + 90.0 * rng.beta(2.97, 2.72, n_pat)
    body_scale = np.clip(rng.normal(1.0, 0.06, n_pat), 0.85, 1.15)  # patient height
    # independent streams: anatomy, lesion placement retries, lesion appearance
    anat_rng, place_rng, look_rng = rng.spawn(3)
    anatomy = Anatomy.draw(anat_rng, male)

    n_st = int(n_studies.sum())
    st_pat = np.repeat(np.arange(n_pat), n_studies)
    st_first = _group_starts(n_studies)
    st_no = np.arange(n_st) - np.repeat(st_first, n_studies) + 1  # 1-based study index
    st_last = np.repeat(st_first + n_studies - 1, n_studies)  # global row of patient's last study
    gap = rng.exponential(0.3, n_st)
    gap[st_no == 1] = 0.0
    cum_gap = np.cumsum(gap)
    age = np.minimum(np.floor(age0[st_pat] + cum_gap - np.repeat(cum_gap[st_first], n_studies)), 99)
    fov = np.where(
        rng.random(n_st) < _P_COMMON_FOV,
        _COMMON_FOV[_pick(rng, np.cumsum(_COMMON_FOV_P), n_st)],
        rng.integers(_FOV_RANGE[0], _FOV_RANGE[1] + 1, n_st),
    )
    st_spacing = fov / 512.0
    st_shift = rng.normal(0.0, 4.0, (n_st, 2))  # patient positioning on the table, px

    # ---- lesion tracks: births, lifetimes, measurements ----
    rate = burden[st_pat] * np.where(st_no == 1, 1.0, 1 - _P_SURVIVE)
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
    tr_no = rank - _group_starts(pat_tracks)[tr_pat] + 1

    # ---- per-track properties ----
    # A patient's lesions share a disease (lung cancer -> lung nodules, lymphoma -> nodes): each
    # track takes the patient's main type with p = _P_MAIN_TYPE, else an independent draw. The
    # marginal type mix is unchanged; studies mix fewer types and windows, as in the real data.
    main_type = _pick(rng, np.cumsum(_TYPE_P), n_pat) + 1
    tr_type = np.where(
        rng.random(n_tr) < _P_MAIN_TYPE, main_type[tr_pat], _pick(rng, np.cumsum(_TYPE_P), n_tr) + 1
    )
    tr_loc, tr_px_off = _draw_locations(rng, tr_type)
    tr_log_long = np.log(_TYPE_MEDIAN_MM[tr_type - 1]) + rng.normal(0.0, _LOG_SD_LONG, n_tr)
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
    dbl_tracks = np.flatnonzero(rng.random(n_tr) < _P_DOUBLE_READ)
    dbl_src = _group_starts(n_meas)[dbl_tracks] + (
        rng.random(len(dbl_tracks)) * n_meas[dbl_tracks]
    ).astype(np.int64)
    is_dup = np.concatenate([np.zeros(len(m_track), bool), np.ones(len(dbl_src), bool)])
    src = np.concatenate([np.arange(len(m_track)), dbl_src])  # measurement each row copies
    r_track = m_track[src]
    r_study = m_study[src]
    n_rows = len(src)

    # ---- window class and series ----
    m_lung = rng.random(len(m_track)) < _TYPE_P_LUNG_WINDOW[tr_type[m_track] - 1]
    r_cls = m_lung[src].astype(np.int64)
    sc = r_study * 2 + r_cls  # (study, window class)
    split_sc = rng.random(n_st * 2) < _P_SPLIT_CLASS
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
    g_series[g_order] = _rank_in_group(g_study[g_order]) + 1
    g_window = np.where(
        g_cls == 1,
        len(_SOFT_WINDOWS) + _pick(rng, _LUNG_WIN_CUM, len(groups)),
        _pick(rng, _SOFT_WIN_CUM, len(groups)),
    )
    z_p = np.where(
        g_split[:, None],
        np.where(g_sub[:, None] == 0, _Z_P_THICK, _Z_P_THIN),
        np.where(g_cls[:, None] == 1, _Z_P_LUNG, _Z_P_SOFT),
    )
    z_idx = (rng.random(len(groups))[:, None] >= np.cumsum(z_p, axis=1)).sum(axis=1)
    g_z = _Z_SPACINGS[np.minimum(z_idx, len(_Z_SPACINGS) - 1)]

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
    cx = _PX_FROM_LOC[0][0] + _PX_FROM_LOC[0][1] * tr_loc[r_track, 0] + tr_px_off[r_track, 0]
    cy = _PX_FROM_LOC[1][0] + _PX_FROM_LOC[1][1] * tr_loc[r_track, 1] + tr_px_off[r_track, 1]
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
    hi_edge = 511.0 - _EDGE_PX
    xs += (np.maximum(0, _EDGE_PX - xs.min(1)) - np.maximum(0, xs.max(1) - hi_edge))[:, None]
    ys += (np.maximum(0, _EDGE_PX - ys.min(1)) - np.maximum(0, ys.max(1) - hi_edge))[:, None]

    # ---- key slices and slice ranges per series ----
    r_z = g_z[r_group]
    z_mm = tr_loc[r_track, 2] * _BODY_MM_PER_Z * body_scale[st_pat[r_study]]
    n_groups = len(groups)
    # rows sorted by series group so that per-series reductions are contiguous
    by_group = np.argsort(r_group, kind="stable")
    g_sizes = np.bincount(r_group, minlength=n_groups)
    g_start = _group_starts(g_sizes)
    g_zmin = np.minimum.reduceat(z_mm[by_group], g_start)
    g_zmax = np.maximum.reduceat(z_mm[by_group], g_start)
    g_head = rng.uniform(20.0, 250.0, n_groups)  # scan starts this far above the top lesion
    g_tail = rng.uniform(20.0, 250.0, n_groups)
    too_long = (g_zmax - g_zmin + g_head + g_tail) / g_z > _MAX_SLICES
    g_z = np.where(too_long, 5.0, g_z)  # such a long scan is a thick reconstruction
    r_z = g_z[r_group]
    g_top = g_zmin - g_head
    g_nslices = np.floor((g_zmax + g_tail - g_top) / g_z).astype(np.int64) + 1
    key = np.floor((z_mm - g_top[r_group]) / r_z).astype(np.int64) + 1
    half = np.rint(_SUBVOLUME_HALF_MM / r_z).astype(np.int64)
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
        [xs.min(1) - _BOX_PAD_PX, ys.min(1) - _BOX_PAD_PX, xs.max(1) + _BOX_PAD_PX,
         ys.max(1) + _BOX_PAD_PX], axis=1
    )  # fmt: skip
    diam = np.stack(
        [np.hypot(xs[:, 1] - xs[:, 0], ys[:, 1] - ys[:, 0]),
         np.hypot(xs[:, 3] - xs[:, 2], ys[:, 3] - ys[:, 2])], axis=1
    )  # fmt: skip
    chunk = _Chunk(
        patient=rp + first_patient,
        study=st_no[rs],
        series=g_series[rg],
        key=key[out],
        recist=recist,
        bbox=bbox,
        diam=diam,
        loc=loc[out],
        type=np.where(split[rp] == 1, -1, tr_type[rt]),
        noisy=(rng.random(n_rows) < _P_NOISY).astype(np.int64),
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


def _separate_duplicates(chunk: _Chunk) -> None:
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
_NUL = np.uint8(0)
_ZERO = np.uint8(ord("0"))
_DOT = np.uint8(ord("."))
_POW10 = np.array([1e-4, 1e-3, 1e-2, 1e-1, 1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6])
_SCALE = np.array([10.0**k for k in range(10)])  # exact powers of ten
_INT_LIMITS = 10 ** np.arange(1, 19, dtype=np.int64)  # 10, 100, ...: digit counts by search
_FORMAT_ROWS = 8192  # rows drawn at once: keeps the canvas (~4 MB) in cache


class _Canvas:
    """Character columns of a block of CSV lines: one byte per row (an array) or a constant."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.cols: list[np.ndarray | int] = []

    def text(self, literal: str) -> None:
        self.cols.extend(literal.encode("ascii"))

    def table(self, strings: tuple[str, ...], index: np.ndarray) -> None:
        """Strings picked from a small table by ``index``."""
        width = max(len(x) for x in strings)
        tab = np.zeros((width, len(strings)), np.uint8)
        for i, x in enumerate(strings):
            tab[: len(x), i] = np.frombuffer(x.encode("ascii"), np.uint8)
        self.cols.extend(tab[:, index])

    def ints(self, x: np.ndarray, min_digits: int = 1) -> None:
        """Non-negative integers like ``%d``, or ``%0{min_digits}d`` when ``min_digits`` > 1."""
        x = np.asarray(x, np.int64)
        ndig = np.maximum(np.searchsorted(_INT_LIMITS, x, side="right") + 1, min_digits)
        width = int(ndig.max()) if self.n else min_digits
        digits = []
        rest = x
        for _ in range(width):
            digits.append((rest % 10).astype(np.uint8) + _ZERO)
            rest = rest // 10
        for pos in range(width):  # left to right; shown when the number has >= width-pos digits
            self.cols.append(np.where(ndig >= width - pos, digits[width - 1 - pos], _NUL))

    def g6_cells(self, cells: list[np.ndarray]) -> None:
        """List cells ``"a, b, c"`` (``%.6g`` numbers), one (rows, k) array per cell.

        All numbers of all cells are formatted in one vectorised pass: 6 significant digits,
        trailing zeros dropped, "0.000..." for numbers below 1; valid for [1e-4, 1e6).
        """
        v = np.ascontiguousarray(np.concatenate(cells, axis=1).T, np.float64)  # (numbers, rows)
        if v.size and not (np.all(v >= 1e-4) and np.all(v < 999_999.5)):
            raise ValueError("value outside the range the fixed-point formatter handles")
        exp = np.searchsorted(_POW10, v, side="right") - 5  # floor(log10 v), exact
        scaled = np.rint(v * _SCALE[5 - exp])
        carry = scaled >= 1e6  # 9.999996 -> 10.0000: one more integer digit
        exp = np.where(carry, exp + 1, exp)
        sig = np.where(carry, np.rint(v * _SCALE[5 - exp]), scaled).astype(np.int64)
        digits: list[np.ndarray] = []  # the 6 significant digits, most significant first
        for _ in range(6):
            digits.append((sig % 10).astype(np.uint8))
            sig //= 10
        digits.reverse()
        trailing = np.zeros(v.shape, np.int64)
        run = np.ones(v.shape, bool)
        for d in reversed(digits):
            run &= d == 0
            trailing += run
        n_frac = np.where(exp >= 0, 5 - exp, 6)  # significant digits after the point
        shown = 6 - np.minimum(trailing, n_frac)  # digits written
        has_frac = trailing < n_frac
        chars = [  # character slots of one number; NUL where unused
            np.where(exp < 0, _ZERO, _NUL),
            np.where(exp < 0, _DOT, _NUL),
            *(np.where(-exp - 1 > k, _ZERO, _NUL) for k in range(3)),
        ]
        for i, d in enumerate(digits):
            chars.append(np.where(shown > i, d + _ZERO, _NUL))
            if i < 5:
                chars.append(np.where((exp == i) & has_frac, _DOT, _NUL))
        number = 0
        for c, cell in enumerate(cells):
            if c:
                self.text('","')
            for j in range(cell.shape[1]):
                if j:
                    self.text(", ")
                # slots no row of the block uses (e.g. "0." before numbers >= 1) are left out
                self.cols.extend(ch[number] for ch in chars if ch[number].any())
                number += 1

    def render(self) -> bytes:
        lines = np.empty((self.n, len(self.cols)), np.uint8)
        for i, col in enumerate(self.cols):
            lines[:, i] = col
        return lines.tobytes().translate(None, b"\0")  # C loop, faster than a numpy mask


_TYPE_STRINGS = tuple(str(t) for t in range(-1, 9))


def _file_names(c: _Canvas, chunk: _Chunk, rows: slice) -> None:
    c.ints(chunk.patient[rows], 6)
    c.text("_")
    c.ints(chunk.study[rows], 2)
    c.text("_")
    c.ints(chunk.series[rows], 2)
    c.text("_")
    c.ints(chunk.key[rows], 3)
    c.text(".png")


def _format_chunk(chunk: _Chunk, first_row: int) -> tuple[bytes, bytes]:
    """CSV bytes of the chunk's rows (official layout) and of their track ground truth."""
    csv_parts: list[bytes] = []
    track_parts: list[bytes] = []
    n_all = len(chunk.patient)
    for start in range(0, n_all, _FORMAT_ROWS):
        r = slice(start, min(start + _FORMAT_ROWS, n_all))
        n = r.stop - r.start
        c = _Canvas(n)
        _file_names(c, chunk, r)
        for col in (chunk.patient, chunk.study, chunk.series, chunk.key):
            c.text(",")
            c.ints(col[r])
        c.text(',"')
        c.g6_cells([chunk.recist[r], chunk.bbox[r], chunk.diam[r], chunk.loc[r]])
        c.text('",')
        c.table(_TYPE_STRINGS, chunk.type[r] + 1)
        c.text(",")
        c.ints(chunk.noisy[r])
        c.text(',"')
        c.ints(chunk.slice_lo[r])
        c.text(", ")
        c.ints(chunk.slice_hi[r])
        c.text('","')
        xy = chunk.xy_spacing[r, None]
        c.g6_cells([np.hstack([xy, xy, chunk.z_spacing[r, None]])])
        c.text('","512, 512","')
        c.table(_WINDOW_STRINGS, chunk.window[r])
        c.text('",')
        c.table(("F", "M"), chunk.sex[r].astype(np.int64))
        c.text(",")
        c.ints(chunk.age[r])
        c.text(",")
        c.ints(chunk.split[r])
        c.text("\n")
        csv_parts.append(c.render())

        t = _Canvas(n)
        t.ints(np.arange(first_row + r.start, first_row + r.stop))
        t.text(",")
        _file_names(t, chunk, r)
        t.text(",")
        t.ints(chunk.patient[r], 6)
        t.text("_L")
        t.ints(chunk.track_no[r], 3)
        t.text("\n")
        track_parts.append(t.render())
    return b"".join(csv_parts), b"".join(track_parts)


# ---- images: key slices of every volume, SSBR training volumes -----------------------------------
_CZ_FACTOR = (0.8, 1.25)  # z semi-axis / half the short axis, per track
_PNG_LEVEL = 1  # zlib level: the noise makes higher levels slow for ~5% smaller files
_SSBR_Z_RANGE = (0.30, 0.95)  # chest to pelvis


def _vol_name(patient: int, study: int, series: int) -> str:
    return f"{patient:06d}_{study:02d}_{series:02d}"


def _recist_of(
    cx: np.ndarray,
    cy: np.ndarray,
    theta: np.ndarray,
    long_px: np.ndarray,
    short_px: np.ndarray,
    cross: np.ndarray,
) -> np.ndarray:
    """RECIST endpoints (n, 8) of axes at angle theta crossing at fractions ``cross``."""
    ux, uy = np.cos(theta), np.sin(theta)
    vx, vy = -uy, ux
    t, s = cross[:, 0], cross[:, 1]
    return np.stack(
        [cx - t * long_px * ux, cy - t * long_px * uy,
         cx + (1 - t) * long_px * ux, cy + (1 - t) * long_px * uy,
         cx - s * short_px * vx, cy - s * short_px * vy,
         cx + (1 - s) * short_px * vx, cy + (1 - s) * short_px * vy], axis=1
    )  # fmt: skip


class _ChunkImages:
    """Renders the key slices (and neighbours) of every volume of one chunk."""

    def __init__(self, chunk: _Chunk, first_row: int, seed: int) -> None:
        sc = chunk.scene
        self.chunk, self.sc, self.seed = chunk, sc, seed
        n_rows = len(chunk.patient)
        self.row_number = np.arange(first_row, first_row + n_rows)
        # appearance per track, drawn from its own stream (so rows never depend on it)
        self.code, self.hu, self.rim = phantom.lesion_appearance(sc.look_rng, sc.tr_type)
        self.czf = sc.look_rng.uniform(*_CZ_FACTOR, len(sc.tr_type))
        rt, rg = sc.r_track, sc.r_group
        spacing = chunk.xy_spacing
        self.cz = 0.5 * chunk.diam[:, 1] * spacing * self.czf[rt]
        dz = chunk.z_spacing
        self.key_z = sc.g_top[rg] + (chunk.key - 0.5) * dz  # the key slice's plane, mm
        # lesions present but not bookmarked in a study (track gaps): the same ellipsoid
        gt, gs = sc.gap_track, sc.gap_study
        steps = sc.st_no[gs] - sc.tr_birth_no[gt]
        g_spacing = sc.st_spacing[gs]
        long_mm = np.clip(
            np.exp(sc.tr_log_long[gt] + sc.tr_trend[gt] * steps),
            2.0,
            np.minimum(250.0, 470 * g_spacing),
        )
        long_px = long_mm / g_spacing
        short_px = long_px * np.clip(sc.tr_ratio[gt], 0.12, 1.0)
        cx = _PX_FROM_LOC[0][0] + _PX_FROM_LOC[0][1] * sc.tr_loc[gt, 0] + sc.tr_px_off[gt, 0]
        cy = _PX_FROM_LOC[1][0] + _PX_FROM_LOC[1][1] * sc.tr_loc[gt, 1] + sc.tr_px_off[gt, 1]
        self.gap_recist = _recist_of(
            cx + sc.st_shift[gs, 0], cy + sc.st_shift[gs, 1], sc.tr_theta[gt], long_px, short_px,
            sc.tr_cross[gt],
        )  # fmt: skip
        self.gap_cz = 0.5 * short_px * g_spacing * self.czf[gt]
        self.gap_z = sc.tr_loc[gt, 2] * _BODY_MM_PER_Z * sc.body_scale[sc.st_pat[gs]]
        self.gap_order = np.argsort(gs, kind="stable")
        self.gap_starts = np.searchsorted(gs[self.gap_order], np.arange(len(sc.st_no) + 1))
        self.slices = self._slices()
        self._decor_of, self._decor = -1, None

    def _slices(self) -> list[tuple[int, int, list[int]]]:
        """(study row, series group, slice numbers) of every volume, in row order."""
        c, sc = self.chunk, self.sc
        out = []
        bounds = np.flatnonzero(np.diff(sc.r_group)) + 1
        for rows in np.split(np.arange(len(c.patient)), bounds):
            if not len(rows):
                continue
            want = set()
            for i in rows.tolist():
                lo, hi, k = int(c.slice_lo[i]), int(c.slice_hi[i]), int(c.key[i])
                want.update(j for j in (k - 1, k, k + 1) if lo <= j <= hi)
            out.append((int(sc.r_study[rows[0]]), int(sc.r_group[rows[0]]), sorted(want)))
        return out

    def count(self) -> int:
        return sum(len(v[2]) for v in self.slices)

    def _lesions(self, study: int, group: int) -> phantom.Lesions:
        """Every lesion present in the study: the volume's own rows at their key slices, rows of
        the study's other series and unmeasured lesions at the track's z."""
        c, sc = self.chunk, self.sc
        rows = np.flatnonzero(sc.r_study == study)
        own = rows[sc.r_group[rows] == group]
        other = rows[sc.r_group[rows] != group]
        other = other[~np.isin(sc.r_track[other], sc.r_track[own])]
        _, first = np.unique(sc.r_track[other], return_index=True)
        other = other[np.sort(first)]
        use = np.concatenate([own, other])
        zc = np.concatenate([self.key_z[own], sc.z_mm[other]])
        gaps = self.gap_order[self.gap_starts[study] : self.gap_starts[study + 1]]
        gt = sc.gap_track[gaps]
        rt = sc.r_track[use]
        return phantom.Lesions.from_recist(
            np.concatenate([c.recist[use], self.gap_recist[gaps]]),
            zc=np.concatenate([zc, self.gap_z[gaps]]),
            cz=np.concatenate([self.cz[use], self.gap_cz[gaps]]),
            code=np.concatenate([self.code[rt], self.code[gt]]),
            hu=np.concatenate([self.hu[rt], self.hu[gt]]),
            rim=np.concatenate([self.rim[rt], self.rim[gt]]),
            ident=np.concatenate([self.row_number[use], np.zeros(len(gaps), np.int64)]),
        )

    def volume(self, study: int, group: int) -> SimpleNamespace:
        """Everything needed to render slices of one volume (series group of a study)."""
        c, sc = self.chunk, self.sc
        p = int(sc.st_pat[study])
        patient, study_no = sc.first_patient + p, int(sc.st_no[study])
        rows = np.flatnonzero(sc.r_group == group)
        series = int(c.series[rows[0]])
        if self._decor_of != p:  # patients come in order: keep the last one's decorations
            self._decor = phantom.Decor.build(
                sc.anatomy.one(p), np.random.default_rng([self.seed, 9, patient])
            )
            self._decor_of = p
        return SimpleNamespace(
            name=_vol_name(patient, study_no, series),
            ids=(patient, study_no, series),
            rows=rows,
            anatomy=sc.anatomy.one(p),
            decor=self._decor,
            look=phantom.StudyLook.draw(np.random.default_rng([self.seed, 8, patient, study_no])),
            lesions=self._lesions(study, group),
            top=float(sc.g_top[group]),
            dz=float(c.z_spacing[rows[0]]),
            per_mm=_BODY_MM_PER_Z * float(sc.body_scale[p]),
            shift=(float(sc.st_shift[study, 0]), float(sc.st_shift[study, 1])),
        )

    def render(self, vol: SimpleNamespace, k: int) -> phantom.SliceImage:
        """Slice k (1-based) of a volume: HU, organ labels and lesion map."""
        patient, study_no, series = vol.ids
        z_mm = vol.top + (k - 0.5) * vol.dz
        return phantom.render_slice(
            vol.anatomy,
            z_mm / vol.per_mm,
            z_mm=z_mm,
            shift=vol.shift,
            look=vol.look,
            lesions=vol.lesions,
            decor=vol.decor,
            noise_rng=np.random.default_rng([self.seed, 7, patient, study_no, series, k]),
            study_rng=np.random.default_rng([self.seed, 8, patient, study_no, 1]),
        )

    def write(self, images_dir: Path, bar: Any, workers: int) -> int:
        """Render and write every volume (patients shared out over ``workers`` processes)."""
        pats = [int(self.sc.st_pat[study]) for study, _, _ in self.slices]
        bounds = np.flatnonzero(np.diff(pats)) + 1
        jobs = [(images_dir, v.tolist()) for v in np.split(np.arange(len(pats)), bounds)]
        return _run_jobs(self, _write_volumes, jobs, workers, bar)

    def truth_lines(self) -> list[str]:
        """Ground truth per row: true type, appearance, organ, centre, anatomical place, z."""
        c, sc = self.chunk, self.sc
        rt = sc.r_track
        body = sc.tr_loc[rt, :2] + sc.tr_px_off[rt] / (_PX_FROM_LOC[0][1], _PX_FROM_LOC[1][1])
        les = phantom.Lesions.from_recist(c.recist, zc=self.key_z, cz=self.cz)
        shift = sc.st_shift[sc.r_study]
        # the organ at the exact centre of the key slice (the organ map the image was drawn from)
        pat = sc.st_pat[sc.r_study]
        organ = phantom.labels_at(
            sc.anatomy.take(pat),
            les.cx - phantom.BODY_CENTRE_PX[0] - shift[:, 0],
            les.cy - phantom.BODY_CENTRE_PX[1] - shift[:, 1],
            self.key_z / (_BODY_MM_PER_Z * sc.body_scale[pat]),
        )
        lines = []
        for i in range(len(c.patient)):
            name = (
                f"{_vol_name(int(c.patient[i]), int(c.study[i]), int(c.series[i]))}_{c.key[i]:03d}"
            )
            lines.append(
                f"{self.row_number[i]},{name}.png,{c.patient[i]:06d}_L{c.track_no[i]:03d},"
                f"{sc.tr_type[rt[i]]},{phantom.APPEARANCE_NAMES[self.code[rt[i]]]},"
                f"{phantom.LABEL_NAMES[organ[i]]},{les.cx[i]:.2f},{les.cy[i]:.2f},"
                f"{shift[i, 0]:.2f},{shift[i, 1]:.2f},{body[i, 0]:.5f},{body[i, 1]:.5f},"
                f"{sc.tr_loc[rt[i], 2]:.5f},"
                f"{self.key_z[i]:.2f},{self.cz[i]:.2f}\n"
            )
        return lines


def _write_volumes(state: _ChunkImages, job: tuple[Path, list[int]], bar: Any) -> int:
    """Write the volumes ``job[1]`` (indices into ``state.slices``) of one patient."""
    images_dir, volumes = job
    written = 0
    for v in volumes:
        study, group, slices = state.slices[v]
        vol = state.volume(study, group)
        folder = images_dir / vol.name
        folder.mkdir(parents=True, exist_ok=True)
        for k in slices:
            img = state.render(vol, k)
            phantom.write_png16(folder / f"{k:03d}.png", img.hu, _PNG_LEVEL)
            written += 1
            if bar is not None:
                bar.update(1)
    return written


_JOB_STATE: Any = None  # what forked workers render from (inherited, never pickled)


def _job_in_worker(fn: Any, job: Any) -> int:
    return fn(_JOB_STATE, job, None)


def _run_jobs(state: Any, fn: Any, jobs: list, workers: int, bar: Any) -> int:
    """Sum of ``fn(state, job, bar)`` over jobs; in ``workers`` forked processes when > 1.

    Every file a job writes depends only on the seeds, so the output is the same whatever the
    number of workers or the order they finish in.
    """
    global _JOB_STATE
    if workers <= 1 or len(jobs) < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return sum(fn(state, job, bar) for job in jobs)
    _JOB_STATE = state
    try:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=ctx) as pool:
            futures = [pool.submit(_job_in_worker, fn, job) for job in jobs]
            total = 0
            for done in as_completed(futures):
                n = done.result()
                total += n
                if bar is not None:
                    bar.update(n)
            return total
    finally:
        _JOB_STATE = None


def _default_workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


_TRUTH_HEADER = (
    "row_number,File_name,track_id,true_type,appearance,organ,center_x,center_y,"
    "shift_x,shift_y,body_x,body_y,body_z,center_z_mm,semi_z_mm\n"
)


def _ssbr_z(state: SimpleNamespace, v: int) -> tuple[float, float]:
    """First slice's z and the z span of SSBR volume v."""
    per_mm = _BODY_MM_PER_Z * float(state.body_scale[v])
    span = (int(state.n_slices[v]) - 1) * state.slice_mm / per_mm
    lo, hi = _SSBR_Z_RANGE
    return lo + float(state.u_start[v]) * max(hi - lo - span, 0.0), span


def _write_ssbr_volume(state: SimpleNamespace, v: int, bar: Any) -> int:
    """Render and write the slices of SSBR volume v (at twice the matrix, averaged 2 x 2)."""
    seed, matrix = state.seed, state.matrix
    patient = state.first_index + v
    folder = state.out / _vol_name(patient, 1, 1)
    folder.mkdir(parents=True, exist_ok=True)
    z0, span = _ssbr_z(state, v)
    n = int(state.n_slices[v])
    anat = state.anatomy.one(v)
    decor = phantom.Decor.build(anat, np.random.default_rng([seed, 12, patient]))
    look = phantom.StudyLook.draw(np.random.default_rng([seed, 13, patient]))
    for k in range(n):
        img = phantom.render_slice(
            anat,
            z0 + k * span / max(n - 1, 1),
            shape=(2 * matrix, 2 * matrix),
            step=512.0 / (2 * matrix),
            shift=(float(state.shift[v, 0]), float(state.shift[v, 1])),
            look=look,
            decor=decor,
            study_rng=np.random.default_rng([seed, 13, patient, 1]),
        )
        hu = img.hu.reshape(matrix, 2, matrix, 2).mean(axis=(1, 3))
        noise = np.random.default_rng([seed, 14, patient, k]).standard_normal(hu.shape)
        hu = hu + np.where(hu > -999.0, 10.0 * noise, 0.0)
        phantom.write_png16(folder / f"{k + 1:03d}.png", hu, _PNG_LEVEL)
        if bar is not None:
            bar.update(1)
    return n


def _write_ssbr_volumes(
    out: Path,
    n: int,
    seed: int,
    first_index: int,
    matrix: int,
    slice_mm: float,
    bar: Any,
    workers: int,
) -> Path:
    """N unlabelled volumes of contiguous axial slices for body-part regression training."""
    rng = np.random.default_rng([seed, 11])
    male = rng.random(n) < _P_MALE
    state = SimpleNamespace(
        out=out / SSBR_DIR,
        seed=seed,
        matrix=matrix,
        slice_mm=slice_mm,
        first_index=first_index,
        anatomy=Anatomy.draw(rng, male),
        body_scale=np.clip(rng.normal(1.0, 0.06, n), 0.85, 1.15),
        n_slices=rng.integers(40, 81, n),
        fov=np.where(
            rng.random(n) < _P_COMMON_FOV,
            _COMMON_FOV[_pick(rng, np.cumsum(_COMMON_FOV_P), n)],
            rng.integers(_FOV_RANGE[0], _FOV_RANGE[1] + 1, n),
        ),
        u_start=rng.random(n),
        shift=rng.normal(0.0, 4.0, (n, 2)),
    )
    volumes = []
    for v in range(n):
        name = _vol_name(first_index + v, 1, 1)
        z0, span = _ssbr_z(state, v)
        volumes.append(
            {
                "volume": name,
                "slices": int(state.n_slices[v]),
                "z_first": round(z0, 6),
                "z_last": round(z0 + span, 6),
                "slice_spacing_mm": slice_mm,
                "pixel_spacing_mm": round(float(state.fov[v]) / matrix, 6),
                "matrix": [matrix, matrix],
            }
        )
    if bar is not None:
        bar.total = int(state.n_slices.sum())
        bar.refresh()
    _run_jobs(state, _write_ssbr_volume, list(range(n)), workers, bar)
    meta = {
        "synthetic": True,
        "generator": GENERATOR,
        "version": VERSION,
        "seed": seed,
        "volumes_dir": SSBR_DIR,
        "png": "16-bit grey, pixel = HU + 32768 (DeepLesion convention), slices numbered 001..",
        "z": "normalised body position (0 vertex .. 1 mid-thigh), as DeepLesion's location z; "
        "slice k (1-based) lies at z_first + (k - 1) * (z_last - z_first) / (slices - 1)",
        "note": (
            "SYNTHETIC CT phantom volumes, not real patients: unlabelled, for self-supervised "
            "body-part regression training."
        ),
        "volumes": volumes,
    }
    path = out / SSBR_METADATA_NAME
    path.write_text(json.dumps(meta, indent=2) + "\n", encoding="ascii")
    return path


def write_synthetic_dl_info(
    out_dir: str | Path,
    *,
    patients: int,
    seed: int = 0,
    first_patient_index: int = 1,
    lesions_per_study_mean: float = _DEFAULT_LESIONS_PER_STUDY,
    images: bool = False,
    ssbr_volumes: int = 0,
    ssbr_matrix: int = 128,
    ssbr_slice_mm: float = 5.0,
    workers: int | None = None,
    progress: bool = False,
) -> SyntheticCohort:
    """Write a SYNTHETIC DeepLesion cohort (CSV, metadata JSON, track ground truth) to ``out_dir``.

    ``patients`` patients are numbered from ``first_patient_index`` (6-digit ids in file names).
    ``lesions_per_study_mean`` is the target mean number of rows per study (above ~1.6: every
    study holds at least one lesion, and lesions persist into later studies).

    ``images``: also render CT slices with :mod:`lesionkg.synthetic.phantom`: for every volume
    ``Images_png/{patient}_{study}_{series}/{slice:03d}.png`` for each lesion's key slice and its
    two neighbours within the Slice_range (16-bit PNG, pixel = HU + 32768), plus
    ``lesion_truth_synthetic.csv`` (true type, appearance, organ, centre and anatomical place of
    every row). ``ssbr_volumes``: that many extra unlabelled volumes of contiguous slices
    (``ssbr_slice_mm`` apart, ``ssbr_matrix`` square) under ``ssbr_volumes_synthetic/``, with
    ``ssbr_volumes_synthetic.json``. ``workers``: processes that render images (default: the
    usable CPU cores, at most 8; 1 renders in this process). The CSV rows do not depend on these
    options, nor any file on ``workers``. Output is byte-identical for equal arguments.
    """
    if patients < 1:
        raise ValueError(f"patients must be >= 1, got {patients}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if first_patient_index < 0 or first_patient_index + patients - 1 > 999_999:
        raise ValueError("patient indices must fit the 6-digit file names (0..999999)")
    if ssbr_volumes < 0 or first_patient_index + patients + ssbr_volumes - 1 > 999_999:
        raise ValueError("ssbr_volumes must be >= 0 and numbered within 6 digits after the cohort")
    if not (16 <= ssbr_matrix <= 512 and 0.5 <= ssbr_slice_mm <= 20.0):
        raise ValueError("ssbr_matrix must be in [16, 512] and ssbr_slice_mm in [0.5, 20]")
    lowest = _expected_rows_per_study(0.0)  # one forced lesion per study and its re-reads
    if not lowest < lesions_per_study_mean <= 50:
        raise ValueError(
            f"lesions_per_study_mean must be in ({lowest:.2f}, 50], got {lesions_per_study_mean}"
        )
    workers = _default_workers() if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, meta_path, tracks_path = out / CSV_NAME, out / METADATA_NAME, out / TRACKS_NAME
    truth_path = out / TRUTH_NAME
    burden_mean = _burden_mean_for(lesions_per_study_mean)

    bar: Any = None
    img_bar: Any = None
    if progress:
        from tqdm import tqdm

        # counts of patients (total known up front) with the rate, rows and studies so far
        bar = tqdm(total=patients, unit="patient", file=sys.stderr, desc="synthetic")
        if images:
            img_bar = tqdm(total=0, unit="slice", file=sys.stderr, desc="images")
    n_rows = n_studies = n_images = 0
    try:
        with (
            csv_path.open("wb") as f_csv,
            tracks_path.open("wb") as f_tracks,
            truth_path.open("w", encoding="ascii", newline="")
            if images
            else nullcontext() as f_truth,
        ):
            f_csv.write((",".join(DL_INFO_COLUMNS) + "\n").encode("ascii"))
            f_tracks.write(b"row_number,File_name,track_id\n")
            if f_truth is not None:
                f_truth.write(_TRUTH_HEADER)
            for chunk_no, start in enumerate(range(0, patients, _CHUNK_PATIENTS)):
                n_pat = min(_CHUNK_PATIENTS, patients - start)
                # one independent stream per chunk: reproducible and order-free
                rng = np.random.default_rng([seed, chunk_no])
                chunk = _generate_chunk(rng, first_patient_index + start, n_pat, burden_mean)
                csv_text, tracks_text = _format_chunk(chunk, n_rows + 1)
                f_csv.write(csv_text)
                f_tracks.write(tracks_text)
                if images:
                    renderer = _ChunkImages(chunk, n_rows + 1, seed)
                    if img_bar is not None:
                        img_bar.total += renderer.count()
                        img_bar.refresh()
                    for f in (f_csv, f_tracks, f_truth):  # nothing buffered when workers fork
                        f.flush()
                    n_images += renderer.write(out / IMAGES_DIR, img_bar, workers)
                    f_truth.writelines(renderer.truth_lines())
                n_rows += len(chunk.patient)
                n_studies += len(np.unique(chunk.patient * 100 + chunk.study))
                if bar is not None:
                    bar.set_postfix_str(f"rows={n_rows:,} studies={n_studies:,}", refresh=False)
                    bar.update(n_pat)
        ssbr_path = None
        if ssbr_volumes:
            if progress:
                from tqdm import tqdm

                img_bar = tqdm(total=0, unit="slice", file=sys.stderr, desc="ssbr volumes")
            ssbr_path = _write_ssbr_volumes(
                out,
                ssbr_volumes,
                seed,
                first_patient_index + patients,
                ssbr_matrix,
                ssbr_slice_mm,
                img_bar,
                workers,
            )
    finally:
        if bar is not None:
            bar.close()
        if img_bar is not None:
            img_bar.close()
    if not images and truth_path.exists():
        truth_path.unlink()  # a stale one from an earlier run would describe other images

    files: dict[str, Any] = {"dl_info": CSV_NAME, "tracks": TRACKS_NAME}
    if images:
        files["lesion_truth"] = TRUTH_NAME
    if ssbr_path is not None:
        files["ssbr_volumes"] = SSBR_METADATA_NAME
    metadata = {
        "synthetic": True,
        "generator": GENERATOR,
        "version": VERSION,
        "seed": seed,
        "patients": patients,
        "studies": n_studies,
        "lesions": n_rows,
        "first_patient_index": first_patient_index,
        "lesions_per_study_mean": lesions_per_study_mean,
        "images": {
            "included": images,
            "key_slices_and_neighbours": n_images,
            "dir": IMAGES_DIR if images else None,
            "png": "16-bit grey, pixel = HU + 32768 (DeepLesion convention)",
            "renderer": "lesionkg.synthetic.phantom (SYNTHETIC CT phantom)",
        },
        "ssbr_volumes": ssbr_volumes,
        "files": files,
        "note": (
            "SYNTHETIC data, not real patients: generated by lesionkg.synthetic.cohort from "
            "seeded random distributions shaped after summary statistics of the DeepLesion "
            "validation split"
            + (", with CT images rendered from a synthetic phantom" if images else "")
            + ". Do not use for any clinical or scientific conclusion."
        ),
    }
    meta_path.write_text(json.dumps(metadata, indent=2) + "\n", encoding="ascii")
    return SyntheticCohort(
        csv_path=csv_path,
        metadata_path=meta_path,
        tracks_path=tracks_path,
        patients=patients,
        studies=n_studies,
        lesions=n_rows,
        seed=seed,
        images=n_images,
        truth_path=truth_path if images else None,
        ssbr_volumes=ssbr_volumes,
        ssbr_metadata_path=ssbr_path,
    )


PAIRS_NAME = "same_lesion_pairs_synthetic.csv"


def write_synthetic_pairs(cohort: SyntheticCohort) -> Path:
    """Same-lesion pairs of a SYNTHETIC cohort's ground-truth tracks, in the DLS pairs format.

    Consecutive measurements of each true track (by study, then series) become a pair in both
    directions, with their RECIST diameters (``long;short`` mm) so that a key slice holding
    several lesions is unambiguous. Written beside the cohort as :data:`PAIRS_NAME`; the
    ``lesionkg evaluate matching --pairs`` input for synthetic data.
    """
    from lesionkg.core.records import LesionRecord
    from lesionkg.loaders.deeplesion import parse_dl_info

    rows = [r for r in parse_dl_info(cohort.csv_path) if isinstance(r, LesionRecord)]
    with open(cohort.tracks_path, newline="") as fh:
        track_of_row = {int(t["row_number"]): t["track_id"] for t in csv.DictReader(fh)}
    members: dict[str, list[LesionRecord]] = {}
    for number, rec in enumerate(rows, start=1):
        members.setdefault(track_of_row[number], []).append(rec)
    out = cohort.csv_path.parent / PAIRS_NAME
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            [
                "pair_id",
                "source_File_name",
                "target_File_name",
                "source_recist_diameter_mm",
                "target_recist_diameter_mm",
            ]
        )
        n = 0
        for track in sorted(members):
            ordered = sorted(
                members[track], key=lambda r: (r.study_index, r.series_id, r.key_slice)
            )
            for a, b in itertools.pairwise(ordered):
                for s, t in ((a, b), (b, a)):
                    n += 1
                    writer.writerow(
                        [
                            f"{n:05d}",
                            s.file_name,
                            t.file_name,
                            f"{s.long_axis_mm:.2f};{s.short_axis_mm:.2f}",
                            f"{t.long_axis_mm:.2f};{t.short_axis_mm:.2f}",
                        ]
                    )
    os.replace(tmp, out)
    return out


# ---- SYNTHETIC PACS export: JSON Lines bookmarks ------------------------------------------------
BOOKMARKS_METADATA_NAME = "SYNTHETIC.json"
BOOKMARKS_FILE_PATTERN = "synthetic-{patient:06d}-{study:02d}.jsonl"
_PATIENT_KEY = "SYNTHETIC-{patient:06d}"
_STUDY_KEY = "SYNTHETIC-{patient:06d}-{study:02d}"
# A patient's first study falls on a day of 2012-2019 (whole days), each later one the generator's
# study interval later (the Exponential(0.3 years) gaps behind Patient_age), at least a day.
_FIRST_STUDY_EPOCH = date(2012, 1, 1)
_FIRST_STUDY_SPAN_DAYS = 8 * 365
_DAYS_PER_YEAR = 365.25
_STUDY_MINUTES = (7 * 60, 19 * 60)  # time of day of a study: a CT department's working hours
# Own random stream for study dates and times (second entropy word unused by every other stream
# of this module), so that the cohort's rows and images stay those of write_synthetic_dl_info.
_STUDY_TIME_STREAM = 20
# Tracking UIDs: "2.25." + the integer of a name-based UUID (ITU-T X.667 / DICOM PS3.5 B.2), so
# the same synthetic lesion gets the same UID in every run and different lesions different ones.
_TRACKING_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:lesionkg:synthetic:tracking-uid")
_AXIS_SHRINK = 1e-5  # first relative step when a rounded round lesion's short axis is too long

#: A bookmark's place: its JSON Lines file and 1-based line (``Bookmark.source`` is
#: ``str(file)`` and ``Bookmark.source_index`` the line when the file is read by that path).
BookmarkRef = tuple[Path, int]


@dataclass(frozen=True)
class SyntheticBookmarks:
    """Where a SYNTHETIC PACS export (JSON Lines bookmarks) was written, its size and its truth."""

    #: one JSON Lines file per study, in patient then study order
    files: tuple[Path, ...]
    patients: int
    studies: int
    bookmarks: int
    metadata_path: Path
    #: physical lesions (true tracks) bookmarked at least once
    lesions: int = 0
    seed: int = 0
    #: 16-bit PNG slices written under Images_png/ (key slices and neighbours); 0 without images
    images: int = 0
    #: true same-lesion pairs: consecutive bookmarks of each physical lesion (by study, then
    #: series), earlier first, one direction; a lesion bookmarked n times gives n - 1 pairs
    pairs: tuple[tuple[BookmarkRef, BookmarkRef], ...] = ()


def _study_times(chunk: _Chunk, rng: np.random.Generator) -> list[str]:
    """ISO 8601 date and time (local, minutes) of every study row of the chunk's scene.

    Strictly increasing within a patient: the generator's study gaps (years, the ones its
    Patient_age steps come from) in whole days, at least one day apart.
    """
    sc = chunk.scene
    n_pat, n_st = len(sc.body_scale), len(sc.st_no)
    first_day = rng.integers(0, _FIRST_STUDY_SPAN_DAYS, n_pat)
    minute = rng.integers(_STUDY_MINUTES[0], _STUDY_MINUTES[1], n_st)
    step = np.where(
        sc.st_no == 1, 0, np.maximum(1, np.rint(sc.st_gap_years * _DAYS_PER_YEAR))
    ).astype(np.int64)
    cum = np.cumsum(step)
    first_study = _group_starts(np.bincount(sc.st_pat, minlength=n_pat))
    day = first_day[sc.st_pat] + cum - cum[first_study][sc.st_pat]
    return [
        f"{(_FIRST_STUDY_EPOCH + timedelta(days=d)).isoformat()}T{m // 60:02d}:{m % 60:02d}:00"
        for d, m in zip(day.tolist(), minute.tolist(), strict=True)
    ]


def _g6(values: np.ndarray) -> list[float]:
    """Values rounded to 6 significant digits: the numbers of the cohort's DL_info.csv cells."""
    return [float(f"{v:.6g}") for v in values.ravel().tolist()]


def _axis_mm(points: list[float], sx: float, sy: float) -> float:
    # the JSON Lines reader's own formula: the file's lengths are what it computes
    return math.hypot((points[2] - points[0]) * sx, (points[3] - points[1]) * sy)


def _short_within_long(long_px: list[float], short_px: list[float], spacing: float) -> list[float]:
    """The short axis endpoints (px), pulled in about their midpoint until not longer than the long.

    A round lesion (short / long clipped to 1) has two equal axes; rounding the endpoints to 6
    significant digits can make the short one longer by ~1e-4 px, which the reader refuses.
    """
    long_mm = _axis_mm(long_px, spacing, spacing)
    short, shrink = short_px, _AXIS_SHRINK
    while _axis_mm(short, spacing, spacing) > long_mm:
        mx, my = (short_px[0] + short_px[2]) / 2, (short_px[1] + short_px[3]) / 2
        f = 1.0 - shrink
        short = [
            float(f"{mx + (short_px[0] - mx) * f:.6g}"),
            float(f"{my + (short_px[1] - my) * f:.6g}"),
            float(f"{mx + (short_px[2] - mx) * f:.6g}"),
            float(f"{my + (short_px[3] - my) * f:.6g}"),
        ]
        shrink *= 2
    return short


def _tracking_uid(name: str) -> str:
    return f"2.25.{uuid.uuid5(_TRACKING_UID_NAMESPACE, name).int}"


def _write_atomically(path: Path, text: str) -> None:
    # A watching ETL must never read half a file: write beside it (a name it does not match),
    # then rename, which is atomic within one file system.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="ascii")
    os.replace(tmp, path)


def _write_bookmark_files(
    out: Path,
    chunk: _Chunk,
    study_time: list[str],
    tracking: str | None,
) -> tuple[list[Path], list[tuple[BookmarkRef, BookmarkRef]], int]:
    """Write one JSON Lines file per study of the chunk.

    ``tracking``: the cohort's part of the tracking UID names (None: no tracking fields).
    Returns the files (study order), the true same-lesion pairs and the number of lesions.
    """
    from lesionkg.core.records import COARSE_TYPES

    sc = chunk.scene
    n = len(chunk.patient)
    recist = _g6(chunk.recist)
    spacing = _g6(chunk.xy_spacing)
    loc = _g6(chunk.loc)
    study_row = sc.r_study  # rows come sorted by study (then series, then track)
    line_of = (_rank_in_group(study_row) + 1).tolist()
    patient, study = chunk.patient.tolist(), chunk.study.tolist()
    series, key = chunk.series.tolist(), chunk.key.tolist()
    ctype, track = chunk.type.tolist(), chunk.track_no.tolist()
    # The series' display window (as DL_info.csv's DICOM_windows): the cues space needs it.
    windows = [[float(v) for v in _WINDOW_STRINGS[w].split(",")] for w in chunk.window.tolist()]
    file_of: dict[int, Path] = {}
    lines: list[str] = []
    for i in range(n):
        p, s = patient[i], study[i]
        long_px = recist[8 * i : 8 * i + 4]
        short_px = _short_within_long(long_px, recist[8 * i + 4 : 8 * i + 8], spacing[i])
        obj: dict[str, Any] = {
            "patient": _PATIENT_KEY.format(patient=p),
            "study": _STUDY_KEY.format(patient=p, study=s),
            "study_time": study_time[int(study_row[i])],
            "series": str(series[i]),
            "image": f"{IMAGES_DIR}/{_vol_name(p, s, series[i])}/{key[i]:03d}.png",
            "long_axis_px": long_px,
            "short_axis_px": short_px,
            "spacing_mm": [spacing[i], spacing[i]],
        }
        if ctype[i] > 0:  # train-split rows are unlabelled (-1), as in DL_info.csv
            obj["type"] = COARSE_TYPES[ctype[i]]
        obj["location"] = loc[3 * i : 3 * i + 3]
        obj["window_hu"] = windows[i]
        if tracking is not None:
            obj["tracking_uid"] = _tracking_uid(f"{tracking}/{p:06d}_L{track[i]:03d}")
            obj["tracking_id"] = f"Lesion {track[i]}"
        lines.append(json.dumps(obj) + "\n")
        if i + 1 == n or study_row[i + 1] != study_row[i]:
            path = out / BOOKMARKS_FILE_PATTERN.format(patient=p, study=s)
            _write_atomically(path, "".join(lines))
            file_of[int(study_row[i])] = path
            lines = []

    # consecutive bookmarks of each true lesion (patient, track), by study then series
    order = np.lexsort((chunk.series, chunk.study, chunk.track_no, chunk.patient))
    same = (chunk.patient[order[1:]] == chunk.patient[order[:-1]]) & (
        chunk.track_no[order[1:]] == chunk.track_no[order[:-1]]
    )
    pairs = [
        (
            (file_of[int(study_row[a])], line_of[a]),
            (file_of[int(study_row[b])], line_of[b]),
        )
        for a, b in zip(order[:-1][same].tolist(), order[1:][same].tolist(), strict=True)
    ]
    return list(file_of.values()), pairs, n - int(same.sum())


def write_synthetic_bookmarks(
    out_dir: str | Path,
    *,
    patients: int,
    seed: int = 0,
    first_patient_index: int = 1,
    images: bool = False,
    tracking_uids: bool = False,
    progress: bool = False,
) -> SyntheticBookmarks:
    """Write a SYNTHETIC PACS export: JSON Lines bookmarks, one file per study, into ``out_dir``.

    The cohort is the one :func:`write_synthetic_dl_info` writes for the same ``patients``,
    ``seed`` and ``first_patient_index`` (default ``lesions_per_study_mean``): the same patients,
    studies, series, key slices, axis endpoints, spacing, locations and types, so the truth is
    known. Every bookmark is one line in the format :mod:`lesionkg.loaders.jsonl` documents:

    - ``patient`` ``"SYNTHETIC-000001"`` (the 6-digit patient index), ``study``
      ``"SYNTHETIC-000001-02"`` (patient and 1-based study index), ``series`` the Series_ID
      (``"1"``, ``"2"``, ...);
    - ``study_time``: local ISO date and time to the minute; a patient's first study on a day of
      2012-2019, each later one the generator's study interval later (the gaps its Patient_age
      steps come from, ~Exponential with mean 0.3 years), in whole days, at least one day, so
      times strictly increase within a patient; 07:00-19:00;
    - ``image``: ``Images_png/{patient}_{study}_{series}/{key:03d}.png``, relative to the file's
      folder (``out_dir``), DeepLesion's layout;
    - ``long_axis_px``, ``short_axis_px`` (pixels, x right, y down) and ``location``: the
      DL_info.csv values (6 significant digits); where that rounding would make a round lesion's
      short axis longer than its long axis (by ~1e-4 px), the short axis is pulled in about its
      midpoint by the least step that fixes it; ``spacing_mm``: ``[x, y]``, x = y, mm per pixel;
    - ``type``: the coarse type's name for val/test patients; left out for train patients, whose
      DL_info.csv rows carry -1 (unlabelled);
    - with ``tracking_uids``: ``tracking_uid`` ``"2.25.<integer>"``, a name-based UUID of the true
      physical lesion, constant across its studies and distinct between lesions (and between
      calls with other ``seed``, ``first_patient_index`` or ``patients``, which make other
      lesions), and ``tracking_id`` ``"Lesion <n>"``, unique within the patient. About 5% of
      lesions are measured on two series of one study (thick and thin reconstructions): two
      bookmarks of one study then share a tracking UID, as in a real export.

    ``images``: also render the key slices and their neighbours (16-bit PNG, pixel = HU + 32768,
    DeepLesion's convention) exactly as ``write_synthetic_dl_info(images=True)`` does, under
    ``out_dir/Images_png/``; the files are then valid for :func:`read_jsonl_bookmarks` with its
    default options. Without images the ``image`` field still names the path the key slice would
    have (the field is required, and a lesion id is built from the path's last two components):
    read the files with ``allow_missing_images=True`` (``--allow-missing-images``), which imports
    the lesions without the image-derived fields. Placeholder PNGs would make the default options
    pass, but the ETL would then analyse blank images as CT; a missing image is the honest state.

    Files: ``synthetic-{patient:06d}-{study:02d}.jsonl`` (``BOOKMARKS_FILE_PATTERN``), each written
    to a hidden temporary name and renamed, so that a watching ETL never reads half a file; and
    ``SYNTHETIC.json`` (``"synthetic": true``, seed, counts, generator, the reading options).
    Files with other names in ``out_dir`` are left alone, so batches with disjoint patient
    indices (``first_patient_index``) can be added to one watched folder one after another; the
    metadata describes the last batch. Output is byte-identical for equal arguments (with the
    same NumPy and zlib, as for :func:`write_synthetic_dl_info`).

    Size and speed: ~7.3 bookmarks per patient (2.36 studies x 3.03 bookmarks; 7.0-7.5 by seed
    and size), so ~1,370 patients give ~10,000 bookmarks (seed 0: 10,058 in 3,214 files). Without
    images that takes ~1 s on tmpfs, ~4 s where creating a file costs ~1 ms. Time and memory grow
    linearly: the returned ``pairs`` hold one tuple per re-measurement.
    """
    if patients < 1:
        raise ValueError(f"patients must be >= 1, got {patients}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if first_patient_index < 0 or first_patient_index + patients - 1 > 999_999:
        raise ValueError("patient indices must fit the 6-digit file names (0..999999)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    burden_mean = _burden_mean_for(_DEFAULT_LESIONS_PER_STUDY)
    workers = _default_workers()
    tracking = f"{seed}/{first_patient_index}/{patients}" if tracking_uids else None

    bar: Any = None
    img_bar: Any = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=patients, unit="patient", file=sys.stderr, desc="synthetic bookmarks")
        if images:
            img_bar = tqdm(total=0, unit="slice", file=sys.stderr, desc="images")
    files: list[Path] = []
    pairs: list[tuple[BookmarkRef, BookmarkRef]] = []
    n_rows = n_lesions = n_images = 0
    try:
        for chunk_no, start in enumerate(range(0, patients, _CHUNK_PATIENTS)):
            n_pat = min(_CHUNK_PATIENTS, patients - start)
            # the chunk streams of write_synthetic_dl_info: the same cohort, row for row
            rng = np.random.default_rng([seed, chunk_no])
            chunk = _generate_chunk(rng, first_patient_index + start, n_pat, burden_mean)
            if images:
                renderer = _ChunkImages(chunk, n_rows + 1, seed)
                if img_bar is not None:
                    img_bar.total += renderer.count()
                    img_bar.refresh()
                n_images += renderer.write(out / IMAGES_DIR, img_bar, workers)
            times = _study_times(chunk, np.random.default_rng([seed, _STUDY_TIME_STREAM, chunk_no]))
            chunk_files, chunk_pairs, lesions = _write_bookmark_files(out, chunk, times, tracking)
            files += chunk_files
            pairs += chunk_pairs
            n_rows += len(chunk.patient)
            n_lesions += lesions
            if bar is not None:
                bar.set_postfix_str(f"bookmarks={n_rows:,} studies={len(files):,}", refresh=False)
                bar.update(n_pat)
    finally:
        if bar is not None:
            bar.close()
        if img_bar is not None:
            img_bar.close()

    metadata = {
        "synthetic": True,
        "generator": GENERATOR,
        "version": VERSION,
        "format": "lesionkg JSON Lines bookmarks (lesionkg.loaders.jsonl), one file per study",
        "seed": seed,
        "patients": patients,
        "first_patient_index": first_patient_index,
        "studies": len(files),
        "bookmarks": n_rows,
        "lesions": n_lesions,
        "same_lesion_pairs": len(pairs),
        "files": BOOKMARKS_FILE_PATTERN,
        "tracking_uids": tracking_uids,
        "images": {
            "included": images,
            "key_slices_and_neighbours": n_images,
            "dir": IMAGES_DIR,
            "png": "16-bit grey, pixel = HU + 32768 (DeepLesion convention)",
            "renderer": "lesionkg.synthetic.phantom (SYNTHETIC CT phantom)",
        },
        "read_with": {"allow_missing_images": not images},
        "same_cohort_as": (
            f"write_synthetic_dl_info(patients={patients}, seed={seed}, "
            f"first_patient_index={first_patient_index})"
        ),
        "note": (
            "SYNTHETIC data, not real patients: a made-up PACS export generated by "
            "lesionkg.synthetic.cohort from seeded random distributions"
            + (", with CT images rendered from a synthetic phantom" if images else "")
            + ". Do not use for any clinical or scientific conclusion."
        ),
    }
    meta_path = out / BOOKMARKS_METADATA_NAME
    _write_atomically(meta_path, json.dumps(metadata, indent=2) + "\n")
    return SyntheticBookmarks(
        files=tuple(files),
        patients=patients,
        studies=len(files),
        bookmarks=n_rows,
        metadata_path=meta_path,
        lesions=n_lesions,
        seed=seed,
        images=n_images,
        pairs=tuple(pairs),
    )
