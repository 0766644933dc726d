"""JSON Lines bookmarks: lesion measurements from PACS exports that are not DICOM.

The text between the two rulers below is the format's documentation, written to be copied into
the README as it is (Markdown).

---------------------------------------------------------------------------------------------------

### JSON Lines bookmarks

For PACS and viewer exports that are not DICOM SR: one bookmark (one lesion measurement on one
key slice) per line, each line one JSON object, UTF-8. Blank lines are skipped.

```json
{"patient": "PX-1042", "study": "1.2.840.113619.2.55.3.1", "study_time": "2024-03-01T10:22:00", "series": "3", "image": "images/PX-1042/s3/0162.png", "long_axis_px": [238.3, 261.2, 235.9, 268.6], "short_axis_px": [240.4, 265.7, 233.7, 264.2], "spacing_mm": [0.82, 0.82], "type": "liver", "location": [0.55, 0.43, 0.62], "tracking_uid": "2.25.1234567", "tracking_id": "Lesion 1"}
```

Fields (required unless marked optional):

- `patient`: string, the source's patient id. Write ids as JSON strings (`"000123"` keeps its
  zeros; a number is rejected).
- `study`: string, the study id (StudyInstanceUID or the export's own id; unique within the
  patient).
- `study_time`: string, an ISO 8601 date (`"2024-03-01"`) or date and time
  (`"2024-03-01T10:22:00"`, optionally with a UTC offset: `Z`, `+01:00`). It orders the patient's
  studies; all lines of one study must give the same time. Use one convention (local time, or
  times with offsets) for all of a patient's studies: they are ordered as given.
- `series` (optional): string, the series id.
- `image`: string, the path to the key slice: a 16-bit grayscale PNG in DeepLesion's convention
  (HU + 32768) or a DICOM file (with the `DICM` preamble). A relative path resolves against the
  folder of the JSONL file.
- `long_axis_px`: `[x1, y1, x2, y2]`, the long axis endpoints in pixels of that image (x right,
  y down, 0-based), finite and >= 0, two distinct points.
- `short_axis_px` (optional): `[x1, y1, x2, y2]`, the short axis, likewise; not longer (in mm)
  than the long axis (equal is allowed: a round lesion).
- `spacing_mm`: `[x, y]`, the pixel spacing in mm, both finite and > 0. x (the distance between
  columns) comes first, as in DeepLesion's `Spacing_mm_px_`; DICOM's PixelSpacing is the other
  way round (row spacing, i.e. y, first).
- `type` (optional): the DeepLesion coarse type, a code 1..8 or its name, in any case: 1 `bone`,
  2 `abdomen`, 3 `mediastinum`, 4 `liver`, 5 `lung`, 6 `kidney`, 7 `soft tissue`, 8 `pelvis`.
- `location` (optional): `[x, y, z]`, the normalised body location, each in 0..1 (DeepLesion's
  `Normalized_lesion_location`).
- `tracking_uid` (optional): string, the source's lesion tracking UID, the same for one lesion
  across reports.
- `tracking_id` (optional): string, the source's tracking label (e.g. `"Lesion 1"`), unique
  within the patient.
- `window_hu` (optional): `[min, max]`, the display window the lesion was measured in, HU, min
  below max (DeepLesion's `DICOM_windows`). It says whether the lesion was read in a lung window,
  which the `cues` similarity space needs: without it the lesion is not linked in that space.

`null` for an optional field means the same as leaving it out. Surrounding whitespace is not part
of an id (as in DICOM, whose values are space-padded). Lengths are computed, never read: with
`spacing_mm = [sx, sy]`, `long_axis_mm = sqrt(((x2 - x1) * sx)^2 + ((y2 - y1) * sy)^2)` over
`long_axis_px`, and `short_axis_mm` likewise over `short_axis_px`.

**Unknown fields are rejected**, with the list of known ones: a misspelt optional field
(`"loction"`) would otherwise be lost without a word, and a field such as `"patient_name"` must
not pass unnoticed through a tool that promises that no names enter the graph.

**All or nothing.** The whole file is checked before anything is imported, and every problem is
listed with the file, the line, the field (shown as `column`) and the reason; one bad line means
nothing of the file is imported. Checked: the file (missing, empty, not UTF-8, a JSON array or a
pretty-printed object instead of one object per line), JSON syntax per line, every field's
presence and type, finite numbers, positive spacing, distinct endpoints, short axis not longer
than the long, known type, location in 0..1, the image file (it must exist and be a 16-bit
grayscale PNG or a DICOM file; with `--allow-missing-images` a missing one is accepted and the
lesion is imported without the image-derived fields), one time per study, and duplicates: two
lines with the same patient, study, image (compared by the last two components of its path, as
in the lesion id) and axis endpoints (rounded to 0.01 px, in either direction) are one bookmark
given twice, and the later line is rejected, naming the earlier one.

**Limits and plausibility** (defaults; see `docs/input-limits.md`, each problem names its rule):
a regular file of at most 1 GiB, lines of at most 64 KiB, JSON nested at most 64 deep (checked
before decoding), string fields of at most 4,096 characters; the image at most 4096 x 4096 pixels
(from its header) and whole (every PNG chunk and its image data checked before anything is
imported); axis endpoints on the image (16 px margin); spacing within 0.01..10 mm; the study
date from 1900-01-01 to tomorrow.

---------------------------------------------------------------------------------------------------

:func:`read_jsonl_bookmarks` returns one :class:`~lesionkg.core.records.Bookmark` per line, in file
order, or raises one :class:`~lesionkg.core.errors.InvalidInputError` listing every problem (outcome
"nothing was imported"). ``Bookmark.source`` is the path as given, ``source_index`` the 1-based
line, ``image.path`` the image's absolute path, ``study_datetime`` the time in normal ISO form
(``datetime.isoformat``: ``"2024-03-01T10:22"`` becomes ``"2024-03-01T10:22:00"``, ``Z`` becomes
``+00:00``; a date stays a date).
"""  # noqa: E501 (the example bookmark is one JSON line, as in a real file)

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from lesionkg.core.errors import InvalidInputError, Problem
from lesionkg.core.limits import (
    DEFAULT_LIMITS,
    FIELD_SIZE,
    FILE_SIZE,
    JSON_DEPTH,
    LINE_SIZE,
    OUTSIDE_IMAGE,
    InputLimits,
)
from lesionkg.core.pseudonym import lesion_key
from lesionkg.core.records import Bookmark, ImageRef
from lesionkg.loaders.guards import json_depth_refusal, regular_file_refusal
from lesionkg.loaders.images import ImageCheck, check_key_slice_image
from lesionkg.loaders.jsonl_values import (
    FieldError,
    kind_of,
    read_coarse_type,
    read_endpoints,
    read_identifier,
    read_location,
    read_spacing,
    read_study_time,
    read_window,
    shown,
)

__all__ = [
    "FIELDS",
    "OPTIONAL_FIELDS",
    "OUTCOME",
    "REQUIRED_FIELDS",
    "read_jsonl_bookmarks",
]

REQUIRED_FIELDS: tuple[str, ...] = (
    "patient",
    "study",
    "study_time",
    "image",
    "long_axis_px",
    "spacing_mm",
)
OPTIONAL_FIELDS: tuple[str, ...] = (
    "series",
    "short_axis_px",
    "type",
    "location",
    "tracking_uid",
    "tracking_id",
    "window_hu",
)
FIELDS: tuple[str, ...] = REQUIRED_FIELDS + OPTIONAL_FIELDS
#: What a refused file did not do, in the error message.
OUTCOME = "nothing was imported"

#: Lengths within this many mm count as equal when the short axis is compared with the long one
#: (a round lesion has two equal axes; float rounding must not make it "longer").
AXIS_TOLERANCE_MM = 1e-6


@dataclass(frozen=True, slots=True)
class _Earlier:
    """The first accepted line of a study, for the one-time-per-study check."""

    line: int
    study_time: str


# --- lines ----------------------------------------------------------------------------------------


class _Bad:
    """Marks a field that failed (``None`` means an absent optional field)."""


_BAD: Any = _Bad()


def _length_mm(points: tuple[float, ...], spacing: tuple[float, float]) -> float:
    x1, y1, x2, y2 = points
    sx, sy = spacing
    return math.hypot((x2 - x1) * sx, (y2 - y1) * sy)


class _Object(dict[str, Any]):
    """A parsed JSON object that remembers its repeated keys (json keeps only the last value)."""

    repeated: tuple[str, ...] = ()


def _object_pairs(pairs: list[tuple[str, Any]]) -> _Object:
    # A repeated field is data that json.loads would drop without a word.
    obj = _Object(pairs)
    if len(obj) < len(pairs):
        seen: set[str] = set()
        repeated: list[str] = []
        for k, _ in pairs:
            if k in seen:
                repeated.append(k)
            seen.add(k)
        obj.repeated = tuple(repeated)
    return obj


class _Reader:
    """Checks one file's lines; collects every problem and the bookmarks of the good lines."""

    def __init__(self, source: str, allow_missing_images: bool, limits: InputLimits) -> None:
        self.source = source
        self.folder = Path(os.path.abspath(source)).parent
        self.allow_missing_images = allow_missing_images
        self.limits = limits
        self.problems: list[Problem] = []
        self.bookmarks: list[Bookmark] = []
        self._keys: dict[tuple[str, ...], int] = {}
        self._studies: dict[tuple[str, str], _Earlier] = {}
        self._images: dict[Path, ImageCheck] = {}
        self.syntax_errors = 0

    def problem(self, line: int, field: str | None, reason: str, rule: str | None = None) -> None:
        self.problems.append(Problem(self.source, line, field, reason, rule))

    def read_line(self, line: int, text: str) -> None:
        refusal = json_depth_refusal(text, self.limits)
        if refusal is not None:
            self.problem(line, None, refusal.reason, refusal.rule)
            return
        try:
            obj = json.loads(text, object_pairs_hook=_object_pairs)
        except json.JSONDecodeError as exc:
            self.syntax_errors += 1
            self.problem(line, None, f"invalid JSON: {exc.msg} at character {exc.colno}")
            return
        except RecursionError:  # pragma: no cover (the depth check runs first)
            self.problem(line, None, "JSON nested too deep to decode", JSON_DEPTH)
            return
        if not isinstance(obj, dict):
            self.problem(line, None, f"expected a JSON object (one bookmark), got {kind_of(obj)}")
            return
        self._check_object(line, obj)

    def _field(
        self, line: int, obj: dict[str, Any], name: str, convert: Callable[[Any], Any]
    ) -> Any:
        """The converted value, None for an absent optional field, _BAD after a problem."""
        value = obj.get(name)
        if value is None:
            if name in REQUIRED_FIELDS:
                self.problem(line, name, "missing" if name not in obj else "missing (null)")
                return _BAD
            return None
        if isinstance(value, str) and len(value) > self.limits.field_chars:
            self.problem(
                line,
                name,
                f"{len(value):,} characters, more than the limit of {self.limits.field_chars:,}",
                FIELD_SIZE,
            )
            return _BAD
        try:
            return convert(value)
        except FieldError as exc:
            self.problem(line, name, str(exc), exc.rule)
            return _BAD

    def _check_object(self, line: int, obj: dict[str, Any]) -> None:
        before = len(self.problems)
        for name in dict.fromkeys(getattr(obj, "repeated", ())):
            self.problem(line, name, "the field appears more than once in the object")
        for name in obj:
            if name not in FIELDS:
                self.problem(
                    line,
                    name,
                    "unknown field (rejected so that no data is dropped unnoticed); the fields "
                    f"are {', '.join(FIELDS)}",
                )
        patient = self._field(line, obj, "patient", read_identifier)
        study = self._field(line, obj, "study", read_identifier)
        study_time = self._field(
            line, obj, "study_time", partial(read_study_time, limits=self.limits)
        )
        series = self._field(line, obj, "series", read_identifier)
        image = self._field(line, obj, "image", self._image)
        long_px = self._field(line, obj, "long_axis_px", read_endpoints)
        short_px = self._field(line, obj, "short_axis_px", read_endpoints)
        spacing = self._field(line, obj, "spacing_mm", partial(read_spacing, limits=self.limits))
        coarse_type = self._field(line, obj, "type", read_coarse_type)
        location = self._field(line, obj, "location", read_location)
        tracking_uid = self._field(line, obj, "tracking_uid", read_identifier)
        tracking_id = self._field(line, obj, "tracking_id", read_identifier)
        window = self._field(line, obj, "window_hu", read_window)

        long_mm = short_mm = None
        if spacing is not _BAD:
            if long_px is not _BAD:
                long_mm = _length_mm(long_px, spacing)
            if short_px not in (_BAD, None):
                short_mm = _length_mm(short_px, spacing)
        if long_mm is not None and short_mm is not None and short_mm > long_mm + AXIS_TOLERANCE_MM:
            self.problem(
                line,
                "short_axis_px",
                f"the short axis ({short_mm:.2f} mm) is longer than the long axis "
                f"({long_mm:.2f} mm); were the two swapped?",
            )
        if image not in (_BAD, None):
            self._check_inside(
                line, image, (("long_axis_px", long_px), ("short_axis_px", short_px))
            )
        if len(self.problems) > before:
            return
        # long_axis_px and spacing_mm are required: without a problem both were read
        assert long_mm is not None

        bookmark = Bookmark(
            source=self.source,
            source_index=line,
            patient_key=patient,
            study_key=study,
            study_datetime=study_time,
            series_key=series,
            image=image,
            long_axis_mm=long_mm,
            short_axis_mm=short_mm,
            long_axis_px=long_px,
            short_axis_px=short_px,
            pixel_spacing_mm=spacing,
            coarse_type=coarse_type,
            tracking_id=tracking_id,
            tracking_uid=tracking_uid,
            location=location,
            window_hu=window,
        )
        # Cross-line checks compare with accepted lines only, so that a broken line cannot make
        # later good lines look inconsistent.
        key = lesion_key(bookmark)
        first = self._keys.get(key)
        if first is not None:
            self.problem(
                line,
                None,
                f"duplicate of the bookmark on line {first} (same patient, study, image and axis "
                "endpoints)",
            )
            return
        earlier = self._studies.get((patient, study))
        if earlier is not None and earlier.study_time != study_time:
            self.problem(
                line,
                "study_time",
                f"expected {earlier.study_time!r} as on line {earlier.line} for the same study, "
                f"got {study_time!r}",
            )
            return
        self._keys[key] = line
        self._studies.setdefault((patient, study), _Earlier(line, study_time))
        self.bookmarks.append(bookmark)

    def _image(self, value: Any) -> ImageRef:
        if not isinstance(value, str) or not value.strip():
            raise FieldError(f"expected a non-empty path string, got {shown(value)}")
        # abspath, not resolve(): the path stays the one the export named, symlinks included.
        path = Path(os.path.abspath(self.folder / value.strip()))
        if path not in self._images:
            self._images[path] = check_key_slice_image(path, self.limits)
        refusal = self._images[path].refusal
        if refusal is not None and not (self.allow_missing_images and not path.exists()):
            raise FieldError(refusal.reason, refusal.rule)
        return ImageRef(path=str(path))

    def _check_inside(self, line: int, image: ImageRef, axes: tuple[tuple[str, Any], ...]) -> None:
        """Axis endpoints must lie on the image, when its size is known."""
        assert image.path is not None  # JSON Lines images are paths
        check = self._images.get(Path(image.path))
        if check is None or check.size_px is None:
            return
        width, height = check.size_px
        for name, points in axes:
            if points in (_BAD, None):
                continue
            outside = self.limits.outside_image(points, width, height)
            if outside is not None:
                self.problem(line, name, outside, OUTSIDE_IMAGE)


# --- file -----------------------------------------------------------------------------------------


def _refused(
    source: str, reason: str, line: int | None = None, *, rule: str | None = None
) -> InvalidInputError:
    return InvalidInputError([Problem(source, line, None, reason, rule)], outcome=OUTCOME)


def _lines(source: str, limits: InputLimits) -> tuple[list[tuple[int, str]], list[Problem]]:
    """``(line, text)`` of every non-blank line, and the problems of lines too long to read;
    file-level problems raise."""
    refusal = regular_file_refusal(source)
    if refusal is not None:
        raise _refused(source, refusal.reason, rule=refusal.rule)
    try:
        with open(source, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > limits.file_bytes:
                raise _refused(
                    source,
                    f"file of {size:,} bytes exceeds the limit of {limits.file_bytes:,} bytes",
                    rule=FILE_SIZE,
                )
            data = f.read()
    except FileNotFoundError:
        raise _refused(source, "file not found") from None
    except IsADirectoryError:
        raise _refused(source, "is a directory, expected a JSON Lines file") from None
    except OSError as exc:
        raise _refused(source, f"cannot be read ({exc.strerror})") from None
    if not data:
        raise _refused(source, "file is empty (0 bytes); expected one JSON bookmark per line")
    lines: list[tuple[int, str]] = []
    too_long: list[Problem] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if len(raw) > limits.line_bytes:
            too_long.append(
                Problem(
                    source,
                    number,
                    None,
                    f"line of {len(raw):,} bytes exceeds the limit of {limits.line_bytes:,} bytes",
                    LINE_SIZE,
                )
            )
            continue
        if b"\0" in raw:
            raise _refused(
                source,
                "not a UTF-8 text file (NUL byte; UTF-16 or binary?): JSON Lines is UTF-8",
                number,
            )
        try:
            # A byte order mark is not JSON; tolerate one at the start, as many editors write it.
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise _refused(
                source,
                f"not a UTF-8 text file (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of "
                "the line cannot be decoded): JSON Lines is UTF-8",
                number,
            ) from None
        if text.strip():
            lines.append((number, text))
    if not lines and too_long:
        raise InvalidInputError(too_long, outcome=OUTCOME)
    if not lines:
        raise _refused(source, "no bookmarks: the file holds only blank lines")
    first_line, first_text = lines[0]
    if first_text.lstrip().startswith("["):
        raise _refused(
            source,
            "a JSON array, not JSON Lines: write one bookmark object per line "
            "(e.g. jq -c '.[]' bookmarks.json > bookmarks.jsonl)",
            first_line,
        )
    return lines, too_long


def read_jsonl_bookmarks(
    path: str | os.PathLike[str],
    *,
    allow_missing_images: bool = False,
    limits: InputLimits | None = None,
) -> list[Bookmark]:
    """Every bookmark of a JSON Lines file (format in the module documentation), in file order.

    Checks the whole file first and raises one :class:`~lesionkg.core.errors.InvalidInputError`
    listing every problem (file, line, field, reason; outcome "nothing was imported") if there is
    any, so that nothing of a bad file is imported. ``allow_missing_images`` accepts image paths
    that do not exist (the bookmark keeps the path; the caller imports it without image-derived
    fields); an image that exists must still be a 16-bit grayscale PNG or a DICOM file.
    ``limits`` (default :data:`~lesionkg.core.limits.DEFAULT_LIMITS`) bounds the file, line and
    field sizes, the JSON depth and the image size, and sets the plausibility rules; a problem
    found by one of them names its ``rule``.
    """
    source = os.fspath(path)
    limits = limits if limits is not None else DEFAULT_LIMITS
    reader = _Reader(source, allow_missing_images, limits)
    lines, too_long = _lines(source, limits)
    reader.problems.extend(too_long)
    for number, text in lines:
        reader.read_line(number, text)
    if reader.syntax_errors:
        _refuse_whole_document(source, "\n".join(text for _, text in lines), limits)
    if reader.problems:
        reader.problems.sort(key=lambda p: p.line or 0)
        raise InvalidInputError(reader.problems, outcome=OUTCOME)
    return reader.bookmarks


def _refuse_whole_document(source: str, text: str, limits: InputLimits) -> None:
    """Name the real mistake when the file is one JSON document spread over many lines."""
    if json_depth_refusal(text, limits) is not None:
        return  # the lines' own problems stand; a document this deep is not worth naming
    try:
        document = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return
    raise _refused(
        source,
        f"the file is one JSON {'array' if isinstance(document, list) else 'document'} spread "
        "over several lines, not JSON Lines: write each bookmark object on one line "
        "(e.g. jq -c . bookmarks.json > bookmarks.jsonl)",
    )
