"""AIM through ``lesionkg etl`` into the real Neo4j: the real AIM v3 XML files and AIM SR twins of
the NCI AIM toolkit (tests/data/aim), SYNTHETIC AIM v4 XML and ePAD JSON with SYNTHETIC CT slices
(lesionkg.synthetic), and bad AIM refused with the file and element named and nothing written."""

from __future__ import annotations

import hashlib
import math
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from lesionkg.cli import main
from lesionkg.db.schema import counts
from lesionkg.etl.discovery import dicom_kind, file_kind
from lesionkg.etl.importer import EtlOptions, run_etl
from lesionkg.synthetic.aim import (
    SyntheticAnnotation,
    SyntheticLine,
    aim_collection,
    write_aim_json,
    write_aim_xml,
)
from lesionkg.synthetic.dicom import write_synthetic_ct

DATABASE = "neo4j"
DATA = Path(__file__).resolve().parents[2] / "data" / "aim"
#: (x, y) pixel spacing of the SYNTHETIC CT slices (write_synthetic_ct: rows 0.9, columns 0.7)
SX, SY = 0.7, 0.9


@pytest.fixture
def options(tmp_path: Path) -> EtlOptions:
    return EtlOptions(secret_path=tmp_path / "pseudonym.key", index_dir=tmp_path / "index")


def lesions(driver) -> list[dict]:
    records, _, _ = driver.execute_query(
        "MATCH (p:Patient)-[:HAS_STUDY]->(s:Study)-[:HAS_LESION]->(l:Lesion) "
        "RETURN p.patient_id AS patient, s.study_index AS study_index, "
        "s.study_datetime AS study_datetime, l {.*} AS props "
        "ORDER BY study_index, l.long_axis_mm",
        database_=DATABASE,
    )
    return [dict(r) for r in records]


def links(driver) -> list[str]:
    records, _, _ = driver.execute_query(
        "MATCH (:Lesion)-[f:FOLLOWED_BY]->(:Lesion) RETURN f.by AS by", database_=DATABASE
    )
    return [r["by"] for r in records]


def mm(points: tuple[float, float, float, float]) -> float:
    x1, y1, x2, y2 = points
    return math.hypot((x2 - x1) * SX, (y2 - y1) * SY)


# --- discovery ----------------------------------------------------------------------------------


def test_discovery_recognises_every_aim_encoding(tmp_path: Path) -> None:
    assert file_kind(DATA / "0022BaselineA.xml") == "aim"
    assert file_kind(DATA / "0022BaselineA.dcm") == "dicom"
    assert dicom_kind(DATA / "0022BaselineA.dcm") == "aim-sr"
    document = aim_collection("SYN-D", [])
    # By content, whatever the name.
    assert file_kind(write_aim_json(tmp_path / "export.txt", document)) == "aim"
    assert file_kind(write_aim_xml(tmp_path / "export", document)) == "aim"
    other = tmp_path / "other.json"
    other.write_text('{"patients": []}', encoding="utf-8")
    assert file_kind(other) == "unknown"


def test_a_tid1500_report_stays_on_the_sr_path(dicom_dir: Path) -> None:
    path = dicom_dir / "sr" / "sr_document_with_multiple_groups.dcm"
    assert (file_kind(path), dicom_kind(path)) == ("dicom", "dicom-sr")


# --- the real AIM v3 files and their AIM SR twins -------------------------------------------------


@pytest.mark.neo4j
def test_real_aim_baseline_and_follow_up_make_a_track(
    empty_graph, tmp_path: Path, options: EtlOptions
) -> None:
    export = tmp_path / "aim"
    export.mkdir()
    for path in DATA.glob("0022*"):
        shutil.copy(path, export / path.name)
    # The toolkit's CT slices are not shipped: the measurements come without image fields.
    options = EtlOptions(
        secret_path=options.secret_path, index_dir=options.index_dir, allow_missing_images=True
    )
    summary = run_etl(empty_graph, [export], database=DATABASE, options=options, progress=False)
    by_file = {Path(r.file).name: r for r in summary.reports}
    assert {name: r.kind for name, r in by_file.items() if r.kind.startswith("aim")} == {
        "0022BaselineA.dcm": "aim-sr",
        "0022BaselineA.xml": "aim-xml",
        "0022BaselineB.xml": "aim-xml",
        "0022FollowupA.dcm": "aim-sr",
        "0022FollowupA.xml": "aim-xml",
    }
    # Each XML file and its AIM SR twin are one measurement (one annotation uid): 3 lesions,
    # the twins counted as duplicates.
    assert (summary.accepted, summary.duplicates, summary.rejected) == (3, 2, 0)
    rows = lesions(empty_graph)
    assert len({r["patient"] for r in rows}) == 1
    assert [r["study_index"] for r in rows] == [1, 1, 2]
    assert [round(r["props"]["long_axis_mm"], 4) for r in rows] == [34.9827, 39.5796, 42.2212]
    for row in rows:
        props = row["props"]
        assert props["source_kind"] in ("aim-xml", "aim-sr")
        assert props["image_status"] == "missing" and props["coarse_type"] == 5
    b, a, follow_up = rows
    # Reader A's "0022" at baseline and follow-up is one track, linked by the reader's name;
    # reader B's measurement of the baseline is a track of its own.
    assert a["props"]["track_id"] == follow_up["props"]["track_id"] != b["props"]["track_id"]
    assert a["props"]["tracking_uid"].startswith("TI-")
    assert links(empty_graph) == ["reader"]
    # Dates shifted by the patient's offset: 40 days apart as in the files, never the real days.
    assert a["study_datetime"] != "2000-07-01" and follow_up["study_datetime"] != "2000-08-10"
    assert _days(a["study_datetime"], follow_up["study_datetime"]) == 40


def _days(first: str, second: str) -> int:
    from datetime import date

    return (date.fromisoformat(second[:10]) - date.fromisoformat(first[:10])).days


# --- SYNTHETIC AIM v4 XML and ePAD JSON with their CT slices --------------------------------------

#: three lesions on one slice per study: (name, lesion UID or None, long axis, short axis)
LESIONS = (
    ("Lesion1", "2.25.9001", (20.0, 30.0, 50.0, 30.0), (35.0, 24.0, 35.0, 36.0)),
    ("Lesion2", None, (70.0, 70.0, 90.0, 100.0), None),
    ("Lesion3", None, (20.0, 90.0, 40.0, 90.0), None),
)


def synthetic_study(
    out: Path,
    encoding: str,
    patient: str,
    name: str,
    date: str,
    *,
    grow: float,
    stated: dict[str, float] | None = None,
) -> None:
    """One SYNTHETIC study: a CT slice and one AIM file with the three LESIONS on it."""
    study, series, image = (
        "2.25." + str(int(hashlib.sha256(f"{patient}|{name}|{x}".encode()).hexdigest()[:20], 16))
        for x in "ABC"
    )
    write_synthetic_ct(
        out / f"ct_{name}.dcm",
        study_uid=study,
        study_date=date,
        study_time="101500",
        patient_id=patient,
        sop_uid=image,
        series_uid=series,
        rows=128,
        columns=128,
        body=True,
    )
    annotations = []
    for lesion, uid, long_px, short_px in LESIONS:
        x1, y1, x2, y2 = long_px
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        long_px = (
            cx + (x1 - cx) * grow,
            cy + (y1 - cy) * grow,
            cx + (x2 - cx) * grow,
            cy + (y2 - cy) * grow,
        )
        lines = [SyntheticLine("LongAxis", (stated or {}).get(lesion, mm(long_px)), "mm", long_px)]
        if short_px is not None:
            lines.append(SyntheticLine("ShortAxis", mm(short_px) / 10, "linear", short_px))
        annotations.append(
            SyntheticAnnotation(
                lesion,
                image,
                series,
                study,
                study_date=date,
                lines=tuple(lines),
                lesion_uid=uid,
                timepoint=name,
            )
        )
    document = aim_collection(patient, annotations, user="reader1")
    writer = write_aim_xml if encoding == "xml" else write_aim_json
    writer(out / f"aim_{name}.{encoding}", document)


@pytest.mark.neo4j
@pytest.mark.parametrize("encoding", ["json", "xml"])
def test_synthetic_aim_baseline_and_follow_up_make_tracks(
    empty_graph, tmp_path: Path, options: EtlOptions, encoding: str
) -> None:
    out = tmp_path / "export"
    out.mkdir()
    (out / "SYNTHETIC.json").write_text('{"synthetic": true}', encoding="utf-8")
    synthetic_study(out, encoding, "SYN-AIM-1", "baseline", "20240301", grow=1.0)
    # At follow-up Lesion3's stated length disagrees with the slice's spacing (a recalibrated
    # export): the stated 30 mm is kept and the recomputed length recorded on the lesion.
    synthetic_study(
        out, encoding, "SYN-AIM-1", "follow_up", "20240615", grow=1.2, stated={"Lesion3": 30.0}
    )
    summary = run_etl(empty_graph, [out], database=DATABASE, options=options, progress=False)
    assert (summary.accepted, summary.rejected, summary.rejected_files) == (6, 0, 0)
    assert summary.images == 2 and summary.metadata == 1
    rows = lesions(empty_graph)
    assert [r["study_index"] for r in rows] == [1, 1, 1, 2, 2, 2]
    kind = "aim-json" if encoding == "json" else "aim-xml"
    for row in rows:
        props = row["props"]
        assert (props["source_kind"], props["dataset"]) == (kind, "synthetic")
        assert props["image_status"] == "found" and props["spacing_mm"] == [SX, SY]
    # Every annotation of a file is a lesion, each lesion of the baseline has its follow-up.
    tracks = {}
    for row in rows:
        tracks.setdefault(row["props"]["track_id"], []).append(row["study_index"])
    assert sorted(tracks.values()) == [[1, 2]] * 3
    assert links(empty_graph) == ["reader"] * 3
    assert summary.reader_links == 3
    # Stated lengths win; the disagreeing one is recorded beside it.
    by_length = {round(r["props"]["long_axis_mm"], 3): r["props"] for r in rows}
    recorded = by_length[30.0]
    assert recorded["recomputed_long_axis_mm"] == pytest.approx(20 * 1.2 * SX, rel=1e-6)
    assert sum("recomputed_long_axis_mm" in p for p in by_length.values()) == 1
    first = next(r["props"] for r in rows if r["props"].get("short_axis_mm") is not None)
    assert first["long_axis_mm"] == pytest.approx(mm(LESIONS[0][2]))
    assert first["short_axis_mm"] == pytest.approx(mm(LESIONS[0][3]), rel=1e-6)
    # Importing the files again changes nothing.
    again = run_etl(empty_graph, [out], database=DATABASE, options=options, progress=False)
    assert (again.accepted, again.duplicates) == (0, 6)
    assert len(lesions(empty_graph)) == 6


# --- bad AIM: refused whole, file and element named, nothing written -----------------------------


def _bad_files(out: Path) -> dict[str, str]:
    """Bad AIM files, each with the element (problem column) its refusal must name, or '' when
    the problem is the file's syntax (then the line is named)."""
    text = (DATA / "0022BaselineA.xml").read_text(encoding="utf-8")
    (out / "broken.xml").write_text(
        text.replace("</calculationCollection>", "</calculationCollectio>"), encoding="utf-8"
    )
    (out / "namespace.xml").write_text(text.replace("caCORE/3.2/", "caCORE/3.9/"), "utf-8")
    start = text.index("<calculationCollection>")
    end = text.index("</calculationCollection>") + len("</calculationCollection>")
    (out / "nocalc.xml").write_text(text[:start] + text[end:], encoding="utf-8")
    good = SyntheticAnnotation(
        "L1", "2.25.1.1", "2.25.1.2", "2.25.1.3", lines=(SyntheticLine("Length", 20.0, "mm"),)
    )
    bad = SyntheticAnnotation(
        "L2", "2.25.1.4", "2.25.1.2", "2.25.1.3", lines=(SyntheticLine("Length", 2.0, "inch"),)
    )
    write_aim_json(out / "unit.json", aim_collection("SYN-BAD", [good, bad]))
    return {
        "broken.xml": "",
        "namespace.xml": "ImageAnnotation",
        "nocalc.xml": "ImageAnnotation",
        "unit.json": "ImageAnnotationCollection/imageAnnotations/ImageAnnotation[2]/"
        "calculationEntityCollection/CalculationEntity[1]/unitOfMeasure",
    }


@pytest.mark.neo4j
def test_bad_aim_is_refused_naming_file_and_element_and_nothing_is_written(
    empty_graph, tmp_path: Path, options: EtlOptions, cli_args: list[str]
) -> None:
    out = tmp_path / "bad"
    out.mkdir()
    expected = _bad_files(out)
    options = EtlOptions(
        secret_path=options.secret_path, index_dir=options.index_dir, allow_missing_images=True
    )
    summary = run_etl(empty_graph, [out], database=DATABASE, options=options, progress=False)
    assert (summary.accepted, summary.rejected_files) == (0, 4)
    for report in summary.reports:
        name = Path(report.file).name
        assert report.status == "rejected" and report.kind == "aim", name
        assert report.problems and all(p.source == report.file for p in report.problems)
        if expected[name]:
            assert expected[name] in [p.column for p in report.problems], report.problems
        else:
            assert report.problems[0].line is not None
    assert counts(empty_graph, DATABASE)["Lesion"] == 0
    assert counts(empty_graph, DATABASE)["Study"] == 0
    # The command says so and exits 1.
    result = CliRunner().invoke(
        main,
        [
            *cli_args,
            "etl",
            "--quiet",
            "--allow-missing-images",
            "--secret",
            str(options.secret_path),
            "--index-dir",
            str(options.index_dir),
            str(out),
        ],
    )
    assert result.exit_code == 1, result.output
    assert "unitOfMeasure" in result.output and "unit.json" in result.output
