"""SYNTHETIC AIM v4 annotations (ePAD JSON and AIM v4 XML) for tests and demos.

Made-up patients, studies and lesions, written from the AIM v4 schema (AIM_v4_rv44_XML.xsd) in the
shape ePAD exports: ISO 21090 wrappers (``{"value": ...}``, ``{"root": ...}``), RECIST calculations
("LongAxis", "ShortAxis", "Length") with their unit, 2-point ``TwoDimensionPolyline`` markups in
image coordinates referenced by ``CalculationEntityReferencesMarkupEntityStatement``, the image
reference (study, series, SOP instance), the person and the user. Every file says SYNTHETIC in the
collection's description, the person's name and each annotation's comment.

One description (:class:`SyntheticAnnotation`) gives both encodings: :func:`aim_collection`
builds the JSON tree, :func:`write_aim_json` writes it as ePAD does, :func:`write_aim_xml` writes
the same tree as AIM v4 XML.
"""

from __future__ import annotations

import hashlib
import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NAMESPACE_V4 = "gme://caCORE.caCORE/4.4/edu.northwestern.radiology.AIM"
_ISO = "uri:iso.org:21090"
_XSI = "http://www.w3.org/2001/XMLSchema-instance"
SYNTHETIC = "SYNTHETIC LesionKG test data, not a real patient"


@dataclass(frozen=True)
class SyntheticLine:
    """One length calculation and its line: ``name`` "LongAxis", "ShortAxis" or "Length"."""

    name: str
    value: float
    unit: str = "mm"
    #: (x1, y1, x2, y2) pixels, or None for a calculation without markup
    points: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class SyntheticAnnotation:
    """One ePAD-style RECIST annotation of one lesion on one CT slice."""

    name: str
    sop_instance_uid: str
    series_uid: str
    study_uid: str
    study_date: str = "20240301"
    study_time: str = "101500"
    lines: tuple[SyntheticLine, ...] = ()
    #: AIM v4 lesionUniqueIdentifier, when given
    lesion_uid: str | None = None
    #: (code, coding scheme, meaning) of the location
    site: tuple[str, str, str] | None = ("RID58", "RadLex", "liver")
    timepoint: str | None = None
    frame: int = 1
    date_time: str = "20240302093000"
    #: extra non-length calculations, e.g. ("Mean", "[hnsf'U]", 41.5)
    statistics: tuple[tuple[str, str, float], ...] = field(default_factory=tuple)


def _uid(*parts: str) -> str:
    """A deterministic 2.25 UID from the parts (same input, same file)."""
    digest = hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]
    return f"2.25.{int(digest, 16)}"


def _v(value: Any) -> dict[str, Any]:
    return {"value": value}


def _r(uid: str) -> dict[str, Any]:
    return {"root": uid}


def _code(code: str, scheme: str, meaning: str) -> dict[str, Any]:
    return {
        "code": code,
        "codeSystemName": scheme,
        "iso:displayName": {"xmlns:iso": _ISO, "value": meaning},
    }


_LENGTH_CODES = {
    "LongAxis": ("G-A185", "SRT", "Long Axis"),
    "ShortAxis": ("G-A186", "SRT", "Short Axis"),
    "Length": ("G-D7FE", "SRT", "Length"),
}


def _calculation(uid: str, name: str, unit: str, value: float) -> dict[str, Any]:
    code = _LENGTH_CODES.get(name, ("112031", "DCM", name))
    return {
        "uniqueIdentifier": _r(uid),
        "typeCode": [_code(*code)],
        "description": _v(name),
        "calculationResultCollection": {
            "CalculationResult": [
                {
                    "type": "Scalar",
                    "xsi:type": "ExtendedCalculationResult",
                    "unitOfMeasure": _v(unit),
                    "dataType": _code("C48870", "NCI", "Double"),
                    "dimensionCollection": {
                        "Dimension": [{"index": _v(0), "size": _v(1), "label": _v(name)}]
                    },
                    "calculationDataCollection": {
                        "CalculationData": [
                            {
                                "value": _v(repr(float(value))),
                                "coordinateCollection": {
                                    "Coordinate": [{"dimensionIndex": _v(0), "position": _v(0)}]
                                },
                            }
                        ]
                    },
                }
            ]
        },
    }


def _annotation(a: SyntheticAnnotation, n: int) -> dict[str, Any]:
    base = _uid(a.name, a.sop_instance_uid, str(n))
    calcs, markups, statements = [], [], []
    for i, line in enumerate(a.lines, 1):
        calc_uid = f"{base}.1{i}"
        calcs.append(_calculation(calc_uid, line.name, line.unit, line.value))
        if line.points is not None:
            markup_uid = f"{base}.2{i}"
            x1, y1, x2, y2 = line.points
            markups.append(
                {
                    "xsi:type": "TwoDimensionPolyline",
                    "uniqueIdentifier": _r(markup_uid),
                    "shapeIdentifier": _v(i),
                    "includeFlag": _v(True),
                    "imageReferenceUid": _r(a.sop_instance_uid),
                    "referencedFrameNumber": _v(a.frame),
                    "twoDimensionSpatialCoordinateCollection": {
                        "TwoDimensionSpatialCoordinate": [
                            {"coordinateIndex": _v(0), "x": _v(x1), "y": _v(y1)},
                            {"coordinateIndex": _v(1), "x": _v(x2), "y": _v(y2)},
                        ]
                    },
                }
            )
            statements.append(
                {
                    "xsi:type": "CalculationEntityReferencesMarkupEntityStatement",
                    "subjectUniqueIdentifier": _r(calc_uid),
                    "objectUniqueIdentifier": _r(markup_uid),
                }
            )
    for j, (name, unit, value) in enumerate(a.statistics, 1):
        calcs.append(_calculation(f"{base}.3{j}", name, unit, value))
    annotation: dict[str, Any] = {
        "uniqueIdentifier": _r(f"{base}.0"),
        "typeCode": [_code("RECIST", "99EPAD", "Tumor assessment")],
        "dateTime": _v(a.date_time),
        "name": _v(f"{a.name}~sp1~-~sp1~-1~sp1~#FFFFFF"),
        "comment": _v("SYNTHETIC"),
    }
    if a.site is not None:
        annotation["imagingPhysicalEntityCollection"] = {
            "ImagingPhysicalEntity": [
                {
                    "uniqueIdentifier": _r(f"{base}.4"),
                    "typeCode": [_code(*a.site)],
                    "label": _v("Location"),
                }
            ]
        }
    if calcs:
        annotation["calculationEntityCollection"] = {"CalculationEntity": calcs}
    if a.timepoint is not None:
        annotation["imagingObservationEntityCollection"] = {
            "ImagingObservationEntity": [
                {
                    "uniqueIdentifier": _r(f"{base}.5"),
                    "typeCode": [_code(a.timepoint, "99EPAD", a.timepoint)],
                    "label": _v("Timepoint"),
                }
            ]
        }
    if a.lesion_uid is not None:
        annotation["lesionObservationEntityCollection"] = {
            "LesionObservationEntity": [
                {
                    "xsi:type": "TimePointLesionObservationEntity",
                    "uniqueIdentifier": _r(f"{base}.6"),
                    "lesionUniqueIdentifier": _r(a.lesion_uid),
                    "calibration": _v(True),
                }
            ]
        }
    if markups:
        annotation["markupEntityCollection"] = {"MarkupEntity": markups}
        annotation["imageAnnotationStatementCollection"] = {"ImageAnnotationStatement": statements}
    annotation["imageReferenceEntityCollection"] = {
        "ImageReferenceEntity": [
            {
                "xsi:type": "DicomImageReferenceEntity",
                "uniqueIdentifier": _r(f"{base}.7"),
                "imageStudy": {
                    "instanceUid": _r(a.study_uid),
                    "startDate": _v(a.study_date),
                    "startTime": _v(a.study_time),
                    "imageSeries": {
                        "instanceUid": _r(a.series_uid),
                        "modality": _code("CT", "DCM", "Computed Tomography"),
                        "imageCollection": {
                            "Image": [
                                {
                                    "sopClassUid": _r("1.2.840.10008.5.1.4.1.1.2"),
                                    "sopInstanceUid": _r(a.sop_instance_uid),
                                }
                            ]
                        },
                    },
                },
            }
        ]
    }
    return annotation


def aim_collection(
    patient_id: str, annotations: list[SyntheticAnnotation], *, user: str = "reader1"
) -> dict[str, Any]:
    """The ePAD JSON tree ``{"ImageAnnotationCollection": {...}}`` of SYNTHETIC annotations."""
    return {
        "ImageAnnotationCollection": {
            "xmlns": NAMESPACE_V4,
            "xmlns:xsi": _XSI,
            "aimVersion": "AIMv4_0",
            "uniqueIdentifier": _r(_uid(patient_id, user)),
            "description": _v(SYNTHETIC),
            "dateTime": _v("20240302093000"),
            "user": {"name": _v(user), "loginName": _v(user)},
            "person": {"name": _v("SYNTHETIC^PATIENT"), "id": _v(patient_id)},
            "imageAnnotations": {
                "ImageAnnotation": [_annotation(a, n) for n, a in enumerate(annotations, 1)]
            },
        }
    }


def write_aim_json(path: str | os.PathLike[str], document: dict[str, Any]) -> Path:
    """Write an :func:`aim_collection` tree as ePAD's JSON."""
    out = Path(path)
    out.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return out


def _element(tag: str, node: dict[str, Any]) -> ET.Element:
    element = ET.Element(tag)
    for key, value in node.items():
        if key.startswith("xmlns"):
            continue  # ElementTree declares the namespaces its tags use
        if isinstance(value, dict):
            element.append(_element(_tag(key), value))
        elif isinstance(value, list):
            for item in value:
                element.append(_element(_tag(key), item))
        elif key == "xsi:type":
            element.set(f"{{{_XSI}}}type", str(value))
        else:
            element.set(key, str(value).lower() if isinstance(value, bool) else str(value))
    return element


def _tag(key: str) -> str:
    if key.startswith("iso:"):
        return f"{{{_ISO}}}{key[4:]}"
    return f"{{{NAMESPACE_V4}}}{key}"


def write_aim_xml(path: str | os.PathLike[str], document: dict[str, Any]) -> Path:
    """Write an :func:`aim_collection` tree as AIM v4 XML (default namespace AIM v4)."""
    ET.register_namespace("", NAMESPACE_V4)
    ET.register_namespace("iso", _ISO)
    ET.register_namespace("xsi", _XSI)
    root = _element(_tag("ImageAnnotationCollection"), document["ImageAnnotationCollection"])
    out = Path(path)
    ET.ElementTree(root).write(out, encoding="UTF-8", xml_declaration=True)
    return out
