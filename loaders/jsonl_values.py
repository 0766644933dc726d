"""The values of a JSON Lines bookmark's fields, each read and checked on its own: ids, the study
time, axis endpoints, spacing, location, window and type. A value that is unusable raises
:class:`FieldError` with the reason (and the limit or plausibility rule that refused it); the
line reader of :mod:`lesionkg.loaders.jsonl` names the file, line and field."""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from typing import Any

from lesionkg.core.limits import (
    DATE_RANGE,
    DEFAULT_LIMITS,
    NOT_FINITE,
    SPACING_RANGE,
    InputLimits,
)
from lesionkg.core.records import COARSE_TYPES

_TYPE_CODES: dict[str, int] = {name: code for code, name in COARSE_TYPES.items()}
_SHOWN_CHARS = 60


class FieldError(ValueError):
    """A field's value is unusable; the message is the reason, ``rule`` names a limit or
    plausibility rule (:mod:`lesionkg.core.limits`) when one refused it."""

    def __init__(self, reason: str, rule: str | None = None) -> None:
        super().__init__(reason)
        self.rule = rule


def shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def read_identifier(value: Any) -> str:
    if isinstance(value, str):
        text = value.strip()
        if text:
            return text
        raise FieldError(f"expected a non-empty string, got {shown(value)}")
    hint = ' (write ids as strings, e.g. "000123", so leading zeros survive)'
    raise FieldError(
        f"expected a non-empty string, got {kind_of(value)} {shown(value)}"
        + (hint if isinstance(value, int | float) and not isinstance(value, bool) else "")
    )


def read_study_time(value: Any, limits: InputLimits = DEFAULT_LIMITS) -> str:
    if not isinstance(value, str):
        raise FieldError(f"expected an ISO 8601 date or date and time string, got {shown(value)}")
    text = value.strip()
    when: date
    try:
        when = date.fromisoformat(text)
    except ValueError:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise FieldError(
                'expected an ISO 8601 date or date and time ("2024-03-01", '
                f'"2024-03-01T10:22:00"), got {shown(value)}'
            ) from None
    day = when.date() if isinstance(when, datetime) else when
    implausible = limits.date_problem(day)
    if implausible is not None:
        raise FieldError(implausible, DATE_RANGE)
    return when.isoformat()


def read_numbers(value: Any, names: str, unit: str) -> tuple[float, ...]:
    """A JSON array of len(names) finite numbers; ``names`` like ``"x1, y1, x2, y2"``."""
    count = len(names.split(","))
    expected = f"expected [{names}]: {count} finite numbers, {unit}"
    if not isinstance(value, list):
        raise FieldError(f"{expected}, got {kind_of(value)} {shown(value)}")
    if len(value) != count:
        raise FieldError(f"{expected}, got {len(value)} item(s): {shown(value)}")
    for i, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise FieldError(f"{expected}, got {shown(value)} (item {i + 1} is {kind_of(item)})")
        # Python's json reads NaN and Infinity, and overflows 1e999 to inf.
        if not math.isfinite(item):
            raise FieldError(
                f"{expected}, got {shown(value)} (item {i + 1} is not finite)", NOT_FINITE
            )
    return tuple(float(v) for v in value)


def read_endpoints(value: Any) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = points = read_numbers(value, "x1, y1, x2, y2", "pixels")
    if min(points) < 0.0:
        raise FieldError(
            f"expected pixel coordinates >= 0 (0-based, x right, y down), got {shown(value)}"
        )
    if (x1, y1) == (x2, y2):
        raise FieldError(f"the two endpoints coincide ({shown(value)}): an axis needs a length")
    return x1, y1, x2, y2


def read_spacing(value: Any, limits: InputLimits = DEFAULT_LIMITS) -> tuple[float, float]:
    sx, sy = read_numbers(value, "x, y", "mm per pixel")
    if not (sx > 0.0 and sy > 0.0):
        raise FieldError(f"expected pixel spacings > 0 mm, got {shown(value)}")
    implausible = limits.spacing_problem((sx, sy), "pixel spacing")
    if implausible is not None:
        raise FieldError(implausible, SPACING_RANGE)
    return sx, sy


def read_location(value: Any) -> tuple[float, float, float]:
    x, y, z = read_numbers(value, "x, y, z", "normalised to 0..1")
    if not all(0.0 <= v <= 1.0 for v in (x, y, z)):
        raise FieldError(f"expected [x, y, z] each in 0..1, got {shown(value)}")
    return x, y, z


def read_window(value: Any) -> tuple[float, float]:
    low, high = read_numbers(value, "min, max", "HU")
    if not low < high:
        raise FieldError(f"expected [min, max] with min below max, got {shown(value)}")
    return low, high


def read_coarse_type(value: Any) -> int:
    names = ", ".join(f"{code} {name!r}" for code, name in COARSE_TYPES.items())
    if isinstance(value, int) and not isinstance(value, bool) and value in COARSE_TYPES:
        return value
    if isinstance(value, str) and value.strip().lower() in _TYPE_CODES:
        return _TYPE_CODES[value.strip().lower()]
    raise FieldError(
        f"expected a DeepLesion coarse type, a code or a name ({names}); leave the field out "
        f"when the type is unknown; got {shown(value)}"
    )
