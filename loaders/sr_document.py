"""The DICOM SR file of a measurement report: read whole and checked for truncation, checked to be a
TID 1500 Imaging Measurement Report, and its study date and time (DA, TM) as ISO 8601. Every
refusal names the file and the element (:func:`~lesionkg.loaders.sr_content.report_rejection`);
:mod:`lesionkg.loaders.dicom_sr` reads the measurement groups."""

from __future__ import annotations

import re
import warnings
from datetime import date, datetime
from io import BytesIO
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from lesionkg.core.limits import DATE_RANGE, InputLimits
from lesionkg.loaders.ct import truncation
from lesionkg.loaders.guards import regular_file_refusal
from lesionkg.loaders.sr_content import (
    REPORT,
    SR_SOP_CLASSES,
    first_line,
    raw_concept_key,
    report_rejection,
)


def read_sr_file(path: Path, source: str) -> Dataset:
    """The whole data set of ``path``, every element decoded, or a clear reason why not."""
    not_regular = regular_file_refusal(path)
    if not_regular is not None:
        raise report_rejection(source, not_regular.reason, rule=not_regular.rule)
    if not path.is_file():
        raise report_rejection(source, "no such file")
    data = path.read_bytes()
    # pydicom warns (rather than raises) about truncation and about values that break their VR's
    # rules; the first is a rejection, the second concerns fields a bookmark never carries.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(BytesIO(data))
        except InvalidDicomError:
            raise report_rejection(
                source, "not a DICOM file (no 'DICM' marker after the 128-byte preamble)"
            ) from None
        except Exception as exc:  # pydicom raises many types on truncated or corrupt input
            raise report_rejection(
                source, f"cannot be read as DICOM: truncated or corrupt ({first_line(exc)})"
            ) from exc
        cut = truncation(ds, caught, len(data))
        if cut is not None:
            raise report_rejection(source, f"truncated: {cut}")
        if len(ds) == 0:
            raise report_rejection(
                source, "truncated: the file holds no data set after its file meta information"
            )
        try:
            # Elements are decoded lazily; decode all now, so that a corrupt nested item is
            # reported here as the file's fault, not later as a puzzling group error.
            ds.walk(lambda _ds, _elem: None)
        except Exception as exc:
            raise report_rejection(
                source, f"cannot be read as DICOM: truncated or corrupt ({first_line(exc)})"
            ) from exc
    return ds


def check_measurement_report(ds: Dataset, source: str) -> None:
    sop_class = str(ds.get("SOPClassUID", "") or "")
    if not sop_class:
        raise report_rejection(
            source, "no SOP Class UID: truncated, or not a DICOM object", "SOPClassUID"
        )
    if sop_class not in SR_SOP_CLASSES:
        raise report_rejection(
            source,
            f"SOP class {UID(sop_class).name} is not a structured report; expected a TID 1500 "
            "measurement report (Enhanced, Comprehensive or Comprehensive 3D SR)",
            "SOPClassUID",
        )
    title = raw_concept_key(ds)
    if title != REPORT or ds.get("ValueType") != "CONTAINER":
        names = ds.get("ConceptNameCodeSequence")
        shown = (
            f"'{names[0].get('CodeMeaning', '')}' ({names[0].get('CodeValue', '')}, "
            f"{names[0].get('CodingSchemeDesignator', '')})"
            if names
            else "missing (truncated?)"
        )
        raise report_rejection(
            source,
            f"not a TID 1500 measurement report: the document title is {shown}, expected "
            "'Imaging Measurement Report' (126000, DCM)",
            "ConceptNameCodeSequence",
        )
    if "ContentSequence" not in ds:
        raise report_rejection(source, "the report has no content (truncated?)", "ContentSequence")


_TIME = re.compile(r"^(\d{2})(?::?(\d{2})(?::?(\d{2})(?:\.(\d{1,6}))?)?)?$")


def study_datetime_iso(study_date: str, study_time: str) -> str | None:
    """ISO 8601 study date and time from DICOM DA (YYYYMMDD) and TM (HHMMSS.FFFFFF) values.

    Returns ``"2009-02-28T19:08:08"`` (fractional seconds kept when present), the date alone
    (``"2009-02-28"``) without a time, or None without a date. The time zone offset is ignored:
    study order is compared within one hospital. Raises ValueError for malformed values.
    """
    study_date, study_time = study_date.strip(), study_time.strip()
    if not study_date:
        return None
    if not re.fullmatch(r"\d{8}", study_date):
        raise ValueError(f"StudyDate '{study_date}' is not a DICOM date (YYYYMMDD)")
    try:
        day = date(int(study_date[:4]), int(study_date[4:6]), int(study_date[6:]))
    except ValueError as exc:
        raise ValueError(f"StudyDate '{study_date}' is not a valid date ({exc})") from exc
    if not study_time:
        return day.isoformat()
    m = _TIME.match(study_time)
    if not m:
        raise ValueError(f"StudyTime '{study_time}' is not a DICOM time (HHMMSS.FFFFFF)")
    hour, minute, second, fraction = m.groups()
    micro = int((fraction or "0").ljust(6, "0"))
    # DICOM allows second 60 (a leap second); datetime does not, and the order is unaffected.
    try:
        when = datetime(
            day.year,
            day.month,
            day.day,
            int(hour),
            int(minute or 0),
            min(int(second or 0), 59),
            micro,
        )
    except ValueError as exc:
        raise ValueError(f"StudyTime '{study_time}' is not a valid time ({exc})") from exc
    return when.isoformat()


def report_study_datetime(ds: Dataset, source: str, limits: InputLimits) -> str | None:
    try:
        when = study_datetime_iso(
            str(ds.get("StudyDate", "") or ""), str(ds.get("StudyTime", "") or "")
        )
    except ValueError as exc:
        raise report_rejection(
            source,
            f"{exc}; the study date and time order a patient's studies",
            "StudyTime" if str(exc).startswith("StudyTime") else "StudyDate",
        ) from exc
    if when is not None:
        implausible = limits.date_problem(date.fromisoformat(when[:10]))
        if implausible is not None:
            raise report_rejection(
                source,
                f"{implausible}; the study date orders a patient's studies",
                "StudyDate",
                DATE_RANGE,
            )
    return when
