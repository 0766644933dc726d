"""Hostile and implausible input, reader by reader: every one is refused with an
InvalidInputError (never a traceback of another type) whose problem names the file, the line or
record, the field and the rule (:mod:`lesionkg.core.limits`).

The inputs are generated here, small: a PNG header that claims 15,000 x 15,000 pixels is 60 bytes,
not 450 MB. Real files (a DeepLesion row, a CT slice) are read in place and changed in a copy.
"""

from __future__ import annotations

import csv
import json
import os
import struct
import threading
import zlib
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import generate_uid

from lesionkg.core.errors import InvalidInputError, ModelError, Problem
from lesionkg.core.limits import (
    DATE_RANGE,
    DEFAULT_LIMITS,
    FIELD_SIZE,
    IMAGE_PIXELS,
    IMAGE_TRUNCATED,
    INT64_MAX,
    INTEGER_RANGE,
    JSON_DEPTH,
    LENGTH_NOT_POSITIVE,
    LINE_SIZE,
    NOT_FINITE,
    NOT_REGULAR_FILE,
    OUTPUT_IS_INPUT,
    OUTSIDE_IMAGE,
    RULES,
    SPACING_RANGE,
    XML_DEPTH,
    InputLimits,
)
from lesionkg.core.records import LesionRecord
from lesionkg.loaders.aim import read_aim
from lesionkg.loaders.aim_v4 import NAMESPACE_V4
from lesionkg.loaders.ct import index_ct_images, read_hu
from lesionkg.loaders.deeplesion import (
    COLUMNS,
    RejectedRow,
    parse_dl_info,
    refuse_rejects_path,
    write_rejects,
)
from lesionkg.loaders.deeplesion_rows import RowParser
from lesionkg.loaders.dicom_sr import read_measurement_report
from lesionkg.loaders.jsonl import read_jsonl_bookmarks
from lesionkg.loaders.pairs import read_same_lesion_pairs
from lesionkg.model.transforms import read_hu_png
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
    group,
    measurement,
    write_report,
    write_synthetic_ct,
)

#: a fixed "today" for the date rules, so that the tests do not depend on the clock
TODAY = date(2026, 1, 15)
LIMITS = InputLimits(today=TODAY)


# --- generic helpers -----------------------------------------------------------------------------


def refused(read: Callable[[], Any]) -> InvalidInputError:
    """The InvalidInputError ``read`` raises; any other exception fails the test as it is."""
    with pytest.raises(InvalidInputError) as info:
        read()
    return info.value


def only_problem(err: InvalidInputError) -> Problem:
    (problem,) = err.problems
    assert str(problem) in str(err), "the message spells the problem out"
    assert problem.rule in RULES
    assert f"(rule {problem.rule})" in str(err)
    return problem


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A 16-bit grey PNG whose header claims ``width`` x ``height`` with one row of data: the
    pixel limit must refuse it from the header alone, before anything is inflated."""
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * (1 + 2 * width))
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def flip_first_idat_crc(data: bytes) -> bytes:
    """The PNG with one bit of its first IDAT chunk's CRC flipped (the data itself intact)."""
    at = 8
    while data[at + 4 : at + 8] != b"IDAT":
        at += 12 + struct.unpack(">I", data[at : at + 4])[0]
    crc_at = at + 8 + struct.unpack(">I", data[at : at + 4])[0]
    return data[:crc_at] + bytes([data[crc_at] ^ 1]) + data[crc_at + 1 :]


def write_slice(path: Path, size: int = 512, seed: int = 0) -> Path:
    """A SYNTHETIC 16-bit key slice with noise (so that its image data is not tiny)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(31000, 34000, (size, size), dtype=np.uint16)).save(path)
    return path


def finishes(read: Callable[[], Any], fifo: Path) -> BaseException | None:
    """Run ``read`` in a thread; if it hangs on the FIFO, release it by writing, and fail."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            read()
            outcome.append(None)
        except BaseException as exc:  # handed to the test to assert on
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(20)
    if thread.is_alive():
        with open(fifo, "w") as f:  # unblock the reader's open()
            f.write("")
        thread.join(5)
        pytest.fail(f"reading the FIFO {fifo} hung")
    return outcome[0]


# --- JSON Lines ----------------------------------------------------------------------------------


def bookmark(**changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "patient": "PX-1",
        "study": "ST-1",
        "study_time": "2024-03-01T10:22:00",
        "image": "img/k.png",
        "long_axis_px": [100, 200, 130, 240],
        "spacing_mm": [0.8, 0.8],
    }
    obj.update(changes)
    return obj


def jsonl(folder: Path, *lines: dict[str, Any] | str) -> Path:
    if not (folder / "img" / "k.png").exists():
        write_slice(folder / "img" / "k.png")
    path = folder / "b.jsonl"
    path.write_text(
        "".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines),
        encoding="utf-8",
    )
    return path


def jsonl_problem(path: Path, **options: Any) -> Problem:
    err = refused(lambda: read_jsonl_bookmarks(path, limits=LIMITS, **options))
    assert "nothing was imported" in str(err)
    problem = only_problem(err)
    assert problem.source == str(path)
    return problem


def test_a_good_line_passes_every_limit(tmp_path):
    (read,) = read_jsonl_bookmarks(jsonl(tmp_path, bookmark()), limits=LIMITS)
    assert read.long_axis_mm == pytest.approx(np.hypot(30 * 0.8, 40 * 0.8))


@pytest.mark.parametrize("depth", [65, 3000, 30_000])
def test_json_nested_thousands_deep_is_refused_before_decoding(tmp_path, depth):
    deep = "[" * depth + "]" * depth
    line = json.dumps(bookmark()).replace('"PX-1"', deep)
    problem = jsonl_problem(jsonl(tmp_path, bookmark(patient="PX-0"), line))
    assert (problem.line, problem.column, problem.rule) == (2, None, JSON_DEPTH)
    assert problem.reason == (
        "JSON nested deeper than 64 levels (arrays and objects); refused before decoding"
    )


def test_brackets_inside_strings_do_not_count_as_depth(tmp_path):
    path = jsonl(tmp_path, bookmark(tracking_id="[" * 500 + "{" * 500))
    (read,) = read_jsonl_bookmarks(path, limits=LIMITS)
    assert read.tracking_id == "[" * 500 + "{" * 500


def test_depth_within_a_raised_limit_is_read_as_json(tmp_path):
    # 100 levels: over the default, under a raised limit; then the field's type is the problem
    line = json.dumps(bookmark()).replace('"PX-1"', "[" * 100 + "]" * 100)
    path = jsonl(tmp_path, line)
    raised = DEFAULT_LIMITS.with_overrides({"json_depth": "128"})
    err = refused(lambda: read_jsonl_bookmarks(path, limits=raised))
    (problem,) = err.problems
    assert (problem.column, problem.rule) == ("patient", None)


def test_a_line_beyond_the_size_limit_is_refused_unread(tmp_path):
    line = json.dumps(bookmark(tracking_id="x" * 70_000))
    problem = jsonl_problem(jsonl(tmp_path, bookmark(patient="PX-0"), line))
    assert (problem.line, problem.column, problem.rule) == (2, None, LINE_SIZE)
    assert problem.reason == f"line of {len(line):,} bytes exceeds the limit of 65,536 bytes"


def test_a_field_beyond_the_size_limit_is_refused(tmp_path):
    problem = jsonl_problem(jsonl(tmp_path, bookmark(study="1." * 2500)))
    assert (problem.line, problem.column, problem.rule) == (1, "study", FIELD_SIZE)
    assert problem.reason == "5,000 characters, more than the limit of 4,096"


@pytest.mark.parametrize(("width", "height"), [(15_000, 15_000), (10_000, 10_000), (4097, 4096)])
def test_a_huge_png_is_refused_from_its_header(tmp_path, width, height):
    (tmp_path / "huge.png").write_bytes(png_claiming(width, height))
    problem = jsonl_problem(jsonl(tmp_path, bookmark(image="huge.png")))
    assert (problem.column, problem.rule) == ("image", IMAGE_PIXELS)
    assert problem.reason == (
        f"image {tmp_path / 'huge.png'}: image of {width} x {height} = {width * height:,} pixels "
        "(from its header) exceeds the limit of 16,777,216 pixels; refused before decoding"
    )


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda b: b[: len(b) // 2], "the PNG ends inside its IDAT chunk (truncated file)"),
        (lambda b: b[:-12], "the PNG ends before its IEND chunk (truncated file)"),
        (flip_first_idat_crc, "the PNG's IDAT chunk is cut short or corrupt (CRC mismatch)"),
        (lambda b: b[:33], "the PNG ends before its IEND chunk (truncated file)"),
    ],
)
def test_a_truncated_png_behind_a_valid_header_refuses_the_whole_file(tmp_path, damage, reason):
    # Line 1's image is whole, line 2's is cut: nothing of the file is returned, not line 1.
    whole = write_slice(tmp_path / "img" / "k.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(damage(whole))
    path = jsonl(tmp_path, bookmark(), bookmark(image="cut.png", long_axis_px=[1, 2, 3, 4]))
    problem = jsonl_problem(path)
    assert (problem.line, problem.column, problem.rule) == (2, "image", IMAGE_TRUNCATED)
    assert problem.reason == f"image {tmp_path / 'cut.png'}: {reason}"


def test_png_data_shorter_than_its_header_promises_is_refused(tmp_path):
    # every chunk whole and CRC-correct, but the image data stops after one scanline
    ihdr = struct.pack(">IIBBBBB", 64, 64, 16, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * (1 + 2 * 64))
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)
    (tmp_path / "short.png").write_bytes(data + png_chunk(b"IEND", b""))
    problem = jsonl_problem(jsonl(tmp_path, bookmark(image="short.png", long_axis_px=[1, 2, 3, 4])))
    assert problem.rule == IMAGE_TRUNCATED
    assert problem.reason.endswith(
        f"holds 129 of the {64 * (1 + 128):,} bytes its header promises (truncated or corrupt)"
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("long_axis_px", [9254, 200, 130, 240]),
        ("long_axis_px", [100, 200, 130, 600]),
        ("short_axis_px", [9254, 200, 9256, 204.5]),
    ],
)
def test_coordinates_outside_the_image_are_refused(tmp_path, field, value):
    problem = jsonl_problem(jsonl(tmp_path, bookmark(**{field: value})))
    assert (problem.column, problem.rule) == (field, OUTSIDE_IMAGE)
    shown = ", ".join(f"{v:g}" for v in value)
    assert problem.reason == (
        f"coordinates [{shown}] lie outside the 512 x 512 px image (width x height, 16 px "
        "margin): wrong image or wrong units?"
    )


@pytest.mark.parametrize("spacing", [[1e300, 0.8], [0.8, 0.001], [11, 11]])
def test_implausible_spacing_is_refused(tmp_path, spacing):
    problem = jsonl_problem(jsonl(tmp_path, bookmark(spacing_mm=spacing)))
    assert (problem.column, problem.rule) == ("spacing_mm", SPACING_RANGE)
    bad = next(v for v in spacing if not 0.01 <= v <= 10)
    assert problem.reason == (
        f"pixel spacing {bad:g} mm is outside the plausible range 0.01..10 mm"
    )


@pytest.mark.parametrize(
    ("when", "reason"),
    [
        ("0001-01-01", "study date 0001-01-01 is before 1900-01-01: not a plausible CT study date"),
        ("1899-12-31T23:59:59", "study date 1899-12-31 is before 1900-01-01"),
        ("2026-01-17", "study date 2026-01-17 is in the future (after 2026-01-16)"),
        ("9999-12-31T00:00:00+14:00", "study date 9999-12-31 is in the future"),
    ],
)
def test_implausible_study_dates_are_refused(tmp_path, when, reason):
    problem = jsonl_problem(jsonl(tmp_path, bookmark(study_time=when)))
    assert (problem.column, problem.rule) == ("study_time", DATE_RANGE)
    assert problem.reason.startswith(reason)


def test_the_edges_of_the_date_range_are_accepted(tmp_path):
    path = jsonl(
        tmp_path,
        bookmark(study="A", study_time="1900-01-01"),
        bookmark(study="B", study_time=(TODAY + timedelta(days=1)).isoformat()),
    )
    assert len(read_jsonl_bookmarks(path, limits=LIMITS)) == 2


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "1e999"])
def test_non_finite_coordinates_are_refused(tmp_path, literal):
    line = json.dumps(bookmark()).replace("[100, 200, 130, 240]", f"[100, {literal}, 130, 240]")
    problem = jsonl_problem(jsonl(tmp_path, line))
    assert (problem.column, problem.rule) == ("long_axis_px", NOT_FINITE)
    assert problem.reason.endswith("(item 2 is not finite)")


def test_a_fifo_named_jsonl_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "b.jsonl"
    os.mkfifo(fifo)
    err = finishes(lambda: read_jsonl_bookmarks(fifo), fifo)
    assert isinstance(err, InvalidInputError)
    problem = only_problem(err)
    assert (problem.source, problem.rule) == (str(fifo), NOT_REGULAR_FILE)
    assert problem.reason == "is a FIFO (named pipe), expected a regular file"


def test_a_fifo_as_the_image_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    path = jsonl(tmp_path, bookmark(image="pipe.png"))
    err = finishes(lambda: read_jsonl_bookmarks(path), fifo)
    assert isinstance(err, InvalidInputError)
    assert only_problem(err).rule == NOT_REGULAR_FILE


# --- images for the model ------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), [(15_000, 15_000), (10_000, 10_000)])
def test_read_hu_png_refuses_a_huge_png_before_decoding(tmp_path, width, height):
    path = tmp_path / "huge.png"
    path.write_bytes(png_claiming(width, height))
    with pytest.raises(ModelError) as info:
        read_hu_png(path)
    assert str(info.value) == (
        f"{path}: image of {width} x {height} = {width * height:,} pixels exceeds the limit of "
        f"16,777,216 pixels (rule {IMAGE_PIXELS})"
    )


def test_read_hu_png_refuses_a_truncated_png(tmp_path):
    whole = write_slice(tmp_path / "k.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ModelError, match=r"cut\.png: not a readable PNG"):
        read_hu_png(tmp_path / "cut.png")


# --- DeepLesion CSV ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_row(val_csv: Path) -> dict[str, str]:
    """The first data row of the real validation file, by column."""
    with open(val_csv, newline="", encoding="utf-8") as f:
        return next(csv.DictReader(f))


def dl_info(path: Path, *rows: dict[str, str]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def rejected_row(path: Path, limits: InputLimits = LIMITS) -> Problem:
    """The only problem of the only row of ``path``: the fast path and the row parser agree."""
    (item,) = parse_dl_info(path, limits=limits)
    assert isinstance(item, RejectedRow), item
    with open(path, newline="", encoding="utf-8") as f:
        cells = list(csv.reader(f))[1]
    again = RowParser(str(path), limits).parse(cells, 2)
    assert isinstance(again, RejectedRow) and again.problems == item.problems
    (problem,) = item.problems
    assert (problem.source, problem.line) == (str(path), 2)
    assert problem.rule in RULES
    return problem


def test_the_real_row_passes_every_limit(tmp_path, real_row):
    (item,) = parse_dl_info(dl_info(tmp_path / "ok.csv", real_row), limits=LIMITS)
    assert isinstance(item, LesionRecord)


@pytest.mark.parametrize("column", ["Patient_index", "Study_index", "Series_ID", "Key_slice_index"])
def test_an_index_of_23_digits_is_refused_before_it_overflows(tmp_path, real_row, column):
    huge = "1" + "0" * 22
    row = {**real_row, column: huge}
    problem = rejected_row(dl_info(tmp_path / "big.csv", row))
    assert (problem.column, problem.rule) == (column, INTEGER_RANGE)
    assert problem.reason == (
        f"integer {huge} (of 23 digits) exceeds the limit of {INT64_MAX} (a 64-bit integer)"
    )


def test_the_largest_64_bit_index_passes_the_integer_rule(tmp_path, real_row):
    top = str(INT64_MAX)
    name = f"{top}_01_01_162.png"
    (item,) = parse_dl_info(
        dl_info(tmp_path / "top.csv", {**real_row, "Patient_index": top, "File_name": name}),
        limits=LIMITS,
    )
    assert isinstance(item, LesionRecord) and item.patient_id == top


def test_a_slice_range_of_23_digits_is_refused(tmp_path, real_row):
    row = {**real_row, "Slice_range": "156, " + "9" * 23}
    problem = rejected_row(dl_info(tmp_path / "big.csv", row))
    assert (problem.column, problem.rule) == ("Slice_range", INTEGER_RANGE)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999"])
def test_non_finite_coordinates_in_the_csv_are_refused(tmp_path, real_row, value):
    cells = real_row["Bounding_boxes"].split(", ")
    row = {**real_row, "Bounding_boxes": ", ".join([value, *cells[1:]])}
    problem = rejected_row(dl_info(tmp_path / "nan.csv", row))
    assert (problem.column, problem.rule) == ("Bounding_boxes", NOT_FINITE)
    assert problem.reason.startswith("expected 4 finite numbers, got ")


@pytest.mark.parametrize("spacing", ["1e300, 1e300, 5", "0.001, 0.859375, 5", "0.86, 0.86, 50"])
def test_implausible_csv_spacing_is_refused(tmp_path, real_row, spacing):
    problem = rejected_row(dl_info(tmp_path / "sp.csv", {**real_row, "Spacing_mm_px_": spacing}))
    assert (problem.column, problem.rule) == ("Spacing_mm_px_", SPACING_RANGE)
    assert problem.reason.endswith("mm is outside the plausible range 0.01..10 mm")


def test_coordinates_beyond_the_image_size_are_refused(tmp_path, real_row):
    # the real row's lesion, measured on a 512 x 512 slice, moved by 9,000 px
    x = [float(v) for v in real_row["Measurement_coordinates"].split(",")]
    moved = ", ".join(f"{v + 9000 if i % 2 == 0 else v:g}" for i, v in enumerate(x))
    box = [float(v) for v in real_row["Bounding_boxes"].split(",")]
    moved_box = ", ".join(f"{v + 9000 if i % 2 == 0 else v:g}" for i, v in enumerate(box))
    row = {**real_row, "Measurement_coordinates": moved, "Bounding_boxes": moved_box}
    (item,) = parse_dl_info(dl_info(tmp_path / "far.csv", row), limits=LIMITS)
    assert isinstance(item, RejectedRow)
    assert [(p.column, p.rule) for p in item.problems] == [
        ("Measurement_coordinates", OUTSIDE_IMAGE),
        ("Bounding_boxes", OUTSIDE_IMAGE),
    ]
    assert item.problems[0].reason == (
        f"coordinates [{moved}] lie outside the 512 x 512 px image (width x height, 16 px "
        "margin): wrong image or wrong units?"
    )


def test_a_fifo_named_csv_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "DL_info.csv"
    os.mkfifo(fifo)
    err = finishes(lambda: parse_dl_info(fifo), fifo)
    assert isinstance(err, InvalidInputError)
    problem = only_problem(err)
    assert (problem.source, problem.line, problem.rule) == (str(fifo), None, NOT_REGULAR_FILE)


def test_a_fifo_named_like_a_pairs_file_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "pairs.csv"
    os.mkfifo(fifo)
    err = finishes(lambda: read_same_lesion_pairs(fifo), fifo)
    assert isinstance(err, InvalidInputError)
    assert only_problem(err).rule == NOT_REGULAR_FILE


@pytest.mark.parametrize("how", ["same path", "relative path", "symlink", "hard link"])
def test_rejects_written_over_the_input_are_refused_and_the_input_kept(
    tmp_path, real_row, monkeypatch, how
):
    source = dl_info(tmp_path / "DL_info.csv", {**real_row, "Patient_gender": "X"})
    before = source.read_bytes()
    rejected = [r for r in parse_dl_info(source) if isinstance(r, RejectedRow)]
    monkeypatch.chdir(tmp_path)
    target: Path = {
        "same path": lambda: source,
        "relative path": lambda: Path("DL_info.csv"),
        "symlink": lambda: (tmp_path / "link.csv").symlink_to(source) or tmp_path / "link.csv",
        "hard link": lambda: (tmp_path / "hard.csv").hardlink_to(source) or tmp_path / "hard.csv",
    }[how]()
    for write in (
        lambda: write_rejects(target, rejected),
        lambda: write_rejects(target, [], inputs=[source]),
        lambda: refuse_rejects_path(target, [source]),
    ):
        problem = only_problem(refused(write))
        assert (problem.source, problem.rule) == (str(target), OUTPUT_IS_INPUT)
        assert problem.reason == (
            f"--rejects is the input file {source}: writing it would overwrite the input"
        )
    assert source.read_bytes() == before


# --- DICOM SR and CT -----------------------------------------------------------------------------


def _walk(items: Any) -> Any:
    for item in items:
        yield item
        yield from _walk(item.get("ContentSequence") or [])


@pytest.fixture
def sr_case(tmp_path: Path) -> dict[str, Any]:
    """A SYNTHETIC CT slice and a one-group report measured on it (12 mm long axis)."""
    ct = write_synthetic_ct(
        tmp_path / "ct.dcm", study_uid=generate_uid(), study_date="20240301", study_time="1022"
    )
    report = write_report(
        tmp_path / "sr.dcm",
        ct,
        [group([measurement(LONG_AXIS, 12.0, MM, ct, [[10, 20], [40, 60]])], generate_uid())],
    )
    return {"ct": ct, "report": report, "index": index_ct_images([tmp_path / "ct.dcm"])}


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")
@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("NumericValue", "NaN"),
        ("NumericValue", "-5"),
        ("NumericValue", "0"),
        ("NumericValue", "inf"),
        ("FloatingPointValue", -12.0),
        ("FloatingPointValue", float("nan")),
    ],
)
def test_a_stated_length_that_is_not_positive_is_refused_not_replaced(
    sr_case, tmp_path, keyword, value
):
    ds = pydicom.dcmread(sr_case["report"])
    (num,) = [i for i in _walk(ds.ContentSequence) if i.get("ValueType") == "NUM"]
    setattr(num.MeasuredValueSequence[0], keyword, value)
    ds.save_as(tmp_path / "bad.dcm")
    err = refused(
        lambda: read_measurement_report(tmp_path / "bad.dcm", sr_case["index"], limits=LIMITS)
    )
    problem = only_problem(err)
    assert (problem.column, problem.rule) == ("measurement group 1, Long Axis", LENGTH_NOT_POSITIVE)
    assert problem.reason == (
        f"stated length {float(value):g} ({keyword}) is not a positive finite length"
    )


@pytest.mark.parametrize(
    ("study_date", "reason"),
    [
        ("18000101", "study date 1800-01-01 is before 1900-01-01"),
        ("20260120", "study date 2026-01-20 is in the future (after 2026-01-16)"),
    ],
)
def test_an_implausible_sr_study_date_refuses_the_report(sr_case, tmp_path, study_date, reason):
    ds = pydicom.dcmread(sr_case["report"])
    ds.StudyDate = study_date
    ds.save_as(tmp_path / "dated.dcm")
    err = refused(
        lambda: read_measurement_report(tmp_path / "dated.dcm", sr_case["index"], limits=LIMITS)
    )
    problem = only_problem(err)
    assert (problem.column, problem.rule) == ("StudyDate", DATE_RANGE)
    assert problem.reason.startswith(reason)


def test_a_graphic_off_the_image_names_its_rule(sr_case, tmp_path):
    ct = sr_case["ct"]
    report = write_report(
        tmp_path / "far.dcm",
        ct,
        [group([measurement(LONG_AXIS, 12.0, MM, ct, [[10, 20], [9254, 60]])], generate_uid())],
    )
    problem = only_problem(refused(lambda: read_measurement_report(report, sr_case["index"])))
    assert (problem.column, problem.rule) == ("measurement group 1, Long Axis", OUTSIDE_IMAGE)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (
            {"Rows": 15_000, "Columns": 15_000},
            "image of 15000 x 15000 = 225,000,000 pixels per frame (from its header) exceeds "
            "the limit of 16,777,216 pixels; refused before decoding (rule image_pixels)",
        ),
        (
            {"NumberOfFrames": 70_000},
            "70,000 frames of 64 x 64 = 286,720,000 pixels (from its header) exceed the limit of "
            "268,435,456 pixels; refused before decoding (rule image_pixels)",
        ),
        (
            {"PixelSpacing": [1e300, 1e300]},
            "PixelSpacing 1e+300 mm is outside the plausible range 0.01..10 mm "
            "(rule spacing_range)",
        ),
    ],
)
def test_a_ct_header_beyond_the_limits_is_not_indexed(tmp_path, header, reason):
    ct = write_synthetic_ct(
        tmp_path / "ct.dcm", study_uid=generate_uid(), study_date="20240301", study_time="1022"
    )
    for keyword, value in header.items():
        setattr(ct, keyword, value)
    ct.save_as(tmp_path / "ct.dcm")
    index = index_ct_images([tmp_path / "ct.dcm"])
    assert len(index) == 0
    assert index.skipped == [(tmp_path / "ct.dcm", reason)]


def test_read_hu_checks_the_pixel_count_before_decoding(tmp_path):
    ct = write_synthetic_ct(
        tmp_path / "ct.dcm", study_uid=generate_uid(), study_date="20240301", study_time="1022"
    )
    (image,) = index_ct_images([tmp_path / "ct.dcm"]).values()
    small = InputLimits(image_pixels=64 * 63)
    err = refused(lambda: read_hu(image, limits=small))
    problem = only_problem(err)
    assert (problem.source, problem.rule) == (str(tmp_path / "ct.dcm"), IMAGE_PIXELS)
    assert read_hu(image).shape == (ct.Rows, ct.Columns)


def test_a_fifo_among_the_ct_inputs_is_skipped_without_hanging(tmp_path):
    fifo = tmp_path / "ct.dcm"
    os.mkfifo(fifo)
    index: list[Any] = []
    assert finishes(lambda: index.append(index_ct_images([fifo])), fifo) is None
    assert index[0].skipped == [
        (fifo, "is a FIFO (named pipe), expected a regular file (rule not_regular_file)")
    ]


# --- AIM -----------------------------------------------------------------------------------------


def aim_document(study_date: str = "20240301") -> dict[str, Any]:
    return aim_collection(
        "SYN-1",
        [
            SyntheticAnnotation(
                name="Lesion1",
                sop_instance_uid="2.25.11",
                series_uid="2.25.12",
                study_uid="2.25.13",
                study_date=study_date,
                lines=(SyntheticLine("LongAxis", 12.0, "mm", (10, 20, 40, 60)),),
            )
        ],
    )


def test_aim_json_nested_thousands_deep_is_refused(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text('{"ImageAnnotationCollection": ' + "[" * 3000 + "]" * 3000 + "}")
    problem = only_problem(refused(lambda: read_aim(path)))
    assert (problem.source, problem.rule) == (str(path), JSON_DEPTH)


def test_aim_xml_nested_thousands_deep_is_refused(tmp_path):
    path = tmp_path / "deep.xml"
    path.write_text(
        f'<ImageAnnotationCollection xmlns="{NAMESPACE_V4}">'
        + "<a>" * 3000
        + "</a>" * 3000
        + "</ImageAnnotationCollection>"
    )
    problem = only_problem(refused(lambda: read_aim(path)))
    assert (problem.source, problem.rule) == (str(path), XML_DEPTH)
    assert problem.reason == "XML elements nested deeper than 64 levels"


@pytest.mark.parametrize("write", [write_aim_json, write_aim_xml])
def test_an_implausible_aim_study_date_refuses_the_file(tmp_path, write):
    assert len(read_aim(write(tmp_path / "ok.aim", aim_document()), limits=LIMITS)) == 1
    path = write(tmp_path / "old.aim", aim_document(study_date="18000101"))
    problem = only_problem(refused(lambda: read_aim(path, limits=LIMITS)))
    assert problem.rule == DATE_RANGE
    assert problem.reason.startswith("study date 1800-01-01 is before 1900-01-01")


# --- the limits themselves -----------------------------------------------------------------------


def test_limits_are_configurable_by_name_and_refuse_unknown_names():
    changed = DEFAULT_LIMITS.with_overrides(
        {"json_depth": "8", "spacing_max_mm": "20", "earliest_date": "1950-01-01"}
    )
    assert (changed.json_depth, changed.spacing_max_mm) == (8, 20.0)
    assert changed.earliest_date == date(1950, 1, 1)
    assert DEFAULT_LIMITS.json_depth == 64
    with pytest.raises(ValueError, match="unknown input limit 'depth'"):
        DEFAULT_LIMITS.with_overrides({"depth": "8"})
    with pytest.raises(ValueError, match="input limit json_depth: 'deep' is not a valid value"):
        DEFAULT_LIMITS.with_overrides({"json_depth": "deep"})


def test_every_rule_is_documented():
    text = (Path(__file__).resolve().parents[2] / "docs" / "input-limits.md").read_text()
    for rule in RULES:
        assert f"`{rule}`" in text, rule
