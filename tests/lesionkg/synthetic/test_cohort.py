"""The synthetic DL_info.csv generator: format, determinism, geometry, tracks, distributions."""

from __future__ import annotations

import csv
import itertools
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from lesionkg.core.records import Bookmark
from lesionkg.synthetic import cohort as synthetic
from lesionkg.synthetic.bookmarks import SyntheticBookmarks, write_synthetic_bookmarks
from lesionkg.synthetic.cohort import SyntheticCohort, write_synthetic_dl_info, writer
from lesionkg.synthetic.cohort.canvas import Canvas, format_chunk
from lesionkg.synthetic.cohort.drawing import generate_chunk
from lesionkg.synthetic.cohort.images import ChunkImages
from lesionkg.synthetic.cohort.tables import DEFAULT_LESIONS_PER_STUDY, burden_mean_for

REPO = Path(__file__).resolve().parents[3]
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
    assert meta["generator"] == "lesionkg.synthetic.cohort"
    assert meta["version"] == 2
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
    monkeypatch.setattr(writer, "CHUNK_PATIENTS", 7)  # the writer reads it at call time
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
    canvas = Canvas(len(v))
    canvas.g6_cells([v[:, None]])
    canvas.text("\n")
    assert canvas.render().decode().splitlines() == [f"{x:.6g}" for x in v.tolist()]


def test_synthetic_csv_parses_without_rejects(cohort: SyntheticCohort) -> None:
    from lesionkg.loaders.deeplesion import RejectedRow, parse_dl_info

    results = list(parse_dl_info(cohort.csv_path))
    rejected = [r for r in results if isinstance(r, RejectedRow)]
    assert rejected == []
    assert len(results) == cohort.lesions


# ---- images ------------------------------------------------------------------------------------
IMAGED_PATIENTS, IMAGED_SEED = 6, 7


@pytest.fixture(scope="module")
def imaged(tmp_path_factory: pytest.TempPathFactory) -> SyntheticCohort:
    return write_synthetic_dl_info(
        tmp_path_factory.mktemp("imaged"),
        patients=IMAGED_PATIENTS,
        seed=IMAGED_SEED,
        images=True,
        ssbr_volumes=3,
        ssbr_matrix=64,
    )


@pytest.fixture(scope="module")
def truth(imaged: SyntheticCohort) -> list[dict[str, str]]:
    assert imaged.truth_path is not None
    with imaged.truth_path.open(newline="", encoding="ascii") as f:
        return list(csv.DictReader(f))


def _hu(path: Path) -> np.ndarray:
    from PIL import Image

    img = Image.open(path)
    assert img.mode == "I;16"
    return np.asarray(img, dtype=np.int32) - 32768


def _expected_slices(t: Table) -> set[str]:
    want = set()
    for f, k, (lo, hi) in zip(t.file_name, t.key.tolist(), t.slice_range.tolist(), strict=True):
        volume = f.rsplit("_", 1)[0]
        want.update(f"{volume}/{j:03d}.png" for j in (k - 1, k, k + 1) if lo <= j <= hi)
    return want


def test_images_are_the_key_slices_and_their_neighbours(imaged: SyntheticCohort) -> None:
    from lesionkg.loaders.images import find_key_slice

    t = Table(imaged.csv_path)
    root = imaged.csv_path.parent
    images = {
        p.relative_to(root / "Images_png").as_posix() for p in (root / "Images_png").rglob("*.png")
    }
    assert images == _expected_slices(t)
    assert all(p.is_dir() for p in (root / "Images_png").iterdir())  # only volume folders
    assert imaged.images == len(images)
    for f in t.file_name:
        found = find_key_slice(root, f)
        assert found is not None and found.parent.parent.name == "Images_png"
    some = _hu(root / "Images_png" / sorted(images)[0])
    assert some.shape == (512, 512)
    assert some.min() >= -1010 and some.max() < 3000
    meta = json.loads(imaged.metadata_path.read_text(encoding="ascii"))
    assert meta["images"]["included"] is True
    assert meta["images"]["key_slices_and_neighbours"] == len(images)
    assert meta["files"]["lesion_truth"] == "lesion_truth_synthetic.csv"
    assert "images rendered from a synthetic phantom" in meta["note"]


def test_truth_covers_every_row(imaged: SyntheticCohort, truth: list[dict[str, str]]) -> None:
    t = Table(imaged.csv_path)
    tracks = _tracks(imaged.tracks_path)
    assert [r["File_name"] for r in truth] == t.file_name
    assert [r["track_id"] for r in truth] == [r["track_id"] for r in tracks]
    true_type = np.array([int(r["true_type"]) for r in truth])
    assert np.all((true_type >= 1) & (true_type <= 8))
    labelled = t.type != -1
    assert np.array_equal(true_type[labelled], t.type[labelled])
    assert (~labelled).any()  # unlabelled train rows still have a (hidden) true type


def test_every_lesion_sits_in_its_organ(truth: list[dict[str, str]]) -> None:
    from lesionkg.synthetic import phantom

    for r in truth:
        allowed = {phantom.LABEL_NAMES[k] for k in phantom.TYPE_ORGANS[int(r["true_type"])]}
        assert r["organ"] in allowed, r


def _lesion_r(recist: np.ndarray, xx: np.ndarray, yy: np.ndarray, scale: float = 1.0):
    """Normalised radius of the RECIST-shaped section (four quarter-ellipses)."""
    p1, p2, q1, q2 = recist[0:2], recist[2:4], recist[4:6], recist[6:8]
    u, v = p2 - p1, q2 - q1
    m = np.array([u, -v]).T
    t, s = np.linalg.solve(m, q1 - p1)
    c = p1 + t * u
    lu, lv = np.hypot(*u), np.hypot(*v)
    det = (u[0] * v[1] - u[1] * v[0]) / (lu * lv)
    dx, dy = xx - c[0], yy - c[1]
    a = (dx * v[1] / lv - dy * v[0] / lv) / det
    b = (u[0] / lu * dy - u[1] / lu * dx) / det
    ea = np.where(a < 0, t * lu, (1 - t) * lu) * scale
    eb = np.where(b < 0, s * lv, (1 - s) * lv) * scale
    return np.hypot(a / ea, b / eb), c


def _renderer(cohort: SyntheticCohort) -> ChunkImages:
    """The cohort's (single) chunk, regenerated, and its image renderer."""
    chunk = generate_chunk(
        np.random.default_rng([cohort.seed, 0]),
        1,
        cohort.patients,
        burden_mean_for(DEFAULT_LESIONS_PER_STUDY),
    )
    format_chunk(chunk, 1)
    return ChunkImages(chunk, 1, cohort.seed)


def test_lesions_show_their_type_against_their_organ(
    imaged: SyntheticCohort, truth: list[dict[str, str]]
) -> None:
    from lesionkg.synthetic import phantom as P

    t = Table(imaged.csv_path)
    root = imaged.csv_path.parent / "Images_png"
    renderer = _renderer(imaged)
    yy, xx = np.mgrid[0:512, 0:512]
    checked = 0
    appearance = {  # core HU range, expected sign of (lesion - surrounding organ)
        "lung_nodule": ((0, 60), +1),
        "liver_hypodense": ((-10, 50), -1),
        "liver_rim": ((-10, 60), -1),
        "kidney_cyst": ((-15, 35), -1),
        "kidney_solid": ((15, 65), -1),
        "bone_lytic": ((30, 160), -1),
        "bone_sclerotic": ((550, 950), +1),
        "node": ((15, 65), +1),
        "soft_tissue": ((5, 60), 0),
    }
    for study, group, _slices in renderer.slices:
        vol = renderer.volume(study, group)
        for i in vol.rows.tolist():
            k = int(t.key[i])
            img = renderer.render(vol, k)
            hu = _hu(root / vol.name / f"{k:03d}.png")
            assert np.array_equal(hu, np.clip(np.rint(img.hu), -32768, 32767))  # same pixels
            r, _ = _lesion_r(t.recist[i], xx, yy)
            (lo, hi), sign = appearance[truth[i]["appearance"]]
            organ = P.LABEL_NAMES.index(truth[i]["organ"])
            others = (img.lesions > 0) & (img.lesions != i + 1)
            core = (r < 0.5) & ~others
            ring = (r > 1.3) & (r < 2.0) & (img.labels == organ) & ~others & (img.lesions != i + 1)
            if core.sum() < 6 or ring.sum() < 15:
                continue  # tiny lesions (blurred) or ones that fill their organ
            checked += 1
            assert lo <= hu[core].mean() <= hi, (truth[i], hu[core].mean())
            if sign == 0:  # soft tissue: brighter than fat, darker than muscle
                sign = +1 if organ == P.FAT else -1
            if truth[i]["appearance"] == "node":  # its own halo of fat around it
                ring = (r > 1.05) & (r < 1.2) & ~others
            assert sign * (hu[core].mean() - np.median(hu[ring])) > 10, truth[i]
    assert checked >= 0.5 * t.n


def test_long_axis_matches_the_image(imaged: SyntheticCohort, truth: list[dict[str, str]]) -> None:
    """Lesions with a strong edge (lung nodules, nodes in fat): the extent along the long axis,
    read from the PNG at the half-way HU, is the row's long axis within 1.5 px."""
    t = Table(imaged.csv_path)
    root = imaged.csv_path.parent / "Images_png"
    yy, xx = np.mgrid[0:512, 0:512]
    checked = 0
    for i, row in enumerate(truth):
        if row["appearance"] not in ("lung_nodule", "node") or t.diam[i, 1] < 6:
            continue
        hu = _hu(root / (row["File_name"][:-8] + "/" + row["File_name"][-7:])).astype(float)
        r, c = _lesion_r(t.recist[i], xx, yy)
        inside = np.median(hu[r < 0.5])
        outside = np.median(hu[(r > 1.05) & (r < 1.2)])  # lung, or the node's fat halo
        if abs(inside - outside) < 100:
            continue
        p1, p2 = t.recist[i, 0:2], t.recist[i, 2:4]
        d = (p2 - p1) / np.hypot(*(p2 - p1))
        s = np.linspace(-3.0, np.hypot(*(p2 - p1)) + 3.0, 2000)
        px, py = p1[0] + s * d[0], p1[1] + s * d[1]
        x0, y0 = np.floor(px).astype(int), np.floor(py).astype(int)
        fx, fy = px - x0, py - y0
        v = (
            hu[y0, x0] * (1 - fx) * (1 - fy)
            + hu[y0, x0 + 1] * fx * (1 - fy)
            + hu[y0 + 1, x0] * (1 - fx) * fy
            + hu[y0 + 1, x0 + 1] * fx * fy
        )
        above = (v - (inside + outside) / 2) * np.sign(inside - outside) > 0
        # the run of samples around the crossing point of the axes
        mid = int(np.argmin(np.abs(s - np.hypot(*(c - p1)))))
        assert above[mid]
        if above[: mid + 1].all() or above[mid:].all():
            continue  # the lesion touches something as bright (a rib, say): no edge to read
        lo = mid - int(np.argmin(above[mid::-1]))
        hi = mid + int(np.argmin(above[mid:]))
        extent = s[hi - 1] - s[lo + 1]
        assert abs(extent - t.diam[i, 0]) < 1.5, (row, extent, t.diam[i, 0])
        checked += 1
    assert checked >= 5


def test_tracks_keep_their_place_and_grow_or_shrink(
    imaged: SyntheticCohort, truth: list[dict[str, str]]
) -> None:
    t = Table(imaged.csv_path)
    root = imaged.csv_path.parent / "Images_png"
    rows_of: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(truth):
        rows_of[r["track_id"]].append(i)
    moved = 0
    for rows in rows_of.values():
        if len({t.study[i] for i in rows}) < 2:
            continue
        place = []
        for i in rows:
            r = truth[i]
            # image position minus the study's positioning offset: the body frame
            place.append(
                (
                    float(r["center_x"]) - float(r["shift_x"]),
                    float(r["center_y"]) - float(r["shift_y"]),
                )
            )
            assert (r["body_x"], r["body_y"], r["body_z"]) == (
                truth[rows[0]]["body_x"], truth[rows[0]]["body_y"], truth[rows[0]]["body_z"]
            )  # fmt: skip
        place = np.array(place)
        assert np.abs(place - place[0]).max() < 1.0
        # and in the images: the same offset from the body's left and front edges
        edges = []
        for i in rows:
            name = truth[i]["File_name"]
            hu = _hu(root / name[:-8] / name[-7:])
            x, y = round(float(truth[i]["center_x"])), round(float(truth[i]["center_y"]))
            # the body's left edge on the lesion's rows, its front edge on the lesion's columns
            left = np.flatnonzero((hu[y - 3 : y + 4] > -400).any(axis=0))[0]
            front = np.flatnonzero((hu[:, x - 3 : x + 4] > -400).any(axis=1))[0]
            edges.append((float(truth[i]["center_x"]) - left, float(truth[i]["center_y"]) - front))
        edges = np.array(edges)
        assert np.abs(edges - edges[0]).max() < 4.0, edges
        moved += 1
        sizes = t.diam[rows, 0] * t.spacing[rows, 0]
        assert sizes.min() > 0
    assert moved >= 3


def test_images_are_reproducible(tmp_path: Path) -> None:
    a = write_synthetic_dl_info(
        tmp_path / "a", patients=2, seed=3, images=True, ssbr_volumes=1, ssbr_matrix=32
    )
    b = write_synthetic_dl_info(  # one process instead of the default pool: the same bytes
        tmp_path / "b", patients=2, seed=3, images=True, ssbr_volumes=1, ssbr_matrix=32, workers=1
    )
    files_a = sorted(
        p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()
    )
    files_b = sorted(
        p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file()
    )
    assert files_a == files_b and len(files_a) > 10 and a.images == b.images > 0
    for f in files_a:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    # the rows never depend on the images
    plain = write_synthetic_dl_info(tmp_path / "c", patients=2, seed=3)
    assert plain.csv_path.read_bytes() == a.csv_path.read_bytes()
    assert plain.tracks_path.read_bytes() == a.tracks_path.read_bytes()
    assert not (tmp_path / "c" / "Images_png").exists() and plain.truth_path is None
    meta = json.loads(plain.metadata_path.read_text(encoding="ascii"))
    assert meta["images"]["included"] is False and "lesion_truth" not in meta["files"]


def test_ssbr_volumes_are_contiguous_and_span_the_body(imaged: SyntheticCohort) -> None:
    assert imaged.ssbr_metadata_path is not None
    meta = json.loads(imaged.ssbr_metadata_path.read_text(encoding="ascii"))
    root = imaged.csv_path.parent / "ssbr_volumes_synthetic"
    assert meta["synthetic"] is True and len(meta["volumes"]) == imaged.ssbr_volumes == 3
    names = [v["volume"] for v in meta["volumes"]]
    assert names == sorted(p.name for p in root.iterdir())
    assert names[0] == f"{IMAGED_PATIENTS + 1:06d}_01_01"  # numbered after the cohort
    lung_like, pelvis_like = [], []
    for v in meta["volumes"]:
        files = sorted(p.name for p in (root / v["volume"]).iterdir())
        assert files == [f"{k:03d}.png" for k in range(1, v["slices"] + 1)]
        assert 40 <= v["slices"] <= 80 and v["slice_spacing_mm"] == 5.0
        assert v["matrix"] == [64, 64] and 4.0 < v["pixel_spacing_mm"] < 8.0
        assert 0.3 <= v["z_first"] < v["z_last"] <= 0.95
        zs = np.linspace(v["z_first"], v["z_last"], v["slices"])
        for k, z in enumerate(zs, start=1):
            hu = _hu(root / v["volume"] / f"{k:03d}.png")
            assert hu.shape == (64, 64)
            body = hu > -400
            rows = np.flatnonzero(body.any(axis=1))
            cols = np.flatnonzero(body.any(axis=0))
            box = hu[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
            yy, xx = np.mgrid[-1 : 1 : box.shape[0] * 1j, -1 : 1 : box.shape[1] * 1j]
            inner = box[xx**2 + yy**2 < 0.7**2]  # well inside the body outline
            air = (inner < -600).mean()  # lungs (and little else)
            if 0.42 <= z <= 0.52:  # mid chest
                lung_like.append((air, inner.mean()))
            elif z > 0.78:  # pelvis
                pelvis_like.append((air, inner.mean()))
    assert lung_like and pelvis_like  # this seed covers both ends
    lung_air = np.array([a for a, _ in lung_like])
    pelvis_air = np.array([a for a, _ in pelvis_like])
    assert lung_air.min() > 0.2 and pelvis_air.max() < 0.05
    assert np.mean([m for _, m in lung_like]) < np.mean([m for _, m in pelvis_like]) - 100


def test_cli_writes_a_cohort_with_images(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from lesionkg.cli import main

    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(
        main, ["synth", "deeplesion", str(out), "--patients", "1", "--seed", "5"]
    )
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC cohort: 1 patients" in result.output
    assert any((out / "Images_png").rglob("*.png"))
    out2 = tmp_path / "cli2"
    args = [
        "synth",
        "deeplesion",
        str(out2),
        "--patients",
        "1",
        "--no-images",
        "--ssbr-volumes",
        "1",
    ]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert not (out2 / "Images_png").exists()
    assert (out2 / "ssbr_volumes_synthetic.json").is_file()


def test_true_pairs_link_consecutive_measurements_both_ways(small: SyntheticCohort) -> None:
    from lesionkg.loaders.pairs import read_same_lesion_pairs
    from lesionkg.synthetic.cohort import write_synthetic_pairs

    path = write_synthetic_pairs(small)
    pairs = read_same_lesion_pairs(path)
    sizes: dict[str, int] = {}
    for row in _tracks(small.tracks_path):
        sizes[row["track_id"]] = sizes.get(row["track_id"], 0) + 1
    assert len(pairs) == 2 * sum(n - 1 for n in sizes.values()) > 0
    directed = {(p.source_file_name, p.target_file_name) for p in pairs}
    assert all((b, a) in directed for a, b in directed)
    rows = _tracks(small.tracks_path)
    on_slice: dict[str, list[str]] = {}
    for row in rows:
        on_slice.setdefault(row["File_name"], []).append(row["track_id"])
    # where each key slice holds one lesion, both ends of a pair are one true track
    single = [
        p
        for p in pairs
        if len(on_slice[p.source_file_name]) == len(on_slice[p.target_file_name]) == 1
    ]
    assert len(single) > 0.9 * len(pairs)
    assert all(on_slice[p.source_file_name] == on_slice[p.target_file_name] for p in single)
    assert all(p.source_diameters_mm[0] >= p.source_diameters_mm[1] > 0 for p in pairs)


# ---- SYNTHETIC PACS export: JSON Lines bookmarks ----------------------------------------------
BOOKMARK_FILE = re.compile(r"^synthetic-(\d{6})-(\d{2})\.jsonl$")


def _read_all(result: SyntheticBookmarks, **options: bool) -> list[Bookmark]:
    from lesionkg.loaders.jsonl import read_jsonl_bookmarks

    return [b for path in result.files for b in read_jsonl_bookmarks(path, **options)]


def _export_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> SyntheticBookmarks:
    # the `small` cohort's arguments: its DL_info rows and tracks are the truth to compare with
    return write_synthetic_bookmarks(
        tmp_path_factory.mktemp("export"), patients=50, seed=0, tracking_uids=True
    )


@pytest.fixture(scope="module")
def exported(export: SyntheticBookmarks) -> list[Bookmark]:
    return _read_all(export, allow_missing_images=True)


def test_bookmark_files_read_back_with_the_returned_counts(
    export: SyntheticBookmarks, exported: list[Bookmark]
) -> None:
    assert len(exported) == export.bookmarks > export.studies > export.patients == 50
    assert len(export.files) == export.studies
    assert len({b.patient_key for b in exported}) == export.patients
    assert len({(b.patient_key, b.study_key) for b in exported}) == export.studies
    assert len({(b.tracking_uid) for b in exported}) == export.lesions
    assert len(export.pairs) == export.bookmarks - export.lesions
    # one study per file, in patient then study order, all lines of the file
    for path in export.files:
        assert path.parent == export.metadata_path.parent
        patient, study = BOOKMARK_FILE.fullmatch(path.name).groups()  # type: ignore[union-attr]
        keys = {(b.patient_key, b.study_key) for b in exported if b.source == str(path)}
        assert keys == {(f"SYNTHETIC-{patient}", f"SYNTHETIC-{patient}-{study}")}
    assert list(export.files) == sorted(export.files)


def test_bookmarks_are_the_dl_info_rows(small: SyntheticCohort, exported: list[Bookmark]) -> None:
    """Same seed and patients: the export holds exactly the cohort's rows, so the truth is known."""
    t = Table(small.csv_path)
    assert len(exported) == t.n
    names = ["/".join(Path(b.image.path).parts[-2:]) for b in exported]  # type: ignore[union-attr]
    assert names == [f"{f[:12]}/{f[13:]}" for f in t.file_name]
    assert all(Path(b.image.path).parts[-3] == "Images_png" for b in exported)  # type: ignore[union-attr]
    px = np.array([b.long_axis_px + b.short_axis_px for b in exported])  # type: ignore[operator]
    # the CSV's 6-digit values; only a round lesion's short axis may be pulled in by a rounding
    # step (rounding made it longer than the long axis)
    moved = (np.abs(px - t.recist) > 1e-9).any(axis=1)
    np.testing.assert_array_equal(px[:, :4], t.recist[:, :4])
    np.testing.assert_allclose(px, t.recist, atol=0.01)
    assert moved.mean() < 0.05
    assert (np.abs(t.diam[moved, 0] - t.diam[moved, 1]) < 0.01).all()
    np.testing.assert_array_equal([b.pixel_spacing_mm for b in exported], t.spacing[:, :2])
    np.testing.assert_array_equal([b.location for b in exported], t.loc)
    np.testing.assert_array_equal([b.series_key for b in exported], t.series.astype(str))
    assert [b.coarse_type or -1 for b in exported] == t.type.tolist()
    assert all(b.short_axis_mm <= b.long_axis_mm for b in exported)  # type: ignore[operator]


def test_tracking_uids_follow_the_true_lesions(
    small: SyntheticCohort, export: SyntheticBookmarks, exported: list[Bookmark]
) -> None:
    tracks = [row["track_id"] for row in _tracks(small.tracks_path)]
    uid_of: dict[str, set[str]] = defaultdict(set)
    for track, b in zip(tracks, exported, strict=True):
        uid_of[track].add(b.tracking_uid)  # type: ignore[arg-type]
    assert all(len(uids) == 1 for uids in uid_of.values())  # constant across studies
    uids = [next(iter(u)) for u in uid_of.values()]
    assert len(set(uids)) == len(uids) == export.lesions  # distinct between lesions
    assert all(re.fullmatch(r"2\.25\.(0|[1-9]\d*)", u) and len(u) <= 64 for u in uids)
    # the label is "Lesion <n>", one per lesion within the patient
    labels = {(b.patient_key, b.tracking_id, b.tracking_uid) for b in exported}
    assert len(labels) == len({(p, t) for p, t, _ in labels}) == export.lesions
    # a lesion seen in several studies: its bookmarks there share the UID
    assert any(len({b.study_key for b in exported if b.tracking_uid == u}) > 1 for u in uids)


def test_true_pairs_are_consecutive_bookmarks_of_one_lesion(
    export: SyntheticBookmarks, exported: list[Bookmark]
) -> None:
    at = {(b.source, b.source_index): b for b in exported}
    assert export.pairs
    for (file_a, line_a), (file_b, line_b) in export.pairs:
        a, b = at[(str(file_a), line_a)], at[(str(file_b), line_b)]
        assert a.tracking_uid == b.tracking_uid
        assert (a.study_datetime, a.series_key) < (b.study_datetime, b.series_key)  # type: ignore[operator]
    # each lesion's bookmarks form one chain
    ends = [ref for pair in export.pairs for ref in pair]
    assert len(set(export.pairs)) == len(export.pairs)
    assert all(ends.count(ref) <= 2 for ref in set(ends))


def test_study_times_increase_within_a_patient(exported: list[Bookmark]) -> None:
    from datetime import datetime

    time_of: dict[tuple[str, str], set[str]] = defaultdict(set)
    for b in exported:
        time_of[(b.patient_key, b.study_key)].add(b.study_datetime)  # type: ignore[arg-type]
    assert all(len(times) == 1 for times in time_of.values())  # one time per study
    by_patient: dict[str, list[datetime]] = defaultdict(list)
    for (patient, _study), times in sorted(time_of.items()):  # study keys sort by study index
        by_patient[patient].append(datetime.fromisoformat(next(iter(times))))
    gaps = []
    for times in by_patient.values():
        gaps += [(b - a).total_seconds() / 86400 for a, b in itertools.pairwise(times)]
    assert gaps and min(gaps) > 0.5  # at least about a day apart, strictly increasing
    assert 20 < float(np.median(gaps)) < 250  # follow-up months apart (mean 0.3 years)
    assert all(
        datetime(2012, 1, 1) <= t < datetime(2040, 1, 1) for ts in by_patient.values() for t in ts
    )


def test_bookmark_export_is_labelled_synthetic(
    export: SyntheticBookmarks, exported: list[Bookmark]
) -> None:
    assert all(BOOKMARK_FILE.fullmatch(p.name) for p in export.files)
    assert export.metadata_path.name == "SYNTHETIC.json"
    assert all(b.patient_key.startswith("SYNTHETIC-") for b in exported)
    assert all(b.study_key.startswith("SYNTHETIC-") for b in exported)
    meta = json.loads(export.metadata_path.read_text(encoding="ascii"))
    assert meta["synthetic"] is True
    assert "SYNTHETIC" in meta["note"]
    assert meta["generator"] == "lesionkg.synthetic.cohort"
    assert (meta["seed"], meta["patients"], meta["first_patient_index"]) == (0, 50, 1)
    assert (meta["studies"], meta["bookmarks"], meta["lesions"]) == (
        export.studies,
        export.bookmarks,
        export.lesions,
    )
    assert meta["read_with"] == {"allow_missing_images": True}
    assert meta["tracking_uids"] is True
    # nothing but the study files and the metadata
    assert sorted(p.name for p in export.metadata_path.parent.iterdir()) == sorted(
        [p.name for p in export.files] + ["SYNTHETIC.json"]
    )


def test_same_seed_gives_identical_bookmark_files(tmp_path: Path) -> None:
    a = write_synthetic_bookmarks(tmp_path / "a", patients=6, seed=4)
    b = write_synthetic_bookmarks(tmp_path / "b", patients=6, seed=4)
    assert _export_bytes(tmp_path / "a") == _export_bytes(tmp_path / "b")
    assert [p.name for p in a.files] == [p.name for p in b.files]
    write_synthetic_bookmarks(tmp_path / "c", patients=6, seed=5)
    assert _export_bytes(tmp_path / "a") != _export_bytes(tmp_path / "c")
    # without tracking_uids there are no tracking fields
    assert not any("tracking" in p.read_text() for p in a.files)
    # without images the files name where the key slices would be: the default options refuse
    # them, allow_missing_images reads them
    from lesionkg.core.errors import InvalidInputError
    from lesionkg.loaders.jsonl import read_jsonl_bookmarks

    with pytest.raises(InvalidInputError, match="image not found"):
        read_jsonl_bookmarks(a.files[0])
    assert len(_read_all(a, allow_missing_images=True)) == a.bookmarks


def test_later_batches_add_patients_beside_the_earlier(tmp_path: Path) -> None:
    first = write_synthetic_bookmarks(tmp_path, patients=3, seed=1)
    later = write_synthetic_bookmarks(tmp_path, patients=2, seed=1, first_patient_index=4)
    assert not set(first.files) & set(later.files)
    assert all(p.is_file() for p in first.files + later.files)
    keys = {b.patient_key for b in _read_all(later, allow_missing_images=True)}
    assert keys == {"SYNTHETIC-000004", "SYNTHETIC-000005"}


def test_bookmark_images_are_the_cohort_key_slices(tmp_path: Path) -> None:
    from lesionkg.loaders.jsonl import read_jsonl_bookmarks

    result = write_synthetic_bookmarks(tmp_path / "export", patients=1, seed=7, images=True)
    # the default options: every image exists and is a 16-bit grayscale PNG
    bookmarks = [b for path in result.files for b in read_jsonl_bookmarks(path)]
    assert len(bookmarks) == result.bookmarks > 1
    images = {Path(b.image.path) for b in bookmarks}  # type: ignore[union-attr]
    assert all(p.is_file() and p.is_relative_to(tmp_path / "export") for p in images)
    for b in bookmarks:
        assert b.image is not None
        hu = _hu(Path(b.image.path))
        x1, y1, x2, y2 = b.long_axis_px  # type: ignore[misc]
        assert hu.shape == (512, 512)
        assert -1100 < hu[int((y1 + y2) / 2), int((x1 + x2) / 2)] < 3000  # inside the body
    json_meta = json.loads(result.metadata_path.read_text(encoding="ascii"))
    assert json_meta["read_with"] == {"allow_missing_images": False}
    assert json_meta["images"]["key_slices_and_neighbours"] == result.images >= len(images)
    # the PNGs are write_synthetic_dl_info's, byte for byte
    write_synthetic_dl_info(tmp_path / "cohort", patients=1, seed=7, images=True)
    for p in images:
        assert (
            p.read_bytes()
            == (tmp_path / "cohort" / p.relative_to(tmp_path / "export")).read_bytes()
        )


def test_bookmark_export_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="patients"):
        write_synthetic_bookmarks(tmp_path, patients=0)
    with pytest.raises(ValueError, match="seed"):
        write_synthetic_bookmarks(tmp_path, patients=1, seed=-1)
    with pytest.raises(ValueError, match="6-digit"):
        write_synthetic_bookmarks(tmp_path, patients=2, first_patient_index=999_999)
