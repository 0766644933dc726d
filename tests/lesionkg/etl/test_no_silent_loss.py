"""No measurement is lost without a word: a duplicate is the same measurement (the same report group
or annotation, a re-imported file), never "the same image and similar values"; every bookmark not
written is counted under a named reason and ``etl`` exits 1. SYNTHETIC highdicom reports
(lesionkg.synthetic.dicom) and the real multi-group report of ../shared/data/dicom, imported into
the real Neo4j."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import highdicom as hd
import pytest
from click.testing import CliRunner
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from lesionkg.cli import main
from lesionkg.core.pseudonym import lesion_key
from lesionkg.db.schema import counts
from lesionkg.etl.importer import EtlOptions, run_etl
from lesionkg.etl.preparation import normal_anatomy
from lesionkg.loaders.ct import index_ct_images
from lesionkg.loaders.dicom_sr import read_measurement_report
from lesionkg.synthetic.dicom import (
    LONG_AXIS,
    MM,
    ellipse_group,
    measurement,
    write_report,
    write_synthetic_ct,
)

DATABASE = "neo4j"
AORTA = Code("15825003", "SCT", "Aorta")
NORMAL_ANATOMY_REASON = "finding: normal anatomy, not a lesion"


@pytest.fixture
def options(tmp_path: Path) -> EtlOptions:
    return EtlOptions(secret_path=tmp_path / "pseudonym.key", index_dir=tmp_path / "index")


def aorta_group(ct: Dataset) -> Dataset:
    """A measurement of normal anatomy: the aorta's diameter, with its line."""
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="Aorta"),
        finding_type=AORTA,
        measurements=[measurement(LONG_AXIS, 17.5, MM, ct, [[30.0, 30.0], [55.0, 30.0]])],
    )


@pytest.fixture
def ellipses(tmp_path: Path) -> Path:
    """A SYNTHETIC export: one CT slice and one report with three ellipses on it (three lesions,
    equal values, their own tracking UIDs) and the aorta's diameter."""
    out = tmp_path / "export"
    out.mkdir()
    ct = write_synthetic_ct(
        out / "ct.dcm",
        study_uid=generate_uid(),
        study_date="20240301",
        study_time="101500",
        body=True,
    )
    groups = [
        ellipse_group(ct, c, f"Lesion {i}") for i, c in enumerate([(15, 20), (40, 20), (25, 45)], 1)
    ]
    write_report(out / "report.dcm", ct, [*groups, aorta_group(ct)])
    return out


def test_three_ellipses_on_one_slice_are_three_measurements(ellipses: Path) -> None:
    ct = index_ct_images([ellipses / "ct.dcm"])
    result = read_measurement_report(ellipses / "report.dcm", ct)
    assert len(result.bookmarks) == 4
    three = result.bookmarks[:3]
    # Same image, no endpoints, equal lengths: by "image and values" they would be one.
    assert len({lesion_key(dataclasses.replace(b, measurement_uid=None)) for b in three}) == 1
    # Each names its own measurement (its tracking UID), so each is its own bookmark.
    assert len({b.measurement_uid for b in three}) == 3
    assert len({lesion_key(b) for b in three}) == 3
    assert all(b.measurement_uid.startswith("tu:") for b in three)


@pytest.mark.neo4j
def test_three_ellipses_give_three_lesions_and_the_aorta_is_counted(
    empty_graph, ellipses: Path, options: EtlOptions, cli_args: list[str]
) -> None:
    summary = run_etl(empty_graph, [ellipses], database=DATABASE, options=options, progress=False)
    assert (summary.accepted, summary.duplicates) == (3, 0)
    # The aorta is not a lesion: skipped, counted under its reason, never silently.
    assert summary.rejected == 1
    assert summary.rejected_by_reason == {NORMAL_ANATOMY_REASON: 1}
    (report,) = [r for r in summary.reports if r.kind == "dicom-sr"]
    assert (report.status, report.new, len(report.problems)) == ("imported", 3, 1)
    assert report.problems[0].line == 4 and "'Aorta'" in report.problems[0].reason
    assert counts(empty_graph, DATABASE)["Lesion"] == 3
    records, _, _ = empty_graph.execute_query(
        "MATCH (l:Lesion) RETURN l.long_axis_mm AS mm, l.tracking_uid AS uid", database_=DATABASE
    )
    assert [r["mm"] for r in records] == [12.0] * 3
    assert len({r["uid"] for r in records}) == 3
    # Importing again: the same three measurements, duplicates; the aorta counted again; exit 1.
    result = CliRunner().invoke(
        main,
        [
            *cli_args,
            "etl",
            "--quiet",
            "--format",
            "json",
            "--secret",
            str(options.secret_path),
            "--index-dir",
            str(options.index_dir),
            str(ellipses),
        ],
    )
    assert result.exit_code == 1, result.output
    assert '"duplicates": 3' in result.output and NORMAL_ANATOMY_REASON in result.output
    assert counts(empty_graph, DATABASE)["Lesion"] == 3


def test_normal_anatomy_is_told_from_lesions() -> None:
    for finding in ("Aorta", "aorta", "Thoracic aorta", "Aorta structure", "Spleen"):
        assert normal_anatomy(finding), finding
    for finding in (None, "", "Nodule", "Mass", "Lesion", "Lymph node", "Neoplasm"):
        assert not normal_anatomy(finding), finding


@pytest.mark.neo4j
def test_the_real_multi_group_report_keeps_its_nodule_and_names_the_aorta(
    empty_graph, dicom_dir: Path, options: EtlOptions
) -> None:
    report = dicom_dir / "sr" / "sr_document_with_multiple_groups.dcm"
    options = dataclasses.replace(options, allow_missing_images=True)
    summary = run_etl(empty_graph, [report], database=DATABASE, options=options, progress=False)
    assert summary.accepted == 1
    assert summary.rejected_by_reason[NORMAL_ANATOMY_REASON] == 1
    # Its other groups (a volume, a mean HU, a point) are counted by reason too.
    assert summary.rejected == sum(summary.rejected_by_reason.values())
    assert summary.rejected == len(summary.reports[0].problems)
    records, _, _ = empty_graph.execute_query(
        "MATCH (l:Lesion) RETURN l.long_axis_mm AS mm, l.finding AS finding", database_=DATABASE
    )
    assert [(r["mm"], r["finding"]) for r in records] == [(10.0, "Nodule")]
