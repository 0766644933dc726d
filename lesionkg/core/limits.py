"""Limits on hostile input and plausibility bounds on what the readers accept.

Every reader takes an :class:`InputLimits` (``limits=``; :data:`DEFAULT_LIMITS` when omitted).
A value beyond a limit, or an implausible value, is refused with a
:class:`~lesionkg.core.errors.Problem` whose ``rule`` is one of the stable rule names below, so
that callers and tests can tell the reasons apart without parsing messages. The rules, their
defaults and why they exist are documented in ``docs/input-limits.md``.

Pure: no files, no clock except :meth:`InputLimits.latest_date` when no ``today`` is given.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import date, timedelta

# --- rule names: stable keys, part of the interface (tests and reports match on them) -----------

#: JSON nested deeper than ``json_depth`` (the decoder recurses: 3,000 levels crash it)
JSON_DEPTH = "json_depth"
#: XML elements nested deeper than ``xml_depth`` (AIM; the tree is built recursively)
XML_DEPTH = "xml_depth"
#: a line (JSON Lines) longer than ``line_bytes``
LINE_SIZE = "line_size"
#: a file read whole (JSON Lines, AIM JSON/XML) larger than ``file_bytes``
FILE_SIZE = "file_size"
#: a string field (id, path, label) longer than ``field_chars``
FIELD_SIZE = "field_size"
#: an image's pixel count, read from its header, above ``image_pixels`` (or ``dicom_pixels``)
IMAGE_PIXELS = "image_pixels"
#: an image whose header is valid but whose data is cut short or corrupt
IMAGE_TRUNCATED = "image_truncated"
#: an integer outside ``[0, max_integer]`` where a non-negative index is expected
INTEGER_RANGE = "integer_range"
#: NaN or an infinity where a measurement is expected
NOT_FINITE = "not_finite"
#: an input path that is not a regular file (a FIFO, a device, a socket)
NOT_REGULAR_FILE = "not_regular_file"
#: an output path that resolves to an input file (it would overwrite the input)
OUTPUT_IS_INPUT = "output_is_input"
#: coordinates outside the image, beyond ``coordinate_margin_px``
OUTSIDE_IMAGE = "outside_image"
#: a pixel spacing (or slice interval) outside ``[spacing_min_mm, spacing_max_mm]``
SPACING_RANGE = "spacing_range"
#: a study date before ``earliest_date`` or after today
DATE_RANGE = "date_range"
#: a stated length that is NaN, infinite, negative or zero
LENGTH_NOT_POSITIVE = "length_not_positive"

RULES: tuple[str, ...] = (
    JSON_DEPTH,
    XML_DEPTH,
    LINE_SIZE,
    FILE_SIZE,
    FIELD_SIZE,
    IMAGE_PIXELS,
    IMAGE_TRUNCATED,
    INTEGER_RANGE,
    NOT_FINITE,
    NOT_REGULAR_FILE,
    OUTPUT_IS_INPUT,
    OUTSIDE_IMAGE,
    SPACING_RANGE,
    DATE_RANGE,
    LENGTH_NOT_POSITIVE,
)

#: the largest value Neo4j and NumPy store as a 64-bit signed integer
INT64_MAX = (1 << 63) - 1
#: how far past the far edge of the last pixel a reader's coordinates may sit (float rounding of
#: a point on the edge), for the DICOM SR and AIM checks against the referenced image
EDGE_ROUNDING_PX = 1e-3
#: long axis >= short axis is checked with this relative tolerance, for values written with few
#: digits (SR and AIM)
AXES_RELATIVE_TOLERANCE = 1e-6


@dataclass(frozen=True, slots=True)
class InputLimits:
    """What the readers accept; every default is documented in ``docs/input-limits.md``."""

    #: deepest nesting of arrays and objects in a JSON document or line; a bookmark needs 2
    json_depth: int = 64
    #: deepest nesting of XML elements (AIM v4 needs about 10)
    xml_depth: int = 64
    #: longest JSON line, bytes; a bookmark line is about 400 bytes
    line_bytes: int = 1 << 16
    #: largest file read whole into memory (JSON Lines, AIM), bytes
    file_bytes: int = 1 << 30
    #: longest string field (ids, paths, labels), characters; a DICOM UID has at most 64 and a
    #: path at most 4,096 bytes on Linux
    field_chars: int = 4096
    #: most pixels of one image (PNG width x height, DICOM Rows x Columns); 4096 x 4096, 8 times
    #: a CT slice's 512 x 512 in each direction
    image_pixels: int = 4096 * 4096
    #: most pixels of one DICOM file over all its frames (Rows x Columns x NumberOfFrames): an
    #: Enhanced CT of 1,024 frames of 512 x 512 is 2**28, decoded whole by pydicom (512 MiB)
    dicom_pixels: int = 1 << 28
    #: largest integer index (patient, study, series, slice); the graph stores 64-bit integers
    max_integer: int = INT64_MAX
    #: how far a coordinate may lie outside the image, pixels. DeepLesion pads its boxes by 5 px,
    #: and two real validation rows measure up to 1.6 px past the edge (box to 6.6 px)
    coordinate_margin_px: float = 16.0
    #: smallest and largest plausible pixel spacing or slice interval, mm (CT: 0.2 to 1 mm
    #: in-plane, 0.25 to 5 mm between slices in DeepLesion)
    spacing_min_mm: float = 0.01
    spacing_max_mm: float = 10.0
    #: earliest plausible study date (before CT; DICOM's unknown dates are often 0001 or 1800)
    earliest_date: date = date(1900, 1, 1)
    #: days a study date may lie beyond ``today`` (time zones: a study dated tomorrow in UTC+14)
    future_days: int = 1
    #: the day "not in the future" is measured from; None: the machine's date when checked
    today: date | None = None

    def latest_date(self) -> date:
        """The latest plausible study date."""
        return (self.today or date.today()) + timedelta(days=self.future_days)

    def date_problem(self, day: date) -> str | None:
        """Why ``day`` is not a plausible study date, or None."""
        if day < self.earliest_date:
            return (
                f"study date {day.isoformat()} is before {self.earliest_date.isoformat()}: "
                "not a plausible CT study date (a placeholder for an unknown date?)"
            )
        latest = self.latest_date()
        if day > latest:
            return f"study date {day.isoformat()} is in the future (after {latest.isoformat()})"
        return None

    def spacing_problem(self, spacing_mm: tuple[float, ...], what: str) -> str | None:
        """Why a pixel spacing or slice interval is implausible, or None."""
        for value in spacing_mm:
            if not self.spacing_min_mm <= value <= self.spacing_max_mm:
                return (
                    f"{what} {value:g} mm is outside the plausible range "
                    f"{self.spacing_min_mm:g}..{self.spacing_max_mm:g} mm"
                )
        return None

    def outside_image(
        self, points: tuple[float, ...], width_px: float, height_px: float
    ) -> str | None:
        """Why x, y, x, y... coordinates lie outside a ``width_px`` x ``height_px`` image, or
        None. Coordinates run from 0 to the width (height) with ``coordinate_margin_px`` slack."""
        margin = self.coordinate_margin_px
        xs, ys = points[0::2], points[1::2]
        if all(-margin <= x <= width_px + margin for x in xs) and all(
            -margin <= y <= height_px + margin for y in ys
        ):
            return None
        return (
            f"coordinates {_points(points)} lie outside the {width_px:g} x {height_px:g} px image "
            f"(width x height, {margin:g} px margin): wrong image or wrong units?"
        )

    def with_overrides(self, settings: dict[str, str]) -> InputLimits:
        """A copy with ``name=value`` settings applied (e.g. from ``--limit json_depth=128``).

        Raises ValueError naming the setting when a name is unknown or a value does not parse
        (a number must not be negative or NaN).
        """
        known = limit_names()
        changes: dict[str, object] = {}
        for name, text in settings.items():
            if name not in known:
                raise ValueError(f"unknown input limit {name!r}; known: {', '.join(known)}")
            current = getattr(self, name)
            try:
                value: object
                if isinstance(current, date):
                    value = date.fromisoformat(text)
                elif isinstance(current, int):
                    value = int(text)
                else:
                    value = float(text)
                if isinstance(value, int | float) and not value >= 0:
                    raise ValueError(text)
                changes[name] = value
            except ValueError:
                raise ValueError(f"input limit {name}: {text!r} is not a valid value") from None
        return replace(self, **changes)  # type: ignore[arg-type]


def limit_names() -> tuple[str, ...]:
    """The names :meth:`InputLimits.with_overrides` accepts (every setting but ``today``)."""
    return tuple(f.name for f in fields(InputLimits) if f.name != "today")


def _points(points: tuple[float, ...]) -> str:
    return "[" + ", ".join(f"{p:g}" for p in points) + "]"


#: the limits every reader applies unless given others
DEFAULT_LIMITS = InputLimits()
