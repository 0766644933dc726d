"""The ``cues`` embedding space: a lesion vector from DeepLesion metadata alone, no images.

A knowledge base built from ``DL_info.csv`` without the key slices still needs content-based
similarity. The cues vector gives it from what a radiologist's bookmark records about the lesion
itself: where it is, how large it is, and whether it was read in a lung window. Similarity is the
Euclidean (l2) distance between vectors; every weight is already applied, so no further scaling is
needed before a nearest-neighbour search.

The coarse lesion type is never an input, nor anything computed from it: type precision is what
retrieval is scored on, so a space that saw the type would score itself. The weights were chosen by
type precision@5, with patient-wise cross-validation (below), which is the only way the type enters.

Definition (``CUES_VERSION = "cues-v1"``), D = 6, in this order (:data:`CUE_NAMES`):

===================  ================================================  ======
dimension            value before weighting                            weight
===================  ================================================  ======
``location_x``       DeepLesion normalised x in [0, 1] (patient right   1.0
                     to left)
``location_y``       normalised y in [0, 1] (anterior to posterior)     1.0
``location_z``       normalised z in [0, 1] (head to feet, body-part    3.5
                     regression)
``lung_window``      1 if the display window's level (centre) is at or  1.0
                     below -200 HU, else 0
``log_long_axis``    ln(max(long axis, 1 mm) / 10 mm)                   0.01
``log_short_axis``   ln(max(short axis, 1 mm) / 10 mm)                  0.01
===================  ================================================  ======

Why these weights. The location is the reference scale (x and y weight 1). The cranio-caudal
position is far more telling than the in-plane one: organs are stacked along z, and z comes from a
body-part regression that is comparable across patients, while x and y are relative to each
patient's body outline; weighting z by 3 to 5 gave the same retrieval quality, 3.5 is the middle of
what the cross-validation folds chose. The lung-window flag separates lung parenchyma (read in a
window of level about -500 HU, e.g. -1500..500 or -1350..150) from everything read in a soft-tissue
(level about 50 HU, e.g. -175..275) or bone window (level 300 HU and more, e.g. -1000..1700). Its
weight 1.0 is a whole body width, far above the nearest-neighbour distances of the space
(median 0.054 between a lesion and its 5th nearest lesion of another patient in the validation
split), so the flag acts as a partition: a lesion read in a lung window meets a lesion read in
another window only when no same-window lesion is anywhere near. Any weight above about 0.2 gives
the same result. The size dimensions are tie-breakers among lesions at the same place: on the real
validation split size adds next to no information about the type once location and window are
known (larger weights lowered type precision), but among equally close lesions a similar size is a
better match. At 0.01 per natural-log unit a tenfold size difference costs 0.023, under half the
median neighbour distance. Sizes below 1 mm are raised to 1 mm (below CT resolution; DeepLesion
allows a zero short axis) so the logarithm stays finite.

Not used, on purpose: the patient's sex and age (patient attributes, not the lesion's: they would
pull together lesions of similar patients wherever they are, and on the validation split they did
not improve type precision under cross-validation); slice interval, pixel spacing, image size,
slice range and key slice (acquisition protocol, not the lesion; the slice interval mostly repeats
the lung-window flag and lowered type precision); bounding box and RECIST end points (their
position repeats the location, their orientation lowered type precision).

Missing values are not imputed: a missing (``None``) or non-finite location, axis length or
window, a location outside [0, 1], a negative axis or a window whose min is not below its max
raises :class:`CueInputError` (a ``ValueError``) naming the lesion and the field. Nothing else
of the record is read, so other missing fields (sex, age, ...) do not matter.

Measured on the real DeepLesion validation split (4,889 labelled lesions, 703 patients), type
precision@5 over lesions of other patients (:func:`lesionkg.core.metrics.type_precision_at_k`):
location only 0.751, location plus the lung-window flag 0.804, cues-v1 0.815. The z and size
weights were also chosen afresh on half the patients and scored on the other half (five random
halvings, both ways): 0.813 +- 0.012 against 0.751 for location only and 0.804 for location plus
lung window on the same queries (0.800 against 0.729 and 0.789 when each half is searched alone).
A majority vote of the 5 nearest lesions of other patients predicts the type of 84.9 % of the
lesions (location only 79.4 %, location plus lung window 83.8 %). The metadata hold little more
than that: a small neural network classifier on location and window reaches about 85 % on
held-out patients, and adding size, spacing, sex and age does not raise it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lesionkg.core.errors import LesionKGError
from lesionkg.core.records import LesionRecord

__all__ = [
    "CUES_VERSION",
    "CUE_DIM",
    "CUE_NAMES",
    "CUE_WEIGHTS",
    "LUNG_WINDOW_MAX_LEVEL_HU",
    "MIN_AXIS_MM",
    "REFERENCE_AXIS_MM",
    "CueInputError",
    "compute_cues",
    "cue_matrix",
    "cue_matrix_from_props",
    "cue_vector",
]

#: Producer checksum for index manifests: change it whenever the definition or a weight changes.
CUES_VERSION = "cues-v1"
CUE_NAMES: tuple[str, ...] = (
    "location_x",
    "location_y",
    "location_z",
    "lung_window",
    "log_long_axis",
    "log_short_axis",
)
CUE_DIM = len(CUE_NAMES)
#: Each dimension's scale, applied in the vector (see the module docstring for why).
CUE_WEIGHTS: tuple[float, ...] = (1.0, 1.0, 3.5, 1.0, 0.01, 0.01)
#: A window whose level (centre) is at or below this is a lung window. Lung windows sit at about
#: -500 to -700 HU, soft-tissue windows at 30 to 60 HU, so any threshold in between works; -200 HU
#: also keeps the wide lung windows (-1537.5..767.5, level -385 HU) of the real data in.
LUNG_WINDOW_MAX_LEVEL_HU = -200.0
#: Axis lengths below this are raised to it before the logarithm, mm.
MIN_AXIS_MM = 1.0
#: The axis length that maps to 0, mm (a typical lesion; it only centres the values).
REFERENCE_AXIS_MM = 10.0

_WEIGHTS = np.asarray(CUE_WEIGHTS, dtype=np.float64)


class CueInputError(LesionKGError, ValueError):
    """A lesion lacks a value the cues need, or has one that cannot be right."""


#: Names of the inputs in error messages: the argument names of :func:`compute_cues`.
_ARGUMENTS = ("location", "long_axis_mm", "short_axis_mm", "window_hu")
#: The same inputs as Lesion node properties (:func:`cue_matrix_from_props`).
_PROPERTIES = ("location", "long_axis_mm", "short_axis_mm", "window")


def _form_ok(value: Any, width: int | None) -> bool:
    """Whether one lesion's value is a number (``width`` None) or ``width`` numbers."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return arr.shape == (() if width is None else (width,))


def _to_array(
    values: Any, width: int | None, label: str, names: Sequence[str] | None
) -> np.ndarray:
    """``values`` as float64 ``(N,)`` (``width`` None) or ``(N, width)``, naming a bad lesion."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is not None and arr.ndim >= 1 and arr.shape[1:] == (() if width is None else (width,)):
        return arr
    if arr is not None and arr.size == 0:
        return arr.reshape(0) if width is None else arr.reshape(0, width)
    expected = "a number" if width is None else f"{width} numbers"
    if not isinstance(values, Sequence) and not (isinstance(values, np.ndarray) and values.ndim):
        raise CueInputError(f"{label}: expected one value per lesion, got {values!r}")
    # Row by row only to name the lesion whose value has the wrong form (a location of 2 numbers).
    for row, value in enumerate(values):
        if not _form_ok(value, width):
            raise CueInputError(
                f"{_name_of(names, row)}: {label} must be {expected}, got {value!r}"
            )
    raise CueInputError(f"{label}: expected {expected} per lesion")


def _name_of(names: Sequence[str] | None, row: int) -> str:
    return f"lesion {names[row]}" if names is not None else f"row {row}"


def _compute(
    inputs: Sequence[Any], names: Sequence[str] | None, labels: Sequence[str]
) -> np.ndarray:
    location, long_axis_mm, short_axis_mm, window_hu = inputs
    loc = _to_array(location, 3, labels[0], names)
    long_mm = _to_array(long_axis_mm, None, labels[1], names)
    short_mm = _to_array(short_axis_mm, None, labels[2], names)
    window = _to_array(window_hu, 2, labels[3], names)
    n = len(loc)
    for label, arr in zip(labels[1:], (long_mm, short_mm, window), strict=True):
        if len(arr) != n:
            raise CueInputError(f"{label}: expected {n} values (one per location), got {len(arr)}")
    if names is not None and len(names) != n:
        raise CueInputError(f"lesion_ids: expected {n} ids, got {len(names)}")

    if n == 0:
        return np.zeros((0, CUE_DIM), dtype=np.float32)

    # Each check names the first offending lesion: one clear message beats thousands of them.
    checks = (
        (0, loc, ~np.isfinite(loc), "finite"),
        (0, loc, (loc < 0.0) | (loc > 1.0), "in [0, 1]"),
        (1, long_mm, ~np.isfinite(long_mm), "finite"),
        (1, long_mm, long_mm < 0.0, ">= 0 mm"),
        (2, short_mm, ~np.isfinite(short_mm), "finite"),
        (2, short_mm, short_mm < 0.0, ">= 0 mm"),
        (3, window, ~np.isfinite(window), "finite"),
        (3, window, (window[:, 0] >= window[:, 1])[:, None], "min < max"),
    )
    for which, arr, bad, expected in checks:
        rows = np.flatnonzero(bad.reshape(n, -1).any(axis=1))
        if len(rows):
            row = int(rows[0])
            raise CueInputError(
                f"{_name_of(names, row)}: {labels[which]} must be {expected}, "
                f"got {arr[row].tolist()}"
            )

    level = window.mean(axis=1)
    raw = np.empty((n, CUE_DIM), dtype=np.float64)
    raw[:, 0:3] = loc
    raw[:, 3] = level <= LUNG_WINDOW_MAX_LEVEL_HU
    raw[:, 4] = np.log(np.maximum(long_mm, MIN_AXIS_MM) / REFERENCE_AXIS_MM)
    raw[:, 5] = np.log(np.maximum(short_mm, MIN_AXIS_MM) / REFERENCE_AXIS_MM)
    return (raw * _WEIGHTS).astype(np.float32)


def compute_cues(
    location: Any,
    long_axis_mm: Any,
    short_axis_mm: Any,
    window_hu: Any,
    *,
    lesion_ids: Sequence[str] | None = None,
) -> np.ndarray:
    """Cues vectors ``(N, CUE_DIM)`` float32 from plain arrays.

    ``location (N, 3)`` normalised x, y, z in [0, 1]; ``long_axis_mm (N,)`` and
    ``short_axis_mm (N,)`` RECIST diameters in mm, >= 0; ``window_hu (N, 2)`` display window min,
    max in HU. ``lesion_ids (N,)``, optional, only name the lesion in error messages (else the row
    number). Raises :class:`CueInputError` for a wrong shape or a missing (NaN, None) or
    out-of-range value, naming the first such lesion and the input.
    """
    return _compute((location, long_axis_mm, short_axis_mm, window_hu), lesion_ids, _ARGUMENTS)


def cue_matrix(records: Sequence[LesionRecord]) -> np.ndarray:
    """Cues vectors ``(N, CUE_DIM)`` float32 of ``records``, in order (see :func:`compute_cues`)."""
    columns = [[getattr(rec, field) for rec in records] for field in _ARGUMENTS]
    names = [rec.lesion_id for rec in records]
    for field, column in zip(_ARGUMENTS, columns, strict=True):
        for name, value in zip(names, column, strict=True):
            if value is None:
                raise CueInputError(f"lesion {name}: {field} is missing")
    return _compute(columns, names, _ARGUMENTS)


def cue_vector(rec: LesionRecord) -> np.ndarray:
    """Cues vector ``(CUE_DIM,)`` float32 of one record."""
    return cue_matrix([rec])[0]


def cue_matrix_from_props(rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Cues vectors ``(N, CUE_DIM)`` float32 from Lesion node properties, in order.

    Each row maps the node's property names to values: ``location`` (3 numbers),
    ``long_axis_mm``, ``short_axis_mm`` and ``window`` (2 numbers, HU); other properties are
    ignored. ``lesion_id``, if present, names the lesion in error messages (else the row number).
    A property that is absent or None raises :class:`CueInputError` naming the lesion and the
    property; so does a value of the wrong form or range, as in :func:`compute_cues`.
    """
    names = [str(row["lesion_id"]) if "lesion_id" in row else f"#{i}" for i, row in enumerate(rows)]
    columns: list[list[Any]] = [[] for _ in _PROPERTIES]
    for name, row in zip(names, rows, strict=True):
        for prop, column in zip(_PROPERTIES, columns, strict=True):
            value = row.get(prop)
            if value is None:
                raise CueInputError(f"lesion {name}: property {prop} is missing")
            column.append(value)
    return _compute(columns, names, _PROPERTIES)


def cueable(row: Mapping[str, Any]) -> bool:
    """Whether a Lesion's properties give a cue vector: a location and a window are known.

    PACS bookmarks can lack both (no body-part regression model for z; no display window in the
    export); such lesions stay out of the cues space rather than getting invented values. A
    missing short axis alone does not exclude a lesion: see :func:`with_short_axis`.
    """
    return row.get("location") is not None and row.get("window") is not None


def with_short_axis(row: Mapping[str, Any]) -> Mapping[str, Any]:
    """``row`` with ``short_axis_mm`` set to the long axis when the source measured only one
    length (a diameter or length measurement): such a lesion counts as round, which at the size
    dimensions' weight (0.01 per log unit) moves it by at most a few thousandths."""
    if row.get("short_axis_mm") is None and row.get("long_axis_mm") is not None:
        return {**row, "short_axis_mm": row["long_axis_mm"]}
    return row
