"""The TID 1500 content tree of a DICOM SR measurement report: the concept codes read, and
navigation to its measurement groups, measurements, referenced images, lines and units."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import highdicom as hd
from pydicom.dataset import Dataset

from lesionkg.core.errors import InvalidInputError, Problem
from lesionkg.core.limits import LENGTH_NOT_POSITIVE

# The planar length concepts read (SNOMED CT and the legacy SNOMED-RT codes that older viewers still
# write) are the ones AIM calculations are coded with: one table, in the dependency-free AIM model.
# Re-exported (``as``) under the names the SR reader imports from here.
from lesionkg.loaders.aim_model import DIAMETER as DIAMETER
from lesionkg.loaders.aim_model import LENGTH as LENGTH
from lesionkg.loaders.aim_model import LENGTH_CODES as LENGTH_CONCEPTS
from lesionkg.loaders.aim_model import LONG_AXIS as LONG_AXIS
from lesionkg.loaders.aim_model import SHORT_AXIS as SHORT_AXIS

#: UCUM length units and their size in mm
UNIT_MM: dict[str, float] = {"mm": 1.0, "cm": 10.0, "um": 1e-3, "m": 1e3}

_VOLUME_CONCEPTS = {("SCT", "118565006"), ("SRT", "G-D705")}
_VOLUMETRIC_REFERENCES = {
    ("DCM", "121191"),  # Referenced Segment
    ("DCM", "121214"),  # Referenced Segmentation Frame
    ("DCM", "121232"),  # Source series for segmentation
    ("DCM", "121231"),  # Volume Surface
}
SEGMENT_IMAGE_NAMES = {("DCM", "121191"), ("DCM", "121214"), ("DCM", "121233")}

#: coding schemes whose code meanings are vocabulary, not typed text
STANDARD_SCHEMES = frozenset(
    {"SCT", "SRT", "DCM", "LN", "RADLEX", "UMLS", "NCIt", "FMA", "ACR", "UCUM", "MDC"}
)

#: DeepLesion coarse types implied by an organ-level finding site (SCT and SRT codes)
SITE_COARSE_TYPE: dict[tuple[str, str], int] = {
    ("SCT", "272673000"): 1,  # Bone structure
    ("SRT", "T-D016E"): 1,
    ("SCT", "72410000"): 3,  # Mediastinum
    ("SRT", "T-D3300"): 3,
    ("SCT", "10200004"): 4,  # Liver
    ("SRT", "T-62000"): 4,
    ("SCT", "39607008"): 5,  # Lung
    ("SRT", "T-28000"): 5,
    ("SCT", "64033007"): 6,  # Kidney
    ("SRT", "T-71000"): 6,
    ("SCT", "12921003"): 8,  # Pelvis
    ("SRT", "T-D6000"): 8,
}

SR_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR
        "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
        "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
        "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR
        "1.2.840.10008.5.1.4.1.1.88.35",  # Extensible SR
    }
)
REPORT = ("DCM", "126000")
_IMAGING_MEASUREMENTS = ("DCM", "126010")
_MEASUREMENT_GROUP = ("DCM", "125007")
OUTCOME = "no bookmark was read from it"


class SkipGroup(Exception):
    """A measurement group gives no bookmark; ``field`` names the measurement at fault, ``rule``
    the input limit or plausibility rule (:mod:`lesionkg.core.limits`) that refused it."""

    def __init__(self, reason: str, field: str | None = None, rule: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field
        self.rule = rule


@dataclass(frozen=True, slots=True)
class SRImageRef:
    uid: str
    frame: int | None


@dataclass(frozen=True, slots=True)
class MeasuredAxis:
    role: str
    value: float
    unit_code: str
    unit_scheme: str
    unit_meaning: str
    endpoints: tuple[float, float, float, float] | None
    #: why there are no endpoints (the graphic type), for reasons
    graphic: str | None
    image: SRImageRef | None


def _code_key(scheme: str, value: str) -> tuple[str, str]:
    # SNM3 is the old designator of the same SNOMED-RT codes as SRT.
    scheme = "SRT" if scheme == "SNM3" else scheme
    return scheme, value


def concept_key(concept: Any) -> tuple[str, str]:
    return _code_key(str(concept.scheme_designator), str(concept.value))


def raw_concept_key(item: Dataset) -> tuple[str, str] | None:
    """The concept name of a raw (pydicom) content item, or None without one."""
    names = item.get("ConceptNameCodeSequence")
    if not names:
        return None
    return _code_key(
        str(names[0].get("CodingSchemeDesignator", "")), str(names[0].get("CodeValue", ""))
    )


def first_line(exc: BaseException) -> str:
    # highdicom appends whole data set dumps to its messages; the first line says what is wrong.
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    line = line.rstrip(":")
    return f"{type(exc).__name__}: {line[:200]}"


def report_rejection(
    source: str, reason: str, column: str | None = None, rule: str | None = None
) -> InvalidInputError:
    return InvalidInputError([Problem(source, None, column, reason, rule)], outcome=OUTCOME)


def evidence_of(ds: Dataset) -> dict[str, tuple[str, str]]:
    """Series and study UID of each SOP instance the report lists as evidence."""
    found: dict[str, tuple[str, str]] = {}
    for name in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        for study in ds.get(name) or []:
            for series in study.get("ReferencedSeriesSequence") or []:
                for sop in series.get("ReferencedSOPSequence") or []:
                    uid = str(sop.get("ReferencedSOPInstanceUID", "") or "")
                    if uid:
                        found.setdefault(
                            uid,
                            (
                                str(series.get("SeriesInstanceUID", "") or ""),
                                str(study.get("StudyInstanceUID", "") or ""),
                            ),
                        )
    return found


def measurement_groups(ds: Dataset, source: str) -> list[Dataset]:
    groups: list[Dataset] = []
    for item in ds.ContentSequence:
        if raw_concept_key(item) == _IMAGING_MEASUREMENTS and item.get("ValueType") == "CONTAINER":
            groups.extend(
                g
                for g in item.get("ContentSequence") or []
                if raw_concept_key(g) == _MEASUREMENT_GROUP and g.get("ValueType") == "CONTAINER"
            )
    if not groups:
        raise report_rejection(
            source,
            "the report has no measurement groups: expected 'Measurement Group' (125007, DCM) "
            "containers in its 'Imaging Measurements' (126010, DCM) container",
            "ContentSequence",
        )
    return groups


def standard_meaning(concept: Any) -> str | None:
    """The code meaning when it comes from a standard vocabulary, else None (maybe free text)."""
    if concept is None:
        return None
    scheme = str(concept.scheme_designator)
    if scheme not in STANDARD_SCHEMES:
        return None
    meaning = str(concept.meaning).strip()
    return meaning or None


def image_of(item: Any) -> SRImageRef | None:
    """The IMAGE a content item was selected from (its child), or None."""
    for child in item.get("ContentSequence") or []:
        if getattr(child, "value_type", None) == hd.sr.ValueTypeValues.IMAGE:
            return image_item_ref(child)
    return None


def image_item_ref(item: Any) -> SRImageRef:
    frames = item.referenced_frame_numbers
    if frames is not None and len(frames) > 1:
        raise SkipGroup(f"the image reference names {len(frames)} frames {frames}; expected one")
    return SRImageRef(str(item.referenced_sop_instance_uid), frames[0] if frames else None)


def polyline_endpoints(scoord: Any) -> tuple[tuple[float, float, float, float] | None, str]:
    """Endpoints of a 2-point POLYLINE, and a description of the graphic for reasons."""
    points = scoord.value
    kind = str(scoord.GraphicType)
    if kind == "POLYLINE" and len(points) == 2:
        (x1, y1), (x2, y2) = points
        ends = (float(x1), float(y1), float(x2), float(y2))
        if all(math.isfinite(v) for v in ends):
            return ends, "2-point POLYLINE"
    return None, f"{kind} of {len(points)} point(s)"


def volumetric_references(group: Any) -> list[str]:
    """What marks a group as volumetric (segment references, volumes), for the skip reason."""
    marks = []
    for item in group[0].ContentSequence:
        key = concept_key(item.name)
        if key in _VOLUMETRIC_REFERENCES or key in _VOLUME_CONCEPTS:
            marks.append(str(item.name.meaning))
        elif item.value_type == hd.sr.ValueTypeValues.SCOORD3D:
            marks.append(f"3D coordinates ({item.name.meaning})")
    return marks


def describe_measurements(measurements: list[Any]) -> str:
    if not measurements:
        return "no measurement (NUM)"
    shown = [f"{m.name.meaning} [{m.unit.value}]" for m in measurements]
    return "only " + ", ".join(shown)


def has_length_unit(axis: MeasuredAxis) -> bool:
    return axis.unit_scheme == "UCUM" and axis.unit_code in UNIT_MM


def check_unit(axis: MeasuredAxis) -> None:
    """Reject a unit that is neither a length nor unitless, before asking for the image."""
    if not has_length_unit(axis) and not is_unitless(axis):
        raise SkipGroup(
            f"unit {unit_text(axis)} {_unit_kind(axis)}; expected a UCUM length unit "
            f"({', '.join(UNIT_MM)}), or unitless with a 2-point POLYLINE and the image",
            axis.role,
        )


def is_unitless(axis: MeasuredAxis) -> bool:
    # UCUM "1" is the unity; a bare annotation such as "{pixels}" also means 1.
    return axis.unit_code == "1" or re.fullmatch(r"\{[^}]*\}", axis.unit_code) is not None


def unit_text(axis: MeasuredAxis) -> str:
    return f"'{axis.unit_code}' ({axis.unit_scheme}, meaning '{axis.unit_meaning}')"


def _unit_kind(axis: MeasuredAxis) -> str:
    code = axis.unit_code
    if code in UNIT_MM:
        return f"is coded in {axis.unit_scheme}, not UCUM"
    if re.fullmatch(r"(mm|cm|um|m)2", code):
        return "is an area, not a length"
    if re.fullmatch(r"(mm|cm|um|m)3|ml|mL|l|L", code):
        return "is a volume, not a length"
    if code == "[hnsf'U]":
        return "is Hounsfield units, not a length"
    return "is not a length unit"


def _stated_lengths(item: Dataset) -> list[tuple[str, float]]:
    """Every value a raw NUM content item states, as written: NumericValue and, when present,
    FloatingPointValue. highdicom rebuilds a NUM from the float alone, so a NaN, negative or zero
    NumericValue beside a good float would pass unseen if only its value were read."""
    values: list[tuple[str, float]] = []
    for measured in item.get("MeasuredValueSequence") or []:
        for keyword in ("NumericValue", "FloatingPointValue"):
            raw = measured.get(keyword)
            if raw is None or str(raw).strip() == "":
                continue
            try:
                values.append((keyword, float(str(raw).strip())))
            except ValueError:
                values.append((keyword, math.nan))
    return values


def check_stated_lengths(items: Any) -> None:
    """Refuse the group when a length NUM anywhere in it states a value that is not a positive
    finite number (rule ``length_not_positive``), before highdicom reads it."""
    for item in items or []:
        role = LENGTH_CONCEPTS.get(raw_concept_key(item) or ("", ""))
        if role is not None and item.get("ValueType") == "NUM":
            for keyword, stated in _stated_lengths(item):
                if not math.isfinite(stated) or stated <= 0.0:
                    raise SkipGroup(
                        f"stated length {stated:g} ({keyword}) is not a positive finite length",
                        role,
                        LENGTH_NOT_POSITIVE,
                    )
        check_stated_lengths(item.get("ContentSequence"))
