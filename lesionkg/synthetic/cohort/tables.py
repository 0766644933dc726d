"""Tables of the SYNTHETIC cohort generator: its file layout, the summary figures its
distributions follow (studies per patient, lesion burden, types, places, sizes, series, spacing,
patients) and the calibration of the lesion burden to a mean number of rows per study."""

from __future__ import annotations

import numpy as np

from lesionkg.loaders.deeplesion import COLUMNS

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
CHUNK_PATIENTS = 4096

# ---- studies per patient -------------------------------------------------------------------------
MAX_STUDIES = 20
_P_ONE_STUDY = 0.53
_STUDY_TAIL_RATIO = 0.656  # geometric ratio of the 2..20 tail; gives a mean of 2.36


def _studies_pmf() -> np.ndarray:
    tail = _STUDY_TAIL_RATIO ** np.arange(MAX_STUDIES - 1)
    return np.concatenate([[_P_ONE_STUDY], (1 - _P_ONE_STUDY) * tail / tail.sum()])


STUDIES_PMF = _studies_pmf()
_MEAN_STUDIES = float((STUDIES_PMF * np.arange(1, MAX_STUDIES + 1)).sum())

# ---- lesion tracks -------------------------------------------------------------------------------
BURDEN_SHAPE = 1.4  # gamma shape of the per-patient lesion burden: overdispersed counts
P_SURVIVE = 0.65  # a lesion present at one study is still there at the next
P_REMEASURE = 0.85  # a surviving lesion is bookmarked again (otherwise a gap in its track)
P_DOUBLE_READ = 0.05  # track measured on two series of one of its studies
DEFAULT_LESIONS_PER_STUDY = 3.03  # 140k patients x 2.36 studies x 3.03 = ~1.0M rows

# ---- types and locations -------------------------------------------------------------------------
TYPE_P = np.array([0.0284, 0.2052, 0.1653, 0.1195, 0.2647, 0.0534, 0.0700, 0.0937])
TYPE_P = TYPE_P / TYPE_P.sum()
P_MAIN_TYPE = 0.6
# median long axis per type, mm (real val, types 1..8)
TYPE_MEDIAN_MM = np.array([14.0, 21.4, 17.7, 21.9, 12.0, 18.1, 20.2, 23.1])
LOG_SD_LONG = 0.66
# P(lung window) per type: real share of lung-class windows (-1500,500 / -1400,200 / ...)
TYPE_P_LUNG_WINDOW = np.array([0.60, 0.0, 0.01, 0.0, 0.83, 0.0, 0.01, 0.0])

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


LOC_CUM, LOC_MEAN, LOC_SD = _mixture_tables()


# ---- series: windows and spacing -----------------------------------------------------------------
P_SPLIT_CLASS = 0.03  # a window class shown as thick + thin reconstructions
SOFT_WINDOWS = (
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
WINDOW_STRINGS: tuple[str, ...] = tuple(w for w, _ in SOFT_WINDOWS + _LUNG_WINDOWS)
SOFT_WIN_CUM = np.cumsum([p for _, p in SOFT_WINDOWS]) / sum(p for _, p in SOFT_WINDOWS)
LUNG_WIN_CUM = np.cumsum([p for _, p in _LUNG_WINDOWS]) / sum(p for _, p in _LUNG_WINDOWS)

Z_SPACINGS = np.array([0.625, 1.0, 1.25, 2.5, 5.0])
# P(z spacing) per series kind: single soft-tissue series, single lung series, thick, thin
Z_P_SOFT = np.array([0.02, 0.40, 0.02, 0.03, 0.53])
Z_P_LUNG = np.array([0.03, 0.65, 0.03, 0.02, 0.27])
Z_P_THICK = np.array([0.0, 0.0, 0.0, 0.06, 0.94])
Z_P_THIN = np.array([0.06, 0.90, 0.04, 0.0, 0.0])
MAX_SLICES = 999  # keeps Key_slice_index at 3 digits, like every real file name

# Field of view (mm) -> x/y spacing = FOV / 512: the most common real values, else uniform.
COMMON_FOV = np.array([418, 500, 440, 400, 460, 354, 420, 480, 380, 375, 360, 340, 320])
COMMON_FOV_P = np.array([491, 402, 374, 301, 287, 255, 216, 188, 135, 134, 132, 121, 37], float)
COMMON_FOV_P /= COMMON_FOV_P.sum()
P_COMMON_FOV = 0.75
FOV_RANGE = (310, 500)  # spacing within [0.6, 1.0]

SUBVOLUME_HALF_MM = 30.0  # DeepLesion sub-volumes reach >= 30 mm each side of the key slice
BOX_PAD_PX = 5.0
EDGE_PX = 6.0  # endpoints stay inside [6, 505] so the padded box stays on the 512 image

P_MALE = 0.53
SPLIT_CUM = (0.70, 0.85)  # train / val / test by patient
P_NOISY = 0.001


def expected_rows_per_study(mu: float) -> float:
    """Analytic mean rows per study of the track process for a mean burden ``mu``.

    First studies see Poisson(lambda) lesions, later ones Poisson(a * lambda) measured lesions with
    a = 1 - p_s + p_s * q; an empty study gets one forced lesion (probability E[exp(-c lambda)] =
    (1 + c mu / k)^-k for a gamma burden), which survives into later studies; each newly born track
    adds a second read with p = 0.05.
    """
    k, ps, q = BURDEN_SHAPE, P_SURVIVE, P_REMEASURE
    a = 1 - ps + ps * q
    f1 = 1 / _MEAN_STUDIES  # share of studies that are a patient's first

    def p0(c: float) -> float:
        return (1 + c * mu / k) ** -k

    forced = f1 * p0(1.0) + (1 - f1) * p0(a)
    # a forced track is still there j studies later with p = ps^j and is then measured with p = q;
    # r_j = share of studies (study-weighted) followed by at least j more studies of the patient
    n = np.arange(1, MAX_STUDIES + 1)
    r = [(STUDIES_PMF * np.maximum(n - j, 0)).sum() / _MEAN_STUDIES for j in range(1, MAX_STUDIES)]
    persist = sum(ps**j * q * r_j for j, r_j in enumerate(r, start=1))
    births = f1 * mu + (1 - f1) * mu * (1 - ps) + forced
    measured = f1 * mu + (1 - f1) * a * mu + forced * (1 + persist)
    return measured + P_DOUBLE_READ * births


def burden_mean_for(lesions_per_study: float) -> float:
    """Invert :func:`expected_rows_per_study` by bisection (monotone in ``mu``)."""
    lo, hi = 0.0, 100.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if expected_rows_per_study(mid) < lesions_per_study:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2
