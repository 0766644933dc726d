"""A SYNTHETIC PACS cohort for tests, the demo and benchmarks: CT studies and their SR reports.

Each patient has ``studies`` CT studies a few months apart (baseline, follow-ups); each study is a
short axial series of SYNTHETIC phantom slices (:func:`lesionkg.synthetic.dicom.write_synthetic_ct`)
and one TID 1500 Comprehensive 3D SR measurement report (highdicom) with one measurement group per
lesion: long and short axis in mm with their 2-point polylines on the middle (key) slice, and a
tracking UID shared by the same lesion in every study, so the import can track it. Nothing here is
a patient: ids, names and the manufacturer say SYNTHETIC.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from lesionkg.synthetic.dicom import (
    LONG_AXIS,
    MM,
    SHORT_AXIS,
    SPACING_YX,
    group,
    measurement,
    write_report,
    write_synthetic_ct,
)

#: the cohort's studies start here and follow each other every ``interval_days``
FIRST_STUDY = date(2021, 1, 4)


@dataclass
class StudyFiles:
    """One SYNTHETIC study: its CT slices, its report, and what the report measures."""

    patient_id: str
    study_uid: str
    study_date: str
    index: int
    ct: list[Path] = field(default_factory=list)
    report: Path | None = None
    #: tracking UID -> long axis mm of each lesion measured in the report
    lesions: dict[str, float] = field(default_factory=dict)


def _report(
    path: Path,
    key: Dataset,
    lesions: Sequence[tuple[str, str, list[list[float]], list[list[float]]]],
) -> None:
    """A SYNTHETIC Comprehensive 3D SR with one group per lesion (label, UID, long, short)."""
    sx, sy = SPACING_YX[1], SPACING_YX[0]
    groups = []
    for label, uid, long_pts, short_pts in lesions:
        items = []
        for name, pts in ((LONG_AXIS, long_pts), (SHORT_AXIS, short_pts)):
            (x1, y1), (x2, y2) = pts
            mm = math.hypot((x2 - x1) * sx, (y2 - y1) * sy)
            items.append(measurement(name, round(mm, 2), MM, key, pts))
        groups.append(group(items, uid, label=label))
    # highdicom warns about the SYNTHETIC names it copies from the CT; they are meant that way.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        write_report(path, key, groups)


def write_pacs_cohort(
    folder: Path,
    *,
    patients: int = 3,
    studies: int = 2,
    lesions: int = 2,
    slices: int = 3,
    seed: int = 0,
    interval_days: int = 90,
    prefix: str = "SYNTHETIC-PACS",
) -> list[StudyFiles]:
    """Write the cohort under ``folder/PATIENT/STUDY/`` (``ct/*.dcm``, ``sr.dcm``); its studies
    in patient, then time order."""
    rng = np.random.default_rng(seed)
    out: list[StudyFiles] = []
    for p in range(patients):
        patient_id = f"{prefix}-{p:05d}"
        tracking = [generate_uid() for _ in range(lesions)]
        centres = [(rng.uniform(20, 44), rng.uniform(20, 44)) for _ in range(lesions)]
        sizes = [rng.uniform(6, 12) for _ in range(lesions)]
        for s in range(studies):
            day = FIRST_STUDY + timedelta(days=interval_days * s + p % 7)
            study = StudyFiles(patient_id, generate_uid(), day.strftime("%Y%m%d"), s)
            where = folder / patient_id / f"study{s}"
            (where / "ct").mkdir(parents=True, exist_ok=True)
            series = generate_uid()
            cts = []
            for z in range(slices):
                path = where / "ct" / f"{z:03d}.dcm"
                cts.append(
                    write_synthetic_ct(
                        path,
                        study_uid=study.study_uid,
                        study_date=study.study_date,
                        study_time="101500",
                        patient_id=patient_id,
                        series_uid=series,
                        position_z_mm=-100.0 + 5.0 * z,
                        instance_number=z + 1,
                        body=True,
                    )
                )
                study.ct.append(path)
            key = cts[slices // 2]
            measured = []
            for j in range(lesions):
                cx, cy = centres[j]
                half = sizes[j] * (1.0 + 0.15 * s) / 2
                long_pts = [[cx - half, cy], [cx + half, cy]]
                short_pts = [[cx, cy - half * 0.6], [cx, cy + half * 0.6]]
                measured.append((f"Lesion {j + 1}", tracking[j], long_pts, short_pts))
                study.lesions[tracking[j]] = round(2 * half * SPACING_YX[1], 2)
            study.report = where / "sr.dcm"
            _report(study.report, key, measured)
            out.append(study)
    return out
