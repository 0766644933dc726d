"""Benchmark: AIM annotations through ``lesionkg etl`` beside DICOM SR, in a fresh local Neo4j.

Prints one JSON object with the machine and, measured in this one run, bookmarks/s through
``etl`` without embedding (read, check, pseudonymise, locate on the CT slice, cues, SIMILAR_TO
k = 10, re-match, write) for three exports of the SAME SYNTHETIC cohort: ``--patients`` patients,
two studies each (baseline and follow-up), ``--lesions`` lesions per study on one CT slice, each
study exported once as

- ``dicom_sr``: a TID 1500 report (highdicom, ``lesionkg.synthetic.dicom``),
- ``aim_xml``: an AIM v4 XML collection (``lesionkg.synthetic.aim``),
- ``aim_json``: an ePAD AIM JSON collection,

each beside the study's CT slice (the same bytes in all three exports). Each export goes into an
empty graph, after one warm-up run of the SR export (a fresh server is slow for its first writes).
The reader links (tracks from the tracking UIDs and AIM lesion names) are counted too: every
follow-up lesion should link to its baseline.

Target (issue 12): AIM in the same order as SR, >= 200 bookmarks/s.

    python bench/etl_aim_throughput.py [--patients 300] [--lesions 3]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe
from pydicom.uid import generate_uid

from lesionkg.config.settings import Settings
from lesionkg.db import server
from lesionkg.db.driver import open_driver
from lesionkg.db.schema import reset
from lesionkg.etl.importer import EtlOptions, run_etl
from lesionkg.synthetic.aim import (
    SyntheticAnnotation,
    SyntheticLine,
    aim_collection,
    write_aim_json,
    write_aim_xml,
)
from lesionkg.synthetic.dicom import (
    LONG_AXIS,
    MM,
    SHORT_AXIS,
    group,
    measurement,
    write_report,
    write_synthetic_ct,
)

DATABASE = "neo4j"
KINDS = ("dicom_sr", "aim_xml", "aim_json")
#: x, y pixel spacing of the SYNTHETIC CT slices (write_synthetic_ct's default, rows 0.9)
SX, SY = 0.7, 0.9


def _mm(points: tuple[float, float, float, float]) -> float:
    x1, y1, x2, y2 = points
    return math.hypot((x2 - x1) * SX, (y2 - y1) * SY)


def _axes(lesion: int, grow: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Long and short axis endpoints of lesion ``lesion`` on a 64 x 64 slice."""
    cx, cy = 14.0 + 12.0 * (lesion % 4), 16.0 + 14.0 * (lesion // 4 % 3)
    half, short = 4.0 * grow, 2.0 * grow
    return (cx - half, cy, cx + half, cy + 1.0), (cx, cy - short, cx, cy + short)


def write_cohort(work: Path, patients: int, lesions: int) -> dict[str, Path]:
    """The three exports of one SYNTHETIC cohort; their folders by kind."""
    folders = {kind: work / kind for kind in KINDS}
    for folder in folders.values():
        folder.mkdir(parents=True)
        (folder / "SYNTHETIC.json").write_text('{"synthetic": true}', encoding="utf-8")
    for p in range(patients):
        patient = f"SYNTHETIC-AIM-{p:05d}"
        tracking = [generate_uid() for _ in range(lesions)]
        for s, (date, grow) in enumerate((("20240301", 1.0), ("20240604", 1.15))):
            study, series, image = generate_uid(), generate_uid(), generate_uid()
            name = f"{patient}_{s}"
            ct_path = folders["dicom_sr"] / f"{name}_ct.dcm"
            ct = write_synthetic_ct(
                ct_path,
                study_uid=study,
                study_date=date,
                study_time="101500",
                patient_id=patient,
                sop_uid=image,
                series_uid=series,
                body=True,
            )
            for kind in KINDS[1:]:
                os.link(ct_path, folders[kind] / ct_path.name)
            groups, annotations = [], []
            for i in range(lesions):
                long_px, short_px = _axes(i, grow)
                long_pts = [[long_px[0], long_px[1]], [long_px[2], long_px[3]]]
                short_pts = [[short_px[0], short_px[1]], [short_px[2], short_px[3]]]
                groups.append(
                    group(
                        [
                            measurement(LONG_AXIS, _mm(long_px), MM, ct, long_pts),
                            measurement(SHORT_AXIS, _mm(short_px), MM, ct, short_pts),
                        ],
                        tracking[i],
                    )
                )
                annotations.append(
                    SyntheticAnnotation(
                        f"Lesion{i + 1}",
                        image,
                        series,
                        study,
                        study_date=date,
                        lines=(
                            SyntheticLine("LongAxis", _mm(long_px), "mm", long_px),
                            SyntheticLine("ShortAxis", _mm(short_px), "mm", short_px),
                        ),
                        lesion_uid=tracking[i],
                    )
                )
            write_report(folders["dicom_sr"] / f"{name}_sr.dcm", ct, groups)
            document = aim_collection(patient, annotations, user="reader1")
            write_aim_xml(folders["aim_xml"] / f"{name}_aim.xml", document)
            write_aim_json(folders["aim_json"] / f"{name}_aim.json", document)
    return folders


def _run(driver, folder: Path, options: EtlOptions) -> dict:
    reset(driver, DATABASE)
    started = time.perf_counter()
    summary = run_etl(driver, [folder], database=DATABASE, options=options, progress=False)
    seconds = time.perf_counter() - started
    return {
        "files": summary.files,
        "bookmarks": summary.accepted,
        "rejected": summary.rejected + summary.rejected_files,
        "seconds": round(seconds, 2),
        "bookmarks_per_s": round(summary.accepted / seconds, 1),
        "similar_edges": summary.similar_edges,
        "reader_links": summary.reader_links,
        "location": dict(summary.location),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=300)
    parser.add_argument("--lesions", type=int, default=3, help="lesions per study (1..12)")
    args = parser.parse_args()
    lesions = max(1, min(12, args.lesions))

    out: dict = {
        "machine": describe(),
        "data": f"SYNTHETIC: {args.patients} patients x 2 studies x {lesions} lesions, one 64 x "
        "64 CT slice per study; each study as a TID 1500 SR, an AIM v4 XML and an ePAD JSON file",
        "embedding": "none",
    }
    with tempfile.TemporaryDirectory(prefix="lesionkg-bench-aim-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        folders = write_cohort(work / "exports", args.patients, lesions)
        out["generated_s"] = round(time.perf_counter() - started, 1)
        instance = server.start(work / "neo4j", server.free_port(), heap="2g", pagecache="1g")
        driver = open_driver(Settings(instance.uri, instance.username, instance.password, DATABASE))
        try:

            def options(name: str) -> EtlOptions:
                return EtlOptions(secret_path=work / "pseudonym.key", index_dir=work / name)

            _run(driver, folders["dicom_sr"], options("warm-up"))
            results = {}
            for kind in KINDS:
                results[kind] = _run(driver, folders[kind], options(f"index-{kind}"))
                print(json.dumps({kind: results[kind]}), file=sys.stderr)
            sr = results["dicom_sr"]["bookmarks_per_s"]
            for kind in KINDS[1:]:
                rate = results[kind]["bookmarks_per_s"]
                results[kind]["ratio_to_sr"] = round(rate / sr, 2) if sr else None
                results[kind]["target_bookmarks_per_s"] = 200
                results[kind]["target_met"] = rate >= 200 and rate >= sr / 10
            out["results"] = results
        finally:
            driver.close()
            server.stop(work / "neo4j")
            print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
