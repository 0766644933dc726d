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
:class:`~lesionkg.core.errors.InvalidInputError` instead. :func:`write_rejects` writes rejected
rows to a CSV for ``--skip-invalid``. One row's columns and cells are parsed by
:mod:`lesionkg.loaders.deeplesion_rows`.
"""

from __future__ import annotations

import codecs
import csv
import os
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from math import hypot
from typing import Any, TextIO

from lesionkg.core.errors import InvalidInputError, Problem
from lesionkg.core.limits import DEFAULT_LIMITS, InputLimits
from lesionkg.core.records import SPLITS, LesionRecord, lesion_id_of
from lesionkg.loaders.deeplesion_rows import (
    COLUMNS,
    DIAMETER_TOLERANCE_PX,
    MAX_AGE_YEARS,
    NOISY,
    SEXES,
    RejectedRow,
    RowParser,
    image_size_in_range,
    parse_window,
    shown,
    spacing_in_range,
)
from lesionkg.loaders.guards import output_is_input_refusal, regular_file_refusal

__all__ = [
    "COLUMNS",
    "DIAMETER_TOLERANCE_PX",
    "MAX_AGE_YEARS",
    "RejectedRow",
    "parse_dl_info",
    "refuse_rejects_path",
    "write_rejects",
]


_SNIFF_BYTES = 1 << 16
_CACHE_SIZE = 4096


# --- file level --------------------------------------------------------------------------------


def _fail(
    source: str, line: int | None, column: str | None, reason: str, rule: str | None = None
) -> InvalidInputError:
    return InvalidInputError([Problem(source, line, column, reason, rule)])


def _check_text(source: str) -> None:
    """Reject a missing, empty, binary or special (FIFO, device) file before the csv module
    sees it."""
    not_regular = regular_file_refusal(source)
    if not_regular is not None:
        # Opening a FIFO would block until some process writes to it: the load would hang.
        raise _fail(source, None, None, not_regular.reason, not_regular.rule)
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


def parse_dl_info(
    path: str | os.PathLike[str], *, limits: InputLimits | None = None
) -> Iterator[LesionRecord | RejectedRow]:
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

    ``limits`` (default :data:`~lesionkg.core.limits.DEFAULT_LIMITS`) adds, each with its rule
    on the problem: integers within 64 bits (``integer_range``), spacings within the plausible
    range (``spacing_range``), coordinates and box on the ``Image_size`` image
    (``outside_image``), and a regular file (``not_regular_file``, raised).
    """
    source = os.fspath(path)
    limits = limits if limits is not None else DEFAULT_LIMITS
    _check_text(source)
    order = _check_header(source)
    return _parse(source, order, limits)


_FAST_COARSE: dict[str, int | None] = {"-1": None, **{str(t): t for t in range(1, 9)}}
_FAST_SPLITS: dict[str, str] = {str(code): split for code, split in SPLITS.items()}


def _remember(
    cache: dict[str, tuple[Any, ...]], cell: str, convert: Callable[[str], tuple[Any, ...]]
) -> tuple[Any, ...]:
    if len(cache) >= _CACHE_SIZE:
        cache.clear()  # a file with ever new values must not grow memory
    value = cache[cell] = convert(cell)
    return value


def _parse(
    source: str, order: list[int] | None, limits: InputLimits
) -> Iterator[LesionRecord | RejectedRow]:
    parser = RowParser(source, limits)
    full = parser.parse
    seen = parser._seen
    sexes = parser._sexes
    ages = parser._ages
    width = len(COLUMNS)
    header_names = COLUMNS if order is None else _names_in_header_order(order)
    tol = DIAMETER_TOLERANCE_PX
    max_age = MAX_AGE_YEARS
    coarse_codes = _FAST_COARSE
    noisy_codes = NOISY
    sex_codes = SEXES
    split_codes = _FAST_SPLITS
    spacing_cache: dict[str, tuple[Any, ...]] = {}
    window_cache: dict[str, tuple[Any, ...]] = {}
    size_cache: dict[str, tuple[Any, ...]] = {}
    parse_spacing = partial(spacing_in_range, limits=limits)
    parse_image_size = partial(image_size_in_range, limits=limits)
    max_integer = limits.max_integer
    margin = limits.coordinate_margin_px
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
                    # %06d pads negatives too ("-00001"), so check the sign separately; an
                    # index beyond 64 bits passes here but overflows in Neo4j and NumPy.
                    if (patient | study | series | key) < 0 or max(
                        patient, study, series, key
                    ) > max_integer:
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
                    if last > max_integer:
                        raise ValueError
                    # Few distinct values per file (377 spacings, 29 windows, 3 sizes in val):
                    # parse each once, with the slow path's own validating converters.
                    spacing = spacing_cache.get(sp) or _remember(spacing_cache, sp, parse_spacing)
                    window = window_cache.get(win) or _remember(window_cache, win, parse_window)
                    image_size = size_cache.get(im) or _remember(size_cache, im, parse_image_size)
                    sx, sy, _ = spacing
                    rows, columns = image_size
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
                        # on the image: Image_size is rows, columns (height, width)
                        and min(x1, x2, u1, u2, b1, b3, y1, y2, v1, v2, b2, b4) >= -margin
                        and max(x1, x2, u1, u2, b1, b3) <= columns + margin
                        and max(y1, y2, v1, v2, b2, b4) <= rows + margin
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
                    spacing_mm=spacing,
                    image_size_px=image_size,
                    window_hu=window,
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
        reason += f" (extra: {shown(extra)})"
    return RejectedRow(line=line, row=row, problems=(Problem(source, line, None, reason),))


def refuse_rejects_path(
    path: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]]
) -> None:
    """Raise :class:`InvalidInputError` (rule ``output_is_input``) when the rejects file would
    be one of ``inputs`` (the same file under any name); call it before loading."""
    refusal = output_is_input_refusal(path, list(inputs))
    if refusal is not None:
        raise InvalidInputError(
            [Problem(os.fspath(path), None, None, f"--rejects {refusal.reason}", refusal.rule)],
            outcome="nothing was written to it",
        )


def write_rejects(
    path: str | os.PathLike[str],
    rejected: Iterable[RejectedRow],
    *,
    inputs: Iterable[str | os.PathLike[str]] = (),
) -> int:
    """Write rejected rows as CSV, one line per problem; return the number of rows written.

    Columns: ``line``, ``column`` (empty for a whole-row problem), ``reason``, then the 18
    DL_info.csv columns holding the row's raw cells (repeated for each of its problems).
    Refuses (:func:`refuse_rejects_path`) to write over ``inputs`` or over the file the rows
    came from (their problems' source), before the file is opened.
    """
    rejected = list(rejected)
    sources = {p.source for r in rejected for p in r.problems}
    refuse_rejects_path(path, [*inputs, *sorted(sources)])
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
