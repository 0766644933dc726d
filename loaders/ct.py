"""CT images on disk, found by SOP Instance UID: headers, HU pixels and neighbouring slices.

A DICOM SR measurement report names the image it was measured on by its SOP Instance UID. This
module indexes the CT files given as inputs so that a report's reference can be resolved to a file,
its pixel spacing (to turn pixel coordinates into mm) and its place in the series (to find the
neighbouring slices). Indexing reads headers only (``stop_before_pixels=True``); pixels are read on
demand by :func:`read_hu`.

Units: ``_mm`` millimetres in the patient coordinate system (DICOM LPS); pixel values from
:func:`read_hu` are Hounsfield units.

Pixel spacing order. DICOM ``PixelSpacing`` (0028,0030) is *(row spacing, column spacing)*: the
first value is the distance between the centres of adjacent rows, i.e. the **vertical** (y) size
of a pixel; the second is between adjacent columns, the **horizontal** (x) size. LesionKG keeps
spacing as (x, y) everywhere (``Bookmark.pixel_spacing_mm``, ``LesionRecord.spacing_mm``), so
:attr:`CTImage.pixel_spacing_mm` is ``(PixelSpacing[1], PixelSpacing[0])``.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.tag import BaseTag
from pydicom.uid import (
    CTImageStorage,
    EnhancedCTImageStorage,
    LegacyConvertedEnhancedCTImageStorage,
)

from lesionkg.core.errors import InvalidInputError, Problem
from lesionkg.core.limits import (
    DEFAULT_LIMITS,
    IMAGE_PIXELS,
    SPACING_RANGE,
    InputLimits,
)
from lesionkg.loaders.guards import Refusal, regular_file_refusal

#: SOP classes indexed as CT images: single-frame CT and the two multi-frame (enhanced) forms.
CT_SOP_CLASSES: frozenset[str] = frozenset(
    {CTImageStorage, EnhancedCTImageStorage, LegacyConvertedEnhancedCTImageStorage}
)
_UNDEFINED_LENGTH = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class CTImage:
    """Header facts of one CT image instance, as needed to measure on it and to find neighbours.

    For multi-frame (Enhanced CT) instances the geometric and rescale fields are those of frame 1;
    :func:`read_hu` reads the rescale of the frame it is asked for.
    """

    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    #: DICOM PatientID as found (an identifier: never put it in the graph unhashed)
    patient_id: str
    path: Path
    rows: int
    columns: int
    #: (x, y) pixel size, mm: x is the column spacing (PixelSpacing[1]), y the row spacing
    #: (PixelSpacing[0])
    pixel_spacing_mm: tuple[float, float]
    #: position of the slice along its normal, mm; equals ImagePositionPatient z for axial slices;
    #: None without position or orientation
    slice_position_mm: float | None
    #: ImagePositionPatient: x, y, z of the centre of the first transmitted pixel, mm (LPS)
    image_position_patient: tuple[float, float, float] | None
    #: ImageOrientationPatient: row direction cosines then column direction cosines
    image_orientation_patient: tuple[float, float, float, float, float, float] | None
    number_of_frames: int
    #: HU = stored value * slope + intercept; None when the header lacks them
    rescale_slope: float | None
    rescale_intercept: float | None
    sop_class_uid: str
    instance_number: int | None = None


@dataclass(frozen=True, eq=False)
class CTIndex(Mapping[str, CTImage]):
    """CT images by SOP Instance UID, with the files that were not indexed and why.

    It is a read-only mapping, so it can be passed wherever a ``dict[str, CTImage]`` is read.
    ``skipped`` holds ``(path, reason)`` for every file that is not a CT image (not DICOM,
    unreadable, another SOP class, no pixel spacing, a duplicate SOP Instance UID).
    """

    images: dict[str, CTImage]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    #: SOP Instance UID -> what the input with that UID is instead of an indexed CT image ("an MR
    #: image (MR Image Storage) in mr.dcm"), for the DICOM objects among ``skipped`` whose header
    #: names one: a report that references one of them is told what was found
    others: dict[str, str] = field(default_factory=dict)
    # Series members in slice order, built once: neighbour look-ups are per bookmark.
    _by_series: dict[str, tuple[CTImage, ...]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_series", _group_by_series(self.images.values()))

    def __getitem__(self, sop_instance_uid: str) -> CTImage:
        return self.images[sop_instance_uid]

    def __iter__(self) -> Iterator[str]:
        return iter(self.images)

    def __len__(self) -> int:
        return len(self.images)

    def found_instead(self, sop_instance_uid: str) -> str | None:
        """What the inputs hold under ``sop_instance_uid`` when it is not an indexed CT image, as a
        clause ("it is an MR image (MR Image Storage) in mr.dcm, and ..."); None when nothing is
        there."""
        return self.others.get(sop_instance_uid)

    def series(self, series_instance_uid: str) -> tuple[CTImage, ...]:
        """The series' images that have a slice position, in ascending slice position."""
        return self._by_series.get(series_instance_uid, ())


def not_among_inputs(ct_index: Mapping[str, CTImage], sop_instance_uid: str) -> str:
    """Why a referenced image cannot be measured on: it is not among the CT inputs, and what the
    inputs hold under its UID instead when they hold something (an MR image, a SEG object, a CT
    image refused with its reason)."""
    text = f"the referenced CT image {sop_instance_uid} is not among the CT inputs"
    found = ct_index.found_instead(sop_instance_uid) if isinstance(ct_index, CTIndex) else None
    return f"{text}: {found}" if found else text


def _slice_order(image: CTImage) -> tuple[float, int, str]:
    # Only images with a position are sorted. Instance number and UID break ties (two images at
    # one position, e.g. two phases in one series), so the order is stable.
    return (
        image.slice_position_mm or 0.0,
        image.instance_number if image.instance_number is not None else 0,
        image.sop_instance_uid,
    )


def _group_by_series(images: Iterable[CTImage]) -> dict[str, tuple[CTImage, ...]]:
    groups: dict[str, list[CTImage]] = {}
    for image in images:
        if image.slice_position_mm is not None:
            groups.setdefault(image.series_instance_uid, []).append(image)
    return {uid: tuple(sorted(members, key=_slice_order)) for uid, members in groups.items()}


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    """``n`` finite floats from a DICOM multi-value, or None when absent or malformed."""
    if value is None:
        return None
    try:
        values = tuple(float(v) for v in (value if isinstance(value, Iterable) else [value]))
    except (TypeError, ValueError):
        return None
    if len(values) != n or not all(math.isfinite(v) for v in values):
        return None
    return values


def _functional(ds: Dataset, macro: str, keyword: str, frame_index: int) -> Any:
    """An attribute of an Enhanced CT functional group macro: the frame's own, else the shared."""
    for groups_name, index in (
        ("PerFrameFunctionalGroupsSequence", frame_index),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        groups = ds.get(groups_name)
        if not groups or index >= len(groups):
            continue
        items = groups[index].get(macro)
        if items and keyword in items[0]:
            return items[0].get(keyword)
    return None


def _geometry(ds: Dataset, frame_index: int = 0) -> dict[str, Any]:
    """Pixel spacing, position, orientation and rescale of one frame, from either header form."""
    if "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds:
        spacing = _functional(ds, "PixelMeasuresSequence", "PixelSpacing", frame_index)
        position = _functional(ds, "PlanePositionSequence", "ImagePositionPatient", frame_index)
        orientation = _functional(
            ds, "PlaneOrientationSequence", "ImageOrientationPatient", frame_index
        )
        slope = _functional(ds, "PixelValueTransformationSequence", "RescaleSlope", frame_index)
        intercept = _functional(
            ds, "PixelValueTransformationSequence", "RescaleIntercept", frame_index
        )
    else:
        spacing = ds.get("PixelSpacing")
        position = ds.get("ImagePositionPatient")
        orientation = ds.get("ImageOrientationPatient")
        slope = ds.get("RescaleSlope")
        intercept = ds.get("RescaleIntercept")
    slope_f = _floats(slope, 1)
    intercept_f = _floats(intercept, 1)
    return {
        "spacing": _floats(spacing, 2),
        "position": _floats(position, 3),
        "orientation": _floats(orientation, 6),
        "slope": slope_f[0] if slope_f else None,
        "intercept": intercept_f[0] if intercept_f else None,
    }


def _slice_position(
    position: tuple[float, ...] | None, orientation: tuple[float, ...] | None
) -> float | None:
    """Distance of the slice plane from the origin along its normal, mm.

    The normal (row direction x column direction) is (0, 0, 1) for axial slices, so this is the
    ImagePositionPatient z there; for oblique or coronal stacks it still orders the slices.
    """
    if position is None or orientation is None:
        return None
    normal = np.cross(np.asarray(orientation[:3]), np.asarray(orientation[3:]))
    length = float(np.linalg.norm(normal))
    if length < 1e-6:
        return None
    return float(np.dot(np.asarray(position), normal / length))


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return str(value).strip() if value is not None else ""


def dicom_pixels_refusal(ds: Dataset, limits: InputLimits) -> Refusal | None:
    """A refusal when a DICOM header promises more pixels than the limits allow.

    Rows x Columns is one frame (``image_pixels``), times NumberOfFrames the whole file
    (``dicom_pixels``): pydicom decodes all frames at once, so both are checked from the header
    before any pixel is read. Raises ValueError or TypeError on malformed values.
    """
    rows, columns = int(ds.Rows), int(ds.Columns)
    frames = int(ds.get("NumberOfFrames") or 1)
    if rows * columns > limits.image_pixels:
        return Refusal(
            f"image of {columns} x {rows} = {rows * columns:,} pixels per frame (from its header) "
            f"exceeds the limit of {limits.image_pixels:,} pixels; refused before decoding",
            IMAGE_PIXELS,
        )
    if rows * columns * frames > limits.dicom_pixels:
        return Refusal(
            f"{frames:,} frames of {columns} x {rows} = {rows * columns * frames:,} pixels (from "
            f"its header) exceed the limit of {limits.dicom_pixels:,} pixels; refused before "
            "decoding",
            IMAGE_PIXELS,
        )
    return None


def _ct_image(path: Path, ds: Dataset, limits: InputLimits = DEFAULT_LIMITS) -> CTImage | str:
    """The :class:`CTImage` of a CT header, or the reason it cannot be one."""
    sop_class = _text(ds, "SOPClassUID")
    if not sop_class:
        return "no SOP Class UID: not a DICOM object (or a truncated one)"
    if sop_class not in CT_SOP_CLASSES:
        name = pydicom.uid.UID(sop_class).name
        return f"SOP class {name} is not a CT image (expected CT Image Storage or Enhanced CT)"
    missing = [
        k
        for k in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "Rows", "Columns")
        if not _text(ds, k)
    ]
    if missing:
        return f"header lacks {', '.join(missing)} (truncated?)"
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames") or 1)
        instance = ds.get("InstanceNumber")
        instance_number = int(instance) if instance not in (None, "") else None
        too_many = dicom_pixels_refusal(ds, limits)
    except (TypeError, ValueError) as exc:
        return f"malformed Rows, Columns, NumberOfFrames or InstanceNumber ({exc})"
    if too_many is not None:
        return _with_rule(too_many)
    geometry = _geometry(ds)
    spacing = geometry["spacing"]
    if spacing is None or min(spacing) <= 0.0:
        return "no valid PixelSpacing (two positive numbers, mm): lengths cannot be measured on it"
    implausible = limits.spacing_problem(spacing, "PixelSpacing")
    if implausible is not None:
        return f"{implausible} (rule {SPACING_RANGE})"
    position, orientation = geometry["position"], geometry["orientation"]
    return CTImage(
        sop_instance_uid=_text(ds, "SOPInstanceUID"),
        series_instance_uid=_text(ds, "SeriesInstanceUID"),
        study_instance_uid=_text(ds, "StudyInstanceUID"),
        patient_id=_text(ds, "PatientID"),
        path=path,
        rows=rows,
        columns=columns,
        # DICOM gives (row spacing, column spacing) = (y, x); LesionKG keeps (x, y).
        pixel_spacing_mm=(spacing[1], spacing[0]),
        slice_position_mm=_slice_position(position, orientation),
        image_position_patient=position,
        image_orientation_patient=orientation,
        number_of_frames=frames,
        rescale_slope=geometry["slope"],
        rescale_intercept=geometry["intercept"],
        sop_class_uid=sop_class,
        instance_number=instance_number,
    )


def _with_rule(refusal: Refusal) -> str:
    # CTIndex.skipped holds reasons as text; the rule goes in it as Problem.__str__ writes it.
    return f"{refusal.reason} (rule {refusal.rule})"


def truncation(
    ds: Dataset, caught: list[warnings.WarningMessage], size: int | None = None
) -> str | None:
    """Why a data set read by pydicom looks cut short, or None.

    pydicom reads a truncated file without raising: it warns at an unexpected end of file
    (``caught``: the warnings recorded while reading), gives a short value to an element whose
    declared length runs past the end, and drops a last element header of fewer than 8 bytes.
    Each leaves a trace checked here; the last one only when ``size`` (bytes of the whole file) is
    given, i.e. when the whole file was read, not just the header.
    """
    for w in caught:
        text = str(w.message)
        if "EOF" in text or "end of file" in text.lower():
            return f"the file ends inside a data element ({text.splitlines()[0][:120]})"
    last_end = 0
    for tag in list(ds.keys()):
        raw = ds.get_item(tag)
        if not isinstance(raw, RawDataElement) or raw.length == _UNDEFINED_LENGTH:
            # A parsed undefined-length sequence: its extent is unknown, so no end check.
            last_end = -1
            continue
        got = len(raw.value) if raw.value is not None else raw.length
        if got < raw.length:
            return f"element {BaseTag(tag)} declares {raw.length} bytes, the file holds {got}"
        last_end = raw.value_tell + raw.length
    if size is not None and 0 <= last_end < size and len(ds) > 0:
        return f"{size - last_end} byte(s) at the end do not form a whole data element"
    return None


def _pixels_short(ds: Dataset, size: int) -> str | None:
    """Why the pixel data after a header read with ``stop_before_pixels`` cannot be whole.

    Uncompressed pixels have a known size, so a file cut in its pixel data is caught while
    indexing rather than when its pixels are first needed.
    """
    ends = []
    for tag in list(ds.keys()):
        # pydicom types get_item(tag) as a DataElement; a header read lazily holds raw elements
        raw: DataElement | RawDataElement = ds.get_item(tag)
        if isinstance(raw, RawDataElement) and raw.length != _UNDEFINED_LENGTH:
            ends.append(raw.value_tell + raw.length)
    if not ends:
        return None
    header_end = max(ends)
    if header_end >= size:
        return "no pixel data: the file ends with its header (truncated?)"
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax is None or pydicom.uid.UID(str(syntax)).is_compressed:
        return None
    try:
        expected = (
            int(ds.Rows)
            * int(ds.Columns)
            * int(ds.get("NumberOfFrames") or 1)
            * int(ds.get("SamplesPerPixel") or 1)
            * int(ds.BitsAllocated)
            // 8
        )
    except (AttributeError, TypeError, ValueError):
        return None
    # The pixel data element header takes 8 bytes (implicit VR) or 12 (explicit VR, OW/OB).
    available = size - header_end - 8
    if available < expected:
        return (
            f"truncated: its pixel data needs {expected} bytes, the file holds at most {available}"
        )
    return None


def _files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    problems: list[Problem] = []
    roots = [Path(p) for p in paths]
    for root in roots:
        if not root.exists():
            problems.append(Problem(str(root), None, None, "no such file or folder"))
    if problems:
        # A mistyped input is the caller's error, not a file to skip quietly.
        raise InvalidInputError(problems, outcome="no CT image was indexed")
    for root in roots:
        if root.is_dir():
            # Sorted, so that which of two duplicate files wins does not depend on the file system.
            yield from sorted(p for p in root.rglob("*") if p.is_file())
        else:
            yield root


def read_ct_header(
    path: str | os.PathLike[str], limits: InputLimits | None = None
) -> CTImage | str:
    """The :class:`CTImage` of one file, or the reason it is not a usable CT image.

    A reason given by an input limit or plausibility rule ends with ``(rule NAME)``.
    """
    return _read_header(Path(path), limits if limits is not None else DEFAULT_LIMITS)[0]


#: modalities whose objects are images (the rest, SEG, SR, PR, RTSTRUCT..., are other objects)
_IMAGE_MODALITIES = frozenset({"CT", "MR", "PT", "NM", "US", "XA", "CR", "DX", "MG", "OT"})


def dicom_object_kind(sop_class_uid: str, modality: str) -> str:
    """What a DICOM object is, in a report's words: "MR image", "SEG object", "CT image"."""
    modality = modality.strip().upper()
    if sop_class_uid in CT_SOP_CLASSES:
        return "CT image"
    noun = "image" if modality in _IMAGE_MODALITIES else "object"
    return f"{modality or 'DICOM'} {noun}"


def _found_instead(file: Path, ds: Dataset, reason: str) -> tuple[str, str] | None:
    """``(SOP Instance UID, clause)`` for a DICOM object that was read but not indexed."""
    uid = _text(ds, "SOPInstanceUID")
    if not uid:
        return None
    sop_class = _text(ds, "SOPClassUID")
    if sop_class in CT_SOP_CLASSES:
        return uid, f"it is a CT image in {file} that could not be used: {reason}"
    kind = dicom_object_kind(sop_class, _text(ds, "Modality"))
    name = pydicom.uid.UID(sop_class).name if sop_class else "no SOP class"
    # "an MR image", "an SR object", but "a SEG object": SEG is said as a word
    article = "an" if kind[0] in "AEFHILMNORSX" and not kind.startswith("SEG") else "a"
    return uid, f"it is {article} {kind} ({name}) in {file}, and lengths are measured on CT only"


def _read_header(file: Path, limits: InputLimits) -> tuple[CTImage | str, tuple[str, str] | None]:
    """:func:`read_ct_header`'s answer, and for a DICOM object that is not a usable CT image its
    :func:`_found_instead`."""
    not_regular = regular_file_refusal(file)
    if not_regular is not None:
        return _with_rule(not_regular), None
    # pydicom warns rather than raises at a premature end of file; those warnings are reasons.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(file, stop_before_pixels=True)
        except InvalidDicomError:
            return "not a DICOM file (no 'DICM' marker after the 128-byte preamble)", None
        except Exception as exc:  # pydicom raises many types on corrupt input
            reason = f"cannot be read as DICOM: truncated or corrupt ({type(exc).__name__}: {exc})"
            return reason, None
    cut = truncation(ds, caught)
    if cut is not None:
        return f"truncated: {cut}", None
    try:
        image = _ct_image(file, ds, limits)
        if isinstance(image, CTImage):
            short = _pixels_short(ds, file.stat().st_size)
            image = short if short is not None else image
    except Exception as exc:  # values are decoded lazily, so late errors too
        image = f"malformed DICOM header ({type(exc).__name__}: {exc})"
    if isinstance(image, CTImage):
        return image, None
    try:
        return image, _found_instead(file, ds, image)
    except Exception:  # a header too broken to say more than its reason
        return image, None


def index_ct_images(
    paths: Iterable[str | os.PathLike[str]], *, limits: InputLimits | None = None
) -> CTIndex:
    """Index the CT images among ``paths`` (files and folders, walked recursively).

    Headers only are read. Every file that is not indexed is listed in ``CTIndex.skipped`` with
    its reason; a second file with an already indexed SOP Instance UID is skipped as a duplicate
    (folders are walked in sorted order, so the first one in that order wins). A path that does
    not exist raises :class:`~lesionkg.core.errors.InvalidInputError`. ``limits`` (default
    :data:`~lesionkg.core.limits.DEFAULT_LIMITS`): an image with more pixels than allowed, or an
    implausible pixel spacing, is skipped with the rule in its reason.
    """
    images: dict[str, CTImage] = {}
    skipped: list[tuple[Path, str]] = []
    others: dict[str, str] = {}
    for file in _files(paths):
        result, instead = _read_header(file, limits if limits is not None else DEFAULT_LIMITS)
        if isinstance(result, str):
            skipped.append((file, result))
            if instead is not None:
                others.setdefault(*instead)
        elif result.sop_instance_uid in images:
            first = images[result.sop_instance_uid].path
            skipped.append((file, f"duplicate: same SOP Instance UID as {first}"))
        else:
            images[result.sop_instance_uid] = result
    return CTIndex(images, skipped, {u: t for u, t in others.items() if u not in images})


def read_hu(
    image: CTImage, frame: int | None = None, *, limits: InputLimits | None = None
) -> np.ndarray:
    """The image's pixels in Hounsfield units, float32, shape (rows, columns).

    ``frame`` is 1-based and needed only for multi-frame images (default: frame 1). HU = stored
    value * RescaleSlope + RescaleIntercept, with the frame's own rescale for Enhanced CT.
    Raises :class:`~lesionkg.core.errors.InvalidInputError` when the file changed since indexing,
    the pixels cannot be decoded (e.g. a compression without an installed decoder) or the rescale
    is missing, or the header now promises more pixels than ``limits`` allow (checked before
    decoding).
    """
    source = str(image.path)
    limits = limits if limits is not None else DEFAULT_LIMITS

    def fail(reason: str, rule: str | None = None) -> InvalidInputError:
        return InvalidInputError(
            [Problem(source, None, None, reason, rule)], outcome="no pixels read"
        )

    index = 0 if frame is None else frame - 1
    if not 0 <= index < image.number_of_frames:
        raise fail(f"frame {frame} does not exist: the image has {image.number_of_frames}")
    not_regular = regular_file_refusal(image.path)
    if not_regular is not None:
        raise fail(not_regular.reason, not_regular.rule)
    try:
        ds = pydicom.dcmread(image.path)
        if _text(ds, "SOPInstanceUID") != image.sop_instance_uid:
            raise fail("the file no longer holds the indexed SOP Instance UID (changed on disk)")
        too_many = dicom_pixels_refusal(ds, limits)
        if too_many is not None:
            raise fail(too_many.reason, too_many.rule)
        pixels = ds.pixel_array
    except InvalidInputError:
        raise
    except Exception as exc:  # pydicom raises many types on undecodable pixels
        raise fail(f"pixels cannot be read ({type(exc).__name__}: {exc})") from exc
    geometry = _geometry(ds, index) if image.number_of_frames > 1 else None
    slope = geometry["slope"] if geometry else image.rescale_slope
    intercept = geometry["intercept"] if geometry else image.rescale_intercept
    if slope is None or intercept is None:
        raise fail("no RescaleSlope/RescaleIntercept: stored values cannot be turned into HU")
    if image.number_of_frames > 1:
        pixels = pixels[index]
    if pixels.shape != (image.rows, image.columns):
        raise fail(f"pixel array shape {pixels.shape} is not rows x columns")
    return (pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)).astype(
        np.float32
    )


def neighbours(index: Mapping[str, CTImage], image: CTImage, n: int = 1) -> list[CTImage]:
    """Up to ``n`` slices on each side of ``image`` in its series, in ascending slice position.

    The image itself is not in the list. Images without a slice position (no position or
    orientation in their header) have no neighbours and are nobody's neighbour. Neighbours are
    other instances: the frames of one multi-frame instance are not split up.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if image.slice_position_mm is None or n == 0:
        return []
    if isinstance(index, CTIndex):
        series = index.series(image.series_instance_uid)
    else:
        members = (i for i in index.values() if i.series_instance_uid == image.series_instance_uid)
        series = _group_by_series(members).get(image.series_instance_uid, ())
    uids = [i.sop_instance_uid for i in series]
    if image.sop_instance_uid not in uids:
        return []
    at = uids.index(image.sop_instance_uid)
    return [*series[max(0, at - n) : at], *series[at + 1 : at + 1 + n]]
