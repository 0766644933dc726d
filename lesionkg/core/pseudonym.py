"""Pseudonymisation: keyed hashes instead of the sources' identifiers.

The text between the two rulers is written to be copied into the README as it is (Markdown).

---------------------------------------------------------------------------------------------------

### Pseudonymisation

No names, birth dates, accession numbers or free text enter the graph. Patient, study, series and
lesion ids, and the sources' lesion tracking UIDs and labels, become keyed hashes (HMAC-SHA256
with a secret kept outside the graph). The same secret gives the same ids in every run, so a
patient's later studies join the same `Patient` node. Without the secret the ids cannot be traced
back to the source's ids, nor recomputed from a guessed patient id.

**The secret** is a file of 32 random bytes, by default `$LESIONKG_HOME/pseudonym.key`
(`~/.lesionkg/pseudonym.key` when `LESIONKG_HOME` is not set): beside the local Neo4j folder
`$LESIONKG_HOME/neo4j`, not inside it. It is created on first use with mode 0600, atomically (a
reader never sees a half-written key, and two processes creating it at once end up with the same
one). LesionKG refuses a key file that other users can read or write, or that its group can write
(fix: `chmod 600 FILE`), and one shorter than 16 bytes. The file's bytes are the key, as they are:
to give several installations the same ids, copy one key file (16 to 4096 bytes) to each.

**Back the key up and keep it secret.** Losing it, or running with another one, gives every
patient new ids: later imports no longer join the patients already in the graph. Whoever has the
key and the graph can test guessed patient ids against it. The key never enters the graph; its
`key_id` (a hash that reveals nothing about it) can be stored there to notice a changed key.

**The ids** are a prefix and the first 16 hex digits (64 bits) of
`HMAC-SHA256(key, "lesionkg/v1/" + KIND + NUL + JSON array of the fields)`. The kind in the
message keeps the ids of different kinds unrelated even when their inputs are equal strings, and
the JSON array keeps different field lists apart (`["a|b", "c"]` is not `["a", "b|c"]`).

- `P-`: patient, from the source's patient id (DICOM PatientID, the export's id);
- `S-`: study, from the patient id and the study id (StudyInstanceUID, the export's id);
- `SE-`: series, from the patient, study and series ids;
- `L-`: lesion (one measurement), from its lesion key (below);
- `TU-`: the source's tracking UID (a DICOM UID, unique across patients);
- `TI-`: the source's tracking label, with the patient id (a label such as "Lesion 1" is unique
  only within one patient).

Ids are hashed exactly as the readers give them (they strip DICOM's space padding and reject empty
ids). With 64 bits, the chance that two of a million lesions share an id is about 3e-8.

**What goes into a lesion id**, so that re-importing a bookmark gives the same id and two
different measurements get different ones:

1. the patient id and the study id;
2. the image the lesion was measured on: `uid:` + its SOP Instance UID (+ `#frame` in a
   multi-frame image) when the source names one, else `path:` + the last two components of the
   image path (`path:000002_01_01/162.png`), so that moving or re-mounting an export folder does
   not change the ids; `-` without an image;
3. each axis, long then short: its two pixel endpoints rounded to 0.01 px, the smaller point first
   (an axis drawn from the other end is the same axis), as `px:x1,y1,x2,y2`; an axis given
   without endpoints by its length rounded to 0.01 mm (`mm:12.35`); `-` for no short axis.

4. when the source names the measurement itself, that name (`Bookmark.measurement_uid`): a
   DICOM SR group's tracking UID (`tu:UID`), else the report's SOP Instance UID and the group's
   number (`sr:UID#3`); an AIM annotation's uid (`aim:UID`). JSON Lines and DeepLesion rows name
   no measurement and have the first three parts only.

0.01 px (under 0.01 mm on CT) is far below any real difference between two measurements and far
above float32 / float64 noise. A duplicate is the same measurement given twice (the same report
group or annotation, a re-imported file, an AIM file and its AIM SR twin), never "the same image
and similar values": three measurements with their own tracking UIDs on one slice are three
lesions even when their values are equal (an ellipse gives no endpoints, only a length). Not in
the key: the series (the image implies it), the pixel spacing (the image fixes it), type,
location and finding (they describe the lesion, not which measurement it is). Two bookmarks with
the same key are one bookmark: the later one is counted as a duplicate.

**Dates.** Study dates and times identify (HIPAA Safe Harbor; DICOM PS3.15's profile). They enter
the graph shifted by a per-patient offset: `date_shift_days(P-id)` whole days earlier, between
1 and 1096 (about three years), from `HMAC-SHA256(key, "lesionkg/v1/date-shift" + NUL + JSON
["P-..."])`; the time of day and any UTC offset are kept. One patient's studies all move by the
same days, so study order and follow-up intervals are exact; another patient's move by another
amount, and without the key the true dates cannot be recomputed. The offset needs only the
pseudonymous patient id and the key, so a graph imported before (with dates in clear) is migrated
from the graph itself (`lesionkg.etl.migrations`).

**What enters the graph** from a bookmark: the hashed ids; the study date and time shifted by the
patient's offset (above: it orders a patient's studies and keeps their intervals); the
measurement (mm lengths, pixel endpoints, pixel spacing); the coded
finding and finding site (code meanings, never free text); the coarse type; the normalised
location; the hashed tracking UID and label. The source file and the image path stay out: a path
can hold a patient's name.

---------------------------------------------------------------------------------------------------

:meth:`Pseudonymizer.pseudonymise` turns a :class:`~lesionkg.core.records.Bookmark` into a
:class:`PseudonymousBookmark` holding only the above; :func:`lesion_key` is the lesion key
(readers use it to find duplicates); :func:`load_or_create_secret` reads or creates the key.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from datetime import date, timedelta
from hashlib import sha256
from pathlib import PurePath

from lesionkg.core.errors import ConfigurationError
from lesionkg.core.records import Bookmark, ImageRef

#: Shortest secret accepted, bytes (128 bits).
MIN_SECRET_BYTES = 16
#: Study dates move this many whole days earlier at least / at most (per patient, from the key).
DATE_SHIFT_MIN_DAYS = 1
DATE_SHIFT_MAX_DAYS = 1096

__all__ = [
    "DATE_SHIFT_MAX_DAYS",
    "DATE_SHIFT_MIN_DAYS",
    "MIN_SECRET_BYTES",
    "Pseudonymizer",
    "PseudonymousBookmark",
    "lesion_key",
    "shift_datetime",
]


#: Hex digits kept of each HMAC (64 bits).
_HEX_DIGITS = 16
_DOMAIN = b"lesionkg/v1/"


# --- the secret file ---------------------------------------------------------------------------


# --- ids -----------------------------------------------------------------------------------------


def _rounded(value: float) -> str:
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else text


def _axis_text(endpoints: tuple[float, ...] | None, length_mm: float | None) -> str:
    if endpoints is not None:
        x1, y1, x2, y2 = (round(v, 2) for v in endpoints)
        first, second = sorted(((x1, y1), (x2, y2)))
        return "px:" + ",".join(_rounded(v) for v in (*first, *second))
    if length_mm is not None:
        return "mm:" + _rounded(length_mm)
    return "-"


def _image_text(image: ImageRef | None) -> str:
    if image is None:
        return "-"
    if image.sop_instance_uid:
        frame = f"#{image.frame}" if image.frame is not None else ""
        return f"uid:{image.sop_instance_uid}{frame}"
    if image.path:
        # PurePath splits on the platform's separators; the id joins with "/" everywhere.
        return "path:" + "/".join(PurePath(image.path).parts[-2:])
    return "-"


def lesion_key(bookmark: Bookmark) -> tuple[str, ...]:
    """What identifies a bookmark: patient key, study key, image, long axis, short axis, and the
    source's name of the measurement when it has one (``Bookmark.measurement_uid``).

    See the module documentation for each part. Bookmarks with equal keys are one bookmark
    (duplicates); :meth:`Pseudonymizer.lesion_id` hashes this tuple.
    """
    key = (
        bookmark.patient_key,
        bookmark.study_key,
        _image_text(bookmark.image),
        _axis_text(bookmark.long_axis_px, bookmark.long_axis_mm),
        _axis_text(bookmark.short_axis_px, bookmark.short_axis_mm),
    )
    if bookmark.measurement_uid:
        return (*key, "m:" + bookmark.measurement_uid)
    return key


def shift_datetime(value: str | None, days: int) -> str | None:
    """An ISO 8601 date or date and time (``2024-03-01``, ``2024-03-01T10:22:00+01:00``) moved by
    ``days`` whole days; the time of day and the UTC offset are kept as written."""
    if value is None:
        return None
    moved = date.fromisoformat(value[:10]) + timedelta(days=days)
    return moved.isoformat() + value[10:]


@dataclass(frozen=True, slots=True)
class PseudonymousBookmark:
    """A :class:`~lesionkg.core.records.Bookmark` reduced to what may enter the graph.

    Ids are keyed hashes (see the module documentation); lengths are millimetres, endpoints
    pixels of the key slice (x right, y down), ``pixel_spacing_mm`` the x, y pixel spacing in mm.
    """

    lesion_id: str
    patient_id: str
    study_id: str
    #: ISO 8601 study date or date and time, shifted by the patient's offset (whole days, see
    #: :meth:`Pseudonymizer.date_shift_days`); orders a patient's studies
    study_datetime: str | None
    series_id: str | None
    long_axis_mm: float
    short_axis_mm: float | None
    #: x1, y1, x2, y2, pixels
    long_axis_px: tuple[float, float, float, float] | None
    short_axis_px: tuple[float, float, float, float] | None
    pixel_spacing_mm: tuple[float, float] | None
    #: code meanings, never free text
    finding: str | None
    finding_site: str | None
    #: DeepLesion coarse type 1..8
    coarse_type: int | None
    #: normalised body location x, y, z in 0..1
    location: tuple[float, float, float] | None
    tracking_uid: str | None
    tracking_id: str | None
    #: display window min, max, HU
    window_hu: tuple[float, float] | None = None
    #: the long axis recomputed from the image's spacing when it disagrees with the stated one
    recomputed_long_axis_mm: float | None = None


class Pseudonymizer:
    """Keyed hashes of the sources' identifiers (HMAC-SHA256, see the module documentation).

    ``Pseudonymizer(load_or_create_secret())`` (:mod:`lesionkg.config.secret`). Equal secrets give
    equal ids, in any process and any run.
    """

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, bytes | bytearray):
            raise TypeError(f"the secret must be bytes, got {type(secret).__name__}")
        if len(secret) < MIN_SECRET_BYTES:
            raise ConfigurationError(
                f"the pseudonymisation secret has {len(secret)} bytes; it needs at least "
                f"{MIN_SECRET_BYTES}"
            )
        self._secret = bytes(secret)

    def __repr__(self) -> str:
        # Never show the secret, not even in a traceback.
        return f"Pseudonymizer(key_id={self.key_id!r})"

    def _hash(self, kind: bytes, fields: list[str]) -> str:
        for value in fields:
            if not isinstance(value, str) or not value:
                # An empty key would merge every record that lacks one into one node.
                raise ValueError(f"{kind.decode()} id of an empty or non-string key: {value!r}")
        payload = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
        message = _DOMAIN + kind + b"\0" + payload.encode("utf-8")
        return hmac.new(self._secret, message, sha256).hexdigest()[:_HEX_DIGITS]

    @property
    def key_id(self) -> str:
        """``K-`` + 16 hex digits naming the secret without revealing it; changes with the key."""
        return "K-" + hmac.new(self._secret, _DOMAIN + b"key-id\0", sha256).hexdigest()[:16]

    def patient_id(self, patient_key: str) -> str:
        """``P-`` + 16 hex digits for the source's patient id."""
        return "P-" + self._hash(b"patient", [patient_key])

    def study_id(self, patient_key: str, study_key: str) -> str:
        """``S-`` + 16 hex digits for one study of one patient."""
        return "S-" + self._hash(b"study", [patient_key, study_key])

    def series_id(self, patient_key: str, study_key: str, series_key: str) -> str:
        """``SE-`` + 16 hex digits for one series of one study."""
        return "SE-" + self._hash(b"series", [patient_key, study_key, series_key])

    def lesion_id(self, bookmark: Bookmark) -> str:
        """``L-`` + 16 hex digits of :func:`lesion_key`: the same for a re-imported bookmark."""
        return "L-" + self._hash(b"lesion", list(lesion_key(bookmark)))

    def tracking_uid(self, uid: str) -> str:
        """``TU-`` + 16 hex digits for a lesion tracking UID."""
        return "TU-" + self._hash(b"tracking-uid", [uid])

    def tracking_id(self, patient_key: str, tracking_id: str) -> str:
        """``TI-`` + 16 hex digits for a tracking identifier (label) of one patient."""
        return "TI-" + self._hash(b"tracking-id", [patient_key, tracking_id])

    def date_shift_days(self, patient_id: str) -> int:
        """The whole days (negative: earlier) by which the study dates of the pseudonymous patient
        ``patient_id`` (``P-...``) are shifted, in ``-DATE_SHIFT_MAX_DAYS..-DATE_SHIFT_MIN_DAYS``.

        From the key and the pseudonymous id only, so a graph can be migrated from its own ids.
        """
        span = DATE_SHIFT_MAX_DAYS - DATE_SHIFT_MIN_DAYS + 1
        return -(DATE_SHIFT_MIN_DAYS + int(self._hash(b"date-shift", [patient_id]), 16) % span)

    def pseudonymise(self, bookmark: Bookmark) -> PseudonymousBookmark:
        """What of ``bookmark`` may enter the graph, with every identifier hashed and the study
        date shifted by the patient's offset."""
        patient, study = bookmark.patient_key, bookmark.study_key
        patient_id = self.patient_id(patient)
        return PseudonymousBookmark(
            lesion_id=self.lesion_id(bookmark),
            patient_id=patient_id,
            study_id=self.study_id(patient, study),
            study_datetime=shift_datetime(
                bookmark.study_datetime, self.date_shift_days(patient_id)
            ),
            series_id=(
                self.series_id(patient, study, bookmark.series_key)
                if bookmark.series_key is not None
                else None
            ),
            long_axis_mm=bookmark.long_axis_mm,
            short_axis_mm=bookmark.short_axis_mm,
            long_axis_px=bookmark.long_axis_px,
            short_axis_px=bookmark.short_axis_px,
            pixel_spacing_mm=bookmark.pixel_spacing_mm,
            finding=bookmark.finding,
            finding_site=bookmark.finding_site,
            coarse_type=bookmark.coarse_type,
            location=bookmark.location,
            tracking_uid=(
                self.tracking_uid(bookmark.tracking_uid)
                if bookmark.tracking_uid is not None
                else None
            ),
            tracking_id=(
                self.tracking_id(patient, bookmark.tracking_id)
                if bookmark.tracking_id is not None
                else None
            ),
            window_hu=bookmark.window_hu,
            recomputed_long_axis_mm=bookmark.recomputed_long_axis_mm,
        )
