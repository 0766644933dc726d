"""Parser of DeepLesion's ``DL_info.csv``: one :class:`~lesionkg.core.records.LesionRecord` per row.

The official file has a header line and 18 columns (:data:`COLUMNS`). One row is one lesion
bookmark, a RECIST measurement on one key slice. Scalar cells are plain numbers or letters; the
list-valued cells are quoted, comma-separated numbers::

    000002_01_01_162.png,2,1,1,162,"238.314, 261.228, 235.858, 268.594, 240.36, 265.729, ...",...

``File_name`` is ``{patient:06d}_{study:02d}_{series:02d}_{slice:03d}.png`` built from
``Patient_index``, ``Study_index``, ``Series_ID`` and ``Key_slice_index`` (wider numbers simply
take more digits). ``Coarse_lesion_type`` -1 means unlabelled (every train row), ``Patient_age``
may be ``NaN`` (one validation row) and ``Train_Val_Test`` is 1, 2 or 3.

Ids: the file has no lesion id, so :func:`~lesionkg.core.records.lesion_id_of` derives one from the
row's content, ``File_name`` plus the 8 ``Measurement_coordinates``. The same row therefore gets the
same id whatever its position in the file, and two rows with the same slice and coordinates are
the same bookmark: the later one is rejected as a duplicate.

:func:`parse_dl_info` streams the file and yields, in file order, a ``LesionRecord`` for every
valid row and a :class:`RejectedRow` listing every problem of an invalid one. Problems of the file
itself (missing, empty, binary, wrong header, no data rows) raise
:class:`~lesionkg.core.errors.InvalidInputError` instead. :func:`write_rejects` writes rejected rows to a
CSV for ``--skip-invalid``.
"""

from __future__ import annotations

import codecs
import csv
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from math import hypot, isfinite, isnan
from typing import Any, TextIO

from lesionkg.core.errors import InvalidInputError, Problem
from lesionkg.core.records import SPLITS, LesionRecord, lesion_id_of, patient_id_of, study_id_of

__all__ = [
    "COLUMNS",
    "DIAMETER_TOLERANCE_PX",
    "MAX_AGE_YEARS",
    "RejectedRow",
    "parse_dl_info",
    "write_rejects",
]

#: The 18 columns of the official ``DL_info.csv``, in the official order.
COLUMNS: tuple[str, ...] = (
    "File_name",
    "Patient_index",
    "Study_index",
    "Series_ID",
    "Key_slice_index",
    "Measurement_coordinates",
    "Bounding_boxes",
    "Lesion_diameters_Pixel_",
    "Normalized_lesion_location",
    "Coarse_lesion_type",
    "Possibly_noisy",
    "Slice_range",
    "Spacing_mm_px_",
    "Image_size",
    "DICOM_windows",
    "Patient_gender",
    "Patient_age",
    "Train_Val_Test",
)

#: Oldest plausible age in years (the real rows range from 4 to 96).
MAX_AGE_YEARS = 130.0
#: How far ``Lesion_diameters_Pixel_`` may be from the lengths of the measured axes. The release
#: rounds to 6 significant digits, which puts them at most 0.0013 px apart in the real data.
DIAMETER_TOLERANCE_PX = 0.05

_SNIFF_BYTES = 1 << 16
_CACHE_SIZE = 4096
_FILE_NAME_FORMAT = "{patient:06d}_{study:02d}_{series:02d}_{slice:03d}.png"


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """A data row that did not become a record, with all of its problems.

    ``row`` holds the raw cells by column name. A row with the wrong number of fields maps the
    cells it has in header order; cells beyond the header are joined with commas under ``"_extra"``.
    """

    line: int
    row: dict[str, str]
    problems: tuple[Problem, ...]


# --- cell converters: each returns the value or raises ValueError(reason) ---------------------


def _show(cell: str) -> str:
    return repr(cell if len(cell) <= 60 else cell[:57] + "...")


def _list_reason(cell: str, n: int, kind: str, parse: Callable[[str], Any]) -> str:
    if not cell.strip():
        return f"expected {n} comma-separated {kind}s, got an empty cell"
    for item in cell.split(","):
        try:
            parse(item)
        except ValueError:
            article = "an" if kind == "integer" else "a"
            return (
                f"expected {n} comma-separated {kind}s, got {_show(cell)} "
                f"({_show(item.strip())} is not {article} {kind})"
            )
    return f"expected {n} comma-separated {kind}s, got {_show(cell)}"  # pragma: no cover


def _floats(cell: str, n: int) -> list[float]:
    try:
        values = [float(v) for v in cell.split(",")]
    except ValueError:
        raise ValueError(_list_reason(cell, n, "number", float)) from None
    if len(values) != n:
        raise ValueError(f"expected {n} comma-separated numbers, got {len(values)}")
    # One sum is cheaper than n isfinite calls; NaN or inf anywhere makes it non-finite (a sum that
    # merely overflows falls through to the exact test and passes).
    total = sum(values)
    if total - total != 0.0 and not all(map(isfinite, values)):
        raise ValueError(f"expected {n} finite numbers, got {_show(cell)}")
    return values


def _ints(cell: str, n: int) -> list[int]:
    try:
        values = [int(v) for v in cell.split(",")]
    except ValueError:
        raise ValueError(_list_reason(cell, n, "integer", int)) from None
    if len(values) != n:
        raise ValueError(f"expected {n} comma-separated integers, got {len(values)}")
    return values


def _index(cell: str) -> int:
    try:
        value = int(cell)
    except ValueError:
        raise ValueError(f"expected a non-negative integer, got {_show(cell)}") from None
    if value < 0:
        raise ValueError(f"expected a non-negative integer, got {_show(cell)}")
    return value


def _file_name(cell: str) -> str:
    # Checked against the four index columns once they are known (see _RowParser.parse).
    return cell


def _recist(cell: str) -> tuple[float, ...]:
    return tuple(_floats(cell, 8))


def _bbox(cell: str) -> tuple[float, ...]:
    x1, y1, x2, y2 = values = _floats(cell, 4)
    if not (x1 < x2 and y1 < y2):
        raise ValueError(f"expected x1, y1, x2, y2 with x1 < x2 and y1 < y2, got {_show(cell)}")
    return tuple(values)


def _diameters(cell: str) -> tuple[float, ...]:
    long, short = values = _floats(cell, 2)
    if long < short or short < 0.0:
        raise ValueError(f"expected long, short with long >= short >= 0, got {_show(cell)}")
    return tuple(values)


def _location(cell: str) -> tuple[float, ...]:
    values = _floats(cell, 3)
    if not all(0.0 <= v <= 1.0 for v in values):
        raise ValueError(f"expected 3 numbers in [0, 1], got {_show(cell)}")
    return tuple(values)


def _coarse_type(cell: str) -> int | None:
    try:
        value = int(cell)
    except ValueError:
        value = 0
    if value == -1:
        return None
    if 1 <= value <= 8:
        return value
    raise ValueError(f"expected -1 (unlabelled) or a type code 1..8, got {_show(cell)}")


_NOISY = {"0": False, "1": True}


def _noisy(cell: str) -> bool:
    try:
        return _NOISY[cell]
    except KeyError:
        raise ValueError(f"expected 0 or 1, got {_show(cell)}") from None


def _slice_range(cell: str) -> tuple[int, ...]:
    first, last = values = _ints(cell, 2)
    if not 0 <= first <= last:
        raise ValueError(f"expected first, last slice with 0 <= first <= last, got {_show(cell)}")
    return tuple(values)


def _spacing(cell: str) -> tuple[float, ...]:
    values = _floats(cell, 3)
    if not all(v > 0.0 for v in values):
        raise ValueError(f"expected 3 spacings > 0 mm, got {_show(cell)}")
    return tuple(values)


def _image_size(cell: str) -> tuple[int, ...]:
    values = _ints(cell, 2)
    if not all(v > 0 for v in values):
        raise ValueError(f"expected 2 sizes > 0 pixels, got {_show(cell)}")
    return tuple(values)


def _window(cell: str) -> tuple[float, ...]:
    low, high = values = _floats(cell, 2)
    if not low < high:
        raise ValueError(f"expected min, max with min < max, got {_show(cell)}")
    return tuple(values)


_SEXES = {"M": "M", "F": "F", "": None}


def _sex(cell: str) -> str | None:
    try:
        return _SEXES[cell]
    except KeyError:
        raise ValueError(f"expected M, F or an empty cell, got {_show(cell)}") from None


def _age(cell: str) -> float | None:
    if not cell:
        return None
    try:
        value = float(cell)
    except ValueError:
        raise ValueError(f"expected an age in years (or NaN), got {_show(cell)}") from None
    if isnan(value):
        return None
    if not 0.0 <= value <= MAX_AGE_YEARS:
        raise ValueError(f"expected an age in [0, {MAX_AGE_YEARS:g}] years, got {_show(cell)}")
    return value


def _split(cell: str) -> str:
    try:
        return SPLITS[int(cell)]
    except (ValueError, KeyError):
        raise ValueError(f"expected 1 (train), 2 (val) or 3 (test), got {_show(cell)}") from None


_CONVERTERS: tuple[Callable[[str], Any], ...] = (
    _file_name,
    _index,
    _index,
    _index,
    _index,
    _recist,
    _bbox,
    _diameters,
    _location,
    _coarse_type,
    _noisy,
    _slice_range,
    _spacing,
    _image_size,
    _window,
    _sex,
    _age,
    _split,
)
_COLUMN_CONVERTERS = tuple(zip(COLUMNS, _CONVERTERS, strict=True))


class _Bad:
    """Marks a cell that failed conversion (``None`` is a valid value for some columns)."""


_BAD: Any = _Bad()


class _RowParser:
    """Turns the 18 cells of one row into a record or a rejection; remembers what it has accepted.

    The memory it keeps grows with the distinct lesions, patients and studies: a 64-bit id prefix
    to first line for duplicates, and the first sex per patient and age per study.
    """

    __slots__ = ("_ages", "_seen", "_sexes", "_source")

    def __init__(self, source: str) -> None:
        self._source = source
        self._seen: dict[int, int] = {}
        self._sexes: dict[int, tuple[str | None, int]] = {}
        self._ages: dict[tuple[int, int], tuple[float | None, int]] = {}

    def parse(self, cells: list[str], line: int) -> LesionRecord | RejectedRow:
        values: list[Any] = []
        bad: list[tuple[str | None, str]] = []
        # try costs nothing on Python >= 3.11 unless it raises, so collecting every problem of
        # the row is as fast as stopping at the first.
        for (name, convert), cell in zip(_COLUMN_CONVERTERS, cells):  # noqa: B905 (len checked)
            try:
                values.append(convert(cell))
            except ValueError as exc:
                values.append(_BAD)
                bad.append((name, str(exc)))
        (
            file_name,
            patient,
            study,
            series,
            key_slice,
            recist,
            bbox,
            diameters,
            location,
            coarse_type,
            noisy,
            slice_range,
            spacing,
            image_size,
            window,
            sex,
            age,
            split,
        ) = values

        problems_so_far = len(bad)
        if _BAD in (patient, study, series, key_slice):
            self._check_file_name_pattern(file_name, bad)
        else:
            expected = _FILE_NAME_FORMAT.format(
                patient=patient, study=study, series=series, slice=key_slice
            )
            if file_name != expected:
                bad.append(
                    (
                        "File_name",
                        f"expected {expected!r} (from Patient_index, Study_index, Series_ID and "
                        f"Key_slice_index), got {_show(file_name)}",
                    )
                )
        # The id hashes the name as ASCII, so only a valid name can be checked for duplicates.
        name_ok = len(bad) == problems_so_far
        if (
            key_slice is not _BAD
            and slice_range is not _BAD
            and not slice_range[0] <= key_slice <= slice_range[1]
        ):
            bad.append(
                (
                    "Key_slice_index",
                    f"expected a slice within Slice_range {slice_range[0]}..{slice_range[1]}, "
                    f"got {key_slice}",
                )
            )
        long_px = short_px = 0.0
        if recist is not _BAD:
            x1, y1, x2, y2, u1, v1, u2, v2 = recist
            long_px = hypot(x2 - x1, y2 - y1)
            short_px = hypot(u2 - u1, v2 - v1)
            if diameters is not _BAD and (
                abs(long_px - diameters[0]) > DIAMETER_TOLERANCE_PX
                or abs(short_px - diameters[1]) > DIAMETER_TOLERANCE_PX
            ):
                bad.append(
                    (
                        "Lesion_diameters_Pixel_",
                        f"expected {long_px:.4f}, {short_px:.4f} (the lengths of the long and "
                        f"short axes in Measurement_coordinates, within "
                        f"{DIAMETER_TOLERANCE_PX} px), got {diameters[0]:g}, {diameters[1]:g}",
                    )
                )

        # Cross-row checks compare with accepted rows only, so a broken row cannot make later
        # good rows look inconsistent.
        lesion_key = -1
        lesion_id = ""
        if recist is not _BAD and name_ok:
            lesion_id = lesion_id_of(file_name, recist)
            # The id's 16 hex digits as one int: a small object instead of a 19-char string.
            lesion_key = int(lesion_id[3:], 16)
            first = self._seen.get(lesion_key)
            if first is not None:
                bad.append(
                    (
                        None,
                        f"duplicate of the row on line {first} "
                        "(same File_name and Measurement_coordinates)",
                    )
                )
        if patient is not _BAD and sex is not _BAD:
            earlier = self._sexes.get(patient)
            if earlier is not None and earlier[0] != sex:
                bad.append(
                    (
                        "Patient_gender",
                        f"expected {_show(earlier[0] or '')} as on line {earlier[1]} for the same "
                        f"patient (Patient_index {patient}), got {_show(sex or '')}",
                    )
                )
        if patient is not _BAD and study is not _BAD and age is not _BAD:
            earlier_age = self._ages.get((patient, study))
            if earlier_age is not None and earlier_age[0] != age:
                bad.append(
                    (
                        "Patient_age",
                        f"expected {_age_text(earlier_age[0])} as on line {earlier_age[1]} for the "
                        f"same study ({study_id_of(patient, study)}), got {_age_text(age)}",
                    )
                )

        if bad:
            return RejectedRow(
                line=line,
                row=dict(zip(COLUMNS, cells, strict=True)),
                problems=tuple(
                    Problem(self._source, line, column, reason) for column, reason in bad
                ),
            )

        self._seen[lesion_key] = line
        if patient not in self._sexes:
            self._sexes[patient] = (sex, line)
        if (patient, study) not in self._ages:
            self._ages[(patient, study)] = (age, line)
        sx, sy, _ = spacing
        x1, y1, x2, y2, u1, v1, u2, v2 = recist
        return LesionRecord(
            lesion_id=lesion_id,
            patient_id=patient_id_of(patient),
            study_id=study_id_of(patient, study),
            study_index=study,
            series_id=series,
            file_name=file_name,
            key_slice=key_slice,
            recist_px=recist,
            bbox_px=bbox,
            diameters_px=diameters,
            long_axis_mm=hypot((x2 - x1) * sx, (y2 - y1) * sy),
            short_axis_mm=hypot((u2 - u1) * sx, (v2 - v1) * sy),
            location=location,
            coarse_type=coarse_type,
            noisy=noisy,
            slice_range=slice_range,
            spacing_mm=spacing,
            image_size_px=image_size,
            window_hu=window,
            sex=sex,
            age_years=age,
            split=split,
            source_line=line,
        )

    @staticmethod
    def _check_file_name_pattern(file_name: str, bad: list[tuple[str | None, str]]) -> None:
        # Without all four indices only the shape of the name can be checked.
        parts = file_name[:-4].split("_") if file_name.endswith(".png") else []
        widths = (6, 2, 2, 3)
        if len(parts) != 4 or not all(
            p.isascii() and p.isdigit() and len(p) >= w for p, w in zip(parts, widths, strict=True)
        ):
            bad.append(("File_name", f"expected {_FILE_NAME_FORMAT}, got {_show(file_name)}"))


def _age_text(age: float | None) -> str:
    return "an empty age" if age is None else f"{age:g}"


# --- file level --------------------------------------------------------------------------------


def _fail(source: str, line: int | None, column: str | None, reason: str) -> InvalidInputError:
    return InvalidInputError([Problem(source, line, column, reason)])


def _check_text(source: str) -> None:
    """Reject a missing, empty or binary file before the csv module sees it."""
    try:
        with open(source, "rb") as f:
            head = f.read(_SNIFF_BYTES)
    except FileNotFoundError:
        raise _fail(source, None, None, "file not found") from None
    except IsADirectoryError:
        raise _fail(source, None, None, "is a directory, expected a DL_info.csv file") from None
    except OSError as exc:
        raise _fail(source, None, None, f"cannot be read ({exc.strerror})") from None
    if not head:
        raise _fail(source, None, None, "file is empty (0 bytes); expected a DL_info.csv header")
    # NUL never occurs in CSV text but is everywhere in images, archives and UTF-16 files.
    nul = head.find(b"\0")
    if nul >= 0:
        line = head.count(b"\n", 0, nul) + 1
        raise _fail(
            source, line, None, f"not a CSV text file (NUL byte at byte offset {nul})"
        ) from None
    try:
        codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=len(head) < _SNIFF_BYTES)
    except UnicodeDecodeError as exc:
        raise _fail(
            source, head.count(b"\n", 0, exc.start) + 1, None, _undecodable(head, exc.start)
        ) from None


def _undecodable(data: bytes, offset: int) -> str:
    return f"not a UTF-8 CSV text file (byte 0x{data[offset]:02x} cannot be decoded)"


def _decode_error(source: str) -> InvalidInputError:
    # The text layer decodes in chunks, so its error position says nothing about the line; rescan
    # the bytes line by line (failure path only).
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    with open(source, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                decoder.decode(raw)
            except UnicodeDecodeError as exc:
                return _fail(source, number, None, _undecodable(raw, exc.start))
    return _fail(source, None, None, "not a UTF-8 CSV text file")  # pragma: no cover


def _header_order(source: str, header: list[str]) -> list[int] | None:
    """Positions of COLUMNS in the header; None when the header is the official one."""
    if tuple(header) == COLUMNS:
        return None
    problems: list[Problem] = []
    position: dict[str, int] = {}
    for i, name in enumerate(header):
        if name in position:
            problems.append(Problem(source, 1, name, "column appears more than once in the header"))
        elif name in COLUMNS:
            position[name] = i
        elif name.strip():
            problems.append(
                Problem(source, 1, name, "unexpected column; DL_info.csv has exactly 18 columns")
            )
        else:
            problems.append(
                Problem(source, 1, None, f"unexpected unnamed column at position {i + 1}")
            )
    problems.extend(
        Problem(source, 1, name, "column missing from the header")
        for name in COLUMNS
        if name not in position
    )
    if problems:
        raise InvalidInputError(problems)
    return [position[name] for name in COLUMNS]


def _records(source: str, f: Iterable[str]) -> Iterator[tuple[int, list[str]]]:
    """``(first physical line, cells)`` of every non-blank record, header included."""
    reader = csv.reader(f)
    end = 0
    try:
        for cells in reader:
            # line_num counts physical lines read so far, so a record spanning lines (newlines
            # inside quotes) starts right after the previous record ended.
            start = end + 1
            end = reader.line_num
            if cells:
                yield start, cells
    except UnicodeDecodeError:
        raise _decode_error(source) from None
    except csv.Error as exc:
        raise _fail(source, end + 1, None, f"malformed CSV ({exc})") from None


def _open(source: str) -> TextIO:
    return open(source, newline="", encoding="utf-8-sig")


def _check_header(source: str) -> list[int] | None:
    """Validate the header and that a data row follows; return the column order (see below)."""
    with _open(source) as f:
        records = _records(source, f)
        header = next(records, None)
        if header is None or header[0] != 1:
            raise _fail(source, 1, None, "expected the DL_info.csv header line, got a blank line")
        order = _header_order(source, header[1])
        if next(records, None) is None:
            raise _fail(source, None, None, "header only: no data rows after the header line")
    return order


def parse_dl_info(path: str | os.PathLike[str]) -> Iterator[LesionRecord | RejectedRow]:
    """Stream a ``DL_info.csv`` file: one ``LesionRecord`` or ``RejectedRow`` per data row.

    File problems raise :class:`InvalidInputError` when this is called, before anything is
    yielded: missing file, empty file, binary or non-UTF-8 content (checked in the first 64 KiB),
    missing, unexpected or repeated columns (all of them in one error), and a header without data
    rows. Undecodable bytes or broken CSV quoting further down raise when they are reached. Columns
    may come in any order.

    Every problem of a row is reported, with the 1-based physical line where the record starts.
    Row rules: the list cells hold exactly 8 (Measurement_coordinates), 4 (Bounding_boxes),
    2 (Lesion_diameters_Pixel_), 3 (Normalized_lesion_location), 2 (Slice_range),
    3 (Spacing_mm_px_), 2 (Image_size) and 2 (DICOM_windows) finite numbers; the four indices are
    non-negative integers and agree with ``File_name``; the box has x1 < x2 and y1 < y2; the
    diameters are the lengths of the two measured axes (within :data:`DIAMETER_TOLERANCE_PX`) with
    long >= short; the location lies in [0, 1]; the slice range is ordered and contains the key
    slice; spacings and image sizes are positive; window min < max; the type is -1 or 1..8; noisy
    is 0 or 1; sex is M, F or empty; age is empty, NaN or in [0, 130]; the split is 1, 2 or 3.
    Across rows: a row with the lesion id of an earlier row is a duplicate, a patient keeps one
    sex and a study one age; the later row is rejected, naming the earlier line.

    Axis lengths in mm use the key slice's pixel spacing (sx, sy from ``Spacing_mm_px_``):
    ``long_axis_mm = hypot((x2 - x1) * sx, (y2 - y1) * sy)`` over the long axis endpoints
    (coordinates 1-4), ``short_axis_mm`` likewise over coordinates 5-8. The given
    ``Lesion_diameters_Pixel_`` is kept unchanged as ``diameters_px``.
    """
    source = os.fspath(path)
    _check_text(source)
    order = _check_header(source)
    return _parse(source, order)


_FAST_COARSE: dict[str, int | None] = {"-1": None, **{str(t): t for t in range(1, 9)}}
_FAST_SPLITS: dict[str, str] = {str(code): split for code, split in SPLITS.items()}


def _remember(
    cache: dict[str, tuple[Any, ...]], cell: str, convert: Callable[[str], tuple[Any, ...]]
) -> tuple[Any, ...]:
    if len(cache) >= _CACHE_SIZE:
        cache.clear()  # a file with ever new values must not grow memory
    value = cache[cell] = convert(cell)
    return value


def _parse(source: str, order: list[int] | None) -> Iterator[LesionRecord | RejectedRow]:
    parser = _RowParser(source)
    full = parser.parse
    seen = parser._seen
    sexes = parser._sexes
    ages = parser._ages
    width = len(COLUMNS)
    header_names = COLUMNS if order is None else _names_in_header_order(order)
    tol = DIAMETER_TOLERANCE_PX
    max_age = MAX_AGE_YEARS
    coarse_codes = _FAST_COARSE
    noisy_codes = _NOISY
    sex_codes = _SEXES
    split_codes = _FAST_SPLITS
    spacing_cache: dict[str, tuple[Any, ...]] = {}
    window_cache: dict[str, tuple[Any, ...]] = {}
    size_cache: dict[str, tuple[Any, ...]] = {}
    with _open(source) as f:
        reader = csv.reader(f)
        end = 0
        try:
            for cells in reader:
                start = end + 1
                end = reader.line_num
                if start == 1 or not cells:
                    continue  # the header (checked by _check_header) or a blank line
                if len(cells) != width:
                    yield _wrong_width(source, start, cells, header_names)
                    continue
                if order is not None:
                    cells = [cells[i] for i in order]
                # Fast path: accepts only rows that parser.parse accepts, builds the identical
                # record, and on anything unusual raises so that parser.parse collects the row's
                # problems. Validation per cell costs a few function calls per row; this inline
                # version keeps a million-row load near the speed of the csv module.
                try:
                    (fn, p, s, se, k, mc, bb, dm, lc, ct, nz, sr, sp, im, win, sx_, ag, tv) = cells
                    patient = int(p)
                    study = int(s)
                    series = int(se)
                    key = int(k)
                    # %06d pads negatives too ("-00001"), so check the sign separately.
                    if (patient | study | series | key) < 0:
                        raise ValueError
                    # Same text as patient_id_of / study_id_of (tests compare them).
                    patient_id = f"{patient:06d}"
                    study_id = f"{patient_id}_{study:02d}"
                    if fn != f"{study_id}_{series:02d}_{key:03d}.png":
                        raise ValueError
                    # The four per-row float cells in one split: fewer calls than four. Three
                    # comma counts plus the total pin down each cell's length.
                    (x1, y1, x2, y2, u1, v1, u2, v2, b1, b2, b3, b4, d1, d2, l1, l2, l3) = map(
                        float, ",".join((mc, bb, dm, lc)).split(",")
                    )
                    if mc.count(",") != 7 or bb.count(",") != 3 or dm.count(",") != 1:
                        raise ValueError
                    first, last = map(int, sr.split(","))
                    # Few distinct values per file (377 spacings, 29 windows, 3 sizes in val):
                    # parse each once, with the slow path's own validating converters.
                    spacing = spacing_cache.get(sp) or _remember(spacing_cache, sp, _spacing)
                    window = window_cache.get(win) or _remember(window_cache, win, _window)
                    image_size = size_cache.get(im) or _remember(size_cache, im, _image_size)
                    sx, sy, _ = spacing
                    # NaN fails every comparison below; inf is caught by the sum (the location
                    # is bounded by its comparisons).
                    total = x1 + y1 + x2 + y2 + u1 + v1 + u2 + v2 + b1 + b2 + b3 + b4 + d1 + d2
                    long_px = hypot(x2 - x1, y2 - y1)
                    short_px = hypot(u2 - u1, v2 - v1)
                    if not (
                        total - total == 0.0
                        and b1 < b3
                        and b2 < b4
                        and d1 >= d2 >= 0.0
                        and abs(long_px - d1) <= tol
                        and abs(short_px - d2) <= tol
                        and 0.0 <= l1 <= 1.0
                        and 0.0 <= l2 <= 1.0
                        and 0.0 <= l3 <= 1.0
                        and 0 <= first <= key <= last
                    ):
                        raise ValueError
                    coarse_type = coarse_codes[ct]
                    noisy = noisy_codes[nz]
                    sex = sex_codes[sx_]
                    split = split_codes[tv]
                    age: float | None = None
                    if ag:
                        age = float(ag)
                        if not 0.0 <= age <= max_age:
                            if age == age:
                                raise ValueError
                            age = None  # NaN, the release's unknown age
                    recist = (x1, y1, x2, y2, u1, v1, u2, v2)
                    lesion_id = lesion_id_of(fn, recist)
                    lesion_key = int(lesion_id[3:], 16)
                    if lesion_key in seen:
                        raise ValueError
                    earlier_sex = sexes.get(patient)
                    if earlier_sex is not None and earlier_sex[0] != sex:
                        raise ValueError
                    study_key = (patient, study)
                    earlier_age = ages.get(study_key)
                    if earlier_age is not None and earlier_age[0] != age:
                        raise ValueError
                except Exception:
                    yield full(cells, start)
                    continue
                seen[lesion_key] = start
                if earlier_sex is None:
                    sexes[patient] = (sex, start)
                if earlier_age is None:
                    ages[study_key] = (age, start)
                yield LesionRecord(
                    lesion_id=lesion_id,
                    patient_id=patient_id,
                    study_id=study_id,
                    study_index=study,
                    series_id=series,
                    file_name=fn,
                    key_slice=key,
                    recist_px=recist,
                    bbox_px=(b1, b2, b3, b4),
                    diameters_px=(d1, d2),
                    long_axis_mm=hypot((x2 - x1) * sx, (y2 - y1) * sy),
                    short_axis_mm=hypot((u2 - u1) * sx, (v2 - v1) * sy),
                    location=(l1, l2, l3),
                    coarse_type=coarse_type,
                    noisy=noisy,
                    slice_range=(first, last),
                    spacing_mm=spacing,  # type: ignore[arg-type]
                    image_size_px=image_size,  # type: ignore[arg-type]
                    window_hu=window,  # type: ignore[arg-type]
                    sex=sex,  # type: ignore[arg-type]
                    age_years=age,
                    split=split,  # type: ignore[arg-type]
                    source_line=start,
                )
        except UnicodeDecodeError:
            raise _decode_error(source) from None
        except csv.Error as exc:
            raise _fail(source, end + 1, None, f"malformed CSV ({exc})") from None


def _names_in_header_order(order: list[int]) -> tuple[str, ...]:
    names = [""] * len(order)
    for column, position in zip(COLUMNS, order, strict=True):
        names[position] = column
    return tuple(names)


def _wrong_width(
    source: str, line: int, cells: list[str], header_names: tuple[str, ...]
) -> RejectedRow:
    width = len(header_names)
    row = dict(zip(header_names, cells, strict=False))
    reason = f"expected {width} comma-separated fields, got {len(cells)}"
    if len(cells) > width:
        extra = ",".join(cells[width:])
        row["_extra"] = extra
        reason += f" (extra: {_show(extra)})"
    return RejectedRow(line=line, row=row, problems=(Problem(source, line, None, reason),))


def write_rejects(path: str | os.PathLike[str], rejected: Iterable[RejectedRow]) -> int:
    """Write rejected rows as CSV, one line per problem; return the number of rows written.

    Columns: ``line``, ``column`` (empty for a whole-row problem), ``reason``, then the 18
    DL_info.csv columns holding the row's raw cells (repeated for each of its problems).
    """
    count = 0
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(("line", "column", "reason", *COLUMNS))
        for reject in rejected:
            count += 1
            cells = [reject.row.get(name, "") for name in COLUMNS]
            for problem in reject.problems:
                writer.writerow((reject.line, problem.column or "", problem.reason, *cells))
    return count
