"""DICOM SR (TID 1500) measurement reports: the real files in ../shared/data/dicom, reports that
highdicom writes here on SYNTHETIC CT slices, and broken inputs, each with its reason.

Expected lengths are computed here independently of the reader: from the NUM value and its UCUM
unit read with pydicom, or from the SCOORD points and the image's pixel spacing.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from lesionkg.core.errors import InvalidInputError
from lesionkg.core.records import Bookmark, ImageRef
from lesionkg.loaders.ct import CTIndex, index_ct_images
from lesionkg.loaders.dicom_sr import MeasurementReportResult, read_measurement_report
from lesionkg.loaders.sr_document import study_datetime_iso
from lesionkg.synthetic.dicom import (
    ACCESSION,
    BIRTH_DATE,
    CM,
    LONG_AXIS,
    MM,
    PATIENT_ID,
    PATIENT_NAME,
    SHORT_AXIS,
    UM,
    UNITLESS,
    group,
    measurement,
    write_report,
    write_synthetic_ct,
)

CT_SMALL_UID = "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"
CT_SMALL_SERIES = "1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322"

# The length concepts, read here without the reader's tables: (scheme, code) -> role.
ROLES = {
    ("SRT", "G-A185"): "long",
    ("SCT", "103339001"): "long",
    ("SRT", "G-A186"): "short",
    ("SCT", "103340004"): "short",
    ("SRT", "G-D7FE"): "length",
    ("SCT", "410668003"): "length",
    ("SCT", "81827009"): "diameter",
}
MM_PER_UNIT = {"mm": 1.0, "cm": 10.0, "um": 0.001}

#: (row spacing, column spacing) = (y, x) mm, deliberately anisotropic to catch an order mix-up
SPACING_YX = (0.9, 0.7)


@pytest.fixture(scope="module")
def ct_index(dicom_dir: Path) -> CTIndex:
    return index_ct_images([dicom_dir / "ct"])


# --- independent expectations --------------------------------------------------------------------


def _walk(items: Any) -> Any:
    for item in items:
        yield item
        yield from _walk(item.get("ContentSequence") or [])


def _code(item: Dataset) -> tuple[str, str] | None:
    names = item.get("ConceptNameCodeSequence")
    return (names[0].CodingSchemeDesignator, names[0].CodeValue) if names else None


def groups_of(path: Path) -> list[Dataset]:
    """The measurement group items of a report, read with pydicom only."""
    ds = pydicom.dcmread(path)
    return [item for item in _walk(ds.ContentSequence) if _code(item) == ("DCM", "125007")]


def nums_mm(group: Dataset) -> dict[str, float]:
    """Role -> length in mm of the group's length NUMs (NUM value x UCUM unit)."""
    found = {}
    for item in group.ContentSequence:
        role = ROLES.get(_code(item))
        if item.ValueType == "NUM" and role and "MeasuredValueSequence" in item:
            value = item.MeasuredValueSequence[0]
            unit = value.MeasurementUnitsCodeSequence[0].CodeValue
            if unit in MM_PER_UNIT:
                found[role] = float(value.NumericValue) * MM_PER_UNIT[unit]
    return found


def scoord_points(group: Dataset, role: str) -> tuple[float, float, float, float]:
    """The 2-point POLYLINE under the group's NUM of ``role``."""
    for item in group.ContentSequence:
        if ROLES.get(_code(item)) == role:
            (scoord,) = [c for c in item.ContentSequence if c.ValueType == "SCOORD"]
            assert scoord.GraphicType == "POLYLINE" and len(scoord.GraphicData) == 4
            return tuple(float(v) for v in scoord.GraphicData)
    raise AssertionError(f"no {role} in the group")


def referenced_uid(report: Dataset) -> str:
    """The one CT image a single-image report lists as its evidence."""
    (series,) = report.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
    (sop,) = series.ReferencedSOPSequence
    return str(sop.ReferencedSOPInstanceUID)


def line_mm(points: tuple[float, ...], spacing_xy: tuple[float, float]) -> float:
    x1, y1, x2, y2 = points
    return math.hypot((x2 - x1) * spacing_xy[0], (y2 - y1) * spacing_xy[1])


def rejected(path: Path, *args: Any, **kwargs: Any) -> list[str]:
    """The reasons a report is rejected for; it must be rejected."""
    with pytest.raises(InvalidInputError) as info:
        read_measurement_report(path, *args, **kwargs)
    assert info.value.problems, "a rejection lists its problems"
    assert all(p.source == str(path) and p.line is None for p in info.value.problems)
    assert "no bookmark was read from it" in str(info.value)
    return [p.reason for p in info.value.problems]


def assert_private_fields_absent(bookmark: Bookmark, *values: str) -> None:
    text = repr(bookmark)
    for value in values:
        assert value not in text


# --- SYNTHETIC CT slices and reports (written here, labelled so) ---------------------------------


# Baseline and follow-up of one SYNTHETIC lesion: endpoints in pixels, (x, y).
BASELINE_LONG = [[10.0, 20.0], [40.0, 60.0]]
BASELINE_SHORT = [[32.0, 30.0], [20.0, 40.0]]
FOLLOW_UP_LONG = [[12.0, 22.0], [36.0, 52.0]]
FOLLOW_UP_SHORT = [[28.0, 32.0], [20.0, 40.0]]
SPACING_XY = (SPACING_YX[1], SPACING_YX[0])


@pytest.fixture
def patient(tmp_path: Path) -> dict[str, Any]:
    """A SYNTHETIC patient: baseline (lengths in cm) and follow-up (mm), one tracked lesion."""
    tracking_uid = generate_uid()
    baseline_ct = write_synthetic_ct(
        tmp_path / "synthetic_ct_baseline.dcm",
        study_uid=generate_uid(),
        study_date="20240301",
        study_time="102200",
    )
    follow_up_ct = write_synthetic_ct(
        tmp_path / "synthetic_ct_follow_up.dcm",
        study_uid=generate_uid(),
        study_date="20240615",
        study_time="093015.25",
    )
    reports = {}
    for name, ct, long_pts, short_pts, unit, scale in (
        ("baseline", baseline_ct, BASELINE_LONG, BASELINE_SHORT, CM, 0.1),
        ("follow_up", follow_up_ct, FOLLOW_UP_LONG, FOLLOW_UP_SHORT, MM, 1.0),
    ):
        long_mm = line_mm(tuple(np.ravel(long_pts)), SPACING_XY)
        short_mm = line_mm(tuple(np.ravel(short_pts)), SPACING_XY)
        reports[name] = write_report(
            tmp_path / f"synthetic_sr_{name}.dcm",
            ct,
            [
                group(
                    [
                        measurement(LONG_AXIS, round(long_mm * scale, 6), unit, ct, long_pts),
                        measurement(SHORT_AXIS, round(short_mm * scale, 6), unit, ct, short_pts),
                    ],
                    tracking_uid,
                )
            ],
        )
    cts = tmp_path / "cts"
    cts.mkdir()
    for ct in (baseline_ct, follow_up_ct):
        Path(ct.filename).rename(cts / Path(ct.filename).name)
    return {
        "dir": tmp_path,
        "index": index_ct_images([cts]),
        "tracking_uid": tracking_uid,
        "cts": {"baseline": baseline_ct, "follow_up": follow_up_ct},
        "reports": reports,
    }


# --- the real reports ----------------------------------------------------------------------------


def test_real_report_with_several_groups(dicom_dir: Path, ct_index: CTIndex) -> None:
    path = dicom_dir / "sr" / "sr_document_with_multiple_groups.dcm"
    result = read_measurement_report(path, ct_index)
    assert isinstance(result, MeasurementReportResult)
    groups = groups_of(path)
    assert [b.source_index for b in result.bookmarks] == [2, 3]
    nodule, aorta = result.bookmarks
    assert nodule.long_axis_mm == pytest.approx(nums_mm(groups[1])["diameter"])
    assert aorta.long_axis_mm == pytest.approx(nums_mm(groups[2])["diameter"])
    assert (nodule.long_axis_mm, aorta.long_axis_mm) == (10.0, 20.0)
    assert nodule.short_axis_mm is None and aorta.short_axis_mm is None
    ds = pydicom.dcmread(path)
    for bookmark in result.bookmarks:
        assert bookmark.source == str(path)
        assert bookmark.patient_key == ds.PatientID == "1CT1"
        assert bookmark.study_key == ds.StudyInstanceUID
        assert bookmark.study_datetime == "2004-01-19T07:27:30"
        assert bookmark.image == ImageRef(CT_SMALL_UID, None)
        assert bookmark.series_key == CT_SMALL_SERIES
        assert bookmark.pixel_spacing_mm == (0.661468, 0.661468)
        # A CIRCLE and a 4-point outline are not axes: no endpoints.
        assert bookmark.long_axis_px is None
        assert bookmark.location is None
        assert_private_fields_absent(bookmark, "Doe^John")
    assert (nodule.finding, nodule.finding_site, nodule.coarse_type) == ("Nodule", "Lung", 5)
    assert (aorta.finding, aorta.finding_site, aorta.coarse_type) == ("Aorta", None, None)
    assert (nodule.tracking_id, aorta.tracking_id) == ("LungNodule0001", "Aorta0001")
    assert nodule.tracking_uid == "1.2.826.0.1.3680043.10.511.3.11998155355995483197548907108234588"
    columns = {p.column: p.reason for p in result.skipped}
    assert set(columns) == {"measurement group 1", "measurement group 4"}
    assert "not a planar length measurement" in columns["measurement group 1"]
    assert "Intensity Histogram Mean" in columns["measurement group 1"]
    assert columns["measurement group 4"].startswith("volumetric measurement group (Volume")
    assert list(result) == list(result.bookmarks) and len(result) == 2


def test_real_viewer_report_lengths_match_its_nums(dicom_dir: Path, tmp_path: Path) -> None:
    """structured_report.dcm (dcmjs/OHIF): bidirectional, two lengths, two areas, an arrow."""
    original = dicom_dir / "sr" / "structured_report.dcm"
    assert rejected(original, allow_missing_images=True) == [
        "PatientID is empty: a bookmark must belong to a patient, and the patient's later "
        "studies join it by this identifier"
    ]
    # A copy with a (test) PatientID, to read its measurements; its CT is not among the files.
    ds = pydicom.dcmread(original)
    ds.PatientID = "TEST-COPY-OF-REAL-REPORT"
    path = tmp_path / "structured_report_with_patient_id.dcm"
    ds.save_as(path)

    reasons = rejected(path)
    assert len(reasons) == 6
    assert sum("is not among the CT inputs" in r for r in reasons) == 3

    result = read_measurement_report(path, None, allow_missing_images=True)
    groups = groups_of(path)
    assert [b.source_index for b in result.bookmarks] == [3, 4, 5]
    bidirectional, length_a, length_b = result.bookmarks
    expected = nums_mm(groups[2])
    assert bidirectional.long_axis_mm == pytest.approx(expected["long"])
    assert bidirectional.short_axis_mm == pytest.approx(expected["short"])
    assert (bidirectional.long_axis_mm, bidirectional.short_axis_mm) == (93.9, 47.0)
    assert bidirectional.long_axis_px == scoord_points(groups[2], "long")
    assert bidirectional.short_axis_px == scoord_points(groups[2], "short")
    assert length_a.long_axis_mm == pytest.approx(nums_mm(groups[3])["length"])
    assert length_b.long_axis_mm == pytest.approx(nums_mm(groups[4])["length"])
    assert length_a.long_axis_mm == pytest.approx(39.366492911614)
    assert length_b.long_axis_mm == pytest.approx(133.992062006165)
    for bookmark in result.bookmarks:
        assert bookmark.pixel_spacing_mm is None and bookmark.location is None
        assert bookmark.image is not None and bookmark.image.sop_instance_uid
        assert bookmark.series_key == "1.3.6.1.4.1.25403.52237031786.3872.20100510032220.2"
        assert bookmark.study_datetime is None  # the report has no StudyDate
    skipped = {p.column: p.reason for p in result.skipped}
    assert 'lacks required attribute "MeasuredValueSequence"' in skipped["measurement group 1"]
    # The areas are coded as lengths (G-D7FE) with mm2: the unit gives them away.
    for column in ("measurement group 2, Length", "measurement group 6, Length"):
        assert skipped[column].startswith(
            "unit 'mm2' (UCUM, meaning 'squaremillimeter') is an area, not a length"
        )


def test_real_area_only_report_is_rejected(dicom_dir: Path, ct_index: CTIndex) -> None:
    reasons = rejected(dicom_dir / "sr" / "sr_document.dcm", ct_index)
    assert reasons == [
        "not a planar length measurement: the group holds only Area of defined region [cm2]; "
        "expected Long Axis (with Short Axis), Length or Diameter"
    ]


def test_real_volumetric_report_is_rejected(dicom_dir: Path, ct_index: CTIndex) -> None:
    reasons = rejected(dicom_dir / "sr" / "liver_volume_tid1500.dcm", ct_index)
    assert reasons == [
        "volumetric measurement group (Referenced Segment, Source series for segmentation, "
        "Volume); LesionKG reads planar lengths only: Long Axis, Short Axis, Length or Diameter"
    ]


def test_real_non_tid1500_sr_is_rejected(dicom_dir: Path) -> None:
    reasons = rejected(dicom_dir / "not_tid1500" / "basic_text_sr.dcm", allow_missing_images=True)
    assert reasons == [
        "not a TID 1500 measurement report: the document title is 'Diagnosis' (1111, TEST), "
        "expected 'Imaging Measurement Report' (126000, DCM)"
    ]


def test_real_ct_image_is_not_a_report(dicom_dir: Path) -> None:
    (reason,) = rejected(dicom_dir / "ct" / "ct_small.dcm")
    assert reason.startswith("SOP class CT Image Storage is not a structured report")


def test_real_unitless_report_without_its_ct_is_rejected(
    dicom_dir: Path, ct_index: CTIndex
) -> None:
    path = dicom_dir / "sr" / "sample-sr.dcm"
    for allow in (False, True):
        (reason,) = rejected(path, ct_index, allow_missing_images=allow)
        assert "the referenced CT image 1.3.6.1.4.1.14519.5.2.1.3098.5025." in reason
        assert "is not among the CT inputs" in reason
        assert "unit '1' (UCUM, meaning 'px') is unitless" in reason
        assert "allow_missing_images cannot help: without the image there is no spacing" in reason


def test_real_unitless_report_is_recomputed_from_its_graphics(
    dicom_dir: Path, tmp_path: Path
) -> None:
    """sample-sr.dcm with a SYNTHETIC stand-in slice carrying its referenced SOP Instance UID."""
    path = dicom_dir / "sr" / "sample-sr.dcm"
    report = pydicom.dcmread(path)
    (raw_group,) = groups_of(path)
    long_pts = scoord_points(raw_group, "long")
    sop_uid = referenced_uid(report)
    write_synthetic_ct(
        tmp_path / "synthetic_stand_in_ct.dcm",
        study_uid=report.StudyInstanceUID,
        study_date=report.StudyDate,
        study_time=report.StudyTime,
        patient_id=report.PatientID,
        sop_uid=sop_uid,
        rows=1100,
        columns=700,
        spacing_yx=(0.8, 0.6),
    )
    result = read_measurement_report(path, index_ct_images([tmp_path]))
    (bookmark,) = result.bookmarks
    assert result.skipped == ()
    # The NUM values (64.45 and 42.97 "px") are ignored: the lengths come from the graphics.
    assert bookmark.long_axis_mm == pytest.approx(line_mm(long_pts, (0.6, 0.8)))
    short_pts = scoord_points(raw_group, "short")
    assert bookmark.short_axis_mm == pytest.approx(line_mm(short_pts, (0.6, 0.8)))
    assert bookmark.long_axis_px == long_pts
    assert bookmark.pixel_spacing_mm == (0.6, 0.8)
    assert bookmark.study_datetime == "2009-02-28T19:08:08"
    assert bookmark.tracking_uid == "2.25.639471218588509803385904782051176077285"
    assert bookmark.tracking_id == "Cornerstone3DTools@^0.1.0:Bidirectional"
    assert_private_fields_absent(bookmark, "Doe^John", "Operator")


# --- SYNTHETIC reports written with highdicom ----------------------------------------------------


def test_synthetic_baseline_and_follow_up_read_back(patient: dict[str, Any]) -> None:
    bookmarks = {
        name: read_measurement_report(path, patient["index"]).bookmarks
        for name, path in patient["reports"].items()
    }
    (baseline,) = bookmarks["baseline"]
    (follow_up,) = bookmarks["follow_up"]
    for bookmark, name, long_pts, short_pts in (
        (baseline, "baseline", BASELINE_LONG, BASELINE_SHORT),
        (follow_up, "follow_up", FOLLOW_UP_LONG, FOLLOW_UP_SHORT),
    ):
        ct = patient["cts"][name]
        assert bookmark.patient_key == PATIENT_ID
        assert bookmark.study_key == ct.StudyInstanceUID
        assert bookmark.series_key == ct.SeriesInstanceUID
        assert bookmark.image == ImageRef(ct.SOPInstanceUID, None)
        assert bookmark.pixel_spacing_mm == SPACING_XY
        long_ends, short_ends = tuple(np.ravel(long_pts)), tuple(np.ravel(short_pts))
        assert bookmark.long_axis_px == long_ends
        assert bookmark.short_axis_px == short_ends
        assert bookmark.long_axis_mm == pytest.approx(line_mm(long_ends, SPACING_XY), abs=1e-5)
        assert bookmark.short_axis_mm == pytest.approx(line_mm(short_ends, SPACING_XY), abs=1e-5)
        assert bookmark.tracking_uid == patient["tracking_uid"]
        assert bookmark.tracking_id == "Lesion 1"
        assert (bookmark.finding, bookmark.finding_site, bookmark.coarse_type) == (
            "Nodule",
            "Lung",
            5,
        )
        assert_private_fields_absent(bookmark, PATIENT_NAME, "SYNTHETIC^", BIRTH_DATE, ACCESSION)
    # baseline: 30 x 0.7 and 40 x 0.9 mm, written as 4.168 cm.
    assert baseline.long_axis_mm == pytest.approx(math.hypot(21.0, 36.0), abs=1e-5)
    assert baseline.study_datetime == "2024-03-01T10:22:00"
    assert follow_up.study_datetime == "2024-06-15T09:30:15.250000"
    assert baseline.study_datetime < follow_up.study_datetime


@pytest.mark.parametrize(("unit", "mm_per_unit"), [(CM, 10.0), (MM, 1.0), (UM, 0.001)])
def test_units_are_converted_to_mm(
    patient: dict[str, Any], tmp_path: Path, unit: Code, mm_per_unit: float
) -> None:
    ct = patient["cts"]["baseline"]
    path = write_report(
        tmp_path / "synthetic_sr_units.dcm",
        ct,
        [group([measurement(LONG_AXIS, 25.0, unit, ct, BASELINE_LONG)], generate_uid())],
    )
    (bookmark,) = read_measurement_report(path, patient["index"]).bookmarks
    assert bookmark.long_axis_mm == pytest.approx(25.0 * mm_per_unit)
    assert bookmark.short_axis_mm is None


def test_unitless_length_is_recomputed_from_graphic_and_spacing(
    patient: dict[str, Any], tmp_path: Path
) -> None:
    ct = patient["cts"]["baseline"]
    path = write_report(
        tmp_path / "synthetic_sr_unitless.dcm",
        ct,
        [group([measurement(LONG_AXIS, 50.0, UNITLESS, ct, BASELINE_LONG)], generate_uid())],
    )
    (bookmark,) = read_measurement_report(path, patient["index"]).bookmarks
    assert bookmark.long_axis_mm == pytest.approx(math.hypot(30 * 0.7, 40 * 0.9))


def test_unitless_length_without_graphic_is_rejected(
    patient: dict[str, Any], tmp_path: Path
) -> None:
    ct = patient["cts"]["baseline"]
    lone = measurement(LONG_AXIS, 50.0, UNITLESS, ct, None)
    group_item = group([lone], generate_uid())
    path = write_report(tmp_path / "synthetic_sr_unitless_no_graphic.dcm", ct, [group_item])
    # No graphic and no image named: nothing to recompute from.
    (reason,) = rejected(path, patient["index"], allow_missing_images=True)
    assert reason.startswith("the group names no image, and its unit '1'")


def test_wrong_unit_is_rejected(patient: dict[str, Any], tmp_path: Path) -> None:
    ct = patient["cts"]["baseline"]
    kg = Code("kg", "UCUM", "kilogram")
    path = write_report(
        tmp_path / "synthetic_sr_kg.dcm",
        ct,
        [group([measurement(LONG_AXIS, 4.0, kg, ct, BASELINE_LONG)], generate_uid())],
    )
    with pytest.raises(InvalidInputError) as info:
        read_measurement_report(path, patient["index"], allow_missing_images=True)
    (problem,) = info.value.problems
    assert problem.column == "measurement group 1, Long Axis"
    assert problem.reason == (
        "unit 'kg' (UCUM, meaning 'kilogram') is not a length unit; expected a UCUM length unit "
        "(mm, cm, um, m), or unitless with a 2-point POLYLINE and the image"
    )
    assert str(path) in str(info.value) and "measurement group 1, Long Axis" in str(info.value)


def test_missing_referenced_image(patient: dict[str, Any]) -> None:
    path = patient["reports"]["follow_up"]
    ct = patient["cts"]["follow_up"]
    only_baseline = {
        uid: image for uid, image in patient["index"].items() if uid != ct.SOPInstanceUID
    }
    (reason,) = rejected(path, only_baseline)
    assert reason == (
        f"the referenced CT image {ct.SOPInstanceUID} is not among the CT inputs; give the image "
        "among the inputs, or allow missing images to import the measurement without "
        "image-derived fields"
    )
    assert rejected(path, None) == [reason]
    (bookmark,) = read_measurement_report(path, only_baseline, allow_missing_images=True)
    assert bookmark.image == ImageRef(ct.SOPInstanceUID, None)
    assert bookmark.pixel_spacing_mm is None and bookmark.location is None
    # The series is still known from the report's evidence list.
    assert bookmark.series_key == ct.SeriesInstanceUID
    assert bookmark.long_axis_mm == pytest.approx(
        line_mm(tuple(np.ravel(FOLLOW_UP_LONG)), SPACING_XY), abs=1e-5
    )


# The real SEG's PatientName has one component; highdicom says so when it copies it.
@pytest.mark.filterwarnings("ignore:The string .* is unlikely to represent:UserWarning")
def test_a_referenced_image_found_as_another_kind_is_named(dicom_dir: Path, tmp_path: Path) -> None:
    # A viewer measured on the real liver SEG (a SYNTHETIC report): the index holds the SEG, not a
    # CT image, under the referenced UID, and the reason says so instead of "not there".
    seg_path = dicom_dir / "ct" / "liver" / "liver_seg.dcm"
    seg = pydicom.dcmread(seg_path, stop_before_pixels=True)
    on_seg = measurement(LONG_AXIS, 20.0, MM, seg, [[10.0, 10.0], [30.0, 10.0]])
    path = write_report(tmp_path / "on_seg.dcm", seg, [group([on_seg], generate_uid())])
    index = index_ct_images([dicom_dir / "ct"])
    (reason,) = rejected(path, index)
    assert reason.startswith(
        f"the referenced CT image {seg.SOPInstanceUID} is not among the CT inputs: it is a SEG "
        f"object (Segmentation Storage) in {seg_path}, and lengths are measured on CT only; "
    )
    # With missing images allowed it is imported without image-derived fields, as for an absent one.
    (bookmark,) = read_measurement_report(path, index, allow_missing_images=True)
    assert bookmark.image == ImageRef(seg.SOPInstanceUID, None)
    assert bookmark.pixel_spacing_mm is None and bookmark.long_axis_mm == 20.0


def test_image_of_another_patient_is_rejected(patient: dict[str, Any], tmp_path: Path) -> None:
    ct = patient["cts"]["baseline"]
    other = write_synthetic_ct(
        tmp_path / "synthetic_ct_other_patient.dcm",
        study_uid=ct.StudyInstanceUID,
        study_date="20240301",
        study_time="102200",
        patient_id="SYNTHETIC-LKG-0002",
        sop_uid=ct.SOPInstanceUID,
    )
    index = index_ct_images([Path(other.filename)])
    (reason,) = rejected(patient["reports"]["baseline"], index)
    assert "belongs to another patient" in reason
    assert "SYNTHETIC-LKG-0002" not in reason and PATIENT_ID not in reason


def test_short_axis_longer_than_long_axis_is_rejected(
    patient: dict[str, Any], tmp_path: Path
) -> None:
    ct = patient["cts"]["baseline"]
    path = write_report(
        tmp_path / "synthetic_sr_swapped.dcm",
        ct,
        [
            group(
                [
                    measurement(LONG_AXIS, 10.0, MM, ct, BASELINE_SHORT),
                    measurement(SHORT_AXIS, 30.0, MM, ct, BASELINE_LONG),
                ],
                generate_uid(),
            )
        ],
    )
    (reason,) = rejected(path, patient["index"])
    assert (
        reason
        == "the short axis (30 mm) is longer than the long axis (10 mm); expected long >= short"
    )


def test_one_good_group_and_one_skipped(patient: dict[str, Any], tmp_path: Path) -> None:
    ct = patient["cts"]["baseline"]
    mean_hu = hd.sr.Measurement(
        name=Code("112031", "DCM", "Attenuation Coefficient"),
        value=40.0,
        unit=Code("[hnsf'U]", "UCUM", "Hounsfield unit"),
    )
    path = write_report(
        tmp_path / "synthetic_sr_two_groups.dcm",
        ct,
        [
            group([mean_hu], generate_uid()),
            group([measurement(LONG_AXIS, 12.0, MM, ct, BASELINE_LONG)], generate_uid()),
        ],
    )
    result = read_measurement_report(path, patient["index"])
    assert [b.source_index for b in result.bookmarks] == [2]
    (skip,) = result.skipped
    assert skip.column == "measurement group 1"
    assert "Attenuation Coefficient [[hnsf'U]]" in skip.reason


def test_free_text_disguised_as_a_code_is_dropped(patient: dict[str, Any], tmp_path: Path) -> None:
    ct = patient["cts"]["baseline"]
    typed = Code("CORNERSTONEFREETEXT", "CST4", "left lower lobe, seen 2019 at another hospital")
    path = write_report(
        tmp_path / "synthetic_sr_free_text.dcm",
        ct,
        [
            group(
                [measurement(LONG_AXIS, 12.0, MM, ct, BASELINE_LONG)],
                generate_uid(),
                finding=typed,
                site=Code("L1", "99LOCAL", "typed site text"),
            )
        ],
    )
    (bookmark,) = read_measurement_report(path, patient["index"]).bookmarks
    assert bookmark.finding is None and bookmark.finding_site is None
    assert_private_fields_absent(bookmark, "hospital", "typed site text")


# --- broken inputs -------------------------------------------------------------------------------


def test_not_dicom(tmp_path: Path) -> None:
    path = tmp_path / "report.dcm"
    path.write_text("Patient: SYNTHETIC. Findings: a 12 mm nodule.\n")
    assert rejected(path) == ["not a DICOM file (no 'DICM' marker after the 128-byte preamble)"]


def test_missing_file(tmp_path: Path) -> None:
    assert rejected(tmp_path / "absent.dcm") == ["no such file"]


def test_truncated_file(dicom_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "truncated.dcm"
    path.write_bytes((dicom_dir / "sr" / "sample-sr.dcm").read_bytes()[:200])
    assert rejected(path) == [
        "truncated: the file holds no data set after its file meta information"
    ]


def test_truncated_anywhere_is_rejected_never_crashes(dicom_dir: Path, tmp_path: Path) -> None:
    for name in ("sample-sr.dcm", "sr_document_with_multiple_groups.dcm"):
        data = (dicom_dir / "sr" / name).read_bytes()
        for cut in range(0, len(data), 97):
            path = tmp_path / f"cut_{cut}_{name}"
            path.write_bytes(data[:cut])
            (reason,) = rejected(path, allow_missing_images=True)
            # Within the 128-byte preamble and 'DICM' marker nothing says DICOM yet.
            expected = "not a DICOM file" if cut < 132 else "truncat"
            assert expected in reason, (cut, reason)


def test_report_without_measurement_groups(patient: dict[str, Any], tmp_path: Path) -> None:
    ds = pydicom.dcmread(patient["reports"]["baseline"])
    for item in ds.ContentSequence:
        if _code(item) == ("DCM", "126010"):
            del item.ContentSequence
    path = tmp_path / "synthetic_sr_no_groups.dcm"
    ds.save_as(path)
    assert rejected(path, patient["index"]) == [
        "the report has no measurement groups: expected 'Measurement Group' (125007, DCM) "
        "containers in its 'Imaging Measurements' (126010, DCM) container"
    ]


def test_malformed_study_date(patient: dict[str, Any], tmp_path: Path) -> None:
    ds = pydicom.dcmread(patient["reports"]["baseline"])
    with pytest.warns(UserWarning, match="Invalid value for VR DA"):
        ds.StudyDate = "2024-03-01"
    path = tmp_path / "synthetic_sr_bad_date.dcm"
    ds.save_as(path)
    with pytest.raises(InvalidInputError) as info:
        read_measurement_report(path, patient["index"])
    (problem,) = info.value.problems
    assert problem.column == "StudyDate"
    assert problem.reason.startswith("StudyDate '2024-03-01' is not a DICOM date (YYYYMMDD)")


def test_study_datetime_iso() -> None:
    assert study_datetime_iso("20240301", "102200") == "2024-03-01T10:22:00"
    assert study_datetime_iso("20240301", "1022") == "2024-03-01T10:22:00"
    assert study_datetime_iso("20240301", "102200.5") == "2024-03-01T10:22:00.500000"
    assert study_datetime_iso("20240301", "10:22:00") == "2024-03-01T10:22:00"
    assert study_datetime_iso("20240301", "") == "2024-03-01"
    assert study_datetime_iso("", "102200") is None
    with pytest.raises(ValueError, match="StudyTime '25h' is not a DICOM time"):
        study_datetime_iso("20240301", "25h")
    with pytest.raises(ValueError):
        study_datetime_iso("20241301", "")


def test_frame_of_a_real_multiframe_ct(liver_multiframe, tmp_path: Path) -> None:
    """A report written here with highdicom on frame 2 of the real liver slices as one
    Legacy Converted Enhanced CT (converted here with highdicom)."""
    multiframe = liver_multiframe
    # The real slices carry an empty Specific Character Set, which highdicom's SR refuses.
    del multiframe.SpecificCharacterSet
    cts = tmp_path / "cts"
    cts.mkdir()
    multiframe.save_as(cts / "liver_multiframe.dcm")

    def on_frame(frame: int) -> hd.sr.MeasurementsAndQualitativeEvaluations:
        source = hd.sr.SourceImageForRegion(
            multiframe.SOPClassUID, multiframe.SOPInstanceUID, referenced_frame_numbers=[frame]
        )
        coordinates = hd.sr.CoordinatesForMeasurement(
            graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
            graphic_data=np.array([[200.0, 250.0], [260.0, 250.0]]),
            source_image=source,
        )
        length = hd.sr.Measurement(
            name=LONG_AXIS, value=48.6, unit=MM, referenced_coordinates=[coordinates]
        )
        return group([length], generate_uid(), site=Code("10200004", "SCT", "Liver"))

    with warnings.catch_warnings():
        # The evidence's one-component PatientName again (copied into the report).
        warnings.simplefilter("ignore", UserWarning)
        path = write_report(
            tmp_path / "sr_on_multiframe.dcm", multiframe, [on_frame(2), on_frame(5)]
        )
    result = read_measurement_report(path, index_ct_images([cts]))
    (bookmark,) = result.bookmarks
    assert bookmark.image == ImageRef(multiframe.SOPInstanceUID, 2)
    assert bookmark.long_axis_mm == 48.6
    assert bookmark.pixel_spacing_mm == (0.810547, 0.810547)
    assert (bookmark.patient_key, bookmark.study_datetime) == ("99000", "2003-04-17T10:46:07")
    assert (bookmark.finding_site, bookmark.coarse_type) == ("Liver", 4)
    (skip,) = result.skipped
    assert skip.column == "measurement group 2"
    assert skip.reason == (
        f"frame 5 of CT image {multiframe.SOPInstanceUID} does not exist: it has 3 frame(s)"
    )


def test_graphic_outside_the_referenced_image_is_rejected(dicom_dir: Path, tmp_path: Path) -> None:
    """sample-sr.dcm's points reach y = 1090: a 512 x 512 stand-in cannot be its image."""
    path = dicom_dir / "sr" / "sample-sr.dcm"
    report = pydicom.dcmread(path)
    write_synthetic_ct(
        tmp_path / "synthetic_small_stand_in_ct.dcm",
        study_uid=report.StudyInstanceUID,
        study_date=report.StudyDate,
        study_time=report.StudyTime,
        patient_id=report.PatientID,
        sop_uid=referenced_uid(report),
        rows=512,
        columns=512,
    )
    (reason,) = rejected(path, index_ct_images([tmp_path]))
    assert reason.startswith("graphic (580.7191772460938, 1090.8358154296875,")
    assert reason.endswith(
        "lies outside the referenced image (512 columns x 512 rows): wrong image reference?"
    )
