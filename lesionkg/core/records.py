"""Typed records that loaders yield and the graph store writes.

Records are frozen dataclasses with units in their field names: ``_px`` pixels of the key slice,
``_mm`` millimetres, ``_hu`` Hounsfield units. They know nothing of files or Neo4j.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

#: DeepLesion's eight coarse lesion types (``Coarse_lesion_type``); -1 in the CSV means unlabelled.
COARSE_TYPES: dict[int, str] = {
    1: "bone",
    2: "abdomen",
    3: "mediastinum",
    4: "liver",
    5: "lung",
    6: "kidney",
    7: "soft tissue",
    8: "pelvis",
}

Split = Literal["train", "val", "test"]
#: DeepLesion's ``Train_Val_Test`` codes.
SPLITS: dict[int, Split] = {1: "train", 2: "val", 3: "test"}

Sex = Literal["M", "F"]


def patient_id_of(patient_index: int) -> str:
    """DeepLesion patient id as it appears in file names: ``000042``."""
    return f"{patient_index:06d}"


def study_id_of(patient_index: int, study_index: int) -> str:
    """Study id: patient id and the patient's study number, ``000042_03``."""
    return f"{patient_index:06d}_{study_index:02d}"


_LESION_KEY = "%s|" + ",".join(["%.4f"] * 8)


def lesion_id_of(file_name: str, recist_px: tuple[float, ...]) -> str:
    """Deterministic lesion id from the row's content, independent of row order.

    A key slice (``file_name``) can hold several measured lesions, so the id hashes the slice name
    together with the 8 RECIST coordinates written with 4 decimals (DeepLesion gives at most 6
    significant digits; 1e-4 px is far below any real difference between two measurements):
    ``"DL-" + sha256("000002_01_01_162.png|238.3140,261.2280,...")[:16]``. Two rows with the same
    slice and coordinates are the same bookmark, i.e. a duplicate.
    """
    # One %-format call with a prebuilt format: the loader computes millions of these.
    canonical = _LESION_KEY % (file_name, *recist_px)
    return "DL-" + hashlib.sha256(canonical.encode("ascii")).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class LesionRecord:
    """One lesion bookmark: a RECIST measurement on one key slice of one series of one study.

    Coordinates are pixels of the key slice (x right, y down, 0-based as in DeepLesion).
    ``location`` is DeepLesion's normalised body position (x, y, z in [0, 1]).
    """

    lesion_id: str
    patient_id: str
    study_id: str
    study_index: int
    series_id: int
    file_name: str
    key_slice: int
    #: long axis (x1, y1, x2, y2) then short axis (x1, y1, x2, y2), pixels
    recist_px: tuple[float, float, float, float, float, float, float, float]
    #: x1, y1, x2, y2, pixels
    bbox_px: tuple[float, float, float, float]
    #: long, short diameter, pixels, as given by the source
    diameters_px: tuple[float, float]
    long_axis_mm: float
    short_axis_mm: float
    location: tuple[float, float, float]
    #: 1..8 (see COARSE_TYPES) or None when unlabelled
    coarse_type: int | None
    noisy: bool
    #: first and last slice index of the sub-volume around the key slice
    slice_range: tuple[int, int]
    #: x, y pixel spacing and z slice interval, mm
    spacing_mm: tuple[float, float, float]
    #: rows, columns, pixels
    image_size_px: tuple[int, int]
    #: display window min, max, HU
    window_hu: tuple[float, float]
    sex: Sex | None
    age_years: float | None
    split: Split
    #: 1-based line of the source file where the record starts (provenance, not stored in the graph)
    source_line: int = 0

    @property
    def coarse_type_name(self) -> str | None:
        return COARSE_TYPES.get(self.coarse_type) if self.coarse_type is not None else None


@dataclass(frozen=True, slots=True)
class ImageRef:
    """The CT image a bookmark was measured on, as its source names it.

    ``sop_instance_uid`` for DICOM (``frame`` 1-based for multi-frame images, else ``None``);
    ``path`` for sources that point at a file (JSON Lines, DeepLesion PNGs).
    """

    sop_instance_uid: str | None = None
    frame: int | None = None
    path: str | None = None


@dataclass(frozen=True, slots=True)
class Bookmark:
    """One lesion measurement from a PACS export, as read, before pseudonymisation.

    Every reader (DICOM SR TID 1500, JSON Lines, DeepLesion rows) yields these. Identifiers are
    the source's own (``patient_key``: DICOM PatientID or the export's patient id; ``study_key``:
    StudyInstanceUID or the export's study id); :mod:`lesionkg.core.pseudonym` turns them into keyed
    hashes before anything reaches the graph. No names, birth dates, accession numbers or free
    text are carried. Axis endpoints are pixels of the referenced image (x right, y down, 0-based
    image coordinates as DICOM SCOORD gives them); lengths are millimetres.
    """

    #: file the bookmark came from, and its place there (1-based line or measurement group)
    source: str
    source_index: int
    patient_key: str
    study_key: str
    #: study date and time, ISO 8601 (``"2024-03-01T10:22:00"``), orders a patient's studies
    study_datetime: str | None
    series_key: str | None
    image: ImageRef | None
    long_axis_mm: float
    short_axis_mm: float | None
    #: long axis x1, y1, x2, y2 and short axis x1, y1, x2, y2, pixels; None without graphics
    long_axis_px: tuple[float, float, float, float] | None = None
    short_axis_px: tuple[float, float, float, float] | None = None
    #: x, y pixel spacing of the referenced image, mm
    pixel_spacing_mm: tuple[float, float] | None = None
    #: coded finding and finding site (code meaning, e.g. "Lung nodule", "Liver"); never free text
    finding: str | None = None
    finding_site: str | None = None
    #: DeepLesion coarse type 1..8 when the source gives or implies one
    coarse_type: int | None = None
    #: the source's lesion tracking: identifier (a short label) and UID, across reports
    tracking_id: str | None = None
    tracking_uid: str | None = None
    #: normalised body location x, y, z in 0..1 when the source gives it
    location: tuple[float, float, float] | None = None
    #: display window min, max, HU, when the source gives it (tells a lung-window reading)
    window_hu: tuple[float, float] | None = None
    #: the long axis recomputed from its endpoints and the referenced image's pixel spacing, mm;
    #: set only when it disagrees with the stated ``long_axis_mm`` beyond the reader's tolerance
    #: (the stated length is kept: readers calibrate, images get re-exported)
    recomputed_long_axis_mm: float | None = None
    #: the source's own identity of this measurement, when it has one: ``tu:`` + the group's
    #: tracking UID or ``sr:`` + SOP Instance UID + ``#`` + group number (DICOM SR), ``aim:`` +
    #: the annotation's uid (AIM). Part of the lesion key: equal values are one measurement,
    #: different values never are (see :func:`lesionkg.core.pseudonym.lesion_key`)
    measurement_uid: str | None = None
