"""AIM stored as DICOM SR: the NCI AIM toolkit's "AIM SR Report", read into the AIM model.

The AIM toolkit's converter (AIMConverter, AIM XML to DICOM SR) writes a Comprehensive SR whose
document title is ``(zzz001, 99NCIAIM, "AIM SR Report")``, a private coding scheme, and whose
content is the AIM model rather than TID 1500:

* an "Image Library" (111028, DCM) of IMAGE entries, each with its Study Instance UID (110180),
  Study Date (111060), Study Time (111061) and Series Instance UID (112002);
* the observer context: Person Observer Name (121008, DCM) and login name (zzz026);
* one "AIM Annotation" container (zzz002) per annotation, with its Observation DateTime, the
  annotation's uniqueIdentifier as "Tracking Unique Identifier" (112040, DCM) and its name as
  "Tracking Identifier" (112039, DCM), the "Anatomic Entity" (zzz008), "Calculation" containers
  (zzz011: the calculation type as "Measurement Method" (G-C036, SRT), a "Calculation
  Description" (112034) and the result as a NUM "Calculation Result" (zzz015)), and an "Image
  Annotation" container (zzz030) of "Geometric Shape" SCOORDs (zzz022) SELECTED FROM the image.

The "Tracking Unique Identifier" there is the annotation's own uid (a new one per annotation),
not a lesion's: it is kept as the annotation uid, never as a tracking UID. The patient is the
data set's PatientID (the converter writes AIM's Person id there).
"""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from lesionkg.loaders.aim_model import (
    AimAnnotation,
    AimCalculation,
    AimFormatError,
    AimImage,
    AimShape,
    iso_timestamp,
    length_role,
    missing_result,
    parse_frame,
    parse_length_value,
    standard_meaning,
)

AIM_SCHEME = "99NCIAIM"
_TITLE = (AIM_SCHEME, "zzz001")
_ANNOTATION = (AIM_SCHEME, "zzz002")
_CALCULATION = (AIM_SCHEME, "zzz011")
_RESULT = (AIM_SCHEME, "zzz015")
_IMAGE_ANNOTATION = (AIM_SCHEME, "zzz030")
_SHAPE = (AIM_SCHEME, "zzz022")
_ANATOMIC_ENTITY = (AIM_SCHEME, "zzz008")
_LOGIN = (AIM_SCHEME, "zzz026")
_IMAGE_LIBRARY = ("DCM", "111028")
_OBSERVER_NAME = ("DCM", "121008")
_STUDY_UID = ("DCM", "110180")
_STUDY_DATE = ("DCM", "111060")
_STUDY_TIME = ("DCM", "111061")
_SERIES_UID = ("DCM", "112002")
_TRACKING_UID = ("DCM", "112040")
_TRACKING_ID = ("DCM", "112039")
_DESCRIPTION = ("DCM", "112034")
_METHOD = ("SRT", "G-C036")


def _concept(item: Any) -> tuple[str, str] | None:
    names = item.get("ConceptNameCodeSequence")
    if not names:
        return None
    return (str(names[0].get("CodingSchemeDesignator", "")), str(names[0].get("CodeValue", "")))


def is_aim_sr(dataset: Dataset) -> bool:
    """Whether a DICOM data set is an AIM SR Report (read it with :func:`read_aim`, not as TID
    1500): its document title is (zzz001, 99NCIAIM) or has the meaning "AIM SR Report"."""
    names = dataset.get("ConceptNameCodeSequence")
    if not names or dataset.get("ValueType") != "CONTAINER":
        return False
    code = names[0]
    if _concept(dataset) == _TITLE:
        return True
    return str(code.get("CodeMeaning", "")).strip().lower() == "aim sr report"


def _children(item: Any) -> list[Any]:
    return list(item.get("ContentSequence") or [])


def _text(item: Any) -> str | None:
    kind = item.get("ValueType")
    if kind in ("TEXT",):
        value = str(item.get("TextValue", "") or "").strip()
    elif kind == "UIDREF":
        value = str(item.get("UID", "") or "").strip()
    elif kind == "PNAME":
        value = str(item.get("PersonName", "") or "").strip()
    elif kind == "DATE":
        value = str(item.get("Date", "") or "").strip()
    elif kind == "TIME":
        value = str(item.get("Time", "") or "").strip()
    else:
        return None
    return value or None


def _code(item: Any) -> tuple[str, str, str] | None:
    codes = item.get("ConceptCodeSequence")
    if not codes:
        return None
    c = codes[0]
    return (
        str(c.get("CodingSchemeDesignator", "")),
        str(c.get("CodeValue", "")),
        str(c.get("CodeMeaning", "")),
    )


def _image_ref(item: Any) -> tuple[str, int | None] | None:
    refs = item.get("ReferencedSOPSequence")
    if not refs:
        return None
    uid = str(refs[0].get("ReferencedSOPInstanceUID", "") or "").strip()
    frames = refs[0].get("ReferencedFrameNumber")
    frame = None
    if frames is not None and str(frames).strip():
        values = list(frames) if isinstance(frames, MultiValue) else [frames]
        frame = parse_frame(str(values[0]), "ReferencedFrameNumber")
    return (uid, frame) if uid else None


def _library(ds: Dataset) -> tuple[AimImage, ...]:
    images: list[AimImage] = []
    for item in _children(ds):
        if _concept(item) != _IMAGE_LIBRARY:
            continue
        for entry in _children(item):
            ref = _image_ref(entry)
            if entry.get("ValueType") != "IMAGE" or ref is None:
                continue
            values = {_concept(c): _text(c) for c in _children(entry)}
            day = values.get(_STUDY_DATE)
            time = values.get(_STUDY_TIME)
            when = iso_timestamp(day + (time or "") if day else None, "Image Library Entry")
            images.append(AimImage(ref[0], values.get(_SERIES_UID), values.get(_STUDY_UID), when))
    return tuple(images)


def _observer(ds: Dataset) -> str | None:
    name = login = None
    for item in _children(ds):
        if item.get("ValueType") == "CONTAINER":
            continue  # the observer context sits at the top, not in the annotations
        for child in [item, *_children(item)]:
            if _concept(child) == _OBSERVER_NAME:
                name = name or _text(child)
            elif _concept(child) == _LOGIN:
                login = login or _text(child)
    return name or login


def _calculation(item: Any, at: str) -> AimCalculation:
    names: list[str] = []
    codes: list[tuple[str, str]] = []
    value_item = None
    for child in _children(item):
        concept = _concept(child)
        code = _code(child)
        if concept == _METHOD and code is not None:
            codes.append((code[0], code[1]))
            names.append(code[2])
        elif concept == _DESCRIPTION:
            names.extend(t for t in [_text(child)] if t)
        elif concept == _RESULT and child.get("ValueType") == "NUM":
            value_item = value_item or child
    role = length_role(names, codes)
    meaning = next((n for n in names if n), "calculation")
    if value_item is None:
        if role is not None:
            raise missing_result(meaning, f"{at}/Calculation Result")
        return AimCalculation(at, None, meaning, None, "")
    measured = value_item.get("MeasuredValueSequence") or []
    unit = ""
    raw = None
    if measured:
        raw = measured[0].get("NumericValue")
        units = measured[0].get("MeasurementUnitsCodeSequence") or []
        if units:
            unit = str(units[0].get("CodeValue", "") or "")
    value = parse_length_value(
        role, meaning, None if raw is None else str(raw), f"{at}/Calculation Result"
    )
    return AimCalculation(at, role, meaning, value, unit)


def _shapes(item: Any, at: str) -> list[AimShape]:
    shapes: list[AimShape] = []

    def visit(node: Any) -> None:
        for child in _children(node):
            if child.get("ValueType") == "SCOORD":
                data = [float(v) for v in (child.get("GraphicData") or [])]
                points = tuple(zip(data[0::2], data[1::2], strict=False))
                image = next(
                    (_image_ref(c) for c in _children(child) if c.get("ValueType") == "IMAGE"),
                    None,
                )
                shapes.append(
                    AimShape(
                        element=f"{at}/Geometric Shape[{len(shapes) + 1}]",
                        ref=None,
                        kind=str(child.get("GraphicType", "")),
                        points=points,
                        image_uid=image[0] if image else None,
                        frame=image[1] if image else None,
                    )
                )
            else:
                visit(child)

    visit(item)
    return shapes


def read_aim_sr(ds: Dataset) -> tuple[list[AimAnnotation], list[AimFormatError]]:
    """The annotations of an AIM SR Report data set (check :func:`is_aim_sr` first)."""
    patient = str(ds.get("PatientID", "") or "").strip() or None
    library = _library(ds)
    observer = _observer(ds)
    containers = [item for item in _children(ds) if _concept(item) == _ANNOTATION]
    if not containers:
        raise AimFormatError(
            "ContentSequence", "the AIM SR Report holds no 'AIM Annotation' (zzz002) container"
        )
    found: list[AimAnnotation] = []
    errors: list[AimFormatError] = []
    for i, container in enumerate(containers, 1):
        where = f"AIM Annotation[{i}]"
        try:
            uid = name = site = None
            calculations: list[AimCalculation] = []
            shapes: list[AimShape] = []
            for child in _children(container):
                concept = _concept(child)
                if concept == _TRACKING_UID:
                    uid = uid or _text(child)
                elif concept == _TRACKING_ID:
                    name = name or _text(child)
                elif concept == _ANATOMIC_ENTITY and (code := _code(child)) is not None:
                    site = site or standard_meaning(code[0], code[2])
                elif concept == _CALCULATION:
                    calculations.append(
                        _calculation(child, f"{where}/Calculation[{len(calculations) + 1}]")
                    )
                elif concept == _IMAGE_ANNOTATION:
                    shapes.extend(_shapes(child, f"{where}/Image Annotation"))
            when = str(container.get("ObservationDateTime", "") or "").strip()
            found.append(
                AimAnnotation(
                    element=where,
                    uid=uid,
                    name=name,
                    date_time=iso_timestamp(
                        when.split("+")[0] or None, f"{where}/ObservationDateTime"
                    ),
                    observer=observer,
                    patient_id=patient,
                    images=library,
                    calculations=tuple(calculations),
                    shapes=tuple(shapes),
                    finding_site=site,
                    study_uid=str(ds.get("StudyInstanceUID", "") or "").strip() or None,
                )
            )
        except AimFormatError as exc:
            errors.append(exc)
    return found, errors
