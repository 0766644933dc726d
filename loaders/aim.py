"""AIM (Annotation and Image Markup) files to :class:`~lesionkg.core.records.Bookmark` records.

:func:`read_aim` reads one file, whichever encoding it is (sniffed from its content, never its
name): AIM v3 XML, AIM v4 XML, ePAD's AIM JSON, or AIM stored as DICOM SR ("AIM SR Report"). All
go through one model (:mod:`lesionkg.loaders.aim_model`) and give the same bookmarks. See
``docs/formats-aim.md`` for the versions, shapes and the element-by-element mapping.

Per annotation (one bookmark each, in file order; ``Bookmark.source_index`` is the 1-based
annotation number):

* the long axis is the "Long Axis" calculation, else "Length", else "Diameter"; the short axis is
  "Short Axis" (named by code meaning, description or code, see ``LENGTH_NAMES``/``LENGTH_CODES``);
* the length as stated wins (mm, cm, ePAD's "linear" = cm, um, m); unitless ("pixels", "1", "")
  is recomputed from the 2-point line and the referenced image's pixel spacing, which needs the
  image in ``ct_index``;
* when the image's spacing is known and recomputes the long axis differently from the stated
  length beyond ``max(5 %, 2 pixels)``, the bookmark is still produced with the stated length,
  ``Bookmark.recomputed_long_axis_mm`` is set and a note says so (readers calibrate; images get
  re-exported with other spacing);
* endpoints come from the 2-point line (polyline or multipoint) the calculation references, else
  the annotation's only shape; a long and short axis without references take the annotation's two
  2-point lines, the longer in pixels for the long axis;
* tracking: AIM v4 ``lesionUniqueIdentifier``, else ePAD's ``trackingUniqueIdentifier``, is the
  tracking UID; a v4 ``trackingIdentifier`` is the tracking id; otherwise the annotation's name
  (ePAD's lesion name, case-folded) scoped by its reader, ``"<reader>: <name>"``, so that one
  reader's "Lesion1" at baseline and follow-up make one track and two readers make two tracks.

Refused as a whole (:class:`~lesionkg.core.errors.InvalidInputError`, nothing returned): a file
that is not well-formed, has the wrong namespace or root, malformed values (numbers, dates,
frames), a length calculation in an unknown unit, an annotation without patient id or study, or
no annotation that gives a bookmark. Annotations that are not planar length measurements (no
calculation, only HU statistics or areas, a short axis alone...) are skipped with their reason in
``AimResult.skipped``, the others are read. Problems name the file, the line for syntax errors,
and the element (``column``), e.g. ``ImageAnnotationCollection/imageAnnotations/ImageAnnotation[2]/
calculationEntityCollection/CalculationEntity[1]``.

Privacy: the bookmark carries the patient id (AIM Person id; the SR's PatientID), study, series
and image UIDs, study date and time, coded anatomic site meanings from standard vocabularies and
the tracking identifiers. Never the person's name, birth date or sex, comments or other free text.
The reader's name stays in :class:`~lesionkg.loaders.aim_model.AimAnnotation` (it scopes name-based
tracking ids, which the pseudonymiser hashes).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom

from lesionkg.core.errors import InvalidInputError, Problem
from lesionkg.core.limits import DATE_RANGE, DEFAULT_LIMITS, FILE_SIZE, JSON_DEPTH, InputLimits
from lesionkg.core.records import Bookmark
from lesionkg.loaders.aim_bookmark import (
    SPACING_TOLERANCE_PX,
    SPACING_TOLERANCE_RELATIVE,
    AnnotationSkipped,
    BookmarkBuilder,
)
from lesionkg.loaders.aim_model import (
    AimAnnotation,
    AimFormatError,
)
from lesionkg.loaders.aim_sr import is_aim_sr, read_aim_sr
from lesionkg.loaders.aim_v4 import NAMESPACE_V4, normalise, read_collection
from lesionkg.loaders.aim_xml import XmlError, parse, read_document
from lesionkg.loaders.ct import CTImage
from lesionkg.loaders.guards import json_depth_refusal, regular_file_refusal, xml_depth_refusal

__all__ = [
    "SPACING_TOLERANCE_PX",
    "SPACING_TOLERANCE_RELATIVE",
    "AimResult",
    "is_aim_sr",
    "looks_like_aim_json",
    "looks_like_aim_sr",
    "looks_like_aim_xml",
    "read_aim",
]

log = logging.getLogger(__name__)

_OUTCOME = "no bookmark was read from it"
_SNIFF_BYTES = 4096
_AIM_MARK = b"edu.northwestern.radiology.AIM"


@dataclass(frozen=True, slots=True)
class AimResult:
    """What one AIM file gave.

    ``bookmarks`` in annotation order and ``annotations`` beside them (the same index: the AIM
    record each bookmark came from, with its uid, date, reader and timepoint). ``skipped``: one
    problem per annotation that gave no bookmark. ``notes``: facts about bookmarks that were
    produced (a stated length that disagrees with the image's spacing, a referenced image of
    another PatientID). Iterating the result iterates the bookmarks.
    """

    format: str
    bookmarks: tuple[Bookmark, ...]
    annotations: tuple[AimAnnotation, ...]
    skipped: tuple[Problem, ...]
    notes: tuple[Problem, ...]

    def __iter__(self) -> Iterator[Bookmark]:
        return iter(self.bookmarks)

    def __len__(self) -> int:
        return len(self.bookmarks)


# --- sniffing -----------------------------------------------------------------------------------


def _head(path: str | os.PathLike[str]) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(_SNIFF_BYTES)
    except OSError:
        return b""


def _first_char(data: bytes) -> bytes:
    text = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    text = text.lstrip()
    return text[:1]


def looks_like_aim_xml(path: str | os.PathLike[str]) -> bool:
    """Whether a file starts as XML and names an AIM namespace in its first 4 KB."""
    head = _head(path)
    return _first_char(head) == b"<" and _AIM_MARK in head


def looks_like_aim_json(path: str | os.PathLike[str]) -> bool:
    """Whether a file starts as JSON and has an ``ImageAnnotationCollection`` in its first 4 KB."""
    head = _head(path)
    return _first_char(head) in (b"{", b"[") and b'"ImageAnnotationCollection"' in head


def looks_like_aim_sr(path: str | os.PathLike[str]) -> bool:
    """Whether a file is DICOM and an AIM SR Report (see :func:`is_aim_sr`)."""
    head = _head(path)
    if head[128:132] != b"DICM":
        return False
    try:
        ds = pydicom.dcmread(
            path, stop_before_pixels=True, specific_tags=["ValueType", "ConceptNameCodeSequence"]
        )
    except Exception:  # pydicom raises many types on corrupt input; the reader will say why
        return False
    return is_aim_sr(ds)


# --- reading --------------------------------------------------------------------------------------


def _refuse(problems: list[Problem]) -> InvalidInputError:
    return InvalidInputError(problems, outcome=_OUTCOME)


def _problem(
    source: str,
    element: str | None,
    reason: str,
    line: int | None = None,
    rule: str | None = None,
) -> Problem:
    return Problem(source, line, element, reason, rule)


def _decode(data: bytes, source: str, limits: InputLimits = DEFAULT_LIMITS) -> Any:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _refuse(
            [_problem(source, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})")]
        ) from None
    too_deep = json_depth_refusal(text, limits)
    if too_deep is not None:
        # json.loads recurses per level: a document nested thousands deep would crash it.
        raise _refuse([_problem(source, None, too_deep.reason, rule=too_deep.rule)])
    try:
        return json.loads(text)
    except RecursionError:  # pragma: no cover (the depth check runs first)
        raise _refuse([_problem(source, None, "JSON nested too deep", rule=JSON_DEPTH)]) from None
    except json.JSONDecodeError as exc:
        raise _refuse(
            [_problem(source, None, f"not valid JSON ({exc.msg}, column {exc.colno})", exc.lineno)]
        ) from None


def _json_collections(value: Any, source: str) -> list[tuple[str, Any]]:
    """(element path, ImageAnnotationCollection object) of an ePAD JSON document: one object
    ``{"ImageAnnotationCollection": {...}}`` or an array of them."""
    items = value if isinstance(value, list) else [value]
    out = []
    for i, item in enumerate(items, 1):
        where = (
            "ImageAnnotationCollection"
            if not isinstance(value, list)
            else f"[{i}]/ImageAnnotationCollection"
        )
        if not isinstance(item, dict) or not isinstance(
            item.get("ImageAnnotationCollection"), dict
        ):
            keys = ", ".join(list(item)[:5]) if isinstance(item, dict) else type(item).__name__
            raise _refuse(
                [
                    _problem(
                        source,
                        where.rsplit("/", 1)[0] if "/" in where else "(document)",
                        f"expected an object with an 'ImageAnnotationCollection' object (ePAD AIM "
                        f"JSON), found {keys or 'an empty object'}",
                    )
                ]
            )
        collection = item["ImageAnnotationCollection"]
        namespace = collection.get("xmlns")
        if namespace is not None and namespace != NAMESPACE_V4:
            raise _refuse(
                [
                    _problem(
                        source,
                        f"{where}/xmlns",
                        f"namespace '{namespace}'; expected AIM v4 ({NAMESPACE_V4})",
                    )
                ]
            )
        out.append((where, collection))
    return out


def _parse(
    data: bytes, source: str, limits: InputLimits = DEFAULT_LIMITS
) -> tuple[str, list[AimAnnotation], list[AimFormatError]]:
    first = _first_char(data)
    if data[128:132] == b"DICM":
        try:
            ds = pydicom.dcmread(BytesIO(data))
        except Exception as exc:  # pydicom raises many types on corrupt input
            raise _refuse(
                [
                    _problem(
                        source,
                        None,
                        f"cannot be read as DICOM ({type(exc).__name__}: {str(exc)[:200]})",
                    )
                ]
            ) from None
        if not is_aim_sr(ds):
            names = ds.get("ConceptNameCodeSequence")
            title = f"'{names[0].get('CodeMeaning', '')}'" if names else "missing"
            raise _refuse(
                [
                    _problem(
                        source,
                        "ConceptNameCodeSequence",
                        f"not an AIM SR Report: the document title is {title}, expected 'AIM SR "
                        "Report' (zzz001, 99NCIAIM); read TID 1500 reports with the SR reader",
                    )
                ]
            )
        annotations, errors = read_aim_sr(ds)
        return "AIM SR", annotations, errors
    if first == b"<":
        try:
            root = parse(data)
        except XmlError as exc:
            raise _refuse([_problem(source, None, exc.reason, exc.line)]) from None
        too_deep = xml_depth_refusal(root, limits)
        if too_deep is not None:
            raise _refuse([_problem(source, None, too_deep.reason, rule=too_deep.rule)])
        return read_document(root)
    if first in (b"{", b"["):
        found: list[AimAnnotation] = []
        errors = []
        for where, collection in _json_collections(_decode(data, source, limits), source):
            annotations, errs = read_collection(normalise(collection), where)
            found.extend(annotations)
            errors.extend(errs)
        return "ePAD AIM JSON", found, errors
    raise _refuse(
        [
            _problem(
                source,
                None,
                "not an AIM file: neither XML (AIM v3 or v4), JSON (ePAD) nor DICOM (AIM SR)",
            )
        ]
    )


def _date_problem(bookmark: Bookmark, limits: InputLimits) -> str | None:
    if bookmark.study_datetime is None:
        return None
    return limits.date_problem(date.fromisoformat(bookmark.study_datetime[:10]))


def read_aim(
    path: str | os.PathLike[str],
    ct_index: Mapping[str, CTImage] | None = None,
    *,
    require_images: bool = False,
    limits: InputLimits | None = None,
) -> AimResult:
    """Read every image annotation of one AIM file as bookmarks (see the module documentation).

    ``ct_index`` maps SOP Instance UID to :class:`~lesionkg.loaders.ct.CTImage`: a referenced
    image found there gives the pixel spacing, the series, the spacing check and the checks that
    the study, frame and coordinates fit. ``require_images`` skips annotations whose image is not
    there (as the SR reader does without ``allow_missing_images``); by default they are read with
    the file's own millimetres. Raises :class:`~lesionkg.core.errors.InvalidInputError` listing
    every problem when the file is refused. ``limits`` (default
    :data:`~lesionkg.core.limits.DEFAULT_LIMITS`): a special file, a file too large, JSON or XML
    nested too deep, or a study date before 1900 or in the future refuses the file, naming the
    rule.
    """
    file = Path(path)
    source = str(file)
    limits = limits if limits is not None else DEFAULT_LIMITS
    not_regular = regular_file_refusal(file)
    if not_regular is not None:
        raise _refuse([_problem(source, None, not_regular.reason, rule=not_regular.rule)])
    if not file.is_file():
        raise _refuse([_problem(source, None, "no such file")])
    size = file.stat().st_size
    if size > limits.file_bytes:
        raise _refuse(
            [
                _problem(
                    source,
                    None,
                    f"file of {size:,} bytes exceeds the limit of {limits.file_bytes:,} bytes",
                    rule=FILE_SIZE,
                )
            ]
        )
    data = file.read_bytes()
    if not data.strip():
        raise _refuse([_problem(source, None, "the file is empty")])
    try:
        kind, annotations, errors = _parse(data, source, limits)
    except AimFormatError as exc:
        raise _refuse([_problem(source, exc.element, exc.reason)]) from None
    builder = BookmarkBuilder(source, ct_index or {}, require_images)
    problems = [_problem(source, e.element, e.reason) for e in errors]
    bookmarks: list[Bookmark] = []
    kept: list[AimAnnotation] = []
    skipped: list[Problem] = []
    for number, annotation in enumerate(annotations, 1):
        try:
            bookmark = builder.bookmark(number, annotation)
        except AimFormatError as exc:
            problems.append(_problem(source, exc.element, exc.reason))
        except AnnotationSkipped as skip:
            skipped.append(_problem(source, skip.element, skip.reason))
        else:
            implausible = _date_problem(bookmark, limits)
            if implausible is not None:
                problems.append(_problem(source, annotation.element, implausible, rule=DATE_RANGE))
            bookmarks.append(bookmark)
            kept.append(annotation)
    if problems:
        # A malformed file is refused whole: half of a file is worse than a clear error.
        raise _refuse(problems + skipped)
    if not bookmarks:
        raise _refuse(skipped or [_problem(source, None, "the file holds no image annotation")])
    for note in builder.notes:
        log.info("%s", note)
    return AimResult(kind, tuple(bookmarks), tuple(kept), tuple(skipped), tuple(builder.notes))
