"""DICOM SR measurement reports (TID 1500) to :class:`~lesionkg.core.records.Bookmark` records.

:func:`read_measurement_report` reads one SR file and returns a :class:`MeasurementReportResult`:
one bookmark per measurement group that holds a planar length measurement, and one
:class:`~lesionkg.core.errors.Problem` per group that was skipped, with its reason. A file that
yields no bookmark at all raises :class:`~lesionkg.core.errors.InvalidInputError` listing every
reason. The content tree's concepts and navigation live in :mod:`lesionkg.loaders.sr_content`.

What is read
  * The document must be a TID 1500 "Imaging Measurement Report" (126000, DCM) in an SR SOP
    class; anything else (a CT image, a Basic Text SR, a key object selection...) is rejected.
  * Each "Measurement Group" (125007, DCM) of the "Imaging Measurements" container is parsed with
    highdicom (TID 1501/1410 group templates). A group gives a bookmark when it holds a planar
    length NUM: Long Axis (SCT 103339001 / SRT G-A185), optionally with Short Axis
    (SCT 103340004 / SRT G-A186), else Length (SCT 410668003 / SRT G-D7FE), else Diameter
    (SCT 81827009 / SRT G-A22A). The bookmark's long axis is the Long Axis, else the Length,
    else the Diameter; its short axis is the Short Axis (a Short Axis needs a Long Axis, and must
    not be longer). Area, volume, HU, point-only and segmentation-based (volumetric) groups are
    skipped with their reason. One malformed group (e.g. a NUM without a value) is skipped alone;
    it does not take the other groups of the report down.
  * The whole report is rejected when PatientID or StudyInstanceUID is empty or StudyDate/Time is
    malformed: every bookmark needs its patient, and the study date orders a patient's studies.
  * Graphics: a 2-point SCOORD POLYLINE, either under the NUM (INFERRED FROM, as viewers such as
    OHIF/dcmjs write it: a bidirectional is two NUMs with one polyline each) or as the group's
    Image Region, gives the axis endpoints ``(x1, y1, x2, y2)`` in pixels of the referenced image
    (DICOM SCOORD image coordinates: column, row; 0.0, 0.0 is the top-left corner of the top-left
    pixel). Other graphics (CIRCLE, ELLIPSE, closed polylines) leave the endpoints empty.
  * The referenced image (SOP Instance UID, 1-based frame) comes from the SCOORD's SELECTED FROM
    image, else the NUM's source image, else the group's.

Lengths and units (UCUM)
  * mm, cm, um and m are converted to mm; the NUM value is then authoritative.
  * Unitless ("1", or a bare annotation like "{pixels}"): the length is recomputed from the
    2-point polyline and the referenced image's pixel spacing, ``hypot(dx * sx, dy * sy)`` with
    ``(sx, sy)`` the (x, y) spacing. Without both, the group is rejected. ``allow_missing_images``
    cannot rescue such a group: without the image there is no spacing.
  * Any other unit (mm2, mm3, kg, HU...) rejects the group.

Images
  The referenced image must be in ``ct_index`` (see :func:`lesionkg.loaders.ct.index_ct_images`):
  it gives ``pixel_spacing_mm``, the series and a check that patient, study and coordinates fit.
  A group whose image is not there (or that names no image) is rejected, unless
  ``allow_missing_images``: then the measurement is kept with the report's own mm, the image UID,
  and no image-derived fields (``pixel_spacing_mm`` None, ``location`` None).

Privacy
  The bookmark carries PatientID (``patient_key``), StudyInstanceUID (``study_key``), study date and
  time, the referenced series UID, coded finding and finding site meanings from standard coding
  schemes, and the tracking identifier and UID (the identifier is a TEXT item: a short label in
  practice, free text in principle). Never PatientName, birth date, accession number,
  comments or free text: a "code" from a private scheme (``99...``, dcmjs' ``CST4`` free-text
  findings) is dropped, because viewers smuggle typed text in as code meanings. Problem reasons
  name UIDs and codes but never PatientID values.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import highdicom as hd
from pydicom.dataset import Dataset

from lesionkg.core.errors import InvalidInputError, Problem
from lesionkg.core.limits import (
    AXES_RELATIVE_TOLERANCE,
    DEFAULT_LIMITS,
    EDGE_ROUNDING_PX,
    LENGTH_NOT_POSITIVE,
    OUTSIDE_IMAGE,
    InputLimits,
)
from lesionkg.core.records import Bookmark, ImageRef
from lesionkg.loaders.ct import CTImage, not_among_inputs
from lesionkg.loaders.sr_content import (
    DIAMETER,
    LENGTH,
    LENGTH_CONCEPTS,
    LONG_AXIS,
    OUTCOME,
    SEGMENT_IMAGE_NAMES,
    SHORT_AXIS,
    SITE_COARSE_TYPE,
    UNIT_MM,
    MeasuredAxis,
    SkipGroup,
    SRImageRef,
    check_stated_lengths,
    check_unit,
    concept_key,
    describe_measurements,
    evidence_of,
    first_line,
    has_length_unit,
    image_item_ref,
    image_of,
    is_unitless,
    measurement_groups,
    polyline_endpoints,
    report_rejection,
    standard_meaning,
    unit_text,
    volumetric_references,
)
from lesionkg.loaders.sr_document import (
    check_measurement_report,
    read_sr_file,
    report_study_datetime,
)


@dataclass(frozen=True, slots=True)
class MeasurementReportResult:
    """What one measurement report gave: its bookmarks and the groups skipped, with reasons.

    ``bookmarks`` are in measurement group order (``Bookmark.source_index`` is the 1-based group
    number). ``skipped`` has one problem per group that gave no bookmark; ``column`` names the group
    (and the measurement, when one is at fault). Iterating the result iterates the bookmarks.
    """

    bookmarks: tuple[Bookmark, ...]
    skipped: tuple[Problem, ...]

    def __iter__(self) -> Iterator[Bookmark]:
        return iter(self.bookmarks)

    def __len__(self) -> int:
        return len(self.bookmarks)


class _ReportReader:
    """Reads the measurement groups of one report against one CT index."""

    def __init__(
        self,
        ds: Dataset,
        source: str,
        ct_index: Mapping[str, CTImage] | None,
        allow_missing_images: bool,
        limits: InputLimits = DEFAULT_LIMITS,
    ) -> None:
        self.source = source
        self.limits = limits
        self.ct_index = ct_index if ct_index is not None else {}
        self.allow_missing = allow_missing_images
        self.patient_key = str(ds.get("PatientID", "") or "").strip()
        if not self.patient_key:
            raise report_rejection(
                source,
                "PatientID is empty: a bookmark must belong to a patient, and the patient's "
                "later studies join it by this identifier",
                "PatientID",
            )
        self.study_key = str(ds.get("StudyInstanceUID", "") or "").strip()
        if not self.study_key:
            raise report_rejection(source, "StudyInstanceUID is empty", "StudyInstanceUID")
        self.study_datetime = report_study_datetime(ds, source, limits)
        self.evidence = evidence_of(ds)
        # Which measurement a bookmark is: the group's tracking UID, else this report's instance
        # and group number (a duplicate is the same measurement, never "similar values").
        self.instance_uid = str(ds.get("SOPInstanceUID", "") or "").strip()

    def read(self, groups: list[Dataset]) -> MeasurementReportResult:
        bookmarks: list[Bookmark] = []
        skipped: list[Problem] = []
        for number, raw in enumerate(groups, 1):
            where = f"measurement group {number}"
            try:
                bookmarks.append(self._group(number, raw))
            except SkipGroup as skip:
                column = where if skip.field is None else f"{where}, {skip.field}"
                skipped.append(Problem(self.source, None, column, skip.reason, skip.rule))
            except Exception as exc:  # content highdicom parsed but that breaks its own rules
                reason = f"cannot be read ({first_line(exc)})"
                skipped.append(Problem(self.source, None, where, reason))
        if not bookmarks:
            raise InvalidInputError(skipped, outcome=OUTCOME)
        return MeasurementReportResult(tuple(bookmarks), tuple(skipped))

    def _group(self, number: int, raw: Dataset) -> Bookmark:
        check_stated_lengths(raw.get("ContentSequence"))
        try:
            group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations.from_sequence([raw])
            measurements = group.get_measurements()
            axes_by_role: dict[str, list[Any]] = {}
            for m in measurements:
                role = LENGTH_CONCEPTS.get(concept_key(m.name))
                if role is not None:
                    axes_by_role.setdefault(role, []).append(m)
        except SkipGroup:
            raise
        except Exception as exc:  # highdicom/pydicom raise many types on malformed content
            raise SkipGroup(
                f"cannot be parsed as a TID 1500 measurement group ({first_line(exc)})"
            ) from exc

        if not axes_by_role:
            marks = volumetric_references(group)
            if marks:
                raise SkipGroup(
                    f"volumetric measurement group ({', '.join(dict.fromkeys(marks))}); LesionKG "
                    "reads planar lengths only: Long Axis, Short Axis, Length or Diameter"
                )
            held = describe_measurements(measurements)
            raise SkipGroup(
                f"not a planar length measurement: the group holds {held}; "
                "expected Long Axis (with Short Axis), Length or Diameter"
            )
        # The long axis of a bookmark is the Long Axis, else a Length, else a Diameter.
        long_role = next((r for r in (LONG_AXIS, LENGTH, DIAMETER) if r in axes_by_role), None)
        if long_role is None:
            raise SkipGroup("a Short Axis without a Long Axis; expected both", SHORT_AXIS)
        for role in (long_role, SHORT_AXIS):
            if len(axes_by_role.get(role, [])) > 1:
                raise SkipGroup(
                    f"{len(axes_by_role[role])} '{role}' measurements; expected one", role
                )
        if SHORT_AXIS in axes_by_role and long_role != LONG_AXIS:
            raise SkipGroup(f"a Short Axis beside a {long_role} but no Long Axis", SHORT_AXIS)

        roi = self._group_roi(group)
        group_images = self._group_images(group, roi)
        long_axis = self._axis(
            long_role, axes_by_role[long_role][0], roi, group_images, len(axes_by_role) == 1
        )
        short_axis = (
            self._axis(SHORT_AXIS, axes_by_role[SHORT_AXIS][0], None, group_images, False)
            if SHORT_AXIS in axes_by_role
            else None
        )
        for axis in (long_axis, short_axis):
            if axis is not None:
                check_unit(axis)
        image_ref = long_axis.image
        if short_axis is not None and short_axis.image is not None:
            if image_ref is None:
                image_ref = short_axis.image
            elif short_axis.image != image_ref:
                raise SkipGroup(
                    f"the long and short axes are on different images ({image_ref.uid} frame "
                    f"{image_ref.frame}, {short_axis.image.uid} frame {short_axis.image.frame}); "
                    "RECIST axes are measured on one slice",
                    SHORT_AXIS,
                )
        image = self._image(image_ref, long_axis, short_axis)
        long_mm = self._mm(long_axis, image)
        short_mm = self._mm(short_axis, image) if short_axis is not None else None
        if short_mm is not None and short_mm > long_mm * (1.0 + AXES_RELATIVE_TOLERANCE):
            raise SkipGroup(
                f"the short axis ({short_mm:.4g} mm) is longer than the long axis "
                f"({long_mm:.4g} mm); expected long >= short",
                SHORT_AXIS,
            )

        series_key = image.series_instance_uid if image is not None else None
        if series_key is None and image_ref is not None:
            series_key = self.evidence.get(image_ref.uid, ("", ""))[0] or None
        sites = group.finding_sites or (axes_by_role[long_role][0].finding_sites or [])
        site = sites[0].value if sites else None
        tracking_uid = group.tracking_uid
        return Bookmark(
            source=self.source,
            source_index=number,
            patient_key=self.patient_key,
            study_key=self.study_key,
            study_datetime=self.study_datetime,
            series_key=series_key,
            image=ImageRef(image_ref.uid, image_ref.frame) if image_ref is not None else None,
            long_axis_mm=long_mm,
            short_axis_mm=short_mm,
            long_axis_px=long_axis.endpoints,
            short_axis_px=short_axis.endpoints if short_axis is not None else None,
            pixel_spacing_mm=image.pixel_spacing_mm if image is not None else None,
            finding=standard_meaning(group.finding_type),
            finding_site=standard_meaning(site),
            coarse_type=SITE_COARSE_TYPE.get(concept_key(site)) if site is not None else None,
            tracking_id=group.tracking_identifier or None,
            tracking_uid=str(tracking_uid) if tracking_uid else None,
            location=None,
            measurement_uid=(
                f"tu:{tracking_uid}"
                if tracking_uid
                else f"sr:{self.instance_uid}#{number}"
                if self.instance_uid
                else None
            ),
        )

    @staticmethod
    def _group_roi(group: Any) -> Any:
        try:
            roi = group.roi
        except Exception as exc:  # a malformed region: say so rather than guess
            raise SkipGroup(f"its Image Region cannot be parsed ({first_line(exc)})") from exc
        # A 3D region (SCOORD3D) has no pixel coordinates to measure on.
        return roi if roi is not None and roi.value_type == hd.sr.ValueTypeValues.SCOORD else None

    @staticmethod
    def _group_images(group: Any, roi: Any) -> list[SRImageRef]:
        """Images the group as a whole refers to: its region's source, its source images."""
        found: list[SRImageRef] = []
        if roi is not None:
            ref = image_of(roi)
            if ref is not None:
                found.append(ref)
        for item in group[0].ContentSequence:
            if (
                item.value_type == hd.sr.ValueTypeValues.IMAGE
                and concept_key(item.name) not in SEGMENT_IMAGE_NAMES
            ):
                found.append(image_item_ref(item))
        return list(dict.fromkeys(found))

    def _axis(
        self,
        role: str,
        measurement: Any,
        roi: Any,
        group_images: list[SRImageRef],
        sole_measurement: bool,
    ) -> MeasuredAxis:
        try:
            value = float(measurement.value)
            unit = measurement.unit
            coordinates = [
                c
                for c in measurement.referenced_coordinates
                if c.value_type == hd.sr.ValueTypeValues.SCOORD
            ]
            sources = measurement.referenced_images
        except SkipGroup:
            raise
        except Exception as exc:
            raise SkipGroup(f"cannot be parsed ({first_line(exc)})", role) from exc
        if not math.isfinite(value) or value <= 0.0:
            raise SkipGroup(f"value {value} is not a positive length", role, LENGTH_NOT_POSITIVE)
        endpoints: tuple[float, float, float, float] | None = None
        graphic: str | None = None
        image: SRImageRef | None = None
        if coordinates:
            endpoints, graphic = polyline_endpoints(coordinates[0])
            image = image_of(coordinates[0])
        elif roi is not None and sole_measurement:
            # The group's region is this measurement's graphic only when nothing else is measured.
            endpoints, graphic = polyline_endpoints(roi)
            image = image_of(roi)
        if image is None and sources:
            image = image_item_ref(sources[0])
        if image is None and group_images:
            if len(group_images) > 1:
                uids = ", ".join(i.uid for i in group_images)
                raise SkipGroup(f"the group refers to several images ({uids}); expected one", role)
            image = group_images[0]
        return MeasuredAxis(
            role=role,
            value=value,
            unit_code=str(unit.value),
            unit_scheme=str(unit.scheme_designator),
            unit_meaning=str(unit.meaning),
            endpoints=endpoints,
            graphic=graphic,
            image=image,
        )

    def _image(
        self, ref: SRImageRef | None, long_axis: MeasuredAxis, short_axis: MeasuredAxis | None
    ) -> CTImage | None:
        """The referenced CT image, checked against the report; None only when allowed."""
        axes = [a for a in (long_axis, short_axis) if a is not None]
        unitless = [a for a in axes if is_unitless(a)]
        if ref is None or ref.uid not in self.ct_index:
            missing = (
                "the group names no image"
                if ref is None
                else not_among_inputs(self.ct_index, ref.uid)
            )
            if unitless:
                a = unitless[0]
                raise SkipGroup(
                    f"{missing}, and its unit {unit_text(a)} is unitless: the length in mm can "
                    "only be recomputed from the graphic and that image's pixel spacing "
                    "(allow_missing_images cannot help: without the image there is no spacing)",
                    a.role,
                )
            if not self.allow_missing:
                raise SkipGroup(
                    f"{missing}; give the image among the inputs, or allow missing images to "
                    "import the measurement without image-derived fields"
                )
            self._check_evidence_study(ref)
            return None
        image = self.ct_index[ref.uid]
        if image.patient_id and image.patient_id != self.patient_key:
            raise SkipGroup(
                f"the referenced CT image {ref.uid} belongs to another patient (its PatientID "
                "differs from the report's)"
            )
        if image.study_instance_uid != self.study_key:
            raise SkipGroup(
                f"the referenced CT image {ref.uid} belongs to study {image.study_instance_uid}, "
                f"not to the report's study {self.study_key}; the study date would be wrong"
            )
        if ref.frame is not None and not 1 <= ref.frame <= image.number_of_frames:
            raise SkipGroup(
                f"frame {ref.frame} of CT image {ref.uid} does not exist: it has "
                f"{image.number_of_frames} frame(s)"
            )
        for a in axes:
            if a.endpoints is None:
                continue
            x1, y1, x2, y2 = a.endpoints
            xs_ok = all(
                -EDGE_ROUNDING_PX <= x <= image.columns + EDGE_ROUNDING_PX for x in (x1, x2)
            )
            ys_ok = all(-EDGE_ROUNDING_PX <= y <= image.rows + EDGE_ROUNDING_PX for y in (y1, y2))
            if not (xs_ok and ys_ok):
                raise SkipGroup(
                    f"graphic {a.endpoints} lies outside the referenced image ({image.columns} "
                    f"columns x {image.rows} rows): wrong image reference?",
                    a.role,
                    OUTSIDE_IMAGE,
                )
        return image

    def _check_evidence_study(self, ref: SRImageRef | None) -> None:
        if ref is None:
            return
        study = self.evidence.get(ref.uid, ("", ""))[1]
        if study and study != self.study_key:
            raise SkipGroup(
                f"the referenced image {ref.uid} belongs to study {study} (the report's evidence), "
                f"not to the report's study {self.study_key}; the study date would be wrong"
            )

    @staticmethod
    def _mm(axis: MeasuredAxis, image: CTImage | None) -> float:
        if has_length_unit(axis):
            return axis.value * UNIT_MM[axis.unit_code]
        if image is None or axis.endpoints is None:
            # _image rejects unitless axes without an image, so only the graphic can be missing.
            raise SkipGroup(
                f"unit {unit_text(axis)} is unitless and the length cannot be recomputed: "
                f"its graphic is {axis.graphic or 'missing'}, expected a 2-point POLYLINE",
                axis.role,
            )
        x1, y1, x2, y2 = axis.endpoints
        sx, sy = image.pixel_spacing_mm
        length = math.hypot((x2 - x1) * sx, (y2 - y1) * sy)
        if length <= 0.0:
            raise SkipGroup("the 2-point POLYLINE has zero length", axis.role)
        return length


def read_measurement_report(
    path: str | os.PathLike[str],
    ct_index: Mapping[str, CTImage] | None = None,
    *,
    allow_missing_images: bool = False,
    limits: InputLimits | None = None,
) -> MeasurementReportResult:
    """Read the planar length measurements of one TID 1500 DICOM SR file as bookmarks.

    ``ct_index`` maps SOP Instance UID to :class:`~lesionkg.loaders.ct.CTImage` (a
    :class:`~lesionkg.loaders.ct.CTIndex` will do); None means no image is known. See the module
    docstring for what is read and why a group is skipped. Returns the bookmarks and the skipped
    groups; raises :class:`~lesionkg.core.errors.InvalidInputError` when the file is not a readable
    TID 1500 report, lacks PatientID or StudyInstanceUID, has a malformed study date, or no group
    gives a bookmark (then every group's reason is listed). Problems have ``line=None`` and name
    the place in ``column`` (e.g. ``"measurement group 2, Long Axis"``). ``limits`` (default
    :data:`~lesionkg.core.limits.DEFAULT_LIMITS`): a study date before 1900 or in the future
    refuses the report (rule ``date_range``); a stated length that is NaN, negative or zero
    (``length_not_positive``) or a graphic off the image (``outside_image``) skips its group.
    """
    file = Path(path)
    source = str(file)
    ds = read_sr_file(file, source)
    try:
        check_measurement_report(ds, source)
        groups = measurement_groups(ds, source)
        reader = _ReportReader(ds, source, ct_index, allow_missing_images, limits or DEFAULT_LIMITS)
    except InvalidInputError:
        raise
    except Exception as exc:  # values are decoded lazily: a corrupt header fails only here
        raise report_rejection(source, f"malformed DICOM header ({first_line(exc)})") from exc
    return reader.read(groups)
