"""The AIM model as LesionKG reads it: one record per image annotation, whatever the encoding.

The AIM readers (:mod:`lesionkg.loaders.aim_xml` for AIM v3 and v4 XML,
:mod:`lesionkg.loaders.aim_v4` for the v4 tree shared by XML and ePAD JSON,
:mod:`lesionkg.loaders.aim_sr` for AIM stored as DICOM SR) turn a file into
:class:`AimAnnotation` records; :mod:`lesionkg.loaders.aim` turns those into bookmarks. Keeping one
model means that a lesion measured in ePAD and exported as XML, JSON or SR gives the same bookmark.

Only what a bookmark needs is kept. Patient names, birth dates, sex, comments and other free text
of the annotation are never read into the model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

LONG_AXIS = "Long Axis"
SHORT_AXIS = "Short Axis"
LENGTH = "Length"
DIAMETER = "Diameter"

#: coded planar length concepts, (coding scheme, code value), SNOMED CT and legacy SNOMED-RT.
#: TID 1500 measurements code their lengths the same way: :mod:`lesionkg.loaders.sr_content` reads
#: this table too. It lives here because this module imports nothing heavy (sr_content pulls in
#: highdicom, which sniffing an AIM file at discovery should not load).
LENGTH_CODES: dict[tuple[str, str], str] = {
    ("SCT", "103339001"): LONG_AXIS,
    ("SRT", "G-A185"): LONG_AXIS,
    ("SCT", "103340004"): SHORT_AXIS,
    ("SRT", "G-A186"): SHORT_AXIS,
    ("SCT", "410668003"): LENGTH,
    ("SRT", "G-D7FE"): LENGTH,
    ("SCT", "81827009"): DIAMETER,
    ("SRT", "G-A22A"): DIAMETER,
}

#: calculation names (code meanings, descriptions, ePAD's labels) of planar lengths, compared
#: lower case without spaces, hyphens or underscores. Names win over codes: the AIM toolkit's
#: samples code "Length" as G-A22A, which SNOMED-RT calls Diameter.
LENGTH_NAMES: dict[str, str] = {
    "longaxis": LONG_AXIS,
    "longaxislength": LONG_AXIS,
    "longestdiameter": LONG_AXIS,
    "shortaxis": SHORT_AXIS,
    "shortaxislength": SHORT_AXIS,
    "length": LENGTH,
    "linelength": LENGTH,
    "linearmeasurement": LENGTH,
    "diameter": DIAMETER,
}

#: units of a stated length and their size in mm. ePAD writes "linear" for its line lengths, which
#: are centimetres (its RECIST report divides "mm" values by 10 and takes everything else as cm).
UNIT_MM: dict[str, float] = {
    "mm": 1.0,
    "millimeter": 1.0,
    "millimetre": 1.0,
    "cm": 10.0,
    "centimeter": 10.0,
    "centimetre": 10.0,
    "linear": 10.0,
    "um": 1e-3,
    "m": 1e3,
}

#: units that mean "no unit": the length is recomputed from the line and the image's spacing
UNITLESS: frozenset[str] = frozenset({"", "1", "px", "pixel", "pixels", "{pixels}", "{pixel}"})


class AimFormatError(Exception):
    """The AIM content is malformed; ``element`` names where (a path such as
    ``ImageAnnotation[2]/calculationEntityCollection/CalculationEntity[1]``)."""

    def __init__(self, element: str, reason: str) -> None:
        super().__init__(f"{element}: {reason}")
        self.element = element
        self.reason = reason


@dataclass(frozen=True, slots=True)
class AimCalculation:
    """One calculation result of an annotation (the first datum of its first result)."""

    element: str
    #: LONG_AXIS, SHORT_AXIS, LENGTH or DIAMETER; None for other calculations (mean HU, area...)
    role: str | None
    #: the calculation's name as written, for reasons
    meaning: str
    value: float | None
    #: unit as written (case kept, for reasons)
    unit: str
    #: uids (v4) or shape identifiers (v3) of the shapes it was computed from
    shape_refs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AimShape:
    """A two-dimensional geometric shape in image coordinates (x column, y row, pixels)."""

    element: str
    #: uid (v4) or shape identifier (v3), to resolve calculation references
    ref: str | None
    #: the shape type without namespace prefix: TwoDimensionPolyline, Polyline, MultiPoint...
    kind: str
    points: tuple[tuple[float, float], ...]
    image_uid: str | None
    frame: int | None


@dataclass(frozen=True, slots=True)
class AimImage:
    """An image the annotation references, with its series and study."""

    sop_instance_uid: str
    series_uid: str | None
    study_uid: str | None
    #: ISO 8601 study date or date and time, None when the annotation gives none
    study_datetime: str | None


@dataclass(frozen=True, slots=True)
class AimAnnotation:
    """One image annotation, as every AIM encoding gives it."""

    #: where it is in its file, e.g. ``.../imageAnnotations/ImageAnnotation[2]``
    element: str
    uid: str | None
    #: the annotation's name; ePAD's lesion name (before its first ``~``)
    name: str | None
    #: when it was annotated, ISO 8601
    date_time: str | None
    #: the reader (AIM user: name, else login name)
    observer: str | None
    patient_id: str | None
    images: tuple[AimImage, ...]
    calculations: tuple[AimCalculation, ...]
    shapes: tuple[AimShape, ...]
    #: the study when no image reference names it (ePAD's collection-level studyInstanceUid)
    study_uid: str | None = None
    #: the anatomic entity / location code meaning, from a standard coding scheme only
    finding_site: str | None = None
    #: AIM v4 lesionUniqueIdentifier, else ePAD's trackingUniqueIdentifier
    lesion_uid: str | None = None
    #: AIM v4 GeneralLesionObservationEntity trackingIdentifier
    tracking_identifier: str | None = None
    #: the timepoint (ePAD RECIST "Timepoint"), as written
    timepoint: str | None = None


#: coding schemes whose code meanings are vocabulary, not typed text (compared upper case)
STANDARD_SCHEMES = frozenset(
    {"SCT", "SRT", "SNM3", "DCM", "LN", "RADLEX", "UMLS", "NCIT", "NCI", "FMA", "ACR", "UCUM"}
)


def length_role(names: list[str], codes: list[tuple[str, str]]) -> str | None:
    """The planar length a calculation is, from its names (first) or codes, else None."""
    for name in names:
        role = LENGTH_NAMES.get(re.sub(r"[\s_\-]", "", name).lower())
        if role is not None:
            return role
    for scheme, value in codes:
        role = LENGTH_CODES.get(("SRT" if scheme.upper() == "SNM3" else scheme.upper(), value))
        if role is not None:
            return role
    return None


def parse_number(text: str | None, element: str) -> float:
    """A finite decimal number, or AimFormatError naming the element."""
    try:
        value = float(str(text).strip())
    except (TypeError, ValueError):
        raise AimFormatError(element, f"'{text}' is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise AimFormatError(element, f"'{text}' is not a finite number")
    return value


def parse_length_value(
    role: str | None,
    meaning: str,
    raw: str | None,
    element: str,
    number_element: str | None = None,
) -> float | None:
    """The value of a calculation that is a planar length (``role``); None for any other.

    Only lengths are read: a malformed HU mean beside a good length is not our business. A length
    without a value is an AimFormatError at ``element``; a malformed one names ``number_element``
    (v3 keeps the value in an attribute, ``.../@value``), by default ``element`` too.
    """
    if role is None:
        return None
    if raw is None:
        raise AimFormatError(element, f"the {meaning} calculation has no value")
    return parse_number(raw, number_element or element)


def missing_result(meaning: str, element: str) -> AimFormatError:
    """The error for a planar length calculation (``meaning``) that has no result at all."""
    return AimFormatError(element, f"the {meaning} calculation has no result")


def parse_point(
    index: str | None, x: str | None, y: str | None, position: int, prefix: str
) -> tuple[float, tuple[float, float]]:
    """(order, (x, y)) of a two-dimensional spatial coordinate, for :func:`order_points`.

    The order is its coordinateIndex, else its 1-based ``position`` in the file. ``prefix`` plus a
    field's name is where a malformed number is: ``.../SpatialCoordinate[1]/@`` for v3 attributes,
    ``.../TwoDimensionSpatialCoordinate[1]/`` for v4 elements.
    """
    order = parse_number(index, f"{prefix}coordinateIndex") if index is not None else position
    return order, (parse_number(x, f"{prefix}x"), parse_number(y, f"{prefix}y"))


def order_points(
    indexed: list[tuple[float, tuple[float, float]]],
) -> tuple[tuple[float, float], ...]:
    """The points of :func:`parse_point` by their order; equal indexes keep file order."""
    return tuple(point for _, point in sorted(indexed, key=lambda item: item[0]))


def parse_frame(text: str | None, element: str) -> int | None:
    """A referenced frame number; 0 and 1 mean a single-frame image (None).

    The AIM toolkit writes 0 and ePAD writes 1 for single-frame CT slices; DICOM frame numbers are
    1-based, so neither names a frame of a multi-frame image beyond the first.
    """
    if text is None or str(text).strip() == "":
        return None
    try:
        frame = int(float(str(text).strip()))
    except ValueError:
        raise AimFormatError(element, f"frame number '{text}' is not an integer") from None
    if frame < 0:
        raise AimFormatError(element, f"frame number {frame} is negative")
    return frame if frame > 1 else None


_TS = re.compile(
    r"^(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?)?(?:[+-]\d{4})?$"
)
_TIME = re.compile(r"^(\d{2}):?(\d{2})(?::?(\d{2})(?:\.(\d{1,6}))?)?$")


def iso_timestamp(text: str | None, element: str) -> str | None:
    """ISO 8601 from an AIM timestamp: ISO 21090 TS (``20161127153026``) or xs:dateTime.

    Returns the date alone when no time is given; None for an empty value; AimFormatError for a
    malformed one. A time zone offset is dropped: studies are ordered within one hospital.
    """
    if text is None or not str(text).strip():
        return None
    value = str(text).strip()
    m = _TS.match(value)
    try:
        if m:
            year, month, day, hour, minute, second, fraction = m.groups()
            if hour is None:
                return date(int(year), int(month), int(day)).isoformat()
            micro = int((fraction or "0").ljust(6, "0"))
            return datetime(
                int(year),
                int(month),
                int(day),
                int(hour),
                int(minute or 0),
                min(int(second or 0), 59),
                micro,
            ).isoformat()
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return when.replace(tzinfo=None).isoformat()
    except ValueError:
        raise AimFormatError(
            element, f"'{value}' is not a date and time (YYYYMMDDhhmmss or ISO 8601)"
        ) from None


def study_datetime(date_text: str | None, time_text: str | None, element: str) -> str | None:
    """The study's ISO date, with its time when the time is a plain time of day.

    ``date_text`` is a TS or xs:dateTime (only its date is used); ``time_text`` a TS time
    (``131700``) or xs:time (``13:17:00``). The AIM toolkit writes a signed placeholder
    (``+00:00:00.000000``) for an unknown time: a signed or unreadable time gives the date alone,
    the same as the DICOM SR twin of such a file (whose Study Date carries no time).
    """
    day = iso_timestamp(date_text, f"{element}/startDate")
    if day is None:
        return None
    day = day[:10]
    time = (time_text or "").strip()
    m = _TIME.match(time)
    if not m:
        return day
    hour, minute, second, fraction = m.groups()
    try:
        when = datetime.fromisoformat(day).replace(
            hour=int(hour),
            minute=int(minute),
            second=min(int(second or 0), 59),
            microsecond=int((fraction or "0").ljust(6, "0")),
        )
    except ValueError:
        raise AimFormatError(f"{element}/startTime", f"'{time}' is not a time of day") from None
    return when.isoformat()


def standard_meaning(scheme: str | None, meaning: str | None) -> str | None:
    """A code meaning when its scheme is a standard vocabulary, else None (maybe typed text)."""
    if not scheme or not meaning or scheme.strip().upper() not in STANDARD_SCHEMES:
        return None
    return meaning.strip() or None
