"""Tests of the DL_info.csv parser against the real DeepLesion files and broken copies of them."""

from __future__ import annotations

import csv
import dataclasses
import math
import random
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from lesionkg.core.errors import InvalidInputError, Problem
from lesionkg.core.records import LesionRecord, lesion_id_of, patient_id_of, study_id_of
from lesionkg.loaders.deeplesion import COLUMNS, RejectedRow, parse_dl_info, write_rejects
from lesionkg.loaders.deeplesion_rows import RowParser

DATA = Path(__file__).resolve().parents[3] / "shared/data/deeplesion"
VAL = DATA / "dl_info/DL_info_val.csv"
TRAIN_PARTIAL = DATA / "dl_info/DL_info_train_partial.csv"

# No skip when the data is missing: like every test here, these fail loudly (file not found).


# --- helpers -------------------------------------------------------------------------------------


def read_rows(path: Path) -> list[list[str]]:
    """Header and data rows, as cells."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        return list(csv.reader(f))


def write_rows(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    return path


def col(name: str) -> int:
    return COLUMNS.index(name)


def split_items(path: Path) -> tuple[list[LesionRecord], list[RejectedRow]]:
    records: list[LesionRecord] = []
    rejects: list[RejectedRow] = []
    for item in parse_dl_info(path):
        (records if isinstance(item, LesionRecord) else rejects).append(item)
    return records, rejects


def only_reject(path: Path) -> RejectedRow:
    _, rejects = split_items(path)
    assert len(rejects) == 1, rejects
    return rejects[0]


def file_error(path: Path) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as info:
        list(parse_dl_info(path))
    assert str(path) in str(info.value)
    return info.value


@pytest.fixture(scope="module")
def val_rows() -> list[list[str]]:
    return read_rows(VAL)


@pytest.fixture(scope="module")
def val_records() -> list[LesionRecord]:
    records, rejects = split_items(VAL)
    assert rejects == []
    return records


@pytest.fixture
def small(val_rows: list[list[str]]) -> list[list[str]]:
    """Header and the first 3 rows of val (lines 2-4; rows 1-2 share patient 2's study 1)."""
    return [list(row) for row in val_rows[:4]]


# --- the real files -----------------------------------------------------------------------------


def test_val_parses_completely(val_records: list[LesionRecord]) -> None:
    assert len(val_records) == 4889
    assert len({r.patient_id for r in val_records}) == 703
    assert len({r.study_id for r in val_records}) == 1599
    assert len({r.lesion_id for r in val_records}) == 4889
    assert {r.split for r in val_records} == {"val"}
    assert [r.source_line for r in val_records] == list(range(2, 4891))


def test_val_type_counts_equal_pandas(val_records: list[LesionRecord]) -> None:
    expected = pd.read_csv(VAL)["Coarse_lesion_type"].value_counts().to_dict()
    assert Counter(r.coarse_type for r in val_records) == expected


def test_nan_age_becomes_none(val_records: list[LesionRecord]) -> None:
    frame = pd.read_csv(VAL)
    assert frame["Patient_age"].isna().sum() == 1
    (record,) = [r for r in val_records if r.age_years is None]
    assert record.file_name == "000014_01_01_104.png"
    assert record.source_line == 27


def test_first_val_row_every_field(val_records: list[LesionRecord]) -> None:
    coords = (238.314, 261.228, 235.858, 268.594, 240.36, 265.729, 234.222, 262.865)
    # Long axis (238.314, 261.228)-(235.858, 268.594), short (240.36, 265.729)-(234.222, 262.865),
    # pixel spacing 0.859375 mm in x and y.
    long_mm = math.sqrt((2.456 * 0.859375) ** 2 + (7.366 * 0.859375) ** 2)  # 6.67275 mm
    short_mm = math.sqrt((6.138 * 0.859375) ** 2 + (2.864 * 0.859375) ** 2)  # 5.82080 mm
    expected = LesionRecord(
        lesion_id="DL-f9e87b1297b54423",
        patient_id="000002",
        study_id="000002_01",
        study_index=1,
        series_id=1,
        file_name="000002_01_01_162.png",
        key_slice=162,
        recist_px=coords,
        bbox_px=(229.222, 256.228, 245.36, 273.594),
        diameters_px=(7.76388, 6.77335),
        long_axis_mm=pytest.approx(long_mm, abs=1e-9),  # type: ignore[arg-type]
        short_axis_mm=pytest.approx(short_mm, abs=1e-9),  # type: ignore[arg-type]
        location=(0.437715, 0.573812, 0.609054),
        coarse_type=2,
        noisy=False,
        slice_range=(156, 168),
        spacing_mm=(0.859375, 0.859375, 5.0),
        image_size_px=(512, 512),
        window_hu=(-175.0, 275.0),
        sex="F",
        age_years=51.0,
        split="val",
        source_line=2,
    )
    assert val_records[0] == expected
    assert round(val_records[0].long_axis_mm, 4) == 6.6728
    assert round(val_records[0].short_axis_mm, 4) == 5.8208
    assert val_records[0].lesion_id == lesion_id_of("000002_01_01_162.png", coords)
    assert val_records[0].coarse_type_name == "abdomen"


def test_ids_follow_the_contract(val_records: list[LesionRecord]) -> None:
    for r in val_records:
        patient, study = (int(part) for part in r.file_name.split("_")[:2])
        assert r.lesion_id == lesion_id_of(r.file_name, r.recist_px)
        assert r.patient_id == patient_id_of(patient)
        assert r.study_id == study_id_of(patient, study)


def test_train_partial() -> None:
    records, rejects = split_items(TRAIN_PARTIAL)
    assert rejects == []
    assert len(records) == 716
    assert all(r.coarse_type is None and r.split == "train" for r in records)
    assert len({r.patient_id for r in records}) == 475
    assert records[0].age_years == 67.0  # written "67.0" in this file


def test_ids_do_not_depend_on_row_order(
    tmp_path: Path, val_rows: list[list[str]], val_records: list[LesionRecord]
) -> None:
    data = val_rows[1:]
    random.Random(7).shuffle(data)
    shuffled, rejects = split_items(write_rows(tmp_path / "shuffled.csv", [val_rows[0], *data]))
    assert rejects == []

    def by_id(records: list[LesionRecord]) -> dict[str, LesionRecord]:
        return {r.lesion_id: dataclasses.replace(r, source_line=0) for r in records}

    assert by_id(shuffled) == by_id(val_records)
    assert [r.lesion_id for r in shuffled] != [r.lesion_id for r in val_records]


def test_columns_in_another_order(tmp_path: Path, small: list[list[str]]) -> None:
    order = list(reversed(range(len(COLUMNS))))
    path = write_rows(tmp_path / "reordered.csv", [[row[i] for i in order] for row in small])
    records, rejects = split_items(path)
    assert rejects == []
    assert records == split_items(write_rows(tmp_path / "plain.csv", small))[0]


def test_inline_fast_path_accepts_every_real_row(
    monkeypatch: pytest.MonkeyPatch, val_records: list[LesionRecord]
) -> None:
    """The per-row fast path must not fall back to the slow, problem-collecting path."""
    calls = []
    slow = RowParser.parse

    def counting(self: RowParser, cells: list[str], line: int) -> object:
        calls.append(line)
        return slow(self, cells, line)

    monkeypatch.setattr(RowParser, "parse", counting)
    records, _ = split_items(VAL)
    assert calls == []
    assert records == val_records


def test_slow_path_builds_the_same_records(
    val_rows: list[list[str]], val_records: list[LesionRecord]
) -> None:
    parser = RowParser(str(VAL))
    slow = [parser.parse(cells, line) for line, cells in enumerate(val_rows[1:], start=2)]
    assert slow == val_records


# --- values the parser accepts ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value", "field", "expected"),
    [
        ("Patient_age", "", "age_years", None),
        ("Patient_age", "NaN", "age_years", None),
        ("Patient_age", "51.0", "age_years", 51.0),
        ("Patient_gender", "", "sex", None),
        ("Coarse_lesion_type", "-1", "coarse_type", None),
        ("Coarse_lesion_type", "02", "coarse_type", 2),
        ("Train_Val_Test", "3", "split", "test"),
        ("Possibly_noisy", "1", "noisy", True),
        ("Spacing_mm_px_", "0.8,0.8,2.5", "spacing_mm", (0.8, 0.8, 2.5)),
    ],
)
def test_accepted_variants(
    tmp_path: Path, small: list[list[str]], column: str, value: str, field: str, expected: object
) -> None:
    for row in small[1:]:  # all rows of the patient, so age and sex stay consistent
        row[col(column)] = value
    records, rejects = split_items(write_rows(tmp_path / "ok.csv", small))
    assert rejects == []
    assert getattr(records[0], field) == expected


def test_seven_digit_patient(tmp_path: Path, small: list[list[str]]) -> None:
    small[1][col("Patient_index")] = "1234567"
    small[1][col("File_name")] = "1234567_01_01_162.png"
    records, rejects = split_items(write_rows(tmp_path / "wide.csv", small))
    assert rejects == []
    assert (records[0].patient_id, records[0].study_id) == ("1234567", "1234567_01")


def test_multiline_record_keeps_line_numbers(tmp_path: Path, small: list[list[str]]) -> None:
    small[1][col("Patient_gender")] = "F\nF"  # a quoted cell spanning two physical lines
    items = list(parse_dl_info(write_rows(tmp_path / "multi.csv", small)))
    assert isinstance(items[0], RejectedRow)
    assert items[0].line == 2
    assert items[0].problems[0].column == "Patient_gender"
    assert [item.source_line for item in items[1:]] == [4, 5]  # type: ignore[union-attr]


def test_blank_lines_are_skipped(tmp_path: Path, small: list[list[str]]) -> None:
    path = tmp_path / "blank.csv"
    lines = VAL.read_text(encoding="utf-8").splitlines(keepends=True)[:4]
    path.write_text(lines[0] + lines[1] + "\n" + lines[2] + lines[3] + "\n\n", encoding="utf-8")
    records, rejects = split_items(path)
    assert rejects == []
    assert [r.source_line for r in records] == [2, 4, 5]


def test_parse_streams() -> None:
    items = parse_dl_info(VAL)
    assert iter(items) is items
    assert isinstance(next(items), LesionRecord)
    items.close()  # type: ignore[attr-defined]


# --- rejected rows ------------------------------------------------------------------------------


#: Where a bad cell's problem is reported when that is not the cell's own column.
PROBLEM_COLUMN = {
    ("Key_slice_index", "163"): "File_name",  # the name no longer agrees with the indices
    ("Slice_range", "100, 150"): "Key_slice_index",  # the key slice falls outside the range
}


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("Patient_index", "abc", "expected a non-negative integer, got 'abc'"),
        ("Series_ID", "-1", "expected a non-negative integer, got '-1'"),
        (
            "Measurement_coordinates",
            "238.314, 261.228, 235.858, 268.594, 240.36, 265.729",
            "expected 8 comma-separated numbers, got 6",
        ),
        (
            "Measurement_coordinates",
            "238.314, 261.228, 235.858, 268.594, 240.36, x, 234.222, 262.865",
            "'x' is not a number",
        ),
        ("Measurement_coordinates", "", "expected 8 comma-separated numbers, got an empty cell"),
        ("Bounding_boxes", "229.222, nan, 245.36, 273.594", "expected 4 finite numbers"),
        ("Bounding_boxes", "229.222, 256.228, 229.222, 273.594", "x1 < x2 and y1 < y2"),
        ("Lesion_diameters_Pixel_", "7.76388, 6.77335, 1", "expected 2 comma-separated numbers"),
        ("Lesion_diameters_Pixel_", "6.77335, 7.76388", "long >= short"),
        ("Lesion_diameters_Pixel_", "8.5, 6.77335", "expected 7.7647, 6.7733 (the lengths"),
        ("Normalized_lesion_location", "0.437715, 1.5, 0.609054", "3 numbers in [0, 1]"),
        ("Coarse_lesion_type", "9", "expected -1 (unlabelled) or a type code 1..8, got '9'"),
        ("Coarse_lesion_type", "two", "expected -1 (unlabelled) or a type code 1..8"),
        ("Possibly_noisy", "yes", "expected 0 or 1, got 'yes'"),
        ("Slice_range", "168, 156", "0 <= first <= last"),
        ("Slice_range", "156.0, 168", "'156.0' is not an integer"),
        ("Slice_range", "100, 150", "expected a slice within Slice_range 100..150, got 162"),
        ("Spacing_mm_px_", "0.859375, 0, 5", "expected 3 spacings > 0 mm"),
        ("Spacing_mm_px_", "0.859375, inf, 5", "expected 3 finite numbers"),
        ("Image_size", "512", "expected 2 comma-separated integers, got 1"),
        ("DICOM_windows", "275, -175", "min < max"),
        ("Patient_gender", "female", "expected M, F or an empty cell, got 'female'"),
        ("Patient_age", "131", "expected an age in [0, 130] years, got '131'"),
        ("Patient_age", "old", "expected an age in years (or NaN), got 'old'"),
        ("Train_Val_Test", "4", "expected 1 (train), 2 (val) or 3 (test), got '4'"),
        ("Key_slice_index", "163", "expected '000002_01_01_163.png' (from Patient_index"),
        ("File_name", "000002_01_01_162.jpg", "expected '000002_01_01_162.png'"),
        ("File_name", "0000002_01_01_162.png", "expected '000002_01_01_162.png'"),
    ],
)
def test_bad_cell(
    tmp_path: Path, small: list[list[str]], column: str, value: str, reason: str
) -> None:
    small[1][col(column)] = value
    path = write_rows(tmp_path / "bad.csv", small)
    reject = only_reject(path)
    assert reject.line == 2
    assert reject.row == dict(zip(COLUMNS, small[1], strict=True))
    (problem,) = reject.problems
    assert (problem.source, problem.line) == (str(path), 2)
    assert problem.column == PROBLEM_COLUMN.get((column, value), column)
    assert reason in problem.reason


def test_three_problems_are_all_reported(tmp_path: Path, small: list[list[str]]) -> None:
    small[2][col("Bounding_boxes")] = "1, 2, 3"
    small[2][col("Possibly_noisy")] = "2"
    small[2][col("Patient_age")] = "abc"
    reject = only_reject(write_rows(tmp_path / "three.csv", small))
    assert reject.line == 3
    assert [(p.line, p.column) for p in reject.problems] == [
        (3, "Bounding_boxes"),
        (3, "Possibly_noisy"),
        (3, "Patient_age"),
    ]
    assert "expected 4 comma-separated numbers, got 3" in reject.problems[0].reason


def test_wrong_field_count(tmp_path: Path, small: list[list[str]]) -> None:
    small[1] = small[1][:-1]
    small[3] = [*small[3], "x", "y"]
    _, rejects = split_items(write_rows(tmp_path / "fields.csv", small))
    short, long = rejects
    assert (short.line, long.line) == (2, 4)
    reason = "expected 18 comma-separated fields, got 17"
    assert short.problems == (Problem(str(tmp_path / "fields.csv"), 2, None, reason),)
    assert "Train_Val_Test" not in short.row
    assert long.row["_extra"] == "x,y"
    assert long.problems[0].reason == "expected 18 comma-separated fields, got 20 (extra: 'x,y')"


def test_duplicate_row(tmp_path: Path, small: list[list[str]]) -> None:
    small.append(list(small[1]))  # line 5 repeats line 2
    records, rejects = split_items(write_rows(tmp_path / "dup.csv", small))
    assert len(records) == 3
    (reject,) = rejects
    assert reject.line == 5
    assert [(p.line, p.column, p.reason) for p in reject.problems] == [
        (5, None, "duplicate of the row on line 2 (same File_name and Measurement_coordinates)")
    ]


def test_sex_conflict_within_a_patient(tmp_path: Path, small: list[list[str]]) -> None:
    small[3][col("Patient_gender")] = "M"  # patient 2 is F on lines 2 and 3
    reject = only_reject(write_rows(tmp_path / "sex.csv", small))
    assert reject.line == 4
    (problem,) = reject.problems
    assert problem.column == "Patient_gender"
    assert "expected 'F' as on line 2" in problem.reason
    assert "got 'M'" in problem.reason


def test_age_conflict_within_a_study(tmp_path: Path, small: list[list[str]]) -> None:
    small[2][col("Patient_age")] = "52"  # line 3, same study 000002_01 as line 2 (age 51)
    small[3][col("Patient_age")] = "60"  # line 4 is study 000002_02: any age is fine
    reject = only_reject(write_rows(tmp_path / "age.csv", small))
    assert reject.line == 3
    (problem,) = reject.problems
    assert problem.column == "Patient_age"
    assert problem.reason == "expected 51 as on line 2 for the same study (000002_01), got 52"


def test_rejected_rows_do_not_poison_later_rows(tmp_path: Path, small: list[list[str]]) -> None:
    small[1][col("Patient_gender")] = "M"
    small[1][col("Possibly_noisy")] = "?"  # line 2 is rejected, so line 3's F is the first seen
    records, rejects = split_items(write_rows(tmp_path / "first.csv", small))
    assert [r.line for r in rejects] == [2]
    assert [r.source_line for r in records] == [3, 4]


def test_write_rejects_round_trips(tmp_path: Path, small: list[list[str]]) -> None:
    small[1][col("Patient_age")] = "abc"
    small[1][col("Image_size")] = "512, 0"
    small[2] = [*small[2], "surplus"]
    _, rejects = split_items(write_rows(tmp_path / "in.csv", small))
    out = tmp_path / "in.rejects.csv"
    assert write_rejects(out, rejects) == 2
    with open(out, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["line", "column", "reason", *COLUMNS]
        written = list(reader)
    expected = [
        {
            "line": str(reject.line),
            "column": problem.column or "",
            "reason": problem.reason,
            **{name: reject.row.get(name, "") for name in COLUMNS},
        }
        for reject in rejects
        for problem in reject.problems
    ]
    assert written == expected
    assert [(w["line"], w["column"]) for w in written] == [
        ("2", "Image_size"),
        ("2", "Patient_age"),
        ("3", ""),
    ]
    assert written[0]["Measurement_coordinates"] == small[1][col("Measurement_coordinates")]


# --- file-level problems ------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    error = file_error(tmp_path / "nope.csv")
    assert error.problems == [Problem(str(tmp_path / "nope.csv"), None, None, "file not found")]


def test_directory(tmp_path: Path) -> None:
    assert "is a directory" in file_error(tmp_path).problems[0].reason


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    assert "file is empty (0 bytes)" in file_error(path).problems[0].reason


def test_header_only(tmp_path: Path, small: list[list[str]]) -> None:
    path = write_rows(tmp_path / "header.csv", [small[0], [], []])
    assert "no data rows" in file_error(path).problems[0].reason


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "image.csv"
    path.write_bytes((DATA / "images/000069_02_01_058.png").read_bytes()[:4096])
    (problem,) = file_error(path).problems
    assert "not a CSV text file" in problem.reason


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(",".join(COLUMNS).encode() + b"\n\xe9t\xe9\n")
    (problem,) = file_error(path).problems
    assert problem.line == 2
    assert "not a UTF-8 CSV text file (byte 0xe9" in problem.reason


def test_bad_bytes_after_the_sniffed_head(tmp_path: Path) -> None:
    path = tmp_path / "late.csv"
    lines = VAL.read_bytes().split(b"\n")[:400]  # about 100 KiB, beyond the 64 KiB sniff
    lines[350] = b"\xff" + lines[350]
    path.write_bytes(b"\n".join(lines) + b"\n")
    items = parse_dl_info(path)
    with pytest.raises(InvalidInputError) as info:
        for _ in items:
            pass
    (problem,) = info.value.problems
    assert (problem.source, problem.line) == (str(path), 351)


def test_broken_csv_names_the_line(tmp_path: Path, small: list[list[str]]) -> None:
    small[2][col("File_name")] = "x" * 200_000  # beyond the csv module's field size limit
    items = parse_dl_info(write_rows(tmp_path / "huge.csv", small))
    assert isinstance(next(items), LesionRecord)
    with pytest.raises(InvalidInputError) as info:
        next(items)
    (problem,) = info.value.problems
    assert problem.line == 3
    assert "malformed CSV (field larger than field limit" in problem.reason


def test_missing_and_unexpected_columns_in_one_error(
    tmp_path: Path, small: list[list[str]]
) -> None:
    drop = {col("Possibly_noisy"), col("Image_size")}
    rows = [[c for i, c in enumerate(row) if i not in drop] + ["x"] for row in small]
    rows[0][-1] = "Comment"
    error = file_error(write_rows(tmp_path / "columns.csv", rows))
    assert {(p.line, p.column) for p in error.problems} == {
        (1, "Comment"),
        (1, "Possibly_noisy"),
        (1, "Image_size"),
    }
    assert "column missing from the header" in str(error)


def test_repeated_column(tmp_path: Path, small: list[list[str]]) -> None:
    rows = [[*row, row[0]] for row in small]
    (problem,) = file_error(write_rows(tmp_path / "twice.csv", rows)).problems
    assert (problem.column, problem.reason) == (
        "File_name",
        "column appears more than once in the header",
    )


def test_other_csv_is_rejected_by_its_header() -> None:
    error = file_error(DATA / "dls/dls_valid_pairs.csv")
    assert {p.column for p in error.problems} >= set(COLUMNS)


def test_bom_and_crlf(tmp_path: Path) -> None:
    lines = VAL.read_text(encoding="utf-8").splitlines()[:4]
    path = tmp_path / "windows.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    records, rejects = split_items(path)
    assert rejects == []
    assert [r.source_line for r in records] == [2, 3, 4]


# --- the inline fast path against the problem-collecting slow path ------------------------------


def mutations(rng: random.Random, rows: list[list[str]]) -> list[list[str]]:
    """Real rows with random plausible and implausible edits, some rows repeated."""
    odd = ["", "nan", "NaN", "inf", "-1", "0", "1", "2.0", "1e400", " 5", "M", "x", "1,2", "-0"]
    out = []
    for row in rows:
        row = list(row)
        for _ in range(rng.choice((0, 0, 1, 1, 2))):
            i = rng.randrange(len(COLUMNS))
            kind = rng.random()
            if kind < 0.3:
                row[i] = rng.choice(rows)[i]  # another row's value for this column
            elif kind < 0.6:
                row[i] = rng.choice(odd)
            elif kind < 0.8 and "," in row[i]:
                parts = row[i].split(",")
                j = rng.randrange(len(parts))
                parts[j] = str(float(parts[j]) * rng.choice((0.5, 1.0001, -1.0, 100.0)))
                row[i] = ",".join(parts)
            else:
                row[i] = row[rng.randrange(len(COLUMNS))]  # another column's value
        out.append(row)
        if rng.random() < 0.05:
            out.append(list(rng.choice(out)))
    return out


@pytest.mark.parametrize("seed", range(5))
def test_fast_and_slow_paths_agree(tmp_path: Path, val_rows: list[list[str]], seed: int) -> None:
    rng = random.Random(seed)
    rows = mutations(rng, val_rows[1:400])
    path = write_rows(tmp_path / "mutated.csv", [val_rows[0], *rows])
    streamed = list(parse_dl_info(path))

    parser = RowParser(str(path))
    assert streamed == [parser.parse(cells, line) for line, cells in enumerate(rows, start=2)]
    kinds = Counter(type(item).__name__ for item in streamed)
    assert kinds["LesionRecord"] > 100
    assert kinds["RejectedRow"] > 50
