"""AIM XML, v3 (``ImageAnnotation``) and v4 (``ImageAnnotationCollection``), parsed with defusedxml.

The namespace decides the version, as the schemas define them: AIM v3 (AIM_v3_rv11_XML.xsd)
``gme://caCORE.caCORE/3.2/edu.northwestern.radiology.AIM``, AIM v4 (AIM_v4_rv44_XML.xsd, and the
4.2 schema ePAD writes) ``gme://caCORE.caCORE/4.4/edu.northwestern.radiology.AIM``. v3 keeps its
values in attributes and is read here; v4 is turned into the tree that
:mod:`lesionkg.loaders.aim_v4` reads for both XML and ePAD JSON.

defusedxml refuses entity expansion, external entities and DTD tricks: these files come from other
tools and other sites.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import defusedxml.ElementTree as DET
from defusedxml import DefusedXmlException

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
from lesionkg.loaders.aim_v4 import NAMESPACE_V4, XSI_TYPE, Tree, read_collection

#: the AIM v3 XML namespace (AIM_v3_rv11_XML.xsd targetNamespace)
NAMESPACE_V3 = "gme://caCORE.caCORE/3.2/edu.northwestern.radiology.AIM"
_XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


class XmlError(Exception):
    """The file is not well-formed XML or is refused by defusedxml; ``line`` when known."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line


def parse(data: bytes) -> ET.Element:
    """The root element of an XML document, parsed safely, or XmlError."""
    try:
        return DET.fromstring(data)
    except ET.ParseError as exc:
        position = getattr(exc, "position", None)
        what = str(exc).split(": line ", 1)[0]
        if position:
            raise XmlError(
                f"not well-formed XML ({what}, column {position[1] + 1})", position[0]
            ) from None
        raise XmlError(f"not well-formed XML ({what})") from None
    except DefusedXmlException as exc:
        raise XmlError(f"refused by the XML parser's safety checks ({exc})") from None


def split_tag(tag: str) -> tuple[str, str]:
    """(namespace, local name) of an ElementTree tag."""
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return "", tag


# --- v4: the XML as the shared tree ---------------------------------------------------------------


def to_tree(element: ET.Element) -> Tree:
    """The normalised tree of an AIM v4 element: attributes, then children as lists by name."""
    node: Tree = {}
    for key, value in element.attrib.items():
        if key == _XSI_TYPE:
            node[XSI_TYPE] = value
        else:
            node[split_tag(key)[1]] = value
    for child in element:
        if not isinstance(child.tag, str):
            continue  # comments and processing instructions
        node.setdefault(split_tag(child.tag)[1], []).append(to_tree(child))
    return node


def read_v4(root: ET.Element) -> tuple[list[AimAnnotation], list[AimFormatError]]:
    return read_collection(to_tree(root), "ImageAnnotationCollection")


# --- v3: attributes ------------------------------------------------------------------------------


def _q(name: str) -> str:
    return f"{{{NAMESPACE_V3}}}{name}"


def _items(element: ET.Element | None, collection: str, item: str) -> list[ET.Element]:
    if element is None:
        return []
    holder = element.find(_q(collection))
    return [] if holder is None else holder.findall(_q(item))


def _attr(element: ET.Element | None, name: str) -> str | None:
    if element is None:
        return None
    value = (element.get(name) or "").strip()
    return value or None


def _v3_images(annotation: ET.Element, where: str) -> tuple[AimImage, ...]:
    images: list[AimImage] = []
    for r, ref in enumerate(_items(annotation, "imageReferenceCollection", "ImageReference"), 1):
        at = f"{where}/imageReferenceCollection/ImageReference[{r}]"
        holder = ref.find(_q("imageStudy"))
        study = holder.find(_q("ImageStudy")) if holder is not None else None
        if study is None:
            continue  # a web image reference: nothing to measure on
        when = study_datetime(
            _attr(study, "startDate"), _attr(study, "startTime"), f"{at}/imageStudy/ImageStudy"
        )
        for series in _items(study, "imageSeries", "ImageSeries"):
            for image in _items(series, "imageCollection", "Image"):
                sop = _attr(image, "sopInstanceUID")
                if sop:
                    images.append(
                        AimImage(
                            sop, _attr(series, "instanceUID"), _attr(study, "instanceUID"), when
                        )
                    )
    return tuple(images)


def _v3_calculations(annotation: ET.Element, where: str) -> tuple[AimCalculation, ...]:
    out: list[AimCalculation] = []
    for c, calc in enumerate(_items(annotation, "calculationCollection", "Calculation"), 1):
        at = f"{where}/calculationCollection/Calculation[{c}]"
        meaning = _attr(calc, "codeMeaning") or ""
        description = _attr(calc, "description") or ""
        role = length_role(
            [n for n in (meaning, description) if n],
            [(_attr(calc, "codingSchemeDesignator") or "", _attr(calc, "codeValue") or "")],
        )
        refs = tuple(
            r.get("referencedShapeIdentifier", "").strip()
            for r in _items(calc, "referencedGeometricShapeCollection", "ReferencedGeometricShape")
        )
        results = _items(calc, "calculationResultCollection", "CalculationResult")
        value: float | None = None
        unit = ""
        if results:
            unit = _attr(results[0], "unitOfMeasure") or ""
            data = _items(results[0], "calculationDataCollection", "CalculationData")
            vat = (
                f"{at}/calculationResultCollection/CalculationResult[1]/"
                "calculationDataCollection/CalculationData[1]"
            )
            raw = _attr(data[0], "value") if data else None
            value = parse_length_value(role, meaning or description, raw, vat, f"{vat}/@value")
        elif role is not None:
            raise missing_result(meaning or description, f"{at}/calculationResultCollection")
        out.append(
            AimCalculation(at, role, meaning or description or "calculation", value, unit, refs)
        )
    return tuple(out)


def _v3_shapes(annotation: ET.Element, where: str) -> tuple[AimShape, ...]:
    out: list[AimShape] = []
    for s, shape in enumerate(_items(annotation, "geometricShapeCollection", "GeometricShape"), 1):
        at = f"{where}/geometricShapeCollection/GeometricShape[{s}]"
        kind = (shape.get(_XSI_TYPE) or "").split(":", 1)[-1]
        indexed = []
        image_uid: str | None = None
        frame: int | None = None
        coords = _items(shape, "spatialCoordinateCollection", "SpatialCoordinate")
        for p, coord in enumerate(coords, 1):
            cat = f"{at}/spatialCoordinateCollection/SpatialCoordinate[{p}]"
            if (coord.get(_XSI_TYPE) or "").endswith("ThreeDimensionSpatialCoordinate"):
                continue  # patient coordinates: no pixels to measure on
            indexed.append(
                parse_point(
                    _attr(coord, "coordinateIndex"),
                    _attr(coord, "x"),
                    _attr(coord, "y"),
                    p,
                    f"{cat}/@",
                )
            )
            image_uid = image_uid or _attr(coord, "imageReferenceUID")
            frame = frame or parse_frame(
                _attr(coord, "referencedFrameNumber"), f"{cat}/@referencedFrameNumber"
            )
        out.append(
            AimShape(
                element=at,
                ref=_attr(shape, "shapeIdentifier"),
                kind=kind,
                points=order_points(indexed),
                image_uid=image_uid,
                frame=frame,
            )
        )
    return tuple(out)


def _v3_annotation(annotation: ET.Element, where: str) -> AimAnnotation:
    user_holder = annotation.find(_q("user"))
    user = user_holder.find(_q("User")) if user_holder is not None else None
    person_holder = annotation.find(_q("person"))
    person = person_holder.find(_q("Person")) if person_holder is not None else None
    site = None
    for entity in _items(annotation, "anatomicEntityCollection", "AnatomicEntity"):
        site = standard_meaning(
            _attr(entity, "codingSchemeDesignator"), _attr(entity, "codeMeaning")
        )
        if site:
            break
    return AimAnnotation(
        element=where,
        uid=_attr(annotation, "uniqueIdentifier"),
        name=_attr(annotation, "name"),
        date_time=iso_timestamp(_attr(annotation, "dateTime"), f"{where}/@dateTime"),
        observer=_attr(user, "name") or _attr(user, "loginName"),
        patient_id=_attr(person, "id"),
        images=_v3_images(annotation, where),
        calculations=_v3_calculations(annotation, where),
        shapes=_v3_shapes(annotation, where),
        finding_site=site,
    )


def read_v3(root: ET.Element) -> tuple[list[AimAnnotation], list[AimFormatError]]:
    """The annotations of an AIM v3 document: a root ImageAnnotation, or several under a root."""
    _, local = split_tag(root.tag)
    if local == "ImageAnnotation":
        elements = [(root, "ImageAnnotation")]
    else:
        found = root.findall(f".//{_q('ImageAnnotation')}")
        elements = [(e, f"{local}//ImageAnnotation[{i}]") for i, e in enumerate(found, 1)]
        if not elements:
            raise AimFormatError(
                local, "no ImageAnnotation element: the document holds no annotation"
            )
    annotations: list[AimAnnotation] = []
    errors: list[AimFormatError] = []
    for element, where in elements:
        try:
            annotations.append(_v3_annotation(element, where))
        except AimFormatError as exc:
            errors.append(exc)
    return annotations, errors


def read_document(root: ET.Element) -> tuple[str, list[AimAnnotation], list[AimFormatError]]:
    """(format name, annotations, errors) of a parsed AIM XML document; AimFormatError for a
    document that is not AIM v3 or v4 (wrong namespace or root)."""
    namespace, local = split_tag(root.tag)
    if namespace == NAMESPACE_V4:
        if local != "ImageAnnotationCollection":
            raise AimFormatError(
                local,
                f"root element {local} in the AIM v4 namespace; expected ImageAnnotationCollection "
                "(AIM v4 annotation-of-annotation collections hold no image measurements)",
            )
        annotations, errors = read_v4(root)
        return "AIM v4 XML", annotations, errors
    if namespace == NAMESPACE_V3:
        annotations, errors = read_v3(root)
        return "AIM v3 XML", annotations, errors
    shown = f"'{namespace}'" if namespace else "none"
    raise AimFormatError(
        local,
        f"root element {local} has namespace {shown}; expected AIM v3 ({NAMESPACE_V3}) or "
        f"AIM v4 ({NAMESPACE_V4})",
    )
