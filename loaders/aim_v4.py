"""AIM v4 (``ImageAnnotationCollection``) as a tree, shared by its XML and ePAD's JSON encodings.

AIM v4 XML writes every value as an ISO 21090 data type element (``<name value="Lesion1"/>``,
``<uniqueIdentifier root="2.25..."/>``, ``<typeCode code=".." codeSystemName=".."><iso:displayName
value=".."/></typeCode>``); ePAD's JSON is the same tree with the same wrappers
(``{"name": {"value": "Lesion1"}}``). Both are turned into one normalised tree (dicts of attribute
values and lists of child dicts, keys without namespace prefixes, ``xsi:type`` as ``xsi_type``)
and read here into :class:`~lesionkg.loaders.aim_model.AimAnnotation` records.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from lesionkg.loaders.aim_model import (
    AimAnnotation,
    AimCalculation,
    AimFormatError,
    AimImage,
    AimShape,
    iso_timestamp,
    length_role,
    missing_result,
    order_points,
    parse_frame,
    parse_length_value,
    parse_point,
    standard_meaning,
    study_datetime,
)

#: the AIM v4 XML namespace (AIM_v4_rv44_XML.xsd targetNamespace; ePAD writes it too)
NAMESPACE_V4 = "gme://caCORE.caCORE/4.4/edu.northwestern.radiology.AIM"
#: the tree's key for ``xsi:type``, whichever encoding (XML attribute, JSON key) it came from
XSI_TYPE = "xsi_type"

Tree = dict[str, Any]


def normalise_key(key: str) -> str | None:
    """A JSON key as the tree names it: ``xsi:type`` is ``xsi_type``, other prefixes dropped,
    namespace declarations (``xmlns``, ``xmlns:iso``) None (skipped)."""
    if key == "xmlns" or key.startswith("xmlns:"):
        return None
    if key == "xsi:type":
        return XSI_TYPE
    return key.split(":", 1)[1] if ":" in key else key


def normalise(value: Any) -> Any:
    """The normalised tree of a JSON value (keys as :func:`normalise_key` gives them)."""
    if isinstance(value, dict):
        out: Tree = {}
        for key, item in value.items():
            name = normalise_key(str(key))
            if name is not None:
                out[name] = normalise(item)
        return out
    if isinstance(value, list):
        return [normalise(item) for item in value]
    return value


def many(node: Tree | None, key: str) -> list[Tree]:
    """The child objects named ``key``: XML gives lists, ePAD one object or a list."""
    if node is None:
        return []
    value = node.get(key)
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, dict)]
    return []


def one(node: Tree | None, key: str) -> Tree | None:
    found = many(node, key)
    return found[0] if found else None


def attr(node: Tree | None, key: str, name: str = "value") -> str | None:
    """The ``value`` (or ``root``, ``code``...) of the child ``key``, as text; None when absent."""
    child = one(node, key)
    if child is None:
        return None
    value = child.get(name)
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    return text or None


def shape_kind(node: Tree) -> str:
    kind = str(node.get(XSI_TYPE) or "")
    return kind.split(":", 1)[-1]


def _codes(node: Tree) -> list[tuple[str, str, str]]:
    """(scheme, code, meaning) of each typeCode."""
    out = []
    for code in many(node, "typeCode"):
        meaning = attr(code, "displayName") or ""
        out.append((str(code.get("codeSystemName") or ""), str(code.get("code") or ""), meaning))
    return out


def _labelled(node: Any, label: str) -> Iterator[Tree]:
    """Every object under ``node`` whose ``label`` value is ``label`` (case-insensitive)."""
    if isinstance(node, dict):
        if (attr(node, "label") or "").lower() == label:
            yield node
        for value in node.values():
            yield from _labelled(value, label)
    elif isinstance(node, list):
        for value in node:
            yield from _labelled(value, label)


def _timepoint(annotation: Tree) -> str | None:
    for node in _labelled(annotation, "timepoint"):
        for q in many(
            one(node, "characteristicQuantificationCollection"), "CharacteristicQuantification"
        ):
            value = attr(q, "value")
            if value is not None:
                return value
        codes = _codes(node)
        if codes:
            return codes[0][2] or codes[0][1] or None
    for question in many(one(annotation, "questionCollection"), "Question"):
        if (attr(question, "question") or "").lower() == "timepoint":
            return attr(question, "answer")
    return None


def _images(annotation: Tree, where: str) -> tuple[AimImage, ...]:
    images: list[AimImage] = []
    refs = many(one(annotation, "imageReferenceEntityCollection"), "ImageReferenceEntity")
    for r, ref in enumerate(refs, 1):
        at = f"{where}/imageReferenceEntityCollection/ImageReferenceEntity[{r}]"
        study = one(ref, "imageStudy")
        if study is None:
            continue  # a web or other non-DICOM image reference: nothing to measure on
        study_uid = attr(study, "instanceUid", "root")
        when = study_datetime(
            attr(study, "startDate"), attr(study, "startTime"), f"{at}/imageStudy"
        )
        series = one(study, "imageSeries")
        series_uid = attr(series, "instanceUid", "root")
        for image in many(one(series, "imageCollection"), "Image"):
            sop = attr(image, "sopInstanceUid", "root")
            if sop:
                images.append(AimImage(sop, series_uid, study_uid, when))
    return tuple(images)


def _shape_refs(annotation: Tree) -> dict[str, tuple[str, ...]]:
    """Markup uids each calculation uid references (CalculationEntityReferencesMarkupEntity)."""
    refs: dict[str, list[str]] = {}
    statements = many(
        one(annotation, "imageAnnotationStatementCollection"), "ImageAnnotationStatement"
    )
    for s in statements:
        if shape_kind(s) != "CalculationEntityReferencesMarkupEntityStatement":
            continue
        subject = attr(s, "subjectUniqueIdentifier", "root")
        target = attr(s, "objectUniqueIdentifier", "root")
        if subject and target and target not in refs.setdefault(subject, []):
            refs[subject].append(target)
    return {k: tuple(v) for k, v in refs.items()}


def _calculations(annotation: Tree, where: str) -> tuple[AimCalculation, ...]:
    refs = _shape_refs(annotation)
    out: list[AimCalculation] = []
    calcs = many(one(annotation, "calculationEntityCollection"), "CalculationEntity")
    for c, calc in enumerate(calcs, 1):
        at = f"{where}/calculationEntityCollection/CalculationEntity[{c}]"
        codes = _codes(calc)
        description = attr(calc, "description") or ""
        names = [m for _, _, m in codes if m] + ([description] if description else [])
        role = length_role(names, [(s, v) for s, v, _ in codes])
        meaning = description or (codes[-1][2] if codes else "") or "calculation"
        results = many(one(calc, "calculationResultCollection"), "CalculationResult")
        value: float | None = None
        unit = ""
        if results:
            result = results[0]
            unit = attr(result, "unitOfMeasure") or ""
            rat = f"{at}/calculationResultCollection/CalculationResult[1]"
            if shape_kind(result) == "CompactCalculationResult":
                raw, vat = attr(result, "value"), f"{rat}/value"
            else:
                data = one(one(result, "calculationDataCollection"), "CalculationData")
                raw = attr(data, "value")
                vat = f"{rat}/calculationDataCollection/CalculationData[1]/value"
            value = parse_length_value(role, meaning, raw, vat)
        elif role is not None:
            raise missing_result(meaning, f"{at}/calculationResultCollection")
        uid = attr(calc, "uniqueIdentifier", "root")
        out.append(AimCalculation(at, role, meaning, value, unit, refs.get(uid or "", ())))
    return tuple(out)


def _shapes(annotation: Tree, where: str) -> tuple[AimShape, ...]:
    out: list[AimShape] = []
    markups = many(one(annotation, "markupEntityCollection"), "MarkupEntity")
    for m, markup in enumerate(markups, 1):
        at = f"{where}/markupEntityCollection/MarkupEntity[{m}]"
        kind = shape_kind(markup)
        coords = many(
            one(markup, "twoDimensionSpatialCoordinateCollection"), "TwoDimensionSpatialCoordinate"
        )
        indexed = []
        for p, coord in enumerate(coords, 1):
            cat = f"{at}/twoDimensionSpatialCoordinateCollection/TwoDimensionSpatialCoordinate[{p}]"
            indexed.append(
                parse_point(
                    attr(coord, "coordinateIndex"), attr(coord, "x"), attr(coord, "y"), p, f"{cat}/"
                )
            )
        points = order_points(indexed)
        out.append(
            AimShape(
                element=at,
                ref=attr(markup, "uniqueIdentifier", "root"),
                kind=kind,
                points=points,
                image_uid=attr(markup, "imageReferenceUid", "root"),
                frame=parse_frame(
                    attr(markup, "referencedFrameNumber"), f"{at}/referencedFrameNumber"
                ),
            )
        )
    return tuple(out)


def _site(annotation: Tree) -> str | None:
    entities = many(one(annotation, "imagingPhysicalEntityCollection"), "ImagingPhysicalEntity")
    # ePAD labels the anatomy "Location"; prefer it over other physical entities.
    entities.sort(key=lambda e: (attr(e, "label") or "").lower() != "location")
    for entity in entities:
        for scheme, _, meaning in _codes(entity):
            found = standard_meaning(scheme, meaning)
            if found:
                return found
    return None


def _lesion(annotation: Tree) -> tuple[str | None, str | None]:
    lesion_uid: str | None = None
    tracking: str | None = None
    for lesion in many(
        one(annotation, "lesionObservationEntityCollection"), "LesionObservationEntity"
    ):
        lesion_uid = lesion_uid or attr(lesion, "lesionUniqueIdentifier", "root")
        tracking = tracking or attr(lesion, "trackingIdentifier")
    # ePAD keeps its own tracking UID on the annotation.
    lesion_uid = lesion_uid or attr(annotation, "trackingUniqueIdentifier", "root")
    return lesion_uid, tracking


def read_collection(
    collection: Tree, top: str = "ImageAnnotationCollection"
) -> tuple[list[AimAnnotation], list[AimFormatError]]:
    """Every image annotation of a normalised ``ImageAnnotationCollection`` tree.

    Returns the annotations read and one error per malformed annotation (others are still read).
    """
    patient = attr(one(collection, "person"), "id")
    user = one(collection, "user")
    observer = attr(user, "name") or attr(user, "loginName")
    # ePAD also names the study on the collection; an image reference wins over it.
    collection_study = attr(collection, "studyInstanceUid", "root")
    holder = one(collection, "imageAnnotations")
    annotations = many(holder, "ImageAnnotation")
    if not annotations:
        raise AimFormatError(
            f"{top}/imageAnnotations", "no ImageAnnotation: the collection holds no annotation"
        )
    found: list[AimAnnotation] = []
    errors: list[AimFormatError] = []
    for i, annotation in enumerate(annotations, 1):
        where = f"{top}/imageAnnotations/ImageAnnotation[{i}]"
        try:
            lesion_uid, tracking = _lesion(annotation)
            name = (attr(annotation, "name") or "").split("~", 1)[0].strip() or None
            found.append(
                AimAnnotation(
                    element=where,
                    uid=attr(annotation, "uniqueIdentifier", "root"),
                    name=name,
                    date_time=iso_timestamp(attr(annotation, "dateTime"), f"{where}/dateTime"),
                    observer=observer,
                    patient_id=patient,
                    images=_images(annotation, where),
                    study_uid=collection_study,
                    calculations=_calculations(annotation, where),
                    shapes=_shapes(annotation, where),
                    finding_site=_site(annotation),
                    lesion_uid=lesion_uid,
                    tracking_identifier=tracking,
                    timepoint=_timepoint(annotation),
                )
            )
        except AimFormatError as exc:
            errors.append(exc)
    return found, errors
