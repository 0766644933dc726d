"""AIM annotations to :class:`~lesionkg.core.records.Bookmark` records: axes, units, images.

:class:`BookmarkBuilder` applies the rules that :mod:`lesionkg.loaders.aim` documents to one
:class:`~lesionkg.loaders.aim_model.AimAnnotation` at a time, whichever encoding it came from:
which calculation is the long and short axis, which line gives their endpoints, which image and
study they are on, the length in mm (stated wins; unitless is recomputed), the check against the
image's pixel spacing, and the tracking identifiers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from lesionkg.core.errors import Problem
from lesionkg.core.limits import AXES_RELATIVE_TOLERANCE, EDGE_ROUNDING_PX
from lesionkg.core.records import Bookmark, ImageRef
from lesionkg.loaders.aim_model import (
    DIAMETER,
    LENGTH,
    LONG_AXIS,
    SHORT_AXIS,
    UNIT_MM,
    UNITLESS,
    AimAnnotation,
    AimCalculation,
    AimFormatError,
    AimImage,
    AimShape,
)
from lesionkg.loaders.ct import CTImage, not_among_inputs

#: a stated length and the one recomputed from the image's spacing disagree when they differ by
#: more than this fraction of the stated length and more than this many pixels (of the larger
#: spacing): integer pixel coordinates alone make up to about 1.4 px of difference
SPACING_TOLERANCE_RELATIVE = 0.05
SPACING_TOLERANCE_PX = 2.0
#: DeepLesion coarse types implied by a site's code meaning (RadLex, SNOMED: lower case)
_SITE_COARSE_TYPE: dict[str, int] = {
    "bone": 1,
    "mediastinum": 3,
    "liver": 4,
    "lung": 5,
    "kidney": 6,
    "pelvis": 8,
}


class AnnotationSkipped(Exception):
    """An annotation gives no bookmark, for a reason that is not a defect of the file."""

    def __init__(self, element: str, reason: str) -> None:
        super().__init__(reason)
        self.element = element
        self.reason = reason


def _unit_mm(calc: AimCalculation) -> float | None:
    """mm per unit of a stated length; None when unitless; AimFormatError for an unknown unit."""
    unit = calc.unit.strip()
    if unit.lower() in UNITLESS:
        return None
    scale = UNIT_MM.get(unit.lower())
    if scale is None:
        raise AimFormatError(
            f"{calc.element}/unitOfMeasure",
            f"the {calc.meaning} calculation's unit '{unit}' is not a known length unit; expected "
            f"one of {', '.join(sorted(UNIT_MM))}, or unitless (pixels) with a 2-point line",
        )
    return scale


def _ends(shape: AimShape | None) -> tuple[float, float, float, float] | None:
    if shape is None or len(shape.points) != 2:
        return None
    (x1, y1), (x2, y2) = shape.points
    return (x1, y1, x2, y2)


def _px_length(shape: AimShape) -> float:
    (x1, y1), (x2, y2) = shape.points
    return math.hypot(x2 - x1, y2 - y1)


class BookmarkBuilder:
    """Turns the annotations of one file into bookmarks, collecting notes."""

    def __init__(self, source: str, ct_index: Mapping[str, CTImage], require_images: bool) -> None:
        self.source = source
        self.ct_index = ct_index
        self.require_images = require_images
        self.notes: list[Problem] = []

    def _note(self, element: str, reason: str) -> None:
        self.notes.append(Problem(self.source, None, element, reason))

    def bookmark(self, number: int, a: AimAnnotation) -> Bookmark:
        where = a.element
        if not a.calculations:
            raise AnnotationSkipped(
                where,
                "no calculations: the annotation states no length (a RECIST "
                "length needs a Length, or Long Axis with Short Axis, calculation)",
            )
        by_role: dict[str, list[AimCalculation]] = {}
        for calc in a.calculations:
            if calc.role is not None:
                by_role.setdefault(calc.role, []).append(calc)
        if not by_role:
            names = ", ".join(dict.fromkeys(c.meaning for c in a.calculations))
            raise AnnotationSkipped(
                where,
                f"not a planar length measurement: its calculations are {names}; "
                "expected Long Axis (with Short Axis), Length or Diameter",
            )
        scales = {id(c): _unit_mm(c) for calcs in by_role.values() for c in calcs}
        long_role = next((r for r in (LONG_AXIS, LENGTH, DIAMETER) if r in by_role), None)
        if long_role is None:
            raise AnnotationSkipped(
                by_role[SHORT_AXIS][0].element, "a Short Axis without a Long Axis"
            )
        for role in (long_role, SHORT_AXIS):
            if len(by_role.get(role, [])) > 1:
                raise AnnotationSkipped(
                    where, f"{len(by_role[role])} {role} calculations; expected one"
                )
        if SHORT_AXIS in by_role and long_role != LONG_AXIS:
            raise AnnotationSkipped(
                by_role[SHORT_AXIS][0].element, f"a Short Axis beside a {long_role}, no Long Axis"
            )
        long_calc = by_role[long_role][0]
        short_calc = by_role[SHORT_AXIS][0] if SHORT_AXIS in by_role else None
        long_shape, short_shape = self._shapes(a, long_calc, short_calc)

        patient = a.patient_id
        if not patient:
            raise AimFormatError(
                where, "no patient id (AIM Person id): a bookmark must belong to a patient"
            )
        image_uid, frame = self._image_uid(a, long_shape, short_shape)
        info = self._image_info(a, image_uid)
        study = (info.study_uid if info else None) or a.study_uid or _only_study(a)
        if not study:
            raise AimFormatError(
                where, "no study: the annotation names no image study instance UID"
            )
        image = self._ct_image(a, image_uid, frame, study, patient, (long_shape, short_shape))

        long_ends, short_ends = _ends(long_shape), _ends(short_shape)
        long_mm, recomputed = self._mm(long_calc, scales[id(long_calc)], long_ends, image)
        short_mm = None
        if short_calc is not None:
            short_mm, _ = self._mm(short_calc, scales[id(short_calc)], short_ends, image)
            if short_mm > long_mm * (1.0 + AXES_RELATIVE_TOLERANCE):
                raise AnnotationSkipped(
                    short_calc.element,
                    f"the short axis ({short_mm:.4g} mm) is longer than "
                    f"the long axis ({long_mm:.4g} mm); expected long >= short",
                )
        tracking_id = a.tracking_identifier
        if tracking_id is None and a.name:
            name = " ".join(a.name.split()).casefold()
            tracking_id = f"{a.observer}: {name}" if a.observer else name
        site = a.finding_site
        return Bookmark(
            source=self.source,
            source_index=number,
            patient_key=patient,
            study_key=study,
            study_datetime=info.study_datetime if info else None,
            series_key=(image.series_instance_uid if image else None)
            or (info.series_uid if info else None),
            image=ImageRef(image_uid, frame) if image_uid else None,
            long_axis_mm=long_mm,
            short_axis_mm=short_mm,
            long_axis_px=long_ends,
            short_axis_px=short_ends if short_calc is not None else None,
            pixel_spacing_mm=image.pixel_spacing_mm if image else None,
            finding_site=site,
            coarse_type=_SITE_COARSE_TYPE.get(site.lower()) if site else None,
            tracking_id=tracking_id,
            tracking_uid=a.lesion_uid,
            recomputed_long_axis_mm=recomputed,
        )

    @staticmethod
    def _shapes(
        a: AimAnnotation, long_calc: AimCalculation, short_calc: AimCalculation | None
    ) -> tuple[AimShape | None, AimShape | None]:
        def referenced(calc: AimCalculation) -> AimShape | None:
            found = [s for s in a.shapes if s.ref is not None and s.ref in calc.shape_refs]
            return found[0] if len(found) == 1 else None

        long_shape = referenced(long_calc)
        short_shape = referenced(short_calc) if short_calc is not None else None
        if short_calc is None:
            if long_shape is None and len(a.shapes) == 1:
                long_shape = a.shapes[0]
            return long_shape, None
        if long_shape is None or short_shape is None or long_shape is short_shape:
            lines = [s for s in a.shapes if len(s.points) == 2]
            if len(lines) == 2:
                # Without references, the longer line (in pixels) is the long axis.
                long_shape, short_shape = sorted(lines, key=_px_length, reverse=True)
            elif long_shape is short_shape:
                short_shape = None
        return long_shape, short_shape

    @staticmethod
    def _image_uid(
        a: AimAnnotation, long_shape: AimShape | None, short_shape: AimShape | None
    ) -> tuple[str | None, int | None]:
        for shape in (long_shape, short_shape):
            if shape is not None and shape.image_uid:
                if (
                    short_shape is not None
                    and short_shape.image_uid
                    and long_shape is not None
                    and long_shape.image_uid
                    and (short_shape.image_uid, short_shape.frame)
                    != (long_shape.image_uid, long_shape.frame)
                ):
                    raise AnnotationSkipped(
                        short_shape.element,
                        f"the long and short axes are on different images ({long_shape.image_uid}, "
                        f"{short_shape.image_uid}); RECIST axes are measured on one slice",
                    )
                return shape.image_uid, shape.frame
        uids = list(dict.fromkeys(i.sop_instance_uid for i in a.images))
        if len(uids) == 1:
            return uids[0], None
        if len(uids) > 1:
            raise AnnotationSkipped(
                a.element,
                f"the annotation references {len(uids)} images and its shape "
                "names none; expected one image",
            )
        return None, None

    @staticmethod
    def _image_info(a: AimAnnotation, uid: str | None) -> AimImage | None:
        if uid is not None:
            for image in a.images:
                if image.sop_instance_uid == uid:
                    return image
        studies = {(i.study_uid, i.study_datetime, i.series_uid) for i in a.images}
        if len(studies) == 1:
            study_uid, when, series = studies.pop()
            return AimImage(uid or "", series, study_uid, when)
        return None

    def _ct_image(
        self,
        a: AimAnnotation,
        uid: str | None,
        frame: int | None,
        study: str,
        patient: str,
        shapes: tuple[AimShape | None, AimShape | None],
    ) -> CTImage | None:
        image = self.ct_index.get(uid) if uid else None
        if image is None:
            if self.require_images:
                missing = (
                    "the annotation names no image"
                    if uid is None
                    else not_among_inputs(self.ct_index, uid)
                )
                raise AnnotationSkipped(a.element, missing)
            return None
        if image.study_instance_uid != study:
            raise AnnotationSkipped(
                a.element,
                f"the referenced CT image {uid} belongs to study "
                f"{image.study_instance_uid}, not to the annotation's study {study}; the "
                "study date would be wrong",
            )
        if image.patient_id and image.patient_id != patient:
            # AIM tools fill Person id in different ways (the AIM toolkit's samples put DICOM's
            # PatientID in Person name): the study UID above is the binding check.
            self._note(
                a.element,
                f"the referenced CT image {uid} has another PatientID than the "
                "annotation's Person id; the annotation's is used",
            )
        if frame is not None and not 1 <= frame <= image.number_of_frames:
            raise AnnotationSkipped(
                a.element,
                f"frame {frame} of CT image {uid} does not exist: it has "
                f"{image.number_of_frames} frame(s)",
            )
        for shape in shapes:
            ends = _ends(shape)
            if shape is None or ends is None:
                continue
            x1, y1, x2, y2 = ends
            inside = all(
                -EDGE_ROUNDING_PX <= x <= image.columns + EDGE_ROUNDING_PX for x in (x1, x2)
            ) and all(-EDGE_ROUNDING_PX <= y <= image.rows + EDGE_ROUNDING_PX for y in (y1, y2))
            if not inside:
                raise AnnotationSkipped(
                    shape.element,
                    f"line {ends} lies outside the referenced image "
                    f"({image.columns} columns x {image.rows} rows): wrong image reference?",
                )
        return image

    def _mm(
        self,
        calc: AimCalculation,
        scale: float | None,
        ends: tuple[float, float, float, float] | None,
        image: CTImage | None,
    ) -> tuple[float, float | None]:
        """(length in mm, recomputed length when it disagrees with the stated one)."""
        recomputed = None
        if image is not None and ends is not None:
            x1, y1, x2, y2 = ends
            sx, sy = image.pixel_spacing_mm
            recomputed = math.hypot((x2 - x1) * sx, (y2 - y1) * sy)
        if scale is None:
            if recomputed is None:
                why = (
                    "its image is not among the CT inputs"
                    if image is None
                    else "it has no 2-point line"
                )
                raise AnnotationSkipped(
                    calc.element,
                    f"the {calc.meaning} is unitless ('{calc.unit}') and cannot "
                    f"be recomputed in mm: {why}",
                )
            if recomputed <= 0.0:
                raise AnnotationSkipped(calc.element, f"the {calc.meaning} line has zero length")
            return recomputed, None
        assert calc.value is not None  # the model parses every length's value
        if not calc.value > 0.0:
            raise AnnotationSkipped(
                calc.element, f"the {calc.meaning} value {calc.value} is not a positive length"
            )
        stated = calc.value * scale
        if recomputed is None or image is None:
            return stated, None
        tolerance = max(
            SPACING_TOLERANCE_RELATIVE * stated, SPACING_TOLERANCE_PX * max(image.pixel_spacing_mm)
        )
        if abs(recomputed - stated) <= tolerance:
            return stated, None
        self._note(
            calc.element,
            f"the stated {calc.meaning} {stated:.4g} mm disagrees with "
            f"{recomputed:.4g} mm recomputed from the line and the image's pixel spacing "
            f"{image.pixel_spacing_mm} (tolerance {tolerance:.3g} mm); the stated length is kept",
        )
        return stated, recomputed


def _only_study(a: AimAnnotation) -> str | None:
    studies = {i.study_uid for i in a.images if i.study_uid}
    return studies.pop() if len(studies) == 1 else None
