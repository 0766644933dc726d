"""CT image index: the real CT files in ../shared/data/dicom, and SYNTHETIC or broken copies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    SegmentationStorage,
    generate_uid,
)

from lesionkg.core.errors import InvalidInputError
from lesionkg.loaders.ct import (
    CTImage,
    CTIndex,
    dicom_object_kind,
    index_ct_images,
    neighbours,
    not_among_inputs,
    read_hu,
)

LIVER = ("01.dcm", "02.dcm", "03.dcm")
CT_SMALL_UID = "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"


@pytest.fixture(scope="module")
def real_index(dicom_dir: Path) -> CTIndex:
    return index_ct_images([dicom_dir])


def by_name(index: CTIndex, name: str) -> CTImage:
    (image,) = [i for i in index.values() if i.path.name == name]
    return image


def write_synthetic_ct(path: Path, *, spacing_yx: tuple[float, float], z: float = 0.0) -> Path:
    """A SYNTHETIC 16 x 24 CT slice (not a patient) with a known HU ramp and pixel spacing."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = "SYNTHETIC-CT-1"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.SeriesDescription = "SYNTHETIC CT slice written by the LesionKG tests"
    ds.Rows, ds.Columns = 16, 24
    ds.PixelSpacing = list(spacing_yx)
    ds.ImagePositionPatient = [0.0, 0.0, z]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.RescaleSlope, ds.RescaleIntercept = 2, -1000
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.arange(16 * 24, dtype=np.uint16).reshape(16, 24).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


# --- the real files ------------------------------------------------------------------------------


def test_index_finds_the_real_ct_images_and_says_why_others_are_skipped(
    dicom_dir: Path, real_index: CTIndex
) -> None:
    names = sorted(i.path.name for i in real_index.values())
    assert names == ["01.dcm", "02.dcm", "03.dcm", "ct_small.dcm"]
    skipped = {path.name: reason for path, reason in real_index.skipped}
    assert "not a DICOM file" in skipped["README.md"]
    assert "Segmentation Storage is not a CT image" in skipped["liver_seg.dcm"]
    assert "Enhanced SR Storage is not a CT image" in skipped["sample-sr.dcm"]
    assert "Comprehensive SR Storage is not a CT image" in skipped["basic_text_sr.dcm"]
    assert len(real_index.skipped) == 8
    for image in real_index.values():
        ds = pydicom.dcmread(image.path, stop_before_pixels=True)
        assert real_index[ds.SOPInstanceUID] is image
        assert image.series_instance_uid == ds.SeriesInstanceUID
        assert image.study_instance_uid == ds.StudyInstanceUID
        assert (image.rows, image.columns) == (ds.Rows, ds.Columns)
        assert image.pixel_spacing_mm == (float(ds.PixelSpacing[1]), float(ds.PixelSpacing[0]))
        # Axial slices: the position along the normal is ImagePositionPatient z.
        assert image.slice_position_mm == pytest.approx(float(ds.ImagePositionPatient[2]))
        assert image.image_position_patient == tuple(float(v) for v in ds.ImagePositionPatient)
        assert (image.rescale_slope, image.rescale_intercept) == (
            float(ds.RescaleSlope),
            float(ds.RescaleIntercept),
        )
        assert image.number_of_frames == 1


def test_hu_of_ct_small_is_rescaled_and_plausible(real_index: CTIndex) -> None:
    image = by_name(real_index, "ct_small.dcm")
    hu = read_hu(image)
    assert hu.shape == (128, 128)
    assert hu.dtype == np.float32
    ds = pydicom.dcmread(image.path)
    expected = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(
        ds.RescaleIntercept
    )
    np.testing.assert_allclose(hu, expected)
    # A body CT slice: air near -1000 HU at the low end, nothing beyond dense bone/metal.
    assert -1100.0 <= float(hu.min()) < -500.0
    assert 0.0 < float(hu.max()) <= 3100.0


def test_hu_of_a_real_liver_slice_matches_pydicom(real_index: CTIndex) -> None:
    image = by_name(real_index, "02.dcm")
    hu = read_hu(image)
    ds = pydicom.dcmread(image.path)
    np.testing.assert_allclose(hu, ds.pixel_array.astype(np.float64) - 1024.0)
    # Outside the scanner's field of view the slice holds its padding value (-2000 stored).
    padding = float(pydicom.dcmread(image.path, stop_before_pixels=True).PixelPaddingValue)
    inside = hu[hu != padding - 1024.0]
    assert float(inside.min()) >= -1100.0 and float(inside.max()) <= 3100.0
    # The centre of an abdominal slice is soft tissue, near water.
    assert -100.0 < float(np.median(hu[192:320, 192:320])) < 100.0


def test_neighbours_of_the_real_liver_slices_are_in_slice_order(real_index: CTIndex) -> None:
    first, second, third = (by_name(real_index, n) for n in LIVER)
    # The files go down in z: 01 at -126.69 mm, 02 at -127.69, 03 at -128.69.
    assert [i.path.name for i in neighbours(real_index, second)] == ["03.dcm", "01.dcm"]
    assert [i.path.name for i in neighbours(real_index, first, n=2)] == ["03.dcm", "02.dcm"]
    assert [i.path.name for i in neighbours(real_index, third)] == ["02.dcm"]
    assert neighbours(real_index, second, n=0) == []
    # ct_small.dcm is alone in its series.
    assert neighbours(real_index, by_name(real_index, "ct_small.dcm")) == []
    # A plain dict gives the same answer as the index.
    assert neighbours(dict(real_index), second) == neighbours(real_index, second)
    positions = [i.slice_position_mm for i in real_index.series(second.series_instance_uid)]
    assert positions == sorted(positions) and len(positions) == 3


# --- synthetic and broken inputs -----------------------------------------------------------------


def test_pixel_spacing_is_turned_from_row_column_into_x_y(tmp_path: Path) -> None:
    path = write_synthetic_ct(tmp_path / "synthetic_ct.dcm", spacing_yx=(0.9, 0.7))
    (image,) = index_ct_images([path]).values()
    # DICOM PixelSpacing is (row spacing = y, column spacing = x).
    assert image.pixel_spacing_mm == (0.7, 0.9)
    hu = read_hu(image)
    assert hu.shape == (16, 24)
    assert hu[0, 0] == -1000.0 and hu[1, 0] == -1000.0 + 2 * 24


def test_bad_files_are_skipped_with_their_reason(dicom_dir: Path, tmp_path: Path) -> None:
    data = (dicom_dir / "ct" / "liver" / "01.dcm").read_bytes()
    (tmp_path / "notes.txt").write_text("not an image\n")
    (tmp_path / "head_cut.dcm").write_bytes(data[:1500])
    (tmp_path / "pixels_cut.dcm").write_bytes(data[:300_000])
    index = index_ct_images([tmp_path])
    assert len(index) == 0
    skipped = {path.name: reason for path, reason in index.skipped}
    assert "not a DICOM file" in skipped["notes.txt"]
    assert skipped["head_cut.dcm"].startswith("truncated: element (0020,0037)")
    assert skipped["pixels_cut.dcm"].startswith("truncated: its pixel data needs 524288 bytes")


def test_the_index_says_what_it_holds_instead_of_a_ct_image(
    dicom_dir: Path, real_index: CTIndex, tmp_path: Path
) -> None:
    seg_path = dicom_dir / "ct" / "liver" / "liver_seg.dcm"
    seg_uid = pydicom.dcmread(seg_path, stop_before_pixels=True).SOPInstanceUID
    assert real_index.found_instead(seg_uid) == (
        f"it is a SEG object (Segmentation Storage) in {seg_path}, and lengths are measured on "
        "CT only"
    )
    assert not_among_inputs(real_index, seg_uid).startswith(
        f"the referenced CT image {seg_uid} is not among the CT inputs: it is a SEG object"
    )
    sr_uid = pydicom.dcmread(dicom_dir / "sr" / "sample-sr.dcm").SOPInstanceUID
    assert real_index.found_instead(sr_uid).startswith("it is an SR object (Enhanced SR Storage)")
    # Indexed CT images and unknown UIDs are not "found instead"; a plain dict has no others.
    assert not set(real_index.others) & set(real_index)
    assert real_index.found_instead(CT_SMALL_UID) is None
    assert not_among_inputs(real_index, "2.25.1") == (
        "the referenced CT image 2.25.1 is not among the CT inputs"
    )
    assert not_among_inputs(dict(real_index.images), seg_uid).endswith("not among the CT inputs")
    # A CT header the index refuses keeps its reason.
    path = write_synthetic_ct(tmp_path / "no_spacing.dcm", spacing_yx=(0.7, 0.7))
    ds = pydicom.dcmread(path)
    del ds.PixelSpacing
    ds.save_as(path)
    found = index_ct_images([path]).found_instead(ds.SOPInstanceUID)
    assert found == (
        f"it is a CT image in {path} that could not be used: no valid PixelSpacing (two positive "
        "numbers, mm): lengths cannot be measured on it"
    )


def test_kinds_of_dicom_objects_are_named() -> None:
    assert dicom_object_kind(CTImageStorage, "CT") == "CT image"
    assert dicom_object_kind(MRImageStorage, "MR") == "MR image"
    assert dicom_object_kind(SegmentationStorage, "seg ") == "SEG object"
    assert dicom_object_kind(SecondaryCaptureImageStorage, "OT") == "OT image"
    assert dicom_object_kind("1.2.3", "") == "DICOM object"


def test_duplicate_sop_instance_uid_is_skipped(dicom_dir: Path) -> None:
    liver = dicom_dir / "ct" / "liver"
    index = index_ct_images([liver / "02.dcm", liver])
    assert sorted(i.path.name for i in index.values()) == ["01.dcm", "02.dcm", "03.dcm"]
    assert by_name(index, "02.dcm").path == liver / "02.dcm"
    reasons = [reason for path, reason in index.skipped if path.name == "02.dcm"]
    assert reasons == [f"duplicate: same SOP Instance UID as {liver / '02.dcm'}"]


def test_missing_input_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as info:
        index_ct_images([tmp_path / "nowhere"])
    assert info.value.problems[0].reason == "no such file or folder"


def test_read_hu_rejects_a_frame_that_does_not_exist(real_index: CTIndex) -> None:
    with pytest.raises(InvalidInputError, match="frame 2 does not exist"):
        read_hu(by_name(real_index, "ct_small.dcm"), frame=2)


def test_multiframe_ct_reads_functional_groups_and_frames(
    dicom_dir: Path, liver_multiframe, tmp_path: Path
) -> None:
    path = tmp_path / "liver_multiframe.dcm"
    liver_multiframe.save_as(path)
    (image,) = index_ct_images([path]).values()
    assert image.number_of_frames == 3
    assert image.pixel_spacing_mm == (0.810547, 0.810547)
    assert (image.rescale_slope, image.rescale_intercept) == (1.0, -1024.0)
    assert image.slice_position_mm == pytest.approx(-126.690002)
    for frame, name in enumerate(LIVER, 1):
        single = pydicom.dcmread(dicom_dir / "ct" / "liver" / name)
        np.testing.assert_array_equal(
            read_hu(image, frame), single.pixel_array.astype(np.float32) - 1024.0
        )
    with pytest.raises(InvalidInputError, match="frame 4 does not exist: the image has 3"):
        read_hu(image, 4)
