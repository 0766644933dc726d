"""SYNTHETIC PACS export: the cohort of :func:`~lesionkg.synthetic.cohort.write_synthetic_dl_info`
written as JSON Lines bookmarks (the :mod:`lesionkg.loaders.jsonl` format), one file per study,
with study dates, optional tracking UIDs of the true lesions, optional key-slice PNGs and
``SYNTHETIC.json``."""

from __future__ import annotations

import json
import math
import os
import sys
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from lesionkg.synthetic.cohort.drawing import Chunk, generate_chunk, group_starts, rank_in_group
from lesionkg.synthetic.cohort.images import ChunkImages, default_workers, volume_name
from lesionkg.synthetic.cohort.tables import (
    CHUNK_PATIENTS,
    DEFAULT_LESIONS_PER_STUDY,
    GENERATOR,
    IMAGES_DIR,
    VERSION,
    WINDOW_STRINGS,
    burden_mean_for,
)

BOOKMARKS_METADATA_NAME = "SYNTHETIC.json"
BOOKMARKS_FILE_PATTERN = "synthetic-{patient:06d}-{study:02d}.jsonl"
_PATIENT_KEY = "SYNTHETIC-{patient:06d}"
_STUDY_KEY = "SYNTHETIC-{patient:06d}-{study:02d}"
# A patient's first study falls on a day of 2012-2019 (whole days), each later one the generator's
# study interval later (the Exponential(0.3 years) gaps behind Patient_age), at least a day.
_FIRST_STUDY_EPOCH = date(2012, 1, 1)
_FIRST_STUDY_SPAN_DAYS = 8 * 365
_DAYS_PER_YEAR = 365.25
_STUDY_MINUTES = (7 * 60, 19 * 60)  # time of day of a study: a CT department's working hours
# Own random stream for study dates and times (second entropy word unused by every other stream
# of this module), so that the cohort's rows and images stay those of write_synthetic_dl_info.
_STUDY_TIME_STREAM = 20
# Tracking UIDs: "2.25." + the integer of a name-based UUID (ITU-T X.667 / DICOM PS3.5 B.2), so
# the same synthetic lesion gets the same UID in every run and different lesions different ones.
_TRACKING_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:lesionkg:synthetic:tracking-uid")
_AXIS_SHRINK = 1e-5  # first relative step when a rounded round lesion's short axis is too long

#: A bookmark's place: its JSON Lines file and 1-based line (``Bookmark.source`` is
#: ``str(file)`` and ``Bookmark.source_index`` the line when the file is read by that path).
BookmarkRef = tuple[Path, int]


@dataclass(frozen=True)
class SyntheticBookmarks:
    """Where a SYNTHETIC PACS export (JSON Lines bookmarks) was written, its size and its truth."""

    #: one JSON Lines file per study, in patient then study order
    files: tuple[Path, ...]
    patients: int
    studies: int
    bookmarks: int
    metadata_path: Path
    #: physical lesions (true tracks) bookmarked at least once
    lesions: int = 0
    seed: int = 0
    #: 16-bit PNG slices written under Images_png/ (key slices and neighbours); 0 without images
    images: int = 0
    #: true same-lesion pairs: consecutive bookmarks of each physical lesion (by study, then
    #: series), earlier first, one direction; a lesion bookmarked n times gives n - 1 pairs
    pairs: tuple[tuple[BookmarkRef, BookmarkRef], ...] = ()


def _study_times(chunk: Chunk, rng: np.random.Generator) -> list[str]:
    """ISO 8601 date and time (local, minutes) of every study row of the chunk's scene.

    Strictly increasing within a patient: the generator's study gaps (years, the ones its
    Patient_age steps come from) in whole days, at least one day apart.
    """
    sc = chunk.scene
    n_pat, n_st = len(sc.body_scale), len(sc.st_no)
    first_day = rng.integers(0, _FIRST_STUDY_SPAN_DAYS, n_pat)
    minute = rng.integers(_STUDY_MINUTES[0], _STUDY_MINUTES[1], n_st)
    step = np.where(
        sc.st_no == 1, 0, np.maximum(1, np.rint(sc.st_gap_years * _DAYS_PER_YEAR))
    ).astype(np.int64)
    cum = np.cumsum(step)
    first_study = group_starts(np.bincount(sc.st_pat, minlength=n_pat))
    day = first_day[sc.st_pat] + cum - cum[first_study][sc.st_pat]
    return [
        f"{(_FIRST_STUDY_EPOCH + timedelta(days=d)).isoformat()}T{m // 60:02d}:{m % 60:02d}:00"
        for d, m in zip(day.tolist(), minute.tolist(), strict=True)
    ]


def _g6(values: np.ndarray) -> list[float]:
    """Values rounded to 6 significant digits: the numbers of the cohort's DL_info.csv cells."""
    return [float(f"{v:.6g}") for v in values.ravel().tolist()]


def _axis_mm(points: list[float], sx: float, sy: float) -> float:
    # the JSON Lines reader's own formula: the file's lengths are what it computes
    return math.hypot((points[2] - points[0]) * sx, (points[3] - points[1]) * sy)


def _short_within_long(long_px: list[float], short_px: list[float], spacing: float) -> list[float]:
    """The short axis endpoints (px), pulled in about their midpoint until not longer than the long.

    A round lesion (short / long clipped to 1) has two equal axes; rounding the endpoints to 6
    significant digits can make the short one longer by ~1e-4 px, which the reader refuses.
    """
    long_mm = _axis_mm(long_px, spacing, spacing)
    short, shrink = short_px, _AXIS_SHRINK
    while _axis_mm(short, spacing, spacing) > long_mm:
        mx, my = (short_px[0] + short_px[2]) / 2, (short_px[1] + short_px[3]) / 2
        f = 1.0 - shrink
        short = [
            float(f"{mx + (short_px[0] - mx) * f:.6g}"),
            float(f"{my + (short_px[1] - my) * f:.6g}"),
            float(f"{mx + (short_px[2] - mx) * f:.6g}"),
            float(f"{my + (short_px[3] - my) * f:.6g}"),
        ]
        shrink *= 2
    return short


def _tracking_uid(name: str) -> str:
    return f"2.25.{uuid.uuid5(_TRACKING_UID_NAMESPACE, name).int}"


def _write_atomically(path: Path, text: str) -> None:
    # A watching ETL must never read half a file: write beside it (a name it does not match),
    # then rename, which is atomic within one file system.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="ascii")
    os.replace(tmp, path)


def _write_bookmark_files(
    out: Path,
    chunk: Chunk,
    study_time: list[str],
    tracking: str | None,
) -> tuple[list[Path], list[tuple[BookmarkRef, BookmarkRef]], int]:
    """Write one JSON Lines file per study of the chunk.

    ``tracking``: the cohort's part of the tracking UID names (None: no tracking fields).
    Returns the files (study order), the true same-lesion pairs and the number of lesions.
    """
    from lesionkg.core.records import COARSE_TYPES

    sc = chunk.scene
    n = len(chunk.patient)
    recist = _g6(chunk.recist)
    spacing = _g6(chunk.xy_spacing)
    loc = _g6(chunk.loc)
    study_row = sc.r_study  # rows come sorted by study (then series, then track)
    line_of = (rank_in_group(study_row) + 1).tolist()
    patient, study = chunk.patient.tolist(), chunk.study.tolist()
    series, key = chunk.series.tolist(), chunk.key.tolist()
    ctype, track = chunk.type.tolist(), chunk.track_no.tolist()
    # The series' display window (as DL_info.csv's DICOM_windows): the cues space needs it.
    windows = [[float(v) for v in WINDOW_STRINGS[w].split(",")] for w in chunk.window.tolist()]
    file_of: dict[int, Path] = {}
    lines: list[str] = []
    for i in range(n):
        p, s = patient[i], study[i]
        long_px = recist[8 * i : 8 * i + 4]
        short_px = _short_within_long(long_px, recist[8 * i + 4 : 8 * i + 8], spacing[i])
        obj: dict[str, Any] = {
            "patient": _PATIENT_KEY.format(patient=p),
            "study": _STUDY_KEY.format(patient=p, study=s),
            "study_time": study_time[int(study_row[i])],
            "series": str(series[i]),
            "image": f"{IMAGES_DIR}/{volume_name(p, s, series[i])}/{key[i]:03d}.png",
            "long_axis_px": long_px,
            "short_axis_px": short_px,
            "spacing_mm": [spacing[i], spacing[i]],
        }
        if ctype[i] > 0:  # train-split rows are unlabelled (-1), as in DL_info.csv
            obj["type"] = COARSE_TYPES[ctype[i]]
        obj["location"] = loc[3 * i : 3 * i + 3]
        obj["window_hu"] = windows[i]
        if tracking is not None:
            obj["tracking_uid"] = _tracking_uid(f"{tracking}/{p:06d}_L{track[i]:03d}")
            obj["tracking_id"] = f"Lesion {track[i]}"
        lines.append(json.dumps(obj) + "\n")
        if i + 1 == n or study_row[i + 1] != study_row[i]:
            path = out / BOOKMARKS_FILE_PATTERN.format(patient=p, study=s)
            _write_atomically(path, "".join(lines))
            file_of[int(study_row[i])] = path
            lines = []

    # consecutive bookmarks of each true lesion (patient, track), by study then series
    order = np.lexsort((chunk.series, chunk.study, chunk.track_no, chunk.patient))
    same = (chunk.patient[order[1:]] == chunk.patient[order[:-1]]) & (
        chunk.track_no[order[1:]] == chunk.track_no[order[:-1]]
    )
    pairs = [
        (
            (file_of[int(study_row[a])], line_of[a]),
            (file_of[int(study_row[b])], line_of[b]),
        )
        for a, b in zip(order[:-1][same].tolist(), order[1:][same].tolist(), strict=True)
    ]
    return list(file_of.values()), pairs, n - int(same.sum())


def write_synthetic_bookmarks(
    out_dir: str | Path,
    *,
    patients: int,
    seed: int = 0,
    first_patient_index: int = 1,
    images: bool = False,
    tracking_uids: bool = False,
    progress: bool = False,
) -> SyntheticBookmarks:
    """Write a SYNTHETIC PACS export: JSON Lines bookmarks, one file per study, into ``out_dir``.

    The cohort is the one :func:`write_synthetic_dl_info` writes for the same ``patients``,
    ``seed`` and ``first_patient_index`` (default ``lesions_per_study_mean``): the same patients,
    studies, series, key slices, axis endpoints, spacing, locations and types, so the truth is
    known. Every bookmark is one line in the format :mod:`lesionkg.loaders.jsonl` documents:

    - ``patient`` ``"SYNTHETIC-000001"`` (the 6-digit patient index), ``study``
      ``"SYNTHETIC-000001-02"`` (patient and 1-based study index), ``series`` the Series_ID
      (``"1"``, ``"2"``, ...);
    - ``study_time``: local ISO date and time to the minute; a patient's first study on a day of
      2012-2019, each later one the generator's study interval later (the gaps its Patient_age
      steps come from, ~Exponential with mean 0.3 years), in whole days, at least one day, so
      times strictly increase within a patient; 07:00-19:00;
    - ``image``: ``Images_png/{patient}_{study}_{series}/{key:03d}.png``, relative to the file's
      folder (``out_dir``), DeepLesion's layout;
    - ``long_axis_px``, ``short_axis_px`` (pixels, x right, y down) and ``location``: the
      DL_info.csv values (6 significant digits); where that rounding would make a round lesion's
      short axis longer than its long axis (by ~1e-4 px), the short axis is pulled in about its
      midpoint by the least step that fixes it; ``spacing_mm``: ``[x, y]``, x = y, mm per pixel;
    - ``type``: the coarse type's name for val/test patients; left out for train patients, whose
      DL_info.csv rows carry -1 (unlabelled);
    - with ``tracking_uids``: ``tracking_uid`` ``"2.25.<integer>"``, a name-based UUID of the true
      physical lesion, constant across its studies and distinct between lesions (and between
      calls with other ``seed``, ``first_patient_index`` or ``patients``, which make other
      lesions), and ``tracking_id`` ``"Lesion <n>"``, unique within the patient. About 5% of
      lesions are measured on two series of one study (thick and thin reconstructions): two
      bookmarks of one study then share a tracking UID, as in a real export.

    ``images``: also render the key slices and their neighbours (16-bit PNG, pixel = HU + 32768,
    DeepLesion's convention) exactly as ``write_synthetic_dl_info(images=True)`` does, under
    ``out_dir/Images_png/``; the files are then valid for :func:`read_jsonl_bookmarks` with its
    default options. Without images the ``image`` field still names the path the key slice would
    have (the field is required, and a lesion id is built from the path's last two components):
    read the files with ``allow_missing_images=True`` (``--allow-missing-images``), which imports
    the lesions without the image-derived fields. Placeholder PNGs would make the default options
    pass, but the ETL would then analyse blank images as CT; a missing image is the honest state.

    Files: ``synthetic-{patient:06d}-{study:02d}.jsonl`` (``BOOKMARKS_FILE_PATTERN``), each written
    to a hidden temporary name and renamed, so that a watching ETL never reads half a file; and
    ``SYNTHETIC.json`` (``"synthetic": true``, seed, counts, generator, the reading options).
    Files with other names in ``out_dir`` are left alone, so batches with disjoint patient
    indices (``first_patient_index``) can be added to one watched folder one after another; the
    metadata describes the last batch. Output is byte-identical for equal arguments (with the
    same NumPy and zlib, as for :func:`write_synthetic_dl_info`).

    Size and speed: ~7.3 bookmarks per patient (2.36 studies x 3.03 bookmarks; 7.0-7.5 by seed
    and size), so ~1,370 patients give ~10,000 bookmarks (seed 0: 10,058 in 3,214 files). Without
    images that takes ~1 s on tmpfs, ~4 s where creating a file costs ~1 ms. Time and memory grow
    linearly: the returned ``pairs`` hold one tuple per re-measurement.
    """
    if patients < 1:
        raise ValueError(f"patients must be >= 1, got {patients}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if first_patient_index < 0 or first_patient_index + patients - 1 > 999_999:
        raise ValueError("patient indices must fit the 6-digit file names (0..999999)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    burden_mean = burden_mean_for(DEFAULT_LESIONS_PER_STUDY)
    workers = default_workers()
    tracking = f"{seed}/{first_patient_index}/{patients}" if tracking_uids else None

    bar: Any = None
    img_bar: Any = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=patients, unit="patient", file=sys.stderr, desc="synthetic bookmarks")
        if images:
            img_bar = tqdm(total=0, unit="slice", file=sys.stderr, desc="images")
    files: list[Path] = []
    pairs: list[tuple[BookmarkRef, BookmarkRef]] = []
    n_rows = n_lesions = n_images = 0
    try:
        for chunk_no, start in enumerate(range(0, patients, CHUNK_PATIENTS)):
            n_pat = min(CHUNK_PATIENTS, patients - start)
            # the chunk streams of write_synthetic_dl_info: the same cohort, row for row
            rng = np.random.default_rng([seed, chunk_no])
            chunk = generate_chunk(rng, first_patient_index + start, n_pat, burden_mean)
            if images:
                renderer = ChunkImages(chunk, n_rows + 1, seed)
                if img_bar is not None:
                    img_bar.total += renderer.count()
                    img_bar.refresh()
                n_images += renderer.write(out / IMAGES_DIR, img_bar, workers)
            times = _study_times(chunk, np.random.default_rng([seed, _STUDY_TIME_STREAM, chunk_no]))
            chunk_files, chunk_pairs, lesions = _write_bookmark_files(out, chunk, times, tracking)
            files += chunk_files
            pairs += chunk_pairs
            n_rows += len(chunk.patient)
            n_lesions += lesions
            if bar is not None:
                bar.set_postfix_str(f"bookmarks={n_rows:,} studies={len(files):,}", refresh=False)
                bar.update(n_pat)
    finally:
        if bar is not None:
            bar.close()
        if img_bar is not None:
            img_bar.close()

    metadata = {
        "synthetic": True,
        "generator": GENERATOR,
        "version": VERSION,
        "format": "lesionkg JSON Lines bookmarks (lesionkg.loaders.jsonl), one file per study",
        "seed": seed,
        "patients": patients,
        "first_patient_index": first_patient_index,
        "studies": len(files),
        "bookmarks": n_rows,
        "lesions": n_lesions,
        "same_lesion_pairs": len(pairs),
        "files": BOOKMARKS_FILE_PATTERN,
        "tracking_uids": tracking_uids,
        "images": {
            "included": images,
            "key_slices_and_neighbours": n_images,
            "dir": IMAGES_DIR,
            "png": "16-bit grey, pixel = HU + 32768 (DeepLesion convention)",
            "renderer": "lesionkg.synthetic.phantom (SYNTHETIC CT phantom)",
        },
        "read_with": {"allow_missing_images": not images},
        "same_cohort_as": (
            f"write_synthetic_dl_info(patients={patients}, seed={seed}, "
            f"first_patient_index={first_patient_index})"
        ),
        "note": (
            "SYNTHETIC data, not real patients: a made-up PACS export generated by "
            "lesionkg.synthetic.cohort from seeded random distributions"
            + (", with CT images rendered from a synthetic phantom" if images else "")
            + ". Do not use for any clinical or scientific conclusion."
        ),
    }
    meta_path = out / BOOKMARKS_METADATA_NAME
    _write_atomically(meta_path, json.dumps(metadata, indent=2) + "\n")
    return SyntheticBookmarks(
        files=tuple(files),
        patients=patients,
        studies=len(files),
        bookmarks=n_rows,
        metadata_path=meta_path,
        lesions=n_lesions,
        seed=seed,
        images=n_images,
        pairs=tuple(pairs),
    )
