"""JSON Lines bookmarks: a good file read field by field, and every bad input named precisely."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from lesionkg.core.errors import InvalidInputError
from lesionkg.core.records import Bookmark, ImageRef
from lesionkg.loaders.jsonl import FIELDS, REQUIRED_FIELDS, read_jsonl_bookmarks

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
#: A real DeepLesion key slice (16-bit PNG) and a real CT slice (DICOM), read in place.
REAL_PNG = SHARED / "deeplesion" / "images" / "000069_03_01_058.png"
REAL_DICOM = SHARED / "dicom" / "ct" / "ct_small.dcm"


# --- helpers -------------------------------------------------------------------------------------


def write_png16(path: Path) -> Path:
    """A SYNTHETIC 16-bit grayscale key slice in DeepLesion's convention (air: -1000 HU)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # 512 x 512 as a CT slice: axis endpoints must lie on the image
    Image.fromarray(np.full((512, 512), 32768 - 1000, dtype=np.uint16)).save(path)
    return path


def good(**changes: Any) -> dict[str, Any]:
    """A valid bookmark object whose image is ``img/k.png`` beside the JSONL file."""
    obj: dict[str, Any] = {
        "patient": "PX-1",
        "study": "ST-1",
        "study_time": "2024-03-01T10:22:00",
        "image": "img/k.png",
        "long_axis_px": [10, 20, 13, 24],
        "spacing_mm": [0.5, 0.5],
    }
    for key, value in changes.items():
        if value is _DROP:
            obj.pop(key)
        else:
            obj[key] = value
    return obj


_DROP = object()


def write_jsonl(folder: Path, *lines: dict[str, Any] | str, name: str = "b.jsonl") -> Path:
    """Lines as given (a dict is dumped as one JSON line) and the image ``img/k.png``."""
    write_png16(folder / "img" / "k.png")
    path = folder / name
    path.write_text(
        "".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines),
        encoding="utf-8",
    )
    return path


def refused(path: Path, **options: Any) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as err:
        read_jsonl_bookmarks(path, **options)
    return err.value


# --- a good file ---------------------------------------------------------------------------------


def test_good_file_with_three_bookmarks(tmp_path):
    export = tmp_path / "export"
    write_png16(export / "slices" / "s3" / "0162.png")
    lines = [
        # Relative image path, anisotropic spacing, both axes, a type name in another case.
        {
            "patient": " PX-1042 ",
            "study": "1.2.840.99.1",
            "study_time": "2024-03-01T10:22",
            "series": "3",
            "image": "slices/s3/0162.png",
            "long_axis_px": [100, 200, 130, 240],
            "short_axis_px": [120.5, 210, 108.5, 219],
            "spacing_mm": [0.7, 0.8],
            "type": "Soft Tissue",
            "location": [0.25, 0.5, 1],
            "tracking_uid": "2.25.777",
            "tracking_id": "Lesion 1",
        },
        # The real DICOM CT slice by absolute path, a date-only time, a type code, no short axis.
        {
            "patient": "PX-1042",
            "study": "1.2.840.99.2",
            "study_time": "2024-06-03",
            "image": str(REAL_DICOM),
            "long_axis_px": [64, 64, 64, 74.5],
            "spacing_mm": [0.66, 0.66],
            "type": 4,
            "series": None,
        },
        # The real DeepLesion PNG, a time with a UTC offset.
        {
            "patient": "PX-2001",
            "study": "A",
            "study_time": "2024-07-01T08:00:00Z",
            "image": str(REAL_PNG),
            "long_axis_px": [238.314, 261.228, 235.858, 268.594],
            "short_axis_px": [240.36, 265.729, 233.821, 264.224],
            "spacing_mm": [0.78125, 0.78125],
        },
    ]
    path = export / "bookmarks.jsonl"
    path.write_text(
        json.dumps(lines[0]) + "\n\n   \n" + json.dumps(lines[1]) + "\r\n" + json.dumps(lines[2])
    )

    first, second, third = read_jsonl_bookmarks(path)

    # Long axis: dx = 30 px * 0.7 mm = 21 mm, dy = 40 px * 0.8 mm = 32 mm -> sqrt(21^2 + 32^2).
    # Short axis: dx = -12 px * 0.7 = -8.4 mm, dy = 9 px * 0.8 = 7.2 mm -> sqrt(8.4^2 + 7.2^2).
    assert first == Bookmark(
        source=str(path),
        source_index=1,
        patient_key="PX-1042",
        study_key="1.2.840.99.1",
        study_datetime="2024-03-01T10:22:00",
        series_key="3",
        image=ImageRef(path=str(export / "slices" / "s3" / "0162.png")),
        long_axis_mm=pytest.approx(math.sqrt(21.0**2 + 32.0**2)),
        short_axis_mm=pytest.approx(math.sqrt(8.4**2 + 7.2**2)),
        long_axis_px=(100.0, 200.0, 130.0, 240.0),
        short_axis_px=(120.5, 210.0, 108.5, 219.0),
        pixel_spacing_mm=(0.7, 0.8),
        coarse_type=7,
        location=(0.25, 0.5, 1.0),
        tracking_uid="2.25.777",
        tracking_id="Lesion 1",
    )
    assert first.long_axis_mm == pytest.approx(38.275318418)
    assert first.short_axis_mm == pytest.approx(11.063453348)

    # Blank lines are skipped but counted: the second bookmark is on line 4.
    assert second.source_index == 4
    assert second.image == ImageRef(path=str(REAL_DICOM))
    assert second.study_datetime == "2024-06-03"
    assert second.series_key is None and second.coarse_type == 4
    assert second.long_axis_mm == pytest.approx(10.5 * 0.66)
    assert second.short_axis_mm is None and second.short_axis_px is None
    assert second.location is None and second.tracking_uid is None

    assert third.source_index == 5
    assert third.study_datetime == "2024-07-01T08:00:00+00:00"
    # Endpoints with DeepLesion's 3 decimals; by hand: long dx = -2.456, dy = 7.366 px and
    # short dx = -6.539, dy = -1.505 px, each times 0.78125 mm.
    assert third.long_axis_mm == pytest.approx(math.hypot(2.456, 7.366) * 0.78125)
    assert third.short_axis_mm == pytest.approx(math.hypot(6.539, 1.505) * 0.78125)
    assert third.coarse_type is None


def test_utf8_bom_and_a_missing_final_newline_are_accepted(tmp_path):
    path = write_jsonl(tmp_path)
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(good()).encode())
    (bookmark,) = read_jsonl_bookmarks(path)
    assert bookmark.patient_key == "PX-1" and bookmark.long_axis_mm == pytest.approx(2.5)


# --- bad lines -----------------------------------------------------------------------------------


@pytest.mark.parametrize("field", REQUIRED_FIELDS)
def test_a_missing_required_field_is_named(tmp_path, field):
    path = write_jsonl(tmp_path, good(), good(**{field: _DROP}))
    err = refused(path)
    assert str(err).startswith("1 problem(s) in the input; nothing was imported")
    assert f"{path}, line 2, column {field}: missing" in str(err)


def test_null_in_a_required_field_is_missing(tmp_path):
    path = write_jsonl(tmp_path, good(patient=None))
    assert f"{path}, line 1, column patient: missing (null)" in str(refused(path))


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("patient", 123, "expected a non-empty string, got a number 123 (write ids as strings"),
        ("patient", "   ", 'expected a non-empty string, got "   "'),
        ("study", ["S"], 'expected a non-empty string, got an array ["S"]'),
        ("series", 3, "expected a non-empty string, got a number 3"),
        ("tracking_uid", "", 'expected a non-empty string, got ""'),
        ("tracking_id", True, "expected a non-empty string, got a boolean true"),
        ("study_time", "01/03/2024", "expected an ISO 8601 date or date and time"),
        ("study_time", "2024-02-30", "expected an ISO 8601 date or date and time"),
        ("study_time", 20240301, "expected an ISO 8601 date or date and time string"),
        ("image", 7, "expected a non-empty path string, got 7"),
        ("image", "", 'expected a non-empty path string, got ""'),
        ("long_axis_px", [1, 2, 3], "expected [x1, y1, x2, y2]: 4 finite numbers, pixels, got 3"),
        ("long_axis_px", "1,2,3,4", "expected [x1, y1, x2, y2]: 4 finite numbers, pixels, got a"),
        ("long_axis_px", [1, 2, "3", 4], "(item 3 is a string)"),
        ("long_axis_px", [1, 2, True, 4], "(item 3 is a boolean)"),
        ("long_axis_px", [1, -2, 3, 4], "expected pixel coordinates >= 0"),
        ("long_axis_px", [5, 6, 5, 6], "the two endpoints coincide ([5, 6, 5, 6])"),
        ("short_axis_px", [5, 6, 5, 6.0], "the two endpoints coincide"),
        ("short_axis_px", [0, 0, 1], "expected [x1, y1, x2, y2]: 4 finite numbers"),
        ("spacing_mm", [0.5, 0], "expected pixel spacings > 0 mm, got [0.5, 0]"),
        ("spacing_mm", [-0.5, 0.5], "expected pixel spacings > 0 mm"),
        ("spacing_mm", [0.5], "expected [x, y]: 2 finite numbers, mm per pixel, got 1 item(s)"),
        ("type", "brain", "expected a DeepLesion coarse type, a code or a name (1 'bone'"),
        ("type", 9, "expected a DeepLesion coarse type"),
        ("type", 0, "expected a DeepLesion coarse type"),
        ("type", -1, "expected a DeepLesion coarse type"),
        ("type", 4.0, "expected a DeepLesion coarse type"),
        ("type", True, "expected a DeepLesion coarse type"),
        ("location", [0.5, 1.2, 0.5], "expected [x, y, z] each in 0..1, got [0.5, 1.2, 0.5]"),
        ("location", [0.5, -0.1, 0.5], "expected [x, y, z] each in 0..1"),
        ("location", [0.5, 0.5], "expected [x, y, z]: 3 finite numbers, normalised to 0..1"),
    ],
)
def test_an_ill_typed_or_out_of_range_field_is_named(tmp_path, field, value, reason):
    path = write_jsonl(tmp_path, good(), good(**{field: value}))
    err = refused(path)
    (problem,) = err.problems
    assert (problem.source, problem.line, problem.column) == (str(path), 2, field)
    assert reason in problem.reason
    assert f"{path}, line 2, column {field}: {problem.reason}" in str(err)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_numbers_must_be_finite(tmp_path, literal):
    # Python's json module reads these; they are not JSON, and never a coordinate.
    line = json.dumps(good()).replace('"spacing_mm": [0.5, 0.5]', f'"spacing_mm": [0.5, {literal}]')
    path = write_jsonl(tmp_path, line)
    assert f"{path}, line 1, column spacing_mm: expected [x, y]: 2 finite numbers" in str(
        refused(path)
    )
    assert "(item 2 is not finite)" in str(refused(path))


def test_the_short_axis_must_not_be_longer_than_the_long(tmp_path):
    # Long 5 px, short 6 px at 0.5 mm: 2.5 mm against 3 mm.
    path = write_jsonl(tmp_path, good(short_axis_px=[0, 0, 6, 0]))
    assert (
        f"{path}, line 1, column short_axis_px: the short axis (3.00 mm) is longer than the long "
        "axis (2.50 mm); were the two swapped?"
    ) in str(refused(path))


def test_a_round_lesion_with_equal_axes_is_accepted(tmp_path):
    # 3-4-5 triangles: both axes are 5 px.
    path = write_jsonl(tmp_path, good(long_axis_px=[0, 0, 3, 4], short_axis_px=[0, 4, 4, 1]))
    (bookmark,) = read_jsonl_bookmarks(path)
    assert bookmark.long_axis_mm == bookmark.short_axis_mm == pytest.approx(2.5)


def test_the_short_axis_is_compared_in_mm_not_pixels(tmp_path):
    # 10 px across at 0.5 mm (5 mm) is shorter than 8 px down at 1 mm (8 mm).
    path = write_jsonl(
        tmp_path,
        good(long_axis_px=[0, 0, 0, 8], short_axis_px=[0, 0, 10, 0], spacing_mm=[0.5, 1.0]),
    )
    (bookmark,) = read_jsonl_bookmarks(path)
    assert (bookmark.long_axis_mm, bookmark.short_axis_mm) == (8.0, 5.0)


def test_unknown_and_repeated_fields_are_rejected(tmp_path):
    line = json.dumps(good(patient_name="DOE^JANE", loction=[0.5, 0.5, 0.5]))[:-1]
    path = write_jsonl(tmp_path, line + ', "patient": "PX-2"}')
    text = str(refused(path))
    assert f"{path}, line 1, column patient_name: unknown field (rejected so that no data" in text
    assert f"{path}, line 1, column loction: unknown field" in text
    assert "the fields are " + ", ".join(FIELDS) in text
    assert f"{path}, line 1, column patient: the field appears more than once" in text


def test_json_syntax_and_non_objects_are_named_by_line(tmp_path):
    path = write_jsonl(tmp_path, good(), '{"patient": "PX-1",', "[1, 2]", '"a string"', "42")
    err = refused(path)
    text = str(err)
    assert (
        f"{path}, line 2: invalid JSON: Expecting property name enclosed in double quotes" in text
    )
    assert f"{path}, line 3: expected a JSON object (one bookmark), got an array" in text
    assert f"{path}, line 4: expected a JSON object (one bookmark), got a string" in text
    assert f"{path}, line 5: expected a JSON object (one bookmark), got a number" in text
    assert len(err.problems) == 4


# --- images --------------------------------------------------------------------------------------


def test_a_missing_image_is_rejected_unless_allowed(tmp_path):
    path = write_jsonl(tmp_path, good(), good(image="img/gone.png", long_axis_px=[1, 1, 9, 9]))
    missing = tmp_path / "img" / "gone.png"
    assert (
        f"{path}, line 2, column image: image not found: {missing} (--allow-missing-images"
    ) in str(refused(path))
    _, bookmark = read_jsonl_bookmarks(path, allow_missing_images=True)
    assert bookmark.image == ImageRef(path=str(missing))


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (
            lambda p: Image.fromarray(np.zeros((4, 4), np.uint8)).save(p),
            "is a PNG but not 16-bit grayscale",
        ),
        (lambda p: p.write_text("not an image"), "is neither a PNG nor a DICOM file"),
        (lambda p: p.mkdir(), "is a directory, expected a PNG or DICOM file"),
    ],
)
def test_an_image_that_is_not_a_key_slice_is_rejected_even_when_missing_ones_are_allowed(
    tmp_path, make, reason
):
    make(tmp_path / "img.png")
    path = write_jsonl(tmp_path, good(image="img.png"))
    for allow in (False, True):
        err = refused(path, allow_missing_images=allow)
        assert f"{path}, line 1, column image: image {tmp_path / 'img.png'} {reason}" in str(err)


def test_a_dicom_image_that_is_not_a_usable_ct_image_is_rejected(tmp_path):
    # The real liver SEG named as a key slice: refused on its line, not imported as "missing".
    seg = SHARED / "dicom" / "ct" / "liver" / "liver_seg.dcm"
    path = write_jsonl(tmp_path, good(image=str(seg)))
    for allow in (False, True):
        err = refused(path, allow_missing_images=allow)
        assert (
            f"{path}, line 1, column image: image {seg} is not a usable CT image: SOP class "
            "Segmentation Storage is not a CT image"
        ) in str(err)


# --- across lines --------------------------------------------------------------------------------


def test_a_duplicate_bookmark_names_both_lines(tmp_path):
    path = write_jsonl(
        tmp_path,
        good(),
        good(long_axis_px=[10, 20, 14, 24]),  # another measurement on the same slice
        good(long_axis_px=[13, 24, 10, 20], type="liver"),  # line 1 drawn from the other end
        good(image="./img/../img/k.png", long_axis_px=[10.001, 20, 13, 24]),  # line 1 again
    )
    err = refused(path)
    assert [(p.line, p.column) for p in err.problems] == [(3, None), (4, None)]
    assert (
        f"{path}, line 3: duplicate of the bookmark on line 1 (same patient, study, image and "
        "axis endpoints)"
    ) in str(err)
    assert f"{path}, line 4: duplicate of the bookmark on line 1" in str(err)


def test_a_study_keeps_one_time(tmp_path):
    path = write_jsonl(
        tmp_path,
        good(),
        good(long_axis_px=[1, 1, 9, 9], study_time="2024-03-01T10:23:00"),
        good(long_axis_px=[2, 2, 9, 9], study_time="2024-03-01T10:22"),  # the same time
        good(long_axis_px=[3, 3, 9, 9], patient="PX-2", study_time="2025-01-01"),  # another patient
    )
    err = refused(path)
    assert len(err.problems) == 1
    assert (
        f"{path}, line 2, column study_time: expected '2024-03-01T10:22:00' as on line 1 for the "
        "same study, got '2024-03-01T10:23:00'"
    ) in str(err)


def test_every_problem_of_every_line_is_listed_and_nothing_is_returned(tmp_path):
    path = write_jsonl(
        tmp_path,
        good(),
        good(patient=5, spacing_mm=[0, 1], type="brain"),
        "not json",
        good(location=[2, 2, 2], image="img/none.png", study=_DROP),
        good(),
    )
    err = refused(path)
    where = [(p.line, p.column) for p in err.problems]
    assert where == [
        (2, "patient"),
        (2, "spacing_mm"),
        (2, "type"),
        (3, None),
        (4, "study"),
        (4, "image"),
        (4, "location"),
        (5, None),  # the duplicate of line 1
    ]
    assert str(err).startswith("8 problem(s) in the input; nothing was imported:\n")
    assert all(p.source == str(path) for p in err.problems)


def test_a_long_list_of_problems_is_counted_beyond_what_the_message_shows(tmp_path):
    path = write_jsonl(tmp_path, *[good(patient=i) for i in range(30)])
    err = refused(path)
    assert len(err.problems) == 30
    assert "... and 10 more problem(s)" in str(err)


# --- the file ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "line", "reason"),
    [
        (None, None, "file not found"),
        (b"", None, "file is empty (0 bytes); expected one JSON bookmark per line"),
        (b"\n  \n\r\n", None, "no bookmarks: the file holds only blank lines"),
        (
            b'{"patient": "A"}\n{"patient": "caf\xe9"}\n',
            2,
            "not a UTF-8 text file (byte 0xe9 at byte 17 of the line cannot be decoded)",
        ),
        ('{"patient": "A"}\n'.encode("utf-16"), 1, "not a UTF-8 text file (NUL byte; UTF-16"),
        (b'\n[{"patient": "A"}]\n', 2, "a JSON array, not JSON Lines: write one bookmark object"),
        (
            b'[\n  {"patient": "A"},\n  {"patient": "B"}\n]\n',
            1,
            "a JSON array, not JSON Lines",
        ),
        (
            b'{\n  "patient": "A",\n  "study": "B"\n}\n',
            None,
            "the file is one JSON document spread over several lines, not JSON Lines",
        ),
    ],
)
def test_unusable_files_get_one_clear_reason(tmp_path, content, line, reason):
    path = tmp_path / "b.jsonl"
    if content is not None:
        path.write_bytes(content)
    err = refused(path)
    assert len(err.problems) == 1
    (problem,) = err.problems
    assert (problem.source, problem.line, problem.column) == (str(path), line, None)
    assert reason in problem.reason
    assert "nothing was imported" in str(err)


def test_a_directory_is_refused(tmp_path):
    assert "is a directory, expected a JSON Lines file" in str(refused(tmp_path))


def test_moving_the_export_folder_moves_the_image_paths(tmp_path):
    path = write_jsonl(tmp_path / "a", good())
    moved = tmp_path / "b"
    shutil.copytree(tmp_path / "a", moved)
    (before,) = read_jsonl_bookmarks(path)
    (after,) = read_jsonl_bookmarks(moved / path.name)
    assert after.image == ImageRef(path=str(moved / "img" / "k.png"))
    assert before.image != after.image
