"""What became of each bookmark's image, and where its location came from, never contradict each
other; a referenced image that is among the inputs as another kind (the real liver SEG) is named.

SYNTHETIC reports (lesionkg.synthetic.dicom) on a SYNTHETIC CT slice and on the real SEG of
../shared/data/dicom, imported into the real Neo4j."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from lesionkg.config.secret import load_or_create_secret
from lesionkg.core.provenance import XY_ONLY, ImageStatus, contradiction, without_image
from lesionkg.core.pseudonym import Pseudonymizer
from lesionkg.etl.imaging import Models
from lesionkg.etl.importer import EtlOptions, run_etl
from lesionkg.etl.preparation import PreparedFile, prepare_file
from lesionkg.loaders.ct import index_ct_images
from lesionkg.synthetic.dicom import (
    LONG_AXIS,
    MM,
    ellipse_group,
    group,
    measurement,
    write_report,
    write_synthetic_ct,
)

DATABASE = "neo4j"
MISSING_REASON = "measurement group 1: the referenced CT image <uid> is not among the CT inputs"
NO_COORDINATES = "none: the measurement has no coordinates on the image"

pytestmark = pytest.mark.filterwarnings(
    # The real SEG's PatientName has one component; highdicom says so when it copies it.
    "ignore:The string .* is unlikely to represent:UserWarning"
)


@pytest.fixture
def export(tmp_path: Path, dicom_dir: Path) -> dict[str, Path]:
    """One SYNTHETIC export folder, one report per fate of the image:

    - ``line.dcm``: a RECIST line on the CT slice beside it (found, located from the slice);
    - ``ellipse.dcm``: an ellipse on that slice (found, no line to place);
    - ``on_seg.dcm``: a line on the real liver SEG, given as an input (among the inputs, not a CT);
    - ``absent.dcm``: a line on a CT slice that is not among the inputs;
    - ``unplaced.dcm``: a length that names no image.
    """
    out = tmp_path / "export"
    out.mkdir()
    ct = write_synthetic_ct(
        out / "ct.dcm",
        study_uid=generate_uid(),
        study_date="20240301",
        study_time="101500",
        body=True,
    )
    line = measurement(LONG_AXIS, 17.5, MM, ct, [[20.0, 30.0], [45.0, 30.0]])
    write_report(out / "line.dcm", ct, [group([line], generate_uid())])
    write_report(out / "ellipse.dcm", ct, [ellipse_group(ct, (30.0, 30.0), "Lesion 1")])
    seg = pydicom.dcmread(dicom_dir / "ct" / "liver" / "liver_seg.dcm", stop_before_pixels=True)
    on_seg = measurement(LONG_AXIS, 20.0, MM, seg, [[10.0, 10.0], [30.0, 10.0]])
    write_report(out / "on_seg.dcm", seg, [group([on_seg], generate_uid())])
    elsewhere = tmp_path / "not_given"
    elsewhere.mkdir()
    other = write_synthetic_ct(
        elsewhere / "ct.dcm", study_uid=generate_uid(), study_date="20240501", study_time="0900"
    )
    far = measurement(LONG_AXIS, 11.0, MM, other, [[5.0, 5.0], [20.0, 5.0]])
    write_report(out / "absent.dcm", other, [group([far], generate_uid())])
    unplaced = measurement(LONG_AXIS, 9.0, MM, ct, None)
    write_report(out / "unplaced.dcm", ct, [group([unplaced], generate_uid())])
    return {"folder": out, "seg": dicom_dir / "ct" / "liver" / "liver_seg.dcm"}


@pytest.fixture
def options(tmp_path: Path) -> EtlOptions:
    return EtlOptions(secret_path=tmp_path / "pseudonym.key", index_dir=tmp_path / "index")


@pytest.mark.neo4j
def test_each_fate_of_an_image_is_stated_and_never_contradicted(
    empty_graph, export: dict[str, Path], options: EtlOptions
) -> None:
    inputs = [export["folder"], export["seg"]]
    first = run_etl(empty_graph, inputs, database=DATABASE, options=options, progress=False)
    # Without missing images allowed, only the two measurements on the CT slice are imported.
    assert first.accepted == 2
    problems = {
        Path(r.file).name: p.reason for r in first.reports for p in r.problems if r.problems
    }
    seg_uid = pydicom.dcmread(export["seg"], stop_before_pixels=True).SOPInstanceUID
    assert problems["on_seg.dcm"].startswith(
        f"the referenced CT image {seg_uid} is not among the CT inputs: it is a SEG object "
        f"(Segmentation Storage) in {export['seg']}"
    )
    assert "not among the CT inputs; give the image" in problems["absent.dcm"]
    assert problems["unplaced.dcm"].startswith("the group names no image")
    # The two missing images are one reason in the summary, whatever their UIDs.
    assert first.rejected_by_reason[MISSING_REASON] == 2
    # The SEG itself is an input image the import does not use, not a rejected report.
    (seg_report,) = [r for r in first.reports if r.file == str(export["seg"])]
    assert (seg_report.kind, seg_report.status) == ("SEG object", "image")

    allowed = dataclasses.replace(options, allow_missing_images=True)
    second = run_etl(empty_graph, inputs, database=DATABASE, options=allowed, progress=False)
    assert (second.accepted, second.duplicates, second.rejected) == (3, 2, 0)
    records, _, _ = empty_graph.execute_query(
        "MATCH (l:Lesion) RETURN l.long_axis_mm AS mm, l.image_status AS status, "
        "l.location_source AS source, l.image_stored AS stored ORDER BY mm",
        database_=DATABASE,
    )
    found = [(r["mm"], r["status"], r["source"], r["stored"]) for r in records]
    assert found == [
        (9.0, ImageStatus.NOT_REFERENCED, without_image(ImageStatus.NOT_REFERENCED), None),
        (11.0, ImageStatus.MISSING, without_image(ImageStatus.MISSING), None),
        (12.0, ImageStatus.FOUND, NO_COORDINATES, True),
        (17.5, ImageStatus.FOUND, XY_ONLY, True),
        (20.0, ImageStatus.UNUSABLE, without_image(ImageStatus.UNUSABLE), None),
    ]
    for mm, status, source, _ in found:
        assert contradiction(status, source) is None, mm
    # The summary counts locations by the same sources.
    assert second.location == {
        "none: image not referenced": 1,
        "none: image missing": 1,
        "none: image unusable": 1,
    }


def test_an_image_changed_after_indexing_is_skipped_with_its_own_reason(tmp_path: Path) -> None:
    # The CT slice is replaced by another instance between indexing and reading its pixels: the
    # bookmark is skipped under "image" with the file and the reason, not a summary of an error.
    out = tmp_path / "export"
    out.mkdir()
    ct = write_synthetic_ct(
        out / "ct.dcm", study_uid=generate_uid(), study_date="20240301", study_time="1015"
    )
    line = measurement(LONG_AXIS, 17.5, MM, ct, [[20.0, 30.0], [45.0, 30.0]])
    write_report(out / "line.dcm", ct, [group([line], generate_uid())])
    index = index_ct_images([out / "ct.dcm"])
    write_synthetic_ct(
        out / "ct.dcm", study_uid=ct.StudyInstanceUID, study_date="20240301", study_time="1015"
    )
    options = EtlOptions(
        secret_path=tmp_path / "pseudonym.key",
        index_dir=tmp_path / "index",
        image_store=tmp_path / "images",
    )
    pseudonymizer = Pseudonymizer(load_or_create_secret(options.secret_path))
    prepared = prepare_file(out / "line.dcm", index, pseudonymizer, Models(options), options)
    assert isinstance(prepared, PreparedFile) and prepared.lesions == []
    (problem,) = prepared.skipped
    assert (problem.column, problem.reason) == (
        "image",
        f"{out / 'ct.dcm'}: the file no longer holds the indexed SOP Instance UID (changed on "
        "disk)",
    )
