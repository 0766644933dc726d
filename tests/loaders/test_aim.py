"""AIM readers: real AIM v3 XML and AIM SR files of the NCI AIM toolkit (tests/data/aim, see
SOURCES.md), SYNTHETIC AIM v4 XML and ePAD JSON from lesionkg.synthetic.aim, and bad inputs, each
refused with the file and the element named.

Expected values are read off the files by eye (the XML attributes, the SR's NUM and SCOORD) or
computed here from the line and the pixel spacing, never taken from the reader.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from lesionkg.core.errors import InvalidInputError
from lesionkg.core.records import Bookmark, ImageRef
from lesionkg.loaders.aim import (
    AimResult,
    is_aim_sr,
    looks_like_aim_json,
    looks_like_aim_sr,
    looks_like_aim_xml,
    read_aim,
)
from lesionkg.loaders.ct import CTImage
from lesionkg.synthetic.aim import (
    SyntheticAnnotation,
    SyntheticLine,
    aim_collection,
    write_aim_json,
    write_aim_xml,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "aim"
BASELINE_A = DATA / "0022BaselineA.xml"
BASELINE_B = DATA / "0022BaselineB.xml"
FOLLOWUP_A = DATA / "0022FollowupA.xml"
BASELINE_A_SR = DATA / "0022BaselineA.dcm"
FOLLOWUP_A_SR = DATA / "0022FollowupA.dcm"

# The AIM toolkit sample patient 0022 (TCIA RIDER-style de-identified UIDs), as the files state.
PATIENT = "409978"
BASELINE_STUDY = "1.3.6.1.4.1.9328.50.1.10607"
BASELINE_SERIES = "1.3.6.1.4.1.9328.50.1.10697"
BASELINE_IMAGE = "1.3.6.1.4.1.9328.50.1.10717"
FOLLOWUP_STUDY = "1.3.6.1.4.1.9328.50.1.10733"
FOLLOWUP_SERIES = "1.3.6.1.4.1.9328.50.1.10857"
FOLLOWUP_IMAGE = "1.3.6.1.4.1.9328.50.1.10884"
#: PixelSpacing of the sample's baseline CT slice (Images/Baseline/0022Baseline.dcm header)
BASELINE_SPACING = 0.691406


def ct_image(
    uid: str,
    study: str,
    spacing: float,
    *,
    series: str = "1.2.826.0.1.3680043.8.498.1",
    patient: str = PATIENT,
    frames: int = 1,
) -> CTImage:
    """The header facts of one 512 x 512 CT slice (no file is read)."""
    return CTImage(
        sop_instance_uid=uid,
        series_instance_uid=series,
        study_instance_uid=study,
        patient_id=patient,
        path=Path("ct.dcm"),
        rows=512,
        columns=512,
        pixel_spacing_mm=(spacing, spacing),
        slice_position_mm=None,
        image_position_patient=None,
        image_orientation_patient=None,
        number_of_frames=frames,
        rescale_slope=1.0,
        rescale_intercept=-1024.0,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
    )


def refused(
    path: Path, ct_index: dict[str, CTImage] | None = None, *, require_images: bool = False
) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as caught:
        read_aim(path, ct_index, require_images=require_images)
    return caught.value


# --- real AIM v3 XML and its AIM SR twin ---------------------------------------------------------


def test_aim_v3_xml_baseline_is_read_value_by_value() -> None:
    result = read_aim(BASELINE_A)
    assert isinstance(result, AimResult)
    assert result.format == "AIM v3 XML"
    assert result.skipped == () and result.notes == ()
    assert list(result) == [
        Bookmark(
            source=str(BASELINE_A),
            source_index=1,
            patient_key=PATIENT,
            study_key=BASELINE_STUDY,
            study_datetime="2000-07-01",
            series_key=BASELINE_SERIES,
            image=ImageRef(BASELINE_IMAGE, None),
            long_axis_mm=39.5795974731445,
            short_axis_mm=None,
            long_axis_px=(143.0, 300.0, 92.0, 326.0),
            short_axis_px=None,
            pixel_spacing_mm=None,
            finding=None,
            finding_site="LUNG",
            coarse_type=5,
            tracking_id="A: 0022",
            tracking_uid=None,
        )
    ]
    annotation = result.annotations[0]
    assert annotation.uid == "1.2.288.3.2205383238.1512.1207945935.1"
    assert annotation.date_time == "2008-04-11T15:32:15"
    assert annotation.observer == "A"
    assert annotation.name == "0022"


def test_aim_sr_twin_gives_the_same_bookmark_as_its_xml() -> None:
    xml = read_aim(BASELINE_A).bookmarks[0]
    result = read_aim(BASELINE_A_SR)
    assert result.format == "AIM SR"
    (sr,) = result.bookmarks
    # The SR holds the length as a decimal string of 8 significant digits.
    assert sr.long_axis_mm == pytest.approx(39.579597, abs=1e-9)
    assert sr.source == str(BASELINE_A_SR)
    for field in (
        "patient_key",
        "study_key",
        "study_datetime",
        "series_key",
        "image",
        "long_axis_px",
        "finding_site",
        "coarse_type",
        "tracking_id",
        "tracking_uid",
    ):
        assert getattr(sr, field) == getattr(xml, field), field
    # The SR's "Tracking Unique Identifier" is the annotation's uid, never a lesion tracking UID.
    assert result.annotations[0].uid == "1.2.288.3.2205383238.1512.1207945935.1"
    assert result.annotations[0].date_time == "2008-04-11T15:32:15"


def test_baseline_and_follow_up_of_one_reader_share_a_tracking_id() -> None:
    baseline = read_aim(BASELINE_A).bookmarks[0]
    follow_up = read_aim(FOLLOWUP_A).bookmarks[0]
    follow_up_sr = read_aim(FOLLOWUP_A_SR).bookmarks[0]
    other_reader = read_aim(BASELINE_B).bookmarks[0]
    assert (follow_up.study_key, follow_up.series_key) == (FOLLOWUP_STUDY, FOLLOWUP_SERIES)
    assert follow_up.image == ImageRef(FOLLOWUP_IMAGE, None)
    assert follow_up.study_datetime == "2000-08-10"
    assert follow_up.long_axis_mm == 42.221248626709
    assert follow_up.long_axis_px == (164.0, 271.0, 105.0, 291.0)
    assert baseline.patient_key == follow_up.patient_key == other_reader.patient_key == PATIENT
    assert baseline.tracking_id == follow_up.tracking_id == follow_up_sr.tracking_id == "A: 0022"
    # Reader B measured the same lesion on the same slice: its own track.
    assert other_reader.tracking_id == "B: 0022"
    assert other_reader.long_axis_mm == 34.9826850891113
    assert other_reader.long_axis_px == (109.0, 289.0, 125.0, 337.0)


def test_the_image_spacing_fills_the_bookmark_and_agrees_with_the_stated_length() -> None:
    index = {
        BASELINE_IMAGE: ct_image(BASELINE_IMAGE, BASELINE_STUDY, BASELINE_SPACING, series="9.9")
    }
    result = read_aim(BASELINE_A, index)
    (bookmark,) = result.bookmarks
    assert bookmark.pixel_spacing_mm == (BASELINE_SPACING, BASELINE_SPACING)
    assert bookmark.series_key == "9.9"  # the image's own series wins
    assert bookmark.long_axis_mm == 39.5795974731445
    # hypot(51, 26) px * 0.691406 mm = 39.556 mm: within tolerance of the stated 39.580 mm.
    assert bookmark.recomputed_long_axis_mm is None
    assert result.notes == ()


def test_a_spacing_that_disagrees_is_recorded_and_the_stated_length_kept() -> None:
    index = {BASELINE_IMAGE: ct_image(BASELINE_IMAGE, BASELINE_STUDY, 0.9)}
    result = read_aim(BASELINE_A, index)
    (bookmark,) = result.bookmarks
    assert bookmark.long_axis_mm == 39.5795974731445
    assert bookmark.recomputed_long_axis_mm == pytest.approx(math.hypot(51 * 0.9, 26 * 0.9))
    assert bookmark.pixel_spacing_mm == (0.9, 0.9)
    (note,) = result.notes
    assert note.source == str(BASELINE_A)
    assert note.column == "ImageAnnotation/calculationCollection/Calculation[1]"
    assert "disagrees" in note.reason and "stated length is kept" in note.reason


def test_an_image_of_another_study_skips_the_annotation() -> None:
    index = {BASELINE_IMAGE: ct_image(BASELINE_IMAGE, FOLLOWUP_STUDY, BASELINE_SPACING)}
    error = refused(BASELINE_A, ct_index=index)
    (problem,) = error.problems
    assert problem.column == "ImageAnnotation"
    assert f"belongs to study {FOLLOWUP_STUDY}" in problem.reason


def test_require_images_skips_an_annotation_whose_image_is_missing() -> None:
    error = refused(BASELINE_A, ct_index={}, require_images=True)
    assert f"the referenced CT image {BASELINE_IMAGE} is not among" in error.problems[0].reason


# --- SYNTHETIC AIM v4 XML and ePAD JSON -----------------------------------------------------------

STUDY_1 = "2.25.1001"
STUDY_2 = "2.25.1002"
SERIES_1 = "2.25.2001"
SERIES_2 = "2.25.2002"


def two_lesions(
    study: str, series: str, image: str, *, follow_up: bool = False
) -> list[SyntheticAnnotation]:
    scale = 0.8 if follow_up else 1.0
    return [
        SyntheticAnnotation(
            "Lesion1",
            f"{image}.1",
            series,
            study,
            study_date="20240601" if follow_up else "20240301",
            lines=(
                SyntheticLine("LongAxis", 25.0 * scale, "mm", (100.0, 200.0, 130.0, 200.0)),
                SyntheticLine("ShortAxis", 1.2 * scale, "cm", (115.0, 193.0, 115.0, 207.0)),
            ),
            lesion_uid="2.25.777",
            timepoint="Follow-up 1" if follow_up else "Baseline",
            statistics=(("Mean", "[hnsf'U]", 41.5),),
        ),
        SyntheticAnnotation(
            "Lesion 2",
            f"{image}.2",
            series,
            study,
            study_date="20240601" if follow_up else "20240301",
            lines=(SyntheticLine("Length", 3.1 * scale, "linear", (10.0, 10.0, 40.0, 50.0)),),
            site=("RID1301", "RadLex", "lung"),
        ),
    ]


@pytest.mark.parametrize("encoding", ["xml", "json"])
def test_aim_v4_collection_gives_every_annotation(tmp_path: Path, encoding: str) -> None:
    document = aim_collection("SYN-7", two_lesions(STUDY_1, SERIES_1, "2.25.3"), user="reader1")
    path = tmp_path / f"collection.{encoding}"
    (write_aim_xml if encoding == "xml" else write_aim_json)(path, document)
    result = read_aim(path)
    assert result.format == ("AIM v4 XML" if encoding == "xml" else "ePAD AIM JSON")
    first, second = result.bookmarks
    assert first == Bookmark(
        source=str(path),
        source_index=1,
        patient_key="SYN-7",
        study_key=STUDY_1,
        study_datetime="2024-03-01T10:15:00",
        series_key=SERIES_1,
        image=ImageRef("2.25.3.1", None),
        long_axis_mm=25.0,
        short_axis_mm=12.0,
        long_axis_px=(100.0, 200.0, 130.0, 200.0),
        short_axis_px=(115.0, 193.0, 115.0, 207.0),
        finding_site="liver",
        coarse_type=4,
        tracking_id="reader1: lesion1",
        tracking_uid="2.25.777",
    )
    # ePAD's "linear" is centimetres; the name "Lesion 2" keeps its inner space, case folded.
    assert second.long_axis_mm == pytest.approx(31.0)
    assert second.short_axis_mm is None
    assert second.long_axis_px == (10.0, 10.0, 40.0, 50.0)
    assert second.image == ImageRef("2.25.3.2", None)
    assert (second.finding_site, second.coarse_type) == ("lung", 5)
    assert (second.tracking_id, second.tracking_uid) == ("reader1: lesion 2", None)
    assert [a.timepoint for a in result.annotations] == ["Baseline", None]
    assert [a.date_time for a in result.annotations] == ["2024-03-02T09:30:00"] * 2
    assert result.skipped == ()


def test_epad_baseline_and_follow_up_make_tracks(tmp_path: Path) -> None:
    baseline = write_aim_json(
        tmp_path / "b.json", aim_collection("SYN-8", two_lesions(STUDY_1, SERIES_1, "2.25.3"))
    )
    follow_up = write_aim_json(
        tmp_path / "f.json",
        aim_collection("SYN-8", two_lesions(STUDY_2, SERIES_2, "2.25.4", follow_up=True)),
    )
    before = read_aim(baseline).bookmarks
    after = read_aim(follow_up).bookmarks
    assert [b.study_key for b in after] == [STUDY_2, STUDY_2]
    assert [b.study_datetime for b in after] == ["2024-06-01T10:15:00"] * 2
    assert [b.tracking_id for b in before] == [b.tracking_id for b in after]
    assert before[0].tracking_id != before[1].tracking_id
    assert before[0].tracking_uid == after[0].tracking_uid == "2.25.777"
    assert after[0].long_axis_mm == pytest.approx(20.0)
    assert after[0].short_axis_mm == pytest.approx(9.6)
    assert after[1].long_axis_mm == pytest.approx(3.1 * 0.8 * 10.0)


def test_unitless_lengths_are_recomputed_from_the_image_spacing(tmp_path: Path) -> None:
    annotation = SyntheticAnnotation(
        "L1",
        "2.25.5.1",
        SERIES_1,
        STUDY_1,
        lines=(SyntheticLine("Length", 50.0, "pixels", (0, 0, 30, 40)),),
    )
    path = write_aim_json(tmp_path / "px.json", aim_collection("SYN-9", [annotation]))
    index = {"2.25.5.1": ct_image("2.25.5.1", STUDY_1, 0.7, patient="SYN-9")}
    (bookmark,) = read_aim(path, index).bookmarks
    assert bookmark.long_axis_mm == pytest.approx(50 * 0.7)
    assert bookmark.recomputed_long_axis_mm is None
    error = refused(path)
    assert "unitless ('pixels')" in error.problems[0].reason


def test_statistics_only_annotations_are_skipped_beside_good_ones(tmp_path: Path) -> None:
    roi = SyntheticAnnotation(
        "ROI", "2.25.6.9", SERIES_1, STUDY_1, statistics=(("Mean", "[hnsf'U]", 30.0),)
    )
    good = two_lesions(STUDY_1, SERIES_1, "2.25.6")[1]
    path = write_aim_json(tmp_path / "mixed.json", aim_collection("SYN-10", [roi, good]))
    result = read_aim(path)
    assert [b.source_index for b in result.bookmarks] == [2]
    (skip,) = result.skipped
    assert skip.column == "ImageAnnotationCollection/imageAnnotations/ImageAnnotation[1]"
    assert "not a planar length measurement" in skip.reason and "Mean" in skip.reason


# --- bad inputs: refused whole, file and element named -------------------------------------------


def test_not_well_formed_xml_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.xml"
    text = BASELINE_A.read_text(encoding="utf-8")
    path.write_text(
        text.replace("</calculationCollection>", "</calculationCollectio>"), encoding="utf-8"
    )
    (problem,) = refused(path).problems
    assert problem.source == str(path)
    assert problem.line == text[: text.index("</calculationCollection>")].count("\n") + 1
    assert problem.reason.startswith("not well-formed XML (mismatched tag, column ")


def test_a_wrong_namespace_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ns.xml"
    text = BASELINE_A.read_text(encoding="utf-8")
    path.write_text(text.replace("caCORE/3.2/", "caCORE/3.9/"), encoding="utf-8")
    (problem,) = refused(path).problems
    assert problem.column == "ImageAnnotation"
    assert "gme://caCORE.caCORE/3.9/edu.northwestern.radiology.AIM" in problem.reason
    assert "expected AIM v3" in problem.reason


def test_an_annotation_without_calculations_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nocalc.xml"
    text = BASELINE_A.read_text(encoding="utf-8")
    start = text.index("<calculationCollection>")
    end = text.index("</calculationCollection>") + len("</calculationCollection>")
    path.write_text(text[:start] + text[end:], encoding="utf-8")
    (problem,) = refused(path).problems
    assert problem.column == "ImageAnnotation"
    assert problem.reason.startswith("no calculations")


def test_an_unknown_unit_is_refused_naming_the_element(tmp_path: Path) -> None:
    lesions = two_lesions(STUDY_1, SERIES_1, "2.25.3")
    bad = SyntheticAnnotation(
        "L3",
        "2.25.3.3",
        SERIES_1,
        STUDY_1,
        lines=(SyntheticLine("Length", 2.0, "inch", (0, 0, 5, 5)),),
    )
    path = write_aim_xml(tmp_path / "unit.xml", aim_collection("SYN-11", [*lesions, bad]))
    (problem,) = refused(path).problems
    assert problem.source == str(path)
    assert problem.column == (
        "ImageAnnotationCollection/imageAnnotations/ImageAnnotation[3]/calculationEntityCollection/"
        "CalculationEntity[1]/unitOfMeasure"
    )
    assert "'inch' is not a known length unit" in problem.reason


def test_malformed_values_and_json_are_refused(tmp_path: Path) -> None:
    document = aim_collection("SYN-12", two_lesions(STUDY_1, SERIES_1, "2.25.3"))
    calc = document["ImageAnnotationCollection"]["imageAnnotations"]["ImageAnnotation"][1][
        "calculationEntityCollection"
    ]["CalculationEntity"][0]
    calc["calculationResultCollection"]["CalculationResult"][0]["calculationDataCollection"][
        "CalculationData"
    ][0]["value"]["value"] = "3,1"
    path = write_aim_json(tmp_path / "value.json", document)
    (problem,) = refused(path).problems
    assert problem.column is not None
    assert problem.column.endswith(
        "ImageAnnotation[2]/calculationEntityCollection/CalculationEntity[1]/"
        "calculationResultCollection/CalculationResult[1]/calculationDataCollection/"
        "CalculationData[1]/value"
    )
    assert "'3,1' is not a number" in problem.reason

    broken = tmp_path / "broken.json"
    broken.write_text('{"ImageAnnotationCollection": {\n  "person": }\n}', encoding="utf-8")
    (problem,) = refused(broken).problems
    assert problem.line == 2 and "not valid JSON" in problem.reason

    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"patient": "x"}), encoding="utf-8")
    assert "ImageAnnotationCollection" in refused(wrong).problems[0].reason


def test_a_tid1500_report_is_not_an_aim_sr(tmp_path: Path) -> None:
    ds = pydicom.dcmread(BASELINE_A_SR)
    assert is_aim_sr(ds)
    title = ds.ConceptNameCodeSequence[0]
    title.CodeValue, title.CodingSchemeDesignator, title.CodeMeaning = (
        "126000",
        "DCM",
        "Imaging Measurement Report",
    )
    assert not is_aim_sr(ds)
    path = tmp_path / "tid1500.dcm"
    ds.save_as(path)
    (problem,) = refused(path).problems
    assert problem.column == "ConceptNameCodeSequence"
    assert "'Imaging Measurement Report'" in problem.reason
    assert not is_aim_sr(Dataset())


def test_sniffers_tell_the_encodings_apart(tmp_path: Path) -> None:
    json_path = write_aim_json(
        tmp_path / "a.json", aim_collection("SYN-13", two_lesions(STUDY_1, SERIES_1, "2.25.3"))
    )
    v4_path = write_aim_xml(
        tmp_path / "a.xml", aim_collection("SYN-13", two_lesions(STUDY_1, SERIES_1, "2.25.3"))
    )
    other = tmp_path / "other.xml"
    other.write_text("<?xml version='1.0'?><report/>", encoding="utf-8")
    assert [
        looks_like_aim_xml(p) for p in (BASELINE_A, v4_path, json_path, BASELINE_A_SR, other)
    ] == [
        True,
        True,
        False,
        False,
        False,
    ]
    assert [looks_like_aim_json(p) for p in (BASELINE_A, json_path, other)] == [False, True, False]
    assert [looks_like_aim_sr(p) for p in (BASELINE_A_SR, BASELINE_A, json_path)] == [
        True,
        False,
        False,
    ]
    # Content decides, not the name.
    renamed = tmp_path / "annotation.txt"
    shutil.copy(json_path, renamed)
    assert read_aim(renamed).format == "ePAD AIM JSON"
    (problem,) = refused(tmp_path / "missing.xml").problems
    assert problem.reason == "no such file"


def test_xml_entity_expansion_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.xml"
    path.write_text(
        '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xxxxxxxx"><!ENTITY y "&x;&x;&x;&x;">]>'
        f'<ImageAnnotation xmlns="{"gme://caCORE.caCORE/3.2/edu.northwestern.radiology.AIM"}" '
        'name="&y;"/>',
        encoding="utf-8",
    )
    (problem,) = refused(path).problems
    assert problem.reason.startswith("refused by the XML parser's safety checks")


def test_a_v4_root_other_than_a_collection_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "aoa.xml"
    path.write_text(
        '<AnnotationOfAnnotationCollection xmlns="gme://caCORE.caCORE/4.4/'
        'edu.northwestern.radiology.AIM" aimVersion="AIMv4_0"/>',
        encoding="utf-8",
    )
    (problem,) = refused(path).problems
    assert problem.column == "AnnotationOfAnnotationCollection"
    assert "expected ImageAnnotationCollection" in problem.reason


def test_a_json_array_compact_results_frames_and_axis_order(tmp_path: Path) -> None:
    first = aim_collection("SYN-14", two_lesions(STUDY_1, SERIES_1, "2.25.8"))
    # A CompactCalculationResult keeps its value directly; frame 3 of a multi-frame image is kept.
    compact = SyntheticAnnotation(
        "L9", "2.25.9.1", SERIES_1, STUDY_1, frame=3, lines=(SyntheticLine("Length", 2.5, "cm"),)
    )
    second = aim_collection("SYN-14", [compact])
    calc = second["ImageAnnotationCollection"]["imageAnnotations"]["ImageAnnotation"][0][
        "calculationEntityCollection"
    ]["CalculationEntity"][0]
    result = calc["calculationResultCollection"]["CalculationResult"][0]
    result["xsi:type"] = "CompactCalculationResult"
    result["value"] = {"value": "2.5"}
    del result["calculationDataCollection"]
    # A short axis longer than the long one is skipped, the others read.
    wrong = SyntheticAnnotation(
        "L10",
        "2.25.9.2",
        SERIES_1,
        STUDY_1,
        lines=(SyntheticLine("LongAxis", 10.0, "mm"), SyntheticLine("ShortAxis", 11.0, "mm")),
    )
    third = aim_collection("SYN-14", [wrong])
    path = tmp_path / "array.json"
    path.write_text(json.dumps([first, second, third]), encoding="utf-8")
    result_ = read_aim(path)
    assert [b.long_axis_mm for b in result_.bookmarks] == [25.0, pytest.approx(31.0), 25.0]
    assert [b.source_index for b in result_.bookmarks] == [1, 2, 3]
    # No markup: the image is the annotation's only referenced image, without a frame from a line.
    assert result_.bookmarks[2].image == ImageRef("2.25.9.1", None)
    assert result_.bookmarks[2].long_axis_px is None
    (skip,) = result_.skipped
    assert skip.column == (
        "[3]/ImageAnnotationCollection/imageAnnotations/ImageAnnotation[1]/"
        "calculationEntityCollection/CalculationEntity[2]"
    )
    assert "short axis (11 mm) is longer than the long axis (10 mm)" in skip.reason


def test_a_frame_beyond_the_image_skips_the_annotation(tmp_path: Path) -> None:
    annotation = SyntheticAnnotation(
        "L1",
        "2.25.10.1",
        SERIES_1,
        STUDY_1,
        frame=3,
        lines=(SyntheticLine("Length", 20.0, "mm", (10.0, 10.0, 30.0, 10.0)),),
    )
    path = write_aim_json(tmp_path / "frame.json", aim_collection("SYN-15", [annotation]))
    three = {"2.25.10.1": ct_image("2.25.10.1", STUDY_1, 1.0, patient="SYN-15", frames=3)}
    (bookmark,) = read_aim(path, three).bookmarks
    assert bookmark.image == ImageRef("2.25.10.1", 3)
    assert bookmark.recomputed_long_axis_mm is None  # 20 px * 1.0 mm = the stated 20 mm
    two = {"2.25.10.1": ct_image("2.25.10.1", STUDY_1, 1.0, patient="SYN-15", frames=2)}
    assert (
        "frame 3 of CT image 2.25.10.1 does not exist"
        in refused(path, ct_index=two).problems[0].reason
    )
