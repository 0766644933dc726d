"""One row of DeepLesion's ``DL_info.csv``: the 18 columns, a checked converter per cell, and the
row parser that gives a :class:`~lesionkg.core.records.LesionRecord` or a :class:`RejectedRow`
with every problem of the row (the file reader is :mod:`lesionkg.loaders.deeplesion`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import hypot, isfinite, isnan
from typing import Any

from lesionkg.core.errors import Problem
from lesionkg.core.limits import (
    DEFAULT_LIMITS,
    INTEGER_RANGE,
    NOT_FINITE,
    OUTSIDE_IMAGE,
    SPACING_RANGE,
    InputLimits,
)
from lesionkg.core.records import SPLITS, LesionRecord, lesion_id_of, patient_id_of, study_id_of

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


class RuleError(ValueError):
    """A cell refused by an input limit or plausibility rule; ``rule`` is its stable name."""

    def __init__(self, reason: str, rule: str) -> None:
        super().__init__(reason)
        self.rule = rule


def shown(cell: str) -> str:
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
                f"expected {n} comma-separated {kind}s, got {shown(cell)} "
                f"({shown(item.strip())} is not {article} {kind})"
            )
    return f"expected {n} comma-separated {kind}s, got {shown(cell)}"  # pragma: no cover


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
        raise RuleError(f"expected {n} finite numbers, got {shown(cell)}", NOT_FINITE)
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
        raise ValueError(f"expected a non-negative integer, got {shown(cell)}") from None
    if value < 0:
        raise ValueError(f"expected a non-negative integer, got {shown(cell)}")
    return value


def _file_name(cell: str) -> str:
    # Checked against the four index columns once they are known (see RowParser.parse).
    return cell


def _recist(cell: str) -> tuple[float, ...]:
    return tuple(_floats(cell, 8))


def _bbox(cell: str) -> tuple[float, ...]:
    x1, y1, x2, y2 = values = _floats(cell, 4)
    if not (x1 < x2 and y1 < y2):
        raise ValueError(f"expected x1, y1, x2, y2 with x1 < x2 and y1 < y2, got {shown(cell)}")
    return tuple(values)


def _diameters(cell: str) -> tuple[float, ...]:
    long, short = values = _floats(cell, 2)
    if long < short or short < 0.0:
        raise ValueError(f"expected long, short with long >= short >= 0, got {shown(cell)}")
    return tuple(values)


def _location(cell: str) -> tuple[float, ...]:
    values = _floats(cell, 3)
    if not all(0.0 <= v <= 1.0 for v in values):
        raise ValueError(f"expected 3 numbers in [0, 1], got {shown(cell)}")
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
    raise ValueError(f"expected -1 (unlabelled) or a type code 1..8, got {shown(cell)}")


NOISY = {"0": False, "1": True}


def _noisy(cell: str) -> bool:
    try:
        return NOISY[cell]
    except KeyError:
        raise ValueError(f"expected 0 or 1, got {shown(cell)}") from None


def _slice_range(cell: str) -> tuple[int, ...]:
    first, last = values = _ints(cell, 2)
    if not 0 <= first <= last:
        raise ValueError(f"expected first, last slice with 0 <= first <= last, got {shown(cell)}")
    return tuple(values)


def parse_spacing(cell: str) -> tuple[float, ...]:
    values = _floats(cell, 3)
    if not all(v > 0.0 for v in values):
        raise ValueError(f"expected 3 spacings > 0 mm, got {shown(cell)}")
    return tuple(values)


def parse_image_size(cell: str) -> tuple[int, ...]:
    values = _ints(cell, 2)
    if not all(v > 0 for v in values):
        raise ValueError(f"expected 2 sizes > 0 pixels, got {shown(cell)}")
    return tuple(values)


def parse_window(cell: str) -> tuple[float, ...]:
    low, high = values = _floats(cell, 2)
    if not low < high:
        raise ValueError(f"expected min, max with min < max, got {shown(cell)}")
    return tuple(values)


SEXES = {"M": "M", "F": "F", "": None}


def _sex(cell: str) -> str | None:
    try:
        return SEXES[cell]
    except KeyError:
        raise ValueError(f"expected M, F or an empty cell, got {shown(cell)}") from None


def _age(cell: str) -> float | None:
    if not cell:
        return None
    try:
        value = float(cell)
    except ValueError:
        raise ValueError(f"expected an age in years (or NaN), got {shown(cell)}") from None
    if isnan(value):
        return None
    if not 0.0 <= value <= MAX_AGE_YEARS:
        raise ValueError(f"expected an age in [0, {MAX_AGE_YEARS:g}] years, got {shown(cell)}")
    return value


def _split(cell: str) -> str:
    try:
        return SPLITS[int(cell)]
    except (ValueError, KeyError):
        raise ValueError(f"expected 1 (train), 2 (val) or 3 (test), got {shown(cell)}") from None


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
    parse_spacing,
    parse_image_size,
    parse_window,
    _sex,
    _age,
    _split,
)
_COLUMN_CONVERTERS = tuple(zip(COLUMNS, _CONVERTERS, strict=True))


class _Bad:
    """Marks a cell that failed conversion (``None`` is a valid value for some columns)."""


_BAD: Any = _Bad()


def integer_problem(values: tuple[int, ...], limits: InputLimits) -> str | None:
    """Why integers are beyond what the graph stores (64-bit), or None."""
    for value in values:
        if value > limits.max_integer:
            return (
                f"integer {value} (of {len(str(value))} digits) exceeds the limit of "
                f"{limits.max_integer} (a 64-bit integer)"
            )
    return None


def spacing_in_range(cell: str, limits: InputLimits) -> tuple[float, ...]:
    """:func:`parse_spacing`, then the plausibility range; raises ValueError."""
    spacing = parse_spacing(cell)
    implausible = limits.spacing_problem(spacing, "spacing")
    if implausible is not None:
        raise RuleError(implausible, SPACING_RANGE)
    return spacing


def image_size_in_range(cell: str, limits: InputLimits) -> tuple[int, ...]:
    """:func:`parse_image_size`, then the integer limit; raises ValueError."""
    size = parse_image_size(cell)
    too_large = integer_problem(size, limits)
    if too_large is not None:
        raise RuleError(too_large, INTEGER_RANGE)
    return size


class RowParser:
    """Turns the 18 cells of one row into a record or a rejection; remembers what it has accepted.

    The memory it keeps grows with the distinct lesions, patients and studies: a 64-bit id prefix
    to first line for duplicates, and the first sex per patient and age per study.
    """

    __slots__ = ("_ages", "_limits", "_seen", "_sexes", "_source")

    def __init__(self, source: str, limits: InputLimits | None = None) -> None:
        self._source = source
        self._limits = limits if limits is not None else DEFAULT_LIMITS
        self._seen: dict[int, int] = {}
        self._sexes: dict[int, tuple[str | None, int]] = {}
        self._ages: dict[tuple[int, int], tuple[float | None, int]] = {}

    def parse(self, cells: list[str], line: int) -> LesionRecord | RejectedRow:
        values: list[Any] = []
        bad: list[tuple[str | None, str]] = []
        #: the rule of each problem in ``bad`` that a limit or plausibility rule raised
        rules: dict[int, str] = {}
        # try costs nothing on Python >= 3.11 unless it raises, so collecting every problem of
        # the row is as fast as stopping at the first.
        for (name, convert), cell in zip(_COLUMN_CONVERTERS, cells):  # noqa: B905 (len checked)
            try:
                values.append(convert(cell))
            except ValueError as exc:
                values.append(_BAD)
                if isinstance(exc, RuleError):
                    rules[len(bad)] = exc.rule
                bad.append((name, str(exc)))
        self._check_limits(values, bad, rules)
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
                        f"Key_slice_index), got {shown(file_name)}",
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
                        f"expected {shown(earlier[0] or '')} as on line {earlier[1]} for the same "
                        f"patient (Patient_index {patient}), got {shown(sex or '')}",
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
                    Problem(self._source, line, column, reason, rules.get(i))
                    for i, (column, reason) in enumerate(bad)
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

    def _check_limits(
        self, values: list[Any], bad: list[tuple[str | None, str]], rules: dict[int, str]
    ) -> None:
        """Integers within 64 bits, spacing within its range, coordinates on the image.

        A value that breaks a rule becomes _BAD in ``values``, so that the checks across columns
        (file name, duplicates) do not run on it.
        """
        limits = self._limits

        def refuse(index: int, reason: str, rule: str) -> None:
            values[index] = _BAD
            rules[len(bad)] = rule
            bad.append((COLUMNS[index], reason))

        for index in (1, 2, 3, 4, 11, 13):  # the four indices, Slice_range, Image_size
            value = values[index]
            if value is _BAD:
                continue
            too_large = integer_problem(value if isinstance(value, tuple) else (value,), limits)
            if too_large is not None:
                refuse(index, too_large, INTEGER_RANGE)
        spacing = values[12]
        if spacing is not _BAD:
            implausible = limits.spacing_problem(spacing, "spacing")
            if implausible is not None:
                refuse(12, implausible, SPACING_RANGE)
        size = values[13]
        if size is _BAD:
            return
        rows, columns = size
        for index in (5, 6):  # Measurement_coordinates, Bounding_boxes
            points = values[index]
            if points is _BAD:
                continue
            outside = limits.outside_image(points, columns, rows)
            if outside is not None:
                refuse(index, outside, OUTSIDE_IMAGE)

    @staticmethod
    def _check_file_name_pattern(file_name: str, bad: list[tuple[str | None, str]]) -> None:
        # Without all four indices only the shape of the name can be checked.
        parts = file_name[:-4].split("_") if file_name.endswith(".png") else []
        widths = (6, 2, 2, 3)
        if len(parts) != 4 or not all(
            p.isascii() and p.isdigit() and len(p) >= w for p, w in zip(parts, widths, strict=True)
        ):
            bad.append(("File_name", f"expected {_FILE_NAME_FORMAT}, got {shown(file_name)}"))


def _age_text(age: float | None) -> str:
    return "an empty age" if age is None else f"{age:g}"
