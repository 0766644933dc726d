"""SYNTHETIC DICOM for tests, the demo and benchmarks: CT slices and TID 1500 measurement reports.

Nothing here is a patient: identities are labelled SYNTHETIC, and the CT slices show a water
(or, with ``body=True``, an elliptic soft-tissue body in air) phantom. Reports are written with
highdicom, as a viewer would export them: one measurement group per lesion, the axes as NUMs with
their 2-point polylines (INFERRED FROM), a tracking identifier and UID.
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

LONG_AXIS = Code("103339001", "SCT", "Long Axis")
SHORT_AXIS = Code("103340004", "SCT", "Short Axis")
CM = Code("cm", "UCUM", "centimeter")
MM = Code("mm", "UCUM", "millimeter")
UM = Code("um", "UCUM", "micrometer")
UNITLESS = Code("1", "UCUM", "no units")
NODULE = Code("27925004", "SCT", "Nodule")
LUNG = Code("39607008", "SCT", "Lung")

# SYNTHETIC patient identity: none of it may reach a bookmark.
PATIENT_ID = "SYNTHETIC-LKG-0001"
PATIENT_NAME = "SYNTHETIC^PATIENT"
BIRTH_DATE = "19700101"
ACCESSION = "SYNACC0001"
#: (row spacing, column spacing) = (y, x) mm, deliberately anisotropic to catch an order mix-up
SPACING_YX = (0.9, 0.7)


def write_synthetic_ct(
    path: Path,
    *,
    study_uid: str,
    study_date: str,
    study_time: str,
    patient_id: str = PATIENT_ID,
    sop_uid: str | None = None,
    rows: int = 64,
    columns: int = 64,
    spacing_yx: tuple[float, float] = SPACING_YX,
    body: bool = False,
    series_uid: str | None = None,
    position_z_mm: float = -100.0,
    instance_number: int = 1,
) -> Dataset:
    """A SYNTHETIC axial CT slice (not a patient), written with pydicom.

    Uniform water, or with ``body`` an elliptic soft-tissue body (40 HU) filling the middle 80 %
    of the field in air (-1000 HU), which gives body-outline locations something to find.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = UID(sop_uid) if sop_uid else generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = patient_id
    ds.PatientName = PATIENT_NAME
    ds.PatientBirthDate = BIRTH_DATE
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid
    ds.StudyDate, ds.StudyTime = study_date, study_time
    ds.StudyID = "1"
    ds.AccessionNumber = ACCESSION
    ds.ReferringPhysicianName = ""
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.SeriesNumber = 1
    ds.Modality = "CT"
    ds.SeriesDescription = "SYNTHETIC CT"
    ds.ImageComments = "SYNTHETIC slice written by the LesionKG tests, not a patient"
    ds.FrameOfReferenceUID = generate_uid()
    ds.InstanceNumber = instance_number
    ds.Rows, ds.Columns = rows, columns
    ds.PixelSpacing = list(spacing_yx)
    ds.ImagePositionPatient = [0.0, 0.0, position_z_mm]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    pixels = np.full((rows, columns), 1024, dtype=np.uint16)
    if body:
        yy, xx = np.mgrid[:rows, :columns]
        inside = ((xx - columns / 2) / (0.4 * columns)) ** 2 + (
            (yy - rows / 2) / (0.4 * rows)
        ) ** 2 <= 1
        pixels = np.where(inside, 1024 + 40, 24).astype(np.uint16)
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return pydicom.dcmread(path)


def measurement(
    name: Code, value: float, unit: Code, ct: Dataset, points: list[list[float]] | None
) -> hd.sr.Measurement:
    """A NUM with its 2-point POLYLINE under it (INFERRED FROM), as OHIF/dcmjs write them."""
    coordinates = None
    if points is not None:
        source = hd.sr.SourceImageForRegion(ct.SOPClassUID, ct.SOPInstanceUID)
        coordinates = [
            hd.sr.CoordinatesForMeasurement(
                graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
                graphic_data=np.asarray(points, dtype=float),
                source_image=source,
            )
        ]
    return hd.sr.Measurement(name=name, value=value, unit=unit, referenced_coordinates=coordinates)


def group(
    measurements: list[hd.sr.Measurement],
    tracking_uid: str,
    *,
    finding: Code = NODULE,
    site: Code = LUNG,
    label: str = "Lesion 1",
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=tracking_uid, identifier=label),
        finding_type=finding,
        finding_sites=[hd.sr.FindingSite(site)],
        measurements=measurements,
    )


def ellipse_group(
    ct: Dataset, centre: tuple[float, float], label: str, long_axis_mm: float = 12.0
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    """A TID 1410 group as a viewer's ellipse tool writes it: its own tracking UID, an ELLIPSE
    region on ``ct`` (no line endpoints) and one Long Axis NUM."""
    cx, cy = centre
    ellipse = np.array([[cx - 6, cy], [cx + 6, cy], [cx, cy - 4], [cx, cy + 4]], dtype=float)
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=label),
        referenced_region=hd.sr.ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.ELLIPSE,
            graphic_data=ellipse,
            source_image=hd.sr.SourceImageForRegion(ct.SOPClassUID, ct.SOPInstanceUID),
        ),
        finding_type=NODULE,
        finding_sites=[hd.sr.FindingSite(LUNG)],
        measurements=[measurement(LONG_AXIS, long_axis_mm, MM, ct, None)],
    )


def write_report(
    path: Path, ct: Dataset, groups: list[hd.sr.MeasurementsAndQualitativeEvaluations]
) -> Path:
    """A SYNTHETIC Comprehensive 3D SR measurement report on ``ct``, written with highdicom."""
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Person,
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
            name="SYNTHETIC^READER"
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_person_context=observer),
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
        imaging_measurements=groups,
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=[ct],
        content=report,
        series_instance_uid=generate_uid(),
        series_number=100,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="LesionKG tests (SYNTHETIC)",
    )
    sr.save_as(path)
    return path
