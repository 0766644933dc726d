"""SYNTHETIC DeepLesion-style cohort generator: made-up patients, never real data.

Writes a cohort in the exact official ``DL_info.csv`` format (18 columns, list cells quoted as
``"238.314, 261.228, ..."``, numbers with 6 significant digits) so that the demo runs on machines
without the real annotations and the benchmark can load a million lesions. Every value is drawn
from seeded random distributions; nothing is copied from a real patient. Output is byte-identical
for given arguments with the same NumPy and zlib (random streams and libm-level exp/log/sin/cos
are only guaranteed stable within a NumPy build; the CSV formatting itself is exact integer
arithmetic). The rows never depend on whether images are written.

Files written into ``out_dir``:

- ``DL_info_synthetic.csv``: the lesion rows.
- ``DL_info_synthetic.json``: metadata (``"synthetic": true``, seed, counts, whether images are
  included, a note).
- ``tracks_synthetic.csv``: ground truth ``row_number, File_name, track_id``; every row belongs to
  exactly one physical-lesion track (one measurement per study, except that ~5% of tracks are
  measured on two series of one study, as radiologists do on thick and thin reconstructions).
- With ``images=True``: ``Images_png/{patient}_{study}_{series}/{slice:03d}.png``, every row's key
  slice and its two neighbours within the Slice_range, rendered by
  :mod:`lesionkg.synthetic.phantom` (16-bit PNG, pixel = HU + 32768, the DeepLesion convention);
  every lesion present in the study is drawn (the volume's own rows at their key slice, rows of
  the study's other series and unmeasured track gaps at the track's z). Beside them
  ``lesion_truth_synthetic.csv``: per row the true coarse type (also for the unlabelled train
  rows), appearance, organ under the centre, centre and study offset in pixels, anatomical place
  and z.
- With ``ssbr_volumes=N``: ``ssbr_volumes_synthetic/{volume}/{slice:03d}.png``, N unlabelled
  volumes of 40-80 contiguous slices 5 mm apart from a random chest-to-pelvis range, 128 x 128,
  for self-supervised body-part regression, and ``ssbr_volumes_synthetic.json`` (z range, slice
  and pixel spacing per volume).

Distributions (figures measured on the real ``DL_info_val.csv``: 4,889 rows, 703 patients, 1,599
studies; the generator only keeps these summary figures):

- Studies per patient: P(1) = 0.53 (real 0.53), then a truncated geometric tail up to 20 studies
  tuned so the mean is 2.36 (real val 2.27, full DeepLesion 10,594 / 4,427 = 2.39).
- Lesion rows per study: birth-death process of lesion *tracks* per patient. A patient's burden
  ``lambda ~ Gamma(shape 1.4)``; lesions present at the first study ~ Poisson(lambda), each track
  survives to the next study with p = 0.65 and is re-measured there with p = 0.85, new lesions
  appear ~ Poisson(lambda * 0.35) per later study, so the number of tracks alive is stationary. A
  study with no measured lesion gets one new lesion (every real study has at least one bookmark).
  The mean is calibrated to ``lesions_per_study_mean`` (default 3.03; real 3.06) and the shape
  gives the real, roughly geometric count distribution (P(1) ~ 0.35, tail beyond 10).
- Coarse type mix (real val): bone .028, abdomen .205, mediastinum .165, liver .120, lung .265,
  kidney .053, soft tissue .070, pelvis .094. A lesion takes its patient's main type with p = 0.6
  (else an independent draw), so studies mix few types (1/2/3+ types: 54/29/17%, real 55/24/21%).
  Written for val/test rows; train rows carry -1 like every real train row.
- Lesion place per type: 1-3 component normal mixtures fitted by eye to the real per-type
  histograms (lungs and kidneys left/right, liver at x 0.30, pelvis at z 0.79, ...), restricted
  by rejection sampling to the lesion's organ in the patient's phantom anatomy (lung in lung,
  liver in liver, bone in cortex or marrow, kidney in kidney, mediastinal nodes in mediastinal
  fat, abdominal and pelvic lesions in the abdominal cavity, soft tissue in subcutaneous fat or
  muscle) at the track's z and half a slice above and below, so every lesion centre is inside
  its organ on its key slice. Mixture weights for bone (chest 0.68 / pelvis 0.32) and soft
  tissue (chest wall 0.50 / abdominal wall 0.15 / inguinal 0.35) compensate for the thin target
  organs. Resulting median x, y, z per type (real val in brackets): bone 0.50 0.68 0.51 (0.50
  0.63 0.54), abdomen 0.57 0.48 0.66 (0.53 0.50 0.64), mediastinum 0.50 0.48 0.43 (0.48 0.48
  0.45), liver 0.30 0.45 0.60 (0.27 0.45 0.60), lung right / left x 0.28 / 0.70, y 0.56, z 0.47
  (0.30 / 0.69, 0.58, 0.48), kidney 0.28 / 0.70, 0.61, 0.67 (0.29 / 0.68, 0.61, 0.66), soft
  tissue 0.45 0.35 0.55 (0.53 0.39 0.61), pelvis 0.49 0.47 0.79 (0.50 0.50 0.80).
  ``Normalized_lesion_location`` is the track's place plus per-read noise (sd 0.008), like an
  SSBR estimate.
- Long axis: lognormal per type with the real per-type medians (lung 12 mm ... pelvis 23 mm,
  overall median ~17.6 mm) and log-sd 0.66 (real pooled log-sd 0.72 includes the type spread),
  clipped to [2, 250] mm; short / long ~ Beta(4.6, 1.7) (real mean 0.73, sd 0.16). Across studies
  a track grows or shrinks by a per-track log trend N(0, 0.12) per study plus measurement noise.
- RECIST: long and short axes perpendicular within 3 degrees (real: 95% within 8 degrees), crossing
  at 20-80% of each axis (real 5-95%: 34-67%); bbox = endpoints' extent padded by exactly 5 px
  (as in every real row); ``Lesion_diameters_Pixel_`` = the axis lengths in pixels. A track is one
  physical lesion: its axis direction (sd 0.08 rad per read) and crossing fractions (sd 0.03 per
  read) are kept across studies, only its size changes.
- Pixel position from the track's place: cx = 34 + 454 x, cy = 82 + 348 y (real least-squares
  fit) plus a per-lesion offset (part of its anatomical place) and the study's positioning shift
  (which moves the whole body in the images).
- Series: each measurement uses the lung window (lung type 83%, bone 60%, else ~0%) or the
  soft-tissue window; a study has one series per window class used, and a class is sometimes
  split into a thick and a thin reconstruction (always when a lesion is read twice), giving
  1/2/3/4 series per study 66/29/4/0.2% (real 68/27/5/0.3%). Windows, like in the real data, are
  constant per series: soft tissue mostly ``-175, 275`` (also ``-160, 240`` ...), lung mostly
  ``-1500, 500`` (also ``-1400, 200`` ...).
- Spacing: x = y = FOV / 512 with common real FOVs (418, 500, 440, 400 ... mm), within [0.6, 1.0]
  mm, constant per study; z per series in {0.625, 1, 1.25, 2.5, 5} mm (real: 1 and 5 dominate).
  Image_size ``512, 512``. Key slice from the track's z (1,100 mm per unit of normalised z, the
  real slope); Slice_range = key slice +- 30 mm clipped to the series, overlapping ranges of one
  series merged (the real sub-volume rule).
- Patient: sex M 53% (real), constant; first age 5 + 90 Beta(3.0, 2.7) (real mean 52, sd 17);
  age constant within a study and non-decreasing across studies (gaps ~ Exponential(0.3 years)
  give the real 73% / 25% of +0 / +1 year steps). Split 70/15/15 by patient. Possibly_noisy 0.1%.

Rows are generated in vectorised chunks of patients and streamed to disk; memory stays bounded
whatever the cohort size.

Modules: :mod:`~lesionkg.synthetic.cohort.tables` (file layout, distributions),
:mod:`~lesionkg.synthetic.cohort.drawing` (a chunk's rows), :mod:`~lesionkg.synthetic.cohort.canvas`
(the CSV text), :mod:`~lesionkg.synthetic.cohort.images` (CT slices, SSBR volumes) and
:mod:`~lesionkg.synthetic.cohort.writer` (the files). :mod:`lesionkg.synthetic.bookmarks` writes
the same cohort as a SYNTHETIC PACS export instead: JSON Lines bookmarks (the
:mod:`lesionkg.loaders.jsonl` format), one file per study, with study dates, optional tracking UIDs
of the true lesions, optional key-slice PNGs and ``SYNTHETIC.json``.
"""

from lesionkg.synthetic.cohort.tables import (
    CSV_NAME,
    DL_INFO_COLUMNS,
    GENERATOR,
    IMAGES_DIR,
    METADATA_NAME,
    SSBR_DIR,
    SSBR_METADATA_NAME,
    TRACKS_NAME,
    TRUTH_NAME,
    VERSION,
)
from lesionkg.synthetic.cohort.writer import (
    PAIRS_NAME,
    SyntheticCohort,
    write_synthetic_dl_info,
    write_synthetic_pairs,
)

__all__ = [
    "CSV_NAME",
    "DL_INFO_COLUMNS",
    "GENERATOR",
    "IMAGES_DIR",
    "METADATA_NAME",
    "PAIRS_NAME",
    "SSBR_DIR",
    "SSBR_METADATA_NAME",
    "TRACKS_NAME",
    "TRUTH_NAME",
    "VERSION",
    "SyntheticCohort",
    "write_synthetic_dl_info",
    "write_synthetic_pairs",
]
