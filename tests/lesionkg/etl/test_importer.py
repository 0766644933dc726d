"""The PACS bookmark import (``lesionkg.etl``): pure steps without Neo4j, then real imports of the
real DICOM files in ../shared/data/dicom and of SYNTHETIC reports, JSON Lines and DeepLesion rows
into the real Neo4j."""

from __future__ import annotations

import json
import math
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest
from neo4j.exceptions import ServiceUnavailable
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from lesionkg.config.secret import load_or_create_secret
from lesionkg.core.errors import ConfigurationError, DatabaseError, Problem
from lesionkg.core.pseudonym import Pseudonymizer
from lesionkg.db.retry import RetryPolicy, with_retries
from lesionkg.db.schema import counts
from lesionkg.etl.discovery import file_kind
from lesionkg.etl.importer import EtlOptions, run_etl
from lesionkg.etl.preparation import lesion_box
from lesionkg.etl.report import reason_key
from lesionkg.etl.spaces import merge_neighbours
from lesionkg.etl.transaction import study_order
from lesionkg.synthetic.dicom import (
    CM,
    LONG_AXIS,
    MM,
    SHORT_AXIS,
    group,
    measurement,
    write_report,
    write_synthetic_ct,
)

DATABASE = "neo4j"

# --- pure steps ---------------------------------------------------------------------------------


def test_lesion_box_spans_both_axes_with_padding() -> None:
    box = lesion_box((10, 20, 40, 60), (32, 30, 20, 40))
    assert box == (5.0, 15.0, 45.0, 65.0)


def test_lesion_box_without_short_axis_is_a_square_around_the_long_axis() -> None:
    x1, y1, x2, y2 = lesion_box((110, 110, 140, 150), None)
    # long axis 50 px: a 50 px square around (125, 130), padded by 5 px
    assert (x2 - x1, y2 - y1) == pytest.approx((60.0, 60.0))
    assert ((x1 + x2) / 2, (y1 + y2) / 2) == pytest.approx((125.0, 130.0))


def test_lesion_box_never_leaves_the_image_on_the_top_left() -> None:
    assert lesion_box((1, 1, 3, 3), None)[:2] == (0.0, 0.0)


def test_study_order_follows_study_time_then_id() -> None:
    order = study_order(
        [
            ("S-b", "2024-06-15T09:30:15"),
            ("S-a", "2024-03-01T10:22:00"),
            ("S-c", "2024-06-15T09:30:15"),
            ("S-d", "2023-12-31"),
        ]
    )
    assert order == {"S-d": 1, "S-a": 2, "S-b": 3, "S-c": 4}


def test_merge_neighbours_joins_index_and_batch_without_self() -> None:
    batch_vectors = np.array([[0.0, 0.0], [0.5, 0.0], [5.0, 5.0]], dtype=np.float32)
    index_ids = ["old-1", "old-2"]
    # index distances (squared l2, as hnswlib's l2) of the three new lesions to old-1, old-2
    pos = np.array([[0, 1], [0, 1], [1, 0]])
    dist = np.array([[0.5, 1.0], [0.25, 1.0], [0.5, 9.0]], dtype=np.float32)
    new_ids = ["new-a", "new-b", "new-c"]
    found = merge_neighbours(pos, dist, index_ids, new_ids, batch_vectors, "l2", 2)
    assert [t for t, _ in found[0]] == ["new-b", "old-1"]
    assert found[0][0][1] == pytest.approx(0.25)
    assert [t for t, _ in found[1]] == ["new-a", "old-1"]  # 0.25 tie broken by id
    assert [t for t, _ in found[2]] == ["old-2", "old-1"]
    for source, row in zip(new_ids, found, strict=True):
        assert source not in [t for t, _ in row]


def test_reason_key_drops_values_that_differ_between_files() -> None:
    a = Problem("a.jsonl", 3, "spacing_mm", "expected [x, y]: 2 finite numbers, got 'x'")
    b = Problem("b.jsonl", 9, "spacing_mm", "expected [x, y]: 2 finite numbers, got [1]")
    assert reason_key(a) == reason_key(b) == "spacing_mm: expected [x, y]"
    # Two missing images are one reason, whatever their UIDs and whatever was found instead.
    c = Problem(
        "r1.dcm",
        1,
        None,
        "the referenced CT image 1.2.826.0.1.3680043.8.498.1 is not "
        "among the CT inputs: it is an MR image (MR Image Storage) in mr.dcm",
    )
    d = Problem(
        "r2.dcm", 2, None, "the referenced CT image 2.25.1234567 is not among the CT inputs"
    )
    expected = "the referenced CT image <uid> is not among the CT inputs"
    assert reason_key(c) == reason_key(d) == expected


def test_file_kinds_of_real_files(dicom_dir: Path, deeplesion_dir: Path, tmp_path: Path) -> None:
    assert file_kind(dicom_dir / "ct" / "ct_small.dcm") == "dicom"
    assert file_kind(dicom_dir / "sr" / "sr_document.dcm") == "dicom"
    assert file_kind(deeplesion_dir / "images" / "000069_02_01_058.png") == "image"
    assert file_kind(deeplesion_dir / "dl_info" / "DL_info_val.csv") == "deeplesion"
    junk = tmp_path / "report.dcm"
    junk.write_bytes(b"not a DICOM file at all")
    assert file_kind(junk) == "unknown"
    assert file_kind(tmp_path / "x.jsonl") == "jsonl"


def test_with_retries_waits_and_succeeds() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ServiceUnavailable("connection refused")
        return "ok"

    seen = []
    policy = RetryPolicy(first_wait_s=0.01, max_wait_s=0.02, give_up_after_s=5)
    result = with_retries(flaky, policy, "a test", lambda n, w, e: seen.append((n, w)))
    assert result == "ok" and len(calls) == 3
    assert seen == [(1, 0.01), (2, 0.02)]


def test_with_retries_gives_up_with_a_database_error() -> None:
    def down() -> None:
        raise ServiceUnavailable("connection refused")

    policy = RetryPolicy(first_wait_s=0.01, max_wait_s=0.01, give_up_after_s=0.05)
    with pytest.raises(DatabaseError, match=r"importing x\.jsonl: Neo4j still unreachable"):
        with_retries(down, policy, "importing x.jsonl")


def test_unreachable_neo4j_is_retried_then_reported(tmp_path: Path) -> None:
    """A real driver pointed at a closed port: the import retries, then says nothing was written."""
    from neo4j import GraphDatabase

    from lesionkg.db.server import free_port

    driver = GraphDatabase.driver(f"bolt://127.0.0.1:{free_port()}", auth=("neo4j", "x" * 12))
    options = EtlOptions(
        secret_path=tmp_path / "key",
        index_dir=tmp_path / "index",
        retry=RetryPolicy(first_wait_s=0.05, max_wait_s=0.1, give_up_after_s=0.4),
    )
    try:
        with pytest.raises(DatabaseError, match="still unreachable after"):
            run_etl(driver, [tmp_path], options=options, progress=False)
    finally:
        driver.close()


# --- the real graph -----------------------------------------------------------------------------


@pytest.fixture
def options(tmp_path: Path) -> EtlOptions:
    return EtlOptions(secret_path=tmp_path / "pseudonym.key", index_dir=tmp_path / "index")


def graph_counts(driver) -> dict[str, int]:
    found = counts(driver, DATABASE)
    records, _, _ = driver.execute_query(
        "MATCH (l:Lesion) RETURN count(DISTINCT l.track_id) AS tracks", database_=DATABASE
    )
    return {**found, "tracks": records[0]["tracks"]}


def lesions(driver) -> list[dict]:
    records, _, _ = driver.execute_query(
        "MATCH (p:Patient)-[:HAS_STUDY]->(s:Study)-[:HAS_LESION]->(l:Lesion) "
        "RETURN p.patient_id AS patient, s.study_index AS study_index, "
        "s.study_datetime AS study_datetime, l {.*} AS props ORDER BY study_index, "
        "l.long_axis_mm",
        database_=DATABASE,
    )
    return [dict(r) for r in records]


@pytest.mark.neo4j
def test_real_dicom_folder(empty_graph, dicom_dir: Path, options: EtlOptions) -> None:
    summary = run_etl(empty_graph, [dicom_dir], database=DATABASE, options=options, progress=False)
    by_file = {Path(r.file).name: r for r in summary.reports}
    # The planar diameters of the multi-group report, in mm, as the readers' tests established.
    multi = by_file["sr_document_with_multiple_groups.dcm"]
    # Its 20 mm group measures the aorta, normal anatomy: skipped with its reason, counted.
    assert (multi.status, multi.new) == ("imported", 1)
    assert sorted(r["props"]["long_axis_mm"] for r in lesions(empty_graph)) == [10.0]
    assert summary.rejected_by_reason["finding: normal anatomy, not a lesion"] == 1
    # Its other groups (volume, mean HU, 3-D point, ...) are skipped with their reasons, counted.
    assert multi.problems and summary.rejected >= len(multi.problems)
    reasons = {name: " ".join(p.reason for p in r.problems) for name, r in by_file.items()}
    assert by_file["liver_volume_tid1500.dcm"].status == "rejected"
    assert "volumetric" in reasons["liver_volume_tid1500.dcm"].lower()
    assert by_file["basic_text_sr.dcm"].status == "rejected"
    assert (
        "1500" in reasons["basic_text_sr.dcm"]
        or "measurement report" in reasons["basic_text_sr.dcm"].lower()
    )
    assert by_file["sample-sr.dcm"].status == "rejected"  # unitless, its CT is not there
    assert by_file["sr_document.dcm"].status == "rejected"  # an area, no length
    assert by_file["ct_small.dcm"].status == "image"
    # The liver SEG beside the CT slices is an image the import does not use, not a bad report.
    assert (by_file["liver_seg.dcm"].status, by_file["liver_seg.dcm"].kind) == (
        "image",
        "SEG object",
    )
    assert summary.images == 5  # ct_small, the three liver slices and the SEG
    assert summary.accepted == 1 and summary.rejected_files >= 4
    stored = lesions(empty_graph)
    for row in stored:
        props = row["props"]
        assert props["lesion_id"].startswith("L-") and row["patient"].startswith("P-")
        assert props["source_kind"] == "dicom-sr" and props["dataset"] == "PACS"
        assert props["track_id"].startswith("T-")
    text = json.dumps([r["props"] for r in stored]) + json.dumps([r["patient"] for r in stored])
    # No source identifier enters the graph unhashed.
    assert "1.3.6.1.4.1.5962" not in text
    assert summary.describe().count("rejected") >= 4


@pytest.fixture
def follow_up(tmp_path: Path) -> dict:
    """A SYNTHETIC patient: a baseline and a follow-up study, one lesion measured in both."""
    out = tmp_path / "export"
    out.mkdir()
    tracking_uid = generate_uid()
    studies = {}
    for name, date, long_pts, short_pts, unit, scale in (
        ("baseline", "20240301", [[30, 40], [50, 60]], [[45, 42], [36, 55]], CM, 0.1),
        ("follow_up", "20240615", [[31, 41], [49, 58]], [[44, 43], [37, 54]], MM, 1.0),
    ):
        ct = write_synthetic_ct(
            out / f"synthetic_ct_{name}.dcm",
            study_uid=generate_uid(),
            study_date=date,
            study_time="101500",
            body=True,
        )
        spacing = (float(ct.PixelSpacing[1]), float(ct.PixelSpacing[0]))

        def mm(points, spacing=spacing):
            (x1, y1), (x2, y2) = points
            return math.hypot((x2 - x1) * spacing[0], (y2 - y1) * spacing[1])

        studies[name] = write_report(
            out / f"synthetic_sr_{name}.dcm",
            ct,
            [
                group(
                    [
                        measurement(LONG_AXIS, round(mm(long_pts) * scale, 6), unit, ct, long_pts),
                        measurement(
                            SHORT_AXIS, round(mm(short_pts) * scale, 6), unit, ct, short_pts
                        ),
                    ],
                    tracking_uid,
                )
            ],
        )
    return {"dir": out, "reports": studies, "tracking_uid": tracking_uid}


@pytest.mark.neo4j
def test_baseline_and_follow_up_reports_make_one_track(
    empty_graph, follow_up: dict, options: EtlOptions
) -> None:
    summary = run_etl(
        empty_graph, [follow_up["dir"]], database=DATABASE, options=options, progress=False
    )
    assert (summary.accepted, summary.rejected, summary.images) == (2, 0, 2)
    rows = lesions(empty_graph)
    assert [r["study_index"] for r in rows] == [1, 2]
    assert rows[0]["study_datetime"] < rows[1]["study_datetime"]
    assert rows[0]["patient"] == rows[1]["patient"]
    assert rows[0]["props"]["track_id"] == rows[1]["props"]["track_id"]
    # x, y from the synthetic body outline; z needs an SSBR model, which is not configured.
    for row in rows:
        props = row["props"]
        assert "location" not in props
        x, y = props["location_xy"]
        assert 0.0 <= x <= 1.0 and 0.0 <= y <= 1.0
        assert "SSBR" in props["location_source"]
        assert props["image_status"] == "found"
    records, _, _ = empty_graph.execute_query(
        "MATCH (a:Lesion)-[f:FOLLOWED_BY]->(b:Lesion) RETURN f.by AS by", database_=DATABASE
    )
    assert [r["by"] for r in records] == ["reader"]
    assert summary.reader_links == 1
    assert summary.reader_agreement["pairs"] == 1


@pytest.mark.neo4j
def test_reimport_changes_nothing(empty_graph, follow_up: dict, options: EtlOptions) -> None:
    run_etl(empty_graph, [follow_up["dir"]], database=DATABASE, options=options, progress=False)
    before = graph_counts(empty_graph)
    again = run_etl(
        empty_graph, [follow_up["dir"]], database=DATABASE, options=options, progress=False
    )
    assert graph_counts(empty_graph) == before
    assert (again.accepted, again.duplicates, again.duplicate_files) == (0, 2, 2)


@pytest.mark.neo4j
def test_follow_up_first_then_baseline_renumbers_studies(
    empty_graph, follow_up: dict, options: EtlOptions
) -> None:
    out = follow_up["dir"]
    run_etl(
        empty_graph,
        [out / "synthetic_sr_follow_up.dcm", out / "synthetic_ct_follow_up.dcm"],
        database=DATABASE,
        options=options,
        progress=False,
    )
    assert [r["study_index"] for r in lesions(empty_graph)] == [1]
    run_etl(
        empty_graph,
        [out / "synthetic_sr_baseline.dcm", out / "synthetic_ct_baseline.dcm"],
        database=DATABASE,
        options=options,
        progress=False,
    )
    rows = lesions(empty_graph)
    assert [r["study_index"] for r in rows] == [1, 2]
    assert [r["props"]["study_index"] for r in rows] == [1, 2]
    # Stored dates are shifted per patient (never the real ones); the interval is kept exactly:
    # baseline 2024-03-01, follow-up 2024-06-15, 106 days apart.
    first, second = (datetime.fromisoformat(r["study_datetime"]) for r in rows)
    assert not rows[0]["study_datetime"].startswith("2024-03-01")
    assert (second.date() - first.date()).days == 106
    assert rows[0]["props"]["track_id"] == rows[1]["props"]["track_id"]


@pytest.mark.neo4j
def test_another_key_is_refused(empty_graph, follow_up: dict, tmp_path: Path) -> None:
    first = EtlOptions(secret_path=tmp_path / "a.key", index_dir=tmp_path / "index")
    run_etl(empty_graph, [follow_up["dir"]], database=DATABASE, options=first, progress=False)
    other = EtlOptions(secret_path=tmp_path / "b.key", index_dir=tmp_path / "index")
    with pytest.raises(ConfigurationError, match="pseudonymisation key"):
        run_etl(empty_graph, [follow_up["dir"]], database=DATABASE, options=other, progress=False)


def jsonl_line(**fields) -> str:
    base = {
        "patient": "SYNTHETIC-J-1",
        "study": "study-1",
        "study_time": "2024-03-01T10:00:00",
        "image": "missing.png",
        "long_axis_px": [100, 100, 130, 120],
        "short_axis_px": [110, 120, 118, 104],
        "spacing_mm": [0.8, 0.8],
        "location": [0.4, 0.5, 0.6],
        "window_hu": [-175, 275],
    }
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not None})


@pytest.mark.neo4j
@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("not_dicom.dcm", b"MZ\x90\x00 a Windows program, not DICOM", "not a DICOM file"),
        ("missing_field.jsonl", jsonl_line(spacing_mm=None).encode(), "spacing_mm"),
        (
            "duplicate.jsonl",
            (jsonl_line() + "\n" + jsonl_line()).encode(),
            "duplicate of the bookmark on line 1",
        ),
        ("wrong_units.jsonl", jsonl_line(spacing_mm=[-1, 0.8]).encode(), "spacings > 0 mm"),
    ],
)
def test_bad_inputs_are_rejected_and_nothing_is_written(
    empty_graph, tmp_path: Path, options: EtlOptions, name: str, content: bytes, reason: str
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / name).write_bytes(content)
    before = graph_counts(empty_graph)
    opts = EtlOptions(
        allow_missing_images=True, secret_path=options.secret_path, index_dir=options.index_dir
    )
    summary = run_etl(empty_graph, [folder], database=DATABASE, options=opts, progress=False)
    assert summary.rejected_files == 1 and summary.accepted == 0
    (report,) = summary.reports
    assert report.status == "rejected"
    assert any(reason in str(p) for p in report.problems), report.problems
    assert all(p.source == str(folder / name) for p in report.problems)
    assert graph_counts(empty_graph) == before


@pytest.mark.neo4j
def test_bad_dicom_reports_are_rejected_with_their_reasons(
    empty_graph, follow_up: dict, tmp_path: Path, options: EtlOptions
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    good = follow_up["reports"]["baseline"]
    data = good.read_bytes()
    (bad / "truncated.dcm").write_bytes(data[: len(data) // 2])
    ct = write_synthetic_ct(
        tmp_path / "ct_elsewhere.dcm",
        study_uid=generate_uid(),
        study_date="20240101",
        study_time="000000",
    )
    # The baseline report with its measurement groups removed.
    report = pydicom.dcmread(good)
    for item in report.ContentSequence:
        if item.ConceptNameCodeSequence[0].CodeValue == "126010":  # Imaging Measurements
            del item.ContentSequence
    report.save_as(bad / "no_groups.dcm")
    kg = Code("kg", "UCUM", "kilogram")
    write_report(
        bad / "wrong_units.dcm",
        ct,
        [group([measurement(LONG_AXIS, 4.0, kg, ct, [[10, 10], [20, 20]])], generate_uid())],
    )
    shutil.copy(good, bad / "missing_image.dcm")  # its CT is not among the inputs
    before = graph_counts(empty_graph)
    summary = run_etl(empty_graph, [bad], database=DATABASE, options=options, progress=False)
    by_file = {Path(r.file).name: r for r in summary.reports}
    assert {r.status for r in by_file.values()} == {"rejected"}
    text = {n: " ".join(p.reason for p in r.problems).lower() for n, r in by_file.items()}
    assert "truncated" in text["truncated.dcm"]
    assert "measurement group" in text["no_groups.dcm"]
    assert "unit" in text["wrong_units.dcm"]
    assert "not among" in text["missing_image.dcm"] or "not found" in text["missing_image.dcm"]
    assert graph_counts(empty_graph) == before
    assert summary.rejected_files == 4


@pytest.mark.neo4j
def test_missing_image_allowed_imports_without_image_fields(
    empty_graph, follow_up: dict, tmp_path: Path
) -> None:
    folder = tmp_path / "reports_only"
    folder.mkdir()
    shutil.copy(follow_up["reports"]["baseline"], folder)
    opts = EtlOptions(
        allow_missing_images=True, secret_path=tmp_path / "k", index_dir=tmp_path / "i"
    )
    summary = run_etl(empty_graph, [folder], database=DATABASE, options=opts, progress=False)
    assert summary.accepted == 1
    (row,) = lesions(empty_graph)
    props = row["props"]
    assert props["image_status"] == "missing"
    assert "location" not in props and "location_xy" not in props and "bbox" not in props
    assert props["long_axis_mm"] > 0 and props["track_id"]


@pytest.mark.neo4j
def test_jsonl_bookmarks_are_linked_and_typed(empty_graph, tmp_path: Path) -> None:
    folder = tmp_path / "jsonl"
    folder.mkdir()
    lines = []
    rng = np.random.default_rng(0)
    for p in range(6):
        for s, time in enumerate(["2024-01-01T09:00:00", "2024-04-01T09:00:00"]):
            for lesion in range(2):
                loc = [0.2 + 0.5 * lesion, 0.5, 0.3 + 0.4 * lesion]
                lines.append(
                    jsonl_line(
                        patient=f"SYNTHETIC-J-{p}",
                        study=f"st-{p}-{s}",
                        study_time=time,
                        long_axis_px=[100 + lesion * 50, 100, 130 + lesion * 50, 120 + s],
                        short_axis_px=None,
                        location=[v + rng.normal(0, 0.005) for v in loc],
                        type=[5, 4][lesion] if p else None,
                    )
                )
    (folder / "export.jsonl").write_text("\n".join(lines) + "\n")
    opts = EtlOptions(
        allow_missing_images=True, secret_path=tmp_path / "k", index_dir=tmp_path / "i", k=3
    )
    summary = run_etl(empty_graph, [folder], database=DATABASE, options=opts, progress=False)
    assert summary.accepted == 24 and summary.similar_edges == 24 * 3
    found = graph_counts(empty_graph)
    assert (found["Patient"], found["Study"], found["Lesion"]) == (6, 12, 24)
    assert found["SIMILAR_TO"] == 72
    # Each patient: two lesions followed over two studies.
    assert found["tracks"] == 12 and found["FOLLOWED_BY"] == 12
    # Patient 0 gave no types: a vote of its neighbours predicts them (lung left, liver right).
    secret = load_or_create_secret(tmp_path / "k")
    patient0 = Pseudonymizer(secret).patient_id("SYNTHETIC-J-0")
    records, _, _ = empty_graph.execute_query(
        "MATCH (l:Lesion {patient_id: $p}) RETURN l.location[0] < 0.5 AS left, "
        "l.predicted_type AS t",
        p=patient0,
        database_=DATABASE,
    )
    assert {(r["left"], r["t"]) for r in records} == {(True, 5), (False, 4)}
    # The cues index was saved for the next run and for `lesionkg link`.
    assert (tmp_path / "i" / "cues.bin").is_file()


@pytest.mark.neo4j
def test_deeplesion_rows_incremental(empty_graph, val_csv: Path, tmp_path: Path) -> None:
    head = val_csv.read_text().splitlines()
    # The first patients' rows of the real validation split, in two files of one patient set.
    patients = []
    for line in head[1:]:
        pid = line.split(",")[0][:6]
        if pid not in patients:
            patients.append(pid)
        if len(patients) > 3:
            break
    rows = [line for line in head[1:] if line.split(",")[0][:6] in patients[:3]]
    first, second = rows[: len(rows) // 2], rows[len(rows) // 2 :]
    (tmp_path / "a.csv").write_text("\n".join([head[0], *first]) + "\n")
    (tmp_path / "b.csv").write_text("\n".join([head[0], *second]) + "\n")
    opts = EtlOptions(secret_path=tmp_path / "k", index_dir=tmp_path / "i")
    one = run_etl(
        empty_graph, [tmp_path / "a.csv"], database=DATABASE, options=opts, progress=False
    )
    two = run_etl(
        empty_graph, [tmp_path / "b.csv"], database=DATABASE, options=opts, progress=False
    )
    assert one.accepted + two.accepted == len(rows)
    records, _, _ = empty_graph.execute_query(
        "MATCH (l:Lesion) RETURN l.lesion_id AS id, l.track_id AS track, l.cues AS cues, "
        "l.dataset AS dataset",
        database_=DATABASE,
    )
    assert len(records) == len(rows)
    assert all(r["id"].startswith("DL-") and r["track"] and r["cues"] for r in records)
    assert {r["dataset"] for r in records} == {"DeepLesion"}


def graph_state(driver) -> dict:
    """Counts plus the exact tracks and FOLLOWED_BY edges (SIMILAR_TO targets come from an
    approximate index, so those are compared by count)."""
    records, _, _ = driver.execute_query(
        "MATCH (l:Lesion) RETURN l.lesion_id AS id, l.track_id AS track, l.study_index AS study "
        "ORDER BY id",
        database_=DATABASE,
    )
    edges, _, _ = driver.execute_query(
        "MATCH (a:Lesion)-[:FOLLOWED_BY]->(b:Lesion) RETURN a.lesion_id + '>' + b.lesion_id AS e "
        "ORDER BY e",
        database_=DATABASE,
    )
    return {
        "counts": graph_counts(driver),
        "lesions": [tuple(r.values()) for r in records],
        "followed_by": [r["e"] for r in edges],
    }


def etl_env(settings, tmp_path: Path) -> dict[str, str]:
    """The environment of a `lesionkg etl` subprocess that talks to the test server."""
    import os

    return {
        **os.environ,
        "NEO4J_URI": settings.uri,
        "NEO4J_USERNAME": settings.username,
        "NEO4J_PASSWORD": settings.password,
        "LESIONKG_HOME": str(tmp_path / "home"),
    }


def etl_command(tmp_path: Path) -> list[str]:
    """`lesionkg etl` of the SYNTHETIC export in ``tmp_path / "export"`` (no key slices)."""
    import sys

    return [
        sys.executable,
        "-m",
        "lesionkg.cli",
        "etl",
        str(tmp_path / "export"),
        "--allow-missing-images",
        "--secret",
        str(tmp_path / "pseudonym.key"),
        "--quiet",
    ]


@pytest.mark.neo4j
@pytest.mark.slow
def test_killed_import_resumes_to_the_same_graph(empty_graph, settings, tmp_path: Path) -> None:
    import signal
    import subprocess
    import time

    from lesionkg.db.schema import reset
    from lesionkg.synthetic.bookmarks import write_synthetic_bookmarks

    export = write_synthetic_bookmarks(tmp_path / "export", patients=80, seed=5)
    env = etl_env(settings, tmp_path)

    def command(index: str) -> list[str]:
        return [*etl_command(tmp_path), "--index-dir", str(tmp_path / index)]

    subprocess.run(command("index-clean"), env=env, check=True, capture_output=True)
    clean = graph_state(empty_graph)
    assert clean["counts"]["Lesion"] == export.bookmarks

    reset(empty_graph, DATABASE)
    killed = subprocess.Popen(
        command("index-killed"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    written = 0
    while time.monotonic() < deadline and killed.poll() is None:
        written = counts(empty_graph, DATABASE)["Lesion"]
        if written >= export.bookmarks // 10:
            break
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL, "the import ended before it could be killed"
    partial = counts(empty_graph, DATABASE)["Lesion"]
    assert 0 < partial < export.bookmarks

    rerun = subprocess.run(command("index-killed"), env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert graph_state(empty_graph) == clean


@pytest.mark.neo4j
@pytest.mark.slow
def test_neo4j_restarted_mid_import_is_retried(
    empty_graph, neo4j_instance, settings, tmp_path: Path
) -> None:
    """The real server is stopped and started again while a `lesionkg etl` process imports: the
    import waits, retries, says so on stderr, and ends in the graph of an undisturbed run."""
    import subprocess
    import time

    from lesionkg.db import server
    from lesionkg.db.schema import reset
    from lesionkg.synthetic.bookmarks import write_synthetic_bookmarks

    export = write_synthetic_bookmarks(tmp_path / "export", patients=300, seed=9)
    env = etl_env(settings, tmp_path)
    command = etl_command(tmp_path)
    subprocess.run(command, env=env, check=True, capture_output=True)
    clean = graph_state(empty_graph)
    assert clean["counts"]["Lesion"] == export.bookmarks

    reset(empty_graph, DATABASE)
    running = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and running.poll() is None:
        if counts(empty_graph, DATABASE)["Lesion"] > 0:
            break
        time.sleep(0.02)
    assert running.poll() is None, "the import ended before the server could be stopped"
    server.stop(neo4j_instance.data_dir)
    time.sleep(1.0)
    server.start(neo4j_instance.data_dir, neo4j_instance.port, heap="1g", pagecache="256m")
    _, stderr = running.communicate(timeout=300)
    assert running.returncode == 0, stderr
    # The driver's managed transactions retry for 30 s first, then the import's own backoff.
    assert "will be retried" in stderr or "Neo4j unreachable" in stderr
    assert graph_state(empty_graph) == clean
