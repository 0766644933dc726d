"""The synthetic DL_info.csv generator: format, determinism, geometry, tracks, distributions."""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from lesionkg.loaders import synthetic
from lesionkg.loaders.synthetic import SyntheticCohort, write_synthetic_dl_info

REPO = Path(__file__).resolve().parents[2]
REAL_VAL_CSV = REPO.parent / "shared" / "data" / "deeplesion" / "dl_info" / "DL_info_val.csv"
FILE_NAME = re.compile(r"^(\d{6})_(\d{2})_(\d{2})_(\d{3})\.png$")
LIST_CELLS = {
    "Measurement_coordinates": 8,
    "Bounding_boxes": 4,
    "Lesion_diameters_Pixel_": 2,
    "Normalized_lesion_location": 3,
    "Slice_range": 2,
    "Spacing_mm_px_": 3,
    "Image_size": 2,
    "DICOM_windows": 2,
}


class Table:
    """The rows of a DL_info CSV as columns (numbers parsed)."""

    def __init__(self, path: Path) -> None:
        with path.open(newline="", encoding="ascii") as f:
            self.rows = list(csv.DictReader(f))
        self.n = len(self.rows)

        def col(name: str, kind: type = int) -> np.ndarray:
            return np.array([kind(r[name]) for r in self.rows])

        def lst(name: str) -> np.ndarray:
            return np.array([[float(x) for x in r[name].split(", ")] for r in self.rows])

        self.file_name = [r["File_name"] for r in self.rows]
        self.patient = col("Patient_index")
        self.study = col("Study_index")
        self.series = col("Series_ID")
        self.key = col("Key_slice_index")
        self.recist = lst("Measurement_coordinates")
        self.bbox = lst("Bounding_boxes")
        self.diam = lst("Lesion_diameters_Pixel_")
        self.loc = lst("Normalized_lesion_location")
        self.type = col("Coarse_lesion_type")
        self.noisy = col("Possibly_noisy")
        self.slice_range = lst("Slice_range")
        self.spacing = lst("Spacing_mm_px_")
        self.window = [r["DICOM_windows"] for r in self.rows]
        self.sex = [r["Patient_gender"] for r in self.rows]
        self.age = col("Patient_age", float)
        self.split = col("Train_Val_Test")


def _tracks(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="ascii") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> SyntheticCohort:
    return write_synthetic_dl_info(tmp_path_factory.mktemp("small"), patients=50, seed=0)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> SyntheticCohort:
    return write_synthetic_dl_info(tmp_path_factory.mktemp("cohort"), patients=300, seed=11)


@pytest.fixture(scope="module")
def table(cohort: SyntheticCohort) -> Table:
    return Table(cohort.csv_path)


def _files(c: SyntheticCohort) -> list[bytes]:
    return [p.read_bytes() for p in (c.csv_path, c.metadata_path, c.tracks_path)]


def test_same_seed_gives_identical_bytes(small: SyntheticCohort, tmp_path: Path) -> None:
    again = write_synthetic_dl_info(tmp_path, patients=50, seed=0)
    assert _files(again) == _files(small)
    assert again.csv_path.name == "DL_info_synthetic.csv"
    assert again.metadata_path.name == "DL_info_synthetic.json"
    assert again.tracks_path.name == "tracks_synthetic.csv"


def test_different_seed_gives_different_cohort(small: SyntheticCohort, tmp_path: Path) -> None:
    other = write_synthetic_dl_info(tmp_path, patients=50, seed=1)
    assert other.csv_path.read_bytes() != small.csv_path.read_bytes()
    assert other.tracks_path.read_bytes() != small.tracks_path.read_bytes()


def test_header_is_the_official_one(small: SyntheticCohort) -> None:
    real_header = REAL_VAL_CSV.read_text(encoding="ascii").splitlines()[0]
    header = small.csv_path.read_text(encoding="ascii").splitlines()[0]
    assert header == real_header
    assert tuple(header.split(",")) == synthetic.DL_INFO_COLUMNS
    assert len(synthetic.DL_INFO_COLUMNS) == 18


def test_rows_have_the_official_layout(small: SyntheticCohort) -> None:
    real_line = REAL_VAL_CSV.read_text(encoding="ascii").splitlines()[1]
    lines = small.csv_path.read_text(encoding="ascii").splitlines()[1:]
    # the 8 list cells are quoted like the real file: 16 quotes, ", " inside
    assert real_line.count('"') == 16
    assert all(line.count('"') == 16 for line in lines)
    for line in lines:
        row = next(csv.reader([line]))
        assert len(row) == 18
        cells = dict(zip(synthetic.DL_INFO_COLUMNS, row, strict=True))
        m = FILE_NAME.match(cells["File_name"])
        assert m, cells["File_name"]
        indices = ("Patient_index", "Study_index", "Series_ID", "Key_slice_index")
        assert [int(g) for g in m.groups()] == [int(cells[k]) for k in indices]
        for name, count in LIST_CELLS.items():
            parts = cells[name].split(", ")
            assert len(parts) == count, (name, cells[name])
            assert all(re.fullmatch(r"-?\d+(\.\d+)?", p) for p in parts), (name, cells[name])
        assert cells["Image_size"] == "512, 512"
        assert cells["Patient_gender"] in {"M", "F"}
        assert re.fullmatch(r"\d+", cells["Patient_age"])


def test_metadata_counts_match_the_csv(cohort: SyntheticCohort, table: Table) -> None:
    meta = json.loads(cohort.metadata_path.read_text(encoding="ascii"))
    studies = len(set(zip(table.patient.tolist(), table.study.tolist(), strict=True)))
    assert meta["synthetic"] is True
    assert meta["generator"] == "lesionkg.loaders.synthetic"
    assert meta["version"] == 1
    assert meta["seed"] == cohort.seed == 11
    assert meta["patients"] == cohort.patients == len(set(table.patient.tolist())) == 300
    assert meta["studies"] == cohort.studies == studies
    assert meta["lesions"] == cohort.lesions == table.n
    assert meta["note"].startswith("SYNTHETIC data, not real patients")


def test_recist_geometry_is_consistent(table: Table) -> None:
    r, sp = table.recist, table.spacing
    assert np.array_equal(sp[:, 0], sp[:, 1])
    long_px = np.hypot(r[:, 2] - r[:, 0], r[:, 3] - r[:, 1])
    short_px = np.hypot(r[:, 6] - r[:, 4], r[:, 7] - r[:, 5])
    long_mm, short_mm = long_px * sp[:, 0], short_px * sp[:, 0]
    assert np.allclose(long_mm, table.diam[:, 0] * sp[:, 0], rtol=0.01)
    assert np.allclose(short_mm, table.diam[:, 1] * sp[:, 0], rtol=0.01)
    assert np.all(table.diam[:, 0] >= table.diam[:, 1])
    assert np.all(long_px >= short_px - 0.005)  # 6-digit rounding of round lesions
    # perpendicular axes
    u = np.stack([r[:, 2] - r[:, 0], r[:, 3] - r[:, 1]], 1)
    v = np.stack([r[:, 6] - r[:, 4], r[:, 7] - r[:, 5]], 1)
    cos = np.abs((u * v).sum(1)) / (long_px * short_px)
    assert np.degrees(np.arccos(np.clip(cos, 0, 1))).min() > 85.0
    # the axes cross inside both segments: p1 + t u = q1 + s v with t, s in [0, 1]
    a = np.stack([u, -v], axis=2)
    t_s = np.linalg.solve(a, (r[:, 4:6] - r[:, 0:2])[:, :, None])[:, :, 0]
    assert np.all((t_s > 0.05) & (t_s < 0.95))
    # box = extent of the endpoints padded by 5 px, on the image
    xs, ys = r[:, 0::2], r[:, 1::2]
    extent = np.stack([xs.min(1) - 5, ys.min(1) - 5, xs.max(1) + 5, ys.max(1) + 5], 1)
    assert np.allclose(table.bbox, extent, atol=2e-3)
    assert table.bbox.min() >= 0 and table.bbox.max() <= 511


def test_long_axis_distribution(table: Table) -> None:
    long_mm = table.diam[:, 0] * table.spacing[:, 0]
    assert 12.0 <= np.median(long_mm) <= 20.0
    assert long_mm.min() < 5.0
    assert long_mm.max() > 100.0


def test_spacing_windows_and_slices(table: Table) -> None:
    real = Table(REAL_VAL_CSV)
    assert np.all((table.spacing[:, 0] >= 0.6) & (table.spacing[:, 0] <= 1.0))
    assert set(table.spacing[:, 2].tolist()) <= {0.625, 1.0, 1.25, 2.5, 5.0}
    assert set(table.window) <= set(real.window)
    lung = np.array([w.split(", ")[0] for w in table.window], float) < -500
    assert lung[table.type == 5].mean() > 0.6
    assert lung[np.isin(table.type, [2, 4, 6, 8])].mean() < 0.05
    lo, hi = table.slice_range[:, 0], table.slice_range[:, 1]
    assert np.all((lo >= 1) & (lo <= table.key) & (table.key <= hi))
    assert table.key.max() <= 999
    # one window and one spacing per series, like the real data
    per_series: dict[tuple[int, int, int], set[tuple[str, tuple[float, ...]]]] = defaultdict(set)
    for i in range(table.n):
        k = (table.patient[i], table.study[i], table.series[i])
        per_series[k].add((table.window[i], tuple(table.spacing[i])))
    assert all(len(v) == 1 for v in per_series.values())
    assert set(table.series.tolist()) <= {1, 2, 3, 4}


def test_cohort_sizes_follow_the_real_rates(table: Table) -> None:
    studies = len(set(zip(table.patient.tolist(), table.study.tolist(), strict=True)))
    patients = len(set(table.patient.tolist()))
    assert 2.0 <= studies / patients <= 2.8  # real val 2.27, full DeepLesion 2.39
    assert 2.6 <= table.n / studies <= 3.5  # real val 3.06
    assert table.noisy.sum() <= 0.01 * table.n


def test_lesions_per_study_mean_is_honoured(tmp_path: Path) -> None:
    c = write_synthetic_dl_info(tmp_path, patients=300, seed=2, lesions_per_study_mean=6.0)
    assert 5.2 <= c.lesions / c.studies <= 6.8


def test_no_duplicate_bookmarks(table: Table) -> None:
    keys = {(f, tuple(r)) for f, r in zip(table.file_name, table.recist.tolist(), strict=True)}
    assert len(keys) == table.n


def test_every_row_has_one_track(cohort: SyntheticCohort, table: Table) -> None:
    tracks = _tracks(cohort.tracks_path)
    assert [int(t["row_number"]) for t in tracks] == list(range(1, table.n + 1))
    assert [t["File_name"] for t in tracks] == table.file_name
    rows_of: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(tracks):
        rows_of[t["track_id"]].append(i)
    doubles = multi_study = 0
    for track_id, rows in rows_of.items():
        assert {table.patient[i] for i in rows} == {int(track_id[:6])}
        series = [(table.study[i], table.series[i]) for i in rows]
        assert len(set(series)) == len(series), track_id  # never two rows on one series
        studies = [table.study[i] for i in rows]
        doubles += len(set(studies)) < len(studies)
        multi_study += len(set(studies)) > 1
        assert len({table.type[i] for i in rows}) == 1  # a lesion keeps its type
    assert 0.02 <= doubles / len(rows_of) <= 0.09  # ~5% read on two series of one study
    assert multi_study / len(rows_of) > 0.15  # lesions persist across studies


def test_types_follow_the_split(table: Table) -> None:
    assert np.all(table.type[table.split == 1] == -1)
    assert np.all((table.type[table.split != 1] >= 1) & (table.type[table.split != 1] <= 8))
    split_of: dict[int, set[int]] = defaultdict(set)
    for p, s in zip(table.patient.tolist(), table.split.tolist(), strict=True):
        split_of[p].add(s)
    assert all(len(s) == 1 for s in split_of.values())
    shares = np.bincount([next(iter(s)) for s in split_of.values()], minlength=4)[1:] / 300
    assert 0.6 <= shares[0] <= 0.8 and shares[1] > 0.07 and shares[2] > 0.07


def test_patient_sex_and_age(table: Table) -> None:
    sex_of: dict[int, set[str]] = defaultdict(set)
    age_of: dict[tuple[int, int], set[float]] = defaultdict(set)
    for i in range(table.n):
        sex_of[table.patient[i]].add(table.sex[i])
        age_of[(table.patient[i], table.study[i])].add(table.age[i])
    assert all(len(s) == 1 for s in sex_of.values())
    assert all(len(a) == 1 for a in age_of.values())
    last: dict[int, tuple[int, float]] = {}
    for (patient, study), ages in sorted(age_of.items()):
        age = next(iter(ages))
        if patient in last:
            assert last[patient][0] == study - 1  # studies numbered 1..n
            assert age >= last[patient][1]
        else:
            assert study == 1
        last[patient] = (study, age)
    assert np.all((table.age >= 5) & (table.age <= 99))


def test_chunks_join_seamlessly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(synthetic, "_CHUNK_PATIENTS", 7)
    c = write_synthetic_dl_info(tmp_path, patients=30, seed=4, first_patient_index=999_970)
    t = Table(c.csv_path)
    assert sorted(set(t.patient.tolist())) == list(range(999_970, 1_000_000))
    assert np.all(np.diff(t.patient) >= 0)
    tracks = _tracks(c.tracks_path)
    assert [int(r["row_number"]) for r in tracks] == list(range(1, t.n + 1))
    assert c.lesions == t.n


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_synthetic_dl_info(tmp_path, patients=0)
    with pytest.raises(ValueError):
        write_synthetic_dl_info(tmp_path, patients=10, first_patient_index=999_995)
    with pytest.raises(ValueError):
        write_synthetic_dl_info(tmp_path, patients=10, lesions_per_study_mean=1.0)


def test_progress_bar_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_synthetic_dl_info(tmp_path, patients=20, seed=0, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "20/20" in captured.err and "patient" in captured.err


def test_formatter_matches_python_percent_g() -> None:
    rng = np.random.default_rng(0)
    v = np.concatenate(
        [np.exp(rng.uniform(np.log(1e-4), np.log(9e5), 20_000)), [1e-4, 0.1, 1, 5, 9.9999996]]
    )
    canvas = synthetic._Canvas(len(v))
    canvas.g6_cells([v[:, None]])
    canvas.text("\n")
    assert canvas.render().decode().splitlines() == [f"{x:.6g}" for x in v.tolist()]


def test_synthetic_csv_parses_without_rejects(cohort: SyntheticCohort) -> None:
    from lesionkg.loaders.deeplesion import RejectedRow, parse_dl_info

    results = list(parse_dl_info(cohort.csv_path))
    rejected = [r for r in results if isinstance(r, RejectedRow)]
    assert rejected == []
    assert len(results) == cohort.lesions
