"""The SYNTHETIC cohort writer: ``DL_info_synthetic.csv``, its metadata, track ground truth,
optional images and SSBR volumes (:func:`write_synthetic_dl_info`) and the same-lesion pairs
of its true tracks (:func:`write_synthetic_pairs`)."""

from __future__ import annotations

import csv
import itertools
import json
import os
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lesionkg.synthetic.cohort.canvas import format_chunk
from lesionkg.synthetic.cohort.drawing import generate_chunk
from lesionkg.synthetic.cohort.images import (
    TRUTH_HEADER,
    ChunkImages,
    default_workers,
    write_ssbr_volumes,
)
from lesionkg.synthetic.cohort.tables import (
    CHUNK_PATIENTS,
    CSV_NAME,
    DEFAULT_LESIONS_PER_STUDY,
    DL_INFO_COLUMNS,
    GENERATOR,
    IMAGES_DIR,
    METADATA_NAME,
    SSBR_METADATA_NAME,
    TRACKS_NAME,
    TRUTH_NAME,
    VERSION,
    burden_mean_for,
    expected_rows_per_study,
)


@dataclass(frozen=True)
class SyntheticCohort:
    """Where a synthetic cohort was written, and its size."""

    csv_path: Path
    metadata_path: Path
    tracks_path: Path
    patients: int
    studies: int
    lesions: int
    seed: int
    images: int = 0  # key-slice PNGs written (0: no images)
    truth_path: Path | None = None  # per-lesion ground truth of the images
    ssbr_volumes: int = 0
    ssbr_metadata_path: Path | None = None


def write_synthetic_dl_info(
    out_dir: str | Path,
    *,
    patients: int,
    seed: int = 0,
    first_patient_index: int = 1,
    lesions_per_study_mean: float = DEFAULT_LESIONS_PER_STUDY,
    images: bool = False,
    ssbr_volumes: int = 0,
    ssbr_matrix: int = 128,
    ssbr_slice_mm: float = 5.0,
    workers: int | None = None,
    progress: bool = False,
) -> SyntheticCohort:
    """Write a SYNTHETIC DeepLesion cohort (CSV, metadata JSON, track ground truth) to ``out_dir``.

    ``patients`` patients are numbered from ``first_patient_index`` (6-digit ids in file names).
    ``lesions_per_study_mean`` is the target mean number of rows per study (above ~1.6: every
    study holds at least one lesion, and lesions persist into later studies).

    ``images``: also render CT slices with :mod:`lesionkg.synthetic.phantom`: for every volume
    ``Images_png/{patient}_{study}_{series}/{slice:03d}.png`` for each lesion's key slice and its
    two neighbours within the Slice_range (16-bit PNG, pixel = HU + 32768), plus
    ``lesion_truth_synthetic.csv`` (true type, appearance, organ, centre and anatomical place of
    every row). ``ssbr_volumes``: that many extra unlabelled volumes of contiguous slices
    (``ssbr_slice_mm`` apart, ``ssbr_matrix`` square) under ``ssbr_volumes_synthetic/``, with
    ``ssbr_volumes_synthetic.json``. ``workers``: processes that render images (default: the
    usable CPU cores, at most 8; 1 renders in this process). The CSV rows do not depend on these
    options, nor any file on ``workers``. Output is byte-identical for equal arguments.
    """
    if patients < 1:
        raise ValueError(f"patients must be >= 1, got {patients}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if first_patient_index < 0 or first_patient_index + patients - 1 > 999_999:
        raise ValueError("patient indices must fit the 6-digit file names (0..999999)")
    if ssbr_volumes < 0 or first_patient_index + patients + ssbr_volumes - 1 > 999_999:
        raise ValueError("ssbr_volumes must be >= 0 and numbered within 6 digits after the cohort")
    if not (16 <= ssbr_matrix <= 512 and 0.5 <= ssbr_slice_mm <= 20.0):
        raise ValueError("ssbr_matrix must be in [16, 512] and ssbr_slice_mm in [0.5, 20]")
    lowest = expected_rows_per_study(0.0)  # one forced lesion per study and its re-reads
    if not lowest < lesions_per_study_mean <= 50:
        raise ValueError(
            f"lesions_per_study_mean must be in ({lowest:.2f}, 50], got {lesions_per_study_mean}"
        )
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, meta_path, tracks_path = out / CSV_NAME, out / METADATA_NAME, out / TRACKS_NAME
    truth_path = out / TRUTH_NAME
    burden_mean = burden_mean_for(lesions_per_study_mean)

    bar: Any = None
    img_bar: Any = None
    if progress:
        from tqdm import tqdm

        # counts of patients (total known up front) with the rate, rows and studies so far
        bar = tqdm(total=patients, unit="patient", file=sys.stderr, desc="synthetic")
        if images:
            img_bar = tqdm(total=0, unit="slice", file=sys.stderr, desc="images")
    n_rows = n_studies = n_images = 0
    try:
        with (
            csv_path.open("wb") as f_csv,
            tracks_path.open("wb") as f_tracks,
            truth_path.open("w", encoding="ascii", newline="")
            if images
            else nullcontext() as f_truth,
        ):
            f_csv.write((",".join(DL_INFO_COLUMNS) + "\n").encode("ascii"))
            f_tracks.write(b"row_number,File_name,track_id\n")
            if f_truth is not None:
                f_truth.write(TRUTH_HEADER)
            for chunk_no, start in enumerate(range(0, patients, CHUNK_PATIENTS)):
                n_pat = min(CHUNK_PATIENTS, patients - start)
                # one independent stream per chunk: reproducible and order-free
                rng = np.random.default_rng([seed, chunk_no])
                chunk = generate_chunk(rng, first_patient_index + start, n_pat, burden_mean)
                csv_text, tracks_text = format_chunk(chunk, n_rows + 1)
                f_csv.write(csv_text)
                f_tracks.write(tracks_text)
                if f_truth is not None:  # opened exactly when images are written
                    renderer = ChunkImages(chunk, n_rows + 1, seed)
                    if img_bar is not None:
                        img_bar.total += renderer.count()
                        img_bar.refresh()
                    for f in (f_csv, f_tracks, f_truth):  # nothing buffered when workers fork
                        f.flush()
                    n_images += renderer.write(out / IMAGES_DIR, img_bar, workers)
                    f_truth.writelines(renderer.truth_lines())
                n_rows += len(chunk.patient)
                n_studies += len(np.unique(chunk.patient * 100 + chunk.study))
                if bar is not None:
                    bar.set_postfix_str(f"rows={n_rows:,} studies={n_studies:,}", refresh=False)
                    bar.update(n_pat)
        ssbr_path = None
        if ssbr_volumes:
            if progress:
                from tqdm import tqdm

                img_bar = tqdm(total=0, unit="slice", file=sys.stderr, desc="ssbr volumes")
            ssbr_path = write_ssbr_volumes(
                out,
                ssbr_volumes,
                seed,
                first_patient_index + patients,
                ssbr_matrix,
                ssbr_slice_mm,
                img_bar,
                workers,
            )
    finally:
        if bar is not None:
            bar.close()
        if img_bar is not None:
            img_bar.close()
    if not images and truth_path.exists():
        truth_path.unlink()  # a stale one from an earlier run would describe other images

    files: dict[str, Any] = {"dl_info": CSV_NAME, "tracks": TRACKS_NAME}
    if images:
        files["lesion_truth"] = TRUTH_NAME
    if ssbr_path is not None:
        files["ssbr_volumes"] = SSBR_METADATA_NAME
    metadata = {
        "synthetic": True,
        "generator": GENERATOR,
        "version": VERSION,
        "seed": seed,
        "patients": patients,
        "studies": n_studies,
        "lesions": n_rows,
        "first_patient_index": first_patient_index,
        "lesions_per_study_mean": lesions_per_study_mean,
        "images": {
            "included": images,
            "key_slices_and_neighbours": n_images,
            "dir": IMAGES_DIR if images else None,
            "png": "16-bit grey, pixel = HU + 32768 (DeepLesion convention)",
            "renderer": "lesionkg.synthetic.phantom (SYNTHETIC CT phantom)",
        },
        "ssbr_volumes": ssbr_volumes,
        "files": files,
        "note": (
            "SYNTHETIC data, not real patients: generated by lesionkg.synthetic.cohort from "
            "seeded random distributions shaped after summary statistics of the DeepLesion "
            "validation split"
            + (", with CT images rendered from a synthetic phantom" if images else "")
            + ". Do not use for any clinical or scientific conclusion."
        ),
    }
    meta_path.write_text(json.dumps(metadata, indent=2) + "\n", encoding="ascii")
    return SyntheticCohort(
        csv_path=csv_path,
        metadata_path=meta_path,
        tracks_path=tracks_path,
        patients=patients,
        studies=n_studies,
        lesions=n_rows,
        seed=seed,
        images=n_images,
        truth_path=truth_path if images else None,
        ssbr_volumes=ssbr_volumes,
        ssbr_metadata_path=ssbr_path,
    )


PAIRS_NAME = "same_lesion_pairs_synthetic.csv"


def write_synthetic_pairs(cohort: SyntheticCohort) -> Path:
    """Same-lesion pairs of a SYNTHETIC cohort's ground-truth tracks, in the DLS pairs format.

    Consecutive measurements of each true track (by study, then series) become a pair in both
    directions, with their RECIST diameters (``long;short`` mm) so that a key slice holding
    several lesions is unambiguous. Written beside the cohort as :data:`PAIRS_NAME`; the
    ``lesionkg evaluate matching --pairs`` input for synthetic data.
    """
    from lesionkg.core.records import LesionRecord
    from lesionkg.loaders.deeplesion import parse_dl_info

    rows = [r for r in parse_dl_info(cohort.csv_path) if isinstance(r, LesionRecord)]
    with open(cohort.tracks_path, newline="") as fh:
        track_of_row = {int(t["row_number"]): t["track_id"] for t in csv.DictReader(fh)}
    members: dict[str, list[LesionRecord]] = {}
    for number, rec in enumerate(rows, start=1):
        members.setdefault(track_of_row[number], []).append(rec)
    out = cohort.csv_path.parent / PAIRS_NAME
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            [
                "pair_id",
                "source_File_name",
                "target_File_name",
                "source_recist_diameter_mm",
                "target_recist_diameter_mm",
            ]
        )
        n = 0
        for track in sorted(members):
            ordered = sorted(
                members[track], key=lambda r: (r.study_index, r.series_id, r.key_slice)
            )
            for a, b in itertools.pairwise(ordered):
                for s, t in ((a, b), (b, a)):
                    n += 1
                    writer.writerow(
                        [
                            f"{n:05d}",
                            s.file_name,
                            t.file_name,
                            f"{s.long_axis_mm:.2f};{s.short_axis_mm:.2f}",
                            f"{t.long_axis_mm:.2f};{t.short_axis_mm:.2f}",
                        ]
                    )
    os.replace(tmp, out)
    return out


# ---- SYNTHETIC PACS export: JSON Lines bookmarks ------------------------------------------------
