"""Incremental import of new PACS bookmarks: ``lesionkg etl PATH...``.

Inputs are files and folders (walked recursively, in sorted order):

- DICOM SR TID 1500 measurement reports (:mod:`lesionkg.loaders.dicom_sr`), with the CT images
  they reference found among all the inputs and ``EtlOptions.images``
  (:mod:`lesionkg.loaders.ct`);
- JSON Lines bookmarks (``.jsonl``, :mod:`lesionkg.loaders.jsonl`);
- DeepLesion rows (``.csv`` in ``DL_info.csv`` format, :mod:`lesionkg.loaders.deeplesion`).

CT images and PNG key slices are images, not bookmarks; a ``SYNTHETIC.json`` beside the files
marks them as generated data (``dataset = 'synthetic'`` on every node). Anything else is rejected
with its reason.

Each bookmark file is one unit, written in ONE transaction: its patients, studies and lesions;
the lesions' cue vectors and embeddings; their ``SIMILAR_TO`` edges (the ``k`` nearest lesions in
each similarity space, from the persisted hnswlib index plus the file's own new lesions); the
re-numbered study order and the re-matched tracks of every patient the file touches. So a
bookmark is either fully in the graph (node, edges, track) or not at all, and killing the process
at any point loses at most the file in flight, which the next run imports. Ids are keyed hashes
of the source's own ids (:mod:`lesionkg.core.pseudonym`; DeepLesion rows keep their public ids), so a
re-imported file finds its lesions present and changes nothing (counted as duplicates).

Pure steps (location, bounding box, study order) are functions of this module without a
database; the reads and the one write per file are retried with backoff when Neo4j is
unreachable or restarting (:class:`RetryPolicy`), and a file is never half-applied.
"""

from __future__ import annotations

import math
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from neo4j import Driver, ManagedTransaction
from neo4j.exceptions import Neo4jError, ServiceUnavailable, SessionExpired, TransientError
from tqdm import tqdm

from lesionkg.config.secret import load_or_create_secret
from lesionkg.core import cues
from lesionkg.core.body import relative_xy
from lesionkg.core.errors import (
    ConfigurationError,
    DatabaseError,
    InvalidInputError,
    ModelError,
    Problem,
)
from lesionkg.core.matching import MatchConfig, MatchLesion, Tracks, match_patient, reader_agreement
from lesionkg.core.pseudonym import Pseudonymizer, PseudonymousBookmark
from lesionkg.core.records import COARSE_TYPES, Bookmark, LesionRecord
from lesionkg.core.similarity import MISSING, exact_knn, predict_types
from lesionkg.db.driver import run_statement
from lesionkg.db.schema import apply_schema
from lesionkg.db.statements import statement
from lesionkg.db.writes import lesion_props
from lesionkg.graph.matching import read_match_lesions, track_rows
from lesionkg.graph.similarity import SPACES, Space, default_index_dir, space_index
from lesionkg.graph.vector_index import LesionIndex
from lesionkg.loaders.ct import CTImage, CTIndex, index_ct_images, read_ct_header, read_hu
from lesionkg.loaders.ct import neighbours as ct_neighbours

#: dataset label of PACS bookmarks (DeepLesion rows keep "DeepLesion"; generated data "synthetic")
PACS_DATASET = "PACS"
#: series id of lesions whose source names no series: one volume per study
NO_SERIES = "SE-none"
#: ef of a freshly built index; small indexes need no tuning beyond this for recall ~1
MIN_EF = 64
#: how far beyond the axis endpoints the lesion box reaches, pixels (DeepLesion pads by 5)
BOX_PAD_PX = 5.0

T = TypeVar("T")


# --- retries ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to keep trying when Neo4j is unreachable or restarting, seconds.

    Waits double from ``first_wait_s`` up to ``max_wait_s``; after ``give_up_after_s`` of failed
    tries the error is raised (nothing of the file was written).
    """

    first_wait_s: float = 0.5
    max_wait_s: float = 10.0
    give_up_after_s: float = 120.0


#: failures after which the same work may succeed: connection lost, leader switch, lock timeouts
RETRYABLE = (ServiceUnavailable, SessionExpired, TransientError, ConnectionError, OSError)


def with_retries(
    action: Callable[[], T],
    policy: RetryPolicy,
    what: str,
    on_retry: Callable[[int, float, BaseException], None] | None = None,
) -> T:
    """``action()``, retried with exponential backoff on :data:`RETRYABLE` errors.

    ``on_retry(attempt, wait_s, error)`` is called before each wait. Raises
    :class:`DatabaseError` naming ``what`` once ``policy.give_up_after_s`` has passed.
    """
    started = time.monotonic()
    attempt = 0
    wait = policy.first_wait_s
    while True:
        try:
            return action()
        except RETRYABLE as exc:
            attempt += 1
            elapsed = time.monotonic() - started
            if elapsed + wait > policy.give_up_after_s:
                raise DatabaseError(
                    f"{what}: Neo4j still unreachable after {attempt} tries over {elapsed:.0f} s "
                    f"({type(exc).__name__}: {exc}); nothing of it was written, run again to "
                    "import it"
                ) from exc
            if on_retry is not None:
                on_retry(attempt, wait, exc)
            time.sleep(wait)
            wait = min(wait * 2, policy.max_wait_s)


# --- options, reports ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EtlOptions:
    """What an import may use besides its inputs.

    ``images``: more folders of CT images that reports may reference; ``model_dir``: a trained
    triplet network (embeds every lesion with an image); ``ssbr_dir``: a trained body-part
    regression model (gives z of lesions without a location); ``secret_path``: the
    pseudonymisation key file (default ``$LESIONKG_HOME/pseudonym.key``, created when missing);
    ``k``: SIMILAR_TO edges per new lesion and space; ``index_dir``: where the hnswlib indexes
    live (default ``$LESIONKG_HOME/index/DATABASE``, shared with ``lesionkg link``).
    """

    allow_missing_images: bool = False
    images: tuple[Path, ...] = ()
    model_dir: Path | None = None
    ssbr_dir: Path | None = None
    secret_path: Path | None = None
    k: int = 10
    index_dir: Path | None = None
    device: str = "cpu"
    #: bookmarks per transaction at most (see :meth:`Importer.import_files`)
    batch_bookmarks: int = 500
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    matching: MatchConfig = field(default_factory=MatchConfig)


@dataclass
class FileReport:
    """What happened to one input file.

    ``status``: ``imported`` (new bookmarks written), ``duplicate`` (all already in the graph),
    ``rejected`` (nothing written; ``problems`` says why), ``image`` (a CT image or key slice,
    used by reports), ``metadata`` (``SYNTHETIC.json``). An imported report can also list
    ``problems``: measurement groups skipped with their reasons.
    """

    file: str
    kind: str
    status: str
    bookmarks: int = 0
    new: int = 0
    duplicates: int = 0
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0
    retries: int = 0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["problems"] = [str(p) for p in self.problems]
        return out


@dataclass
class EtlSummary:
    """What one ``etl`` run (or a watch session so far) did."""

    files: int = 0
    imported_files: int = 0
    duplicate_files: int = 0
    rejected_files: int = 0
    images: int = 0
    #: files that describe others (SYNTHETIC.json, reason files), read for their labels only
    metadata: int = 0
    #: bookmarks newly written / already in the graph / rejected or skipped
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    #: rejected files and skipped measurements, counted per reason
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    location: dict[str, int] = field(default_factory=dict)
    embedded: int = 0
    similar_edges: int = 0
    patients_rematched: int = 0
    reader_links: int = 0
    #: consecutive measurements with one tracking UID: does matching without the UID agree?
    reader_agreement: dict[str, int] = field(
        default_factory=lambda: {"pairs": 0, "agree": 0, "disagree": 0}
    )
    retries: int = 0
    seconds: float = 0.0
    reports: list[FileReport] = field(default_factory=list)

    @property
    def bookmarks_per_s(self) -> float:
        return self.accepted / self.seconds if self.seconds > 0 else 0.0

    def add(self, report: FileReport) -> None:
        self.files += 1
        self.reports.append(report)
        self.retries += report.retries
        if report.status in ("image", "metadata"):
            self.images += report.status == "image"
            self.metadata += report.status == "metadata"
            return
        self.accepted += report.new
        self.duplicates += report.duplicates
        if report.status == "imported":
            self.imported_files += 1
        elif report.status == "duplicate":
            self.duplicate_files += 1
        elif report.status == "rejected":
            self.rejected_files += 1
        for problem in report.problems:
            self.rejected += 1
            key = reason_key(problem)
            self.rejected_by_reason[key] = self.rejected_by_reason.get(key, 0) + 1

    def take(self, outcome: Outcome) -> None:
        """Add what the written bookmarks gave (an :class:`Importer`'s ``outcome``)."""
        for key, n in outcome.location.items():
            self.location[key] = self.location.get(key, 0) + n
        self.embedded += outcome.embedded
        self.similar_edges += outcome.similar_edges
        self.patients_rematched += outcome.patients_rematched
        self.reader_links += outcome.reader_links
        for key in ("pairs", "agree", "disagree"):
            self.reader_agreement[key] += outcome.reader_agreement.get(key, 0)

    def as_dict(self, *, files: bool = True) -> dict[str, Any]:
        out = asdict(self)
        out["bookmarks_per_s"] = round(self.bookmarks_per_s, 1)
        out["reports"] = [r.as_dict() for r in self.reports if r.status not in ("image",)]
        if not files:
            del out["reports"]
        return out

    def describe(self) -> str:
        """A few lines for people: files, bookmarks accepted, duplicates, rejected by reason."""
        lines = [
            f"{self.files} files: {self.imported_files} imported, {self.duplicate_files} already "
            f"in the graph, {self.rejected_files} rejected, {self.images} images"
            + (f", {self.metadata} metadata" if self.metadata else ""),
            f"bookmarks: {self.accepted} accepted, {self.duplicates} duplicates, "
            f"{self.rejected} rejected or skipped, in {self.seconds:.1f} s "
            f"({self.bookmarks_per_s:,.0f} bookmarks/s)",
        ]
        if self.accepted:
            where = ", ".join(f"{k} {v}" for k, v in sorted(self.location.items()))
            lines.append(
                f"  location: {where}; embedded {self.embedded}; SIMILAR_TO edges "
                f"{self.similar_edges}; patients re-matched {self.patients_rematched}"
            )
        agreement = self.reader_agreement
        if agreement["pairs"]:
            lines.append(
                f"  tracking UIDs: {self.reader_links} reader links; matching without them "
                f"agrees on {agreement['agree']} of {agreement['pairs']} pairs, disagrees on "
                f"{agreement['disagree']}"
            )
        if self.retries:
            lines.append(f"  Neo4j was unreachable {self.retries} time(s); retried")
        for reason, n in sorted(self.rejected_by_reason.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  rejected {n:>5} x {reason}")
        for report in self.reports:
            if report.status == "rejected" or report.problems:
                head = "rejected" if report.status == "rejected" else "skipped in"
                for problem in report.problems[:5]:
                    lines.append(f"  {head} {problem}")
                if len(report.problems) > 5:
                    lines.append(f"  ... and {len(report.problems) - 5} more in {report.file}")
        return "\n".join(lines)


@dataclass
class Outcome:
    """What written bookmarks gave: where their location came from, embeddings, edges, tracks."""

    location: Counter = field(default_factory=Counter)
    embedded: int = 0
    similar_edges: int = 0
    patients_rematched: int = 0
    reader_links: int = 0
    reader_agreement: Counter = field(default_factory=Counter)

    def add(self, other: Outcome) -> None:
        self.location.update(other.location)
        self.embedded += other.embedded
        self.similar_edges += other.similar_edges
        self.patients_rematched += other.patients_rematched
        self.reader_links += other.reader_links
        self.reader_agreement.update(other.reader_agreement)


def reason_key(problem: Problem) -> str:
    """A problem's reason without the values that differ from file to file, for counting."""
    reason = problem.reason
    for cut in (" (", ": ", ", got", "; "):
        reason = reason.split(cut, 1)[0]
    reason = reason.strip()[:80]
    return f"{problem.column}: {reason}" if problem.column else reason


# --- pure steps ---------------------------------------------------------------------------------


def lesion_box(
    long_axis_px: Sequence[float], short_axis_px: Sequence[float] | None
) -> tuple[float, float, float, float]:
    """The lesion's box ``(x1, y1, x2, y2)`` in pixels from its axis endpoints.

    The box spans the endpoints of both axes, padded by :data:`BOX_PAD_PX` as DeepLesion's
    boxes are. Without a short axis the lesion counts as round: the box is a square around the
    long axis' middle with the long axis' length as side.
    """
    x1, y1, x2, y2 = (float(v) for v in long_axis_px)
    if short_axis_px is not None:
        xs = [x1, x2, float(short_axis_px[0]), float(short_axis_px[2])]
        ys = [y1, y2, float(short_axis_px[1]), float(short_axis_px[3])]
    else:
        cx, cy, half = (x1 + x2) / 2, (y1 + y2) / 2, math.hypot(x2 - x1, y2 - y1) / 2
        xs, ys = [cx - half, cx + half], [cy - half, cy + half]
    return (
        max(0.0, min(xs) - BOX_PAD_PX),
        max(0.0, min(ys) - BOX_PAD_PX),
        max(xs) + BOX_PAD_PX,
        max(ys) + BOX_PAD_PX,
    )


def study_order(studies: Iterable[tuple[str, str | None]]) -> dict[str, int]:
    """1-based study index of each ``(study_id, study_datetime ISO)`` of one patient.

    Studies are ordered by study time, then id (two studies at one time keep a stable order; a
    study without a time goes first, as DeepLesion's own studies have none).
    """
    ordered = sorted(set(studies), key=lambda s: (s[1] or "", s[0]))
    return {study_id: i for i, (study_id, _) in enumerate(ordered, start=1)}


def merge_neighbours(
    index_pos: np.ndarray,
    index_dist: np.ndarray,
    index_ids: Sequence[str],
    batch_ids: Sequence[str],
    batch_vectors: np.ndarray,
    metric: str,
    k: int,
) -> list[list[tuple[str, float]]]:
    """The ``k`` nearest lesions of each new lesion: index candidates and the batch's others.

    ``index_pos (N, K)`` / ``index_dist (N, K)`` are an index query for the ``N`` new lesions
    (``batch_ids``, vectors ``(N, D)``), -1 / inf where missing; the new lesions are not yet in
    the index, so their distances to each other are computed exactly here. Ties are broken by
    lesion id. Never the lesion itself.
    """
    n = len(batch_ids)
    if n and n > 1:
        exact_i, exact_d = exact_knn(batch_vectors, batch_vectors, min(n, k + 1), metric=metric)
    else:
        exact_i = np.full((n, 0), MISSING, dtype=np.int64)
        exact_d = np.zeros((n, 0), dtype=np.float32)
    out = []
    for row in range(n):
        found: dict[str, float] = {}
        for j, d in zip(index_pos[row], index_dist[row], strict=True):
            if j >= 0 and np.isfinite(d):
                found[index_ids[j]] = float(d)
        for j, d in zip(exact_i[row], exact_d[row], strict=True):
            if j >= 0 and j != row and np.isfinite(d):
                found[batch_ids[j]] = float(d)
        found.pop(batch_ids[row], None)
        out.append(sorted(found.items(), key=lambda kv: (kv[1], kv[0]))[:k])
    return out


# --- prepared lesions ---------------------------------------------------------------------------


@dataclass
class _Lesion:
    """One new bookmark ready to be written: node properties and what linking needs."""

    lesion_id: str
    patient_id: str
    study_id: str
    study_datetime: str | None
    props: dict[str, Any]
    coarse_type: int | None
    location: tuple[float, float, float] | None
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    tracking_uid: str | None = None
    #: the network's input (crops, boxes), until the write batch is embedded
    network_input: tuple[np.ndarray, np.ndarray] | None = None


@dataclass
class _Prepared:
    """A parsed and checked file, before the graph is consulted."""

    kind: str
    dataset: str
    lesions: list[_Lesion]
    #: studies come with their own index (DeepLesion) or are ordered by time (PACS)
    ordered_by_time: bool
    patients: dict[str, dict[str, Any]]
    studies: dict[str, dict[str, Any]]
    skipped: list[Problem] = field(default_factory=list)
    in_file_duplicates: int = 0


def _is_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def file_kind(path: Path) -> str:
    """``jsonl``, ``deeplesion``, ``dicom``, ``image``, ``metadata`` or ``unknown``."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".csv":
        return "deeplesion"
    if suffix == ".png":
        return "image"
    if path.name == "SYNTHETIC.json" or path.name.endswith(".reason.json"):
        return "metadata"
    if _is_dicom(path):
        return "dicom"
    return "unknown"


def input_files(paths: Iterable[str | Path]) -> list[Path]:
    """Every file of ``paths`` (folders walked recursively, sorted; hidden files skipped)."""
    files: list[Path] = []
    missing = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.is_file() and not any(part.startswith(".") for part in p.parts[-1:])
                )
            )
        elif path.is_file():
            files.append(path)
        else:
            missing.append(Problem(str(path), None, None, "no such file or folder"))
    if missing:
        raise InvalidInputError(missing, outcome="nothing was imported")
    return list(dict.fromkeys(files))


def _dataset_of(path: Path) -> str:
    from lesionkg.etl.bulk import marks_synthetic

    return "synthetic" if marks_synthetic(path.parent / "SYNTHETIC.json") else PACS_DATASET


class _Images:
    """Reads a bookmark's key slice (and its neighbours) as HU."""

    def __init__(self, ct: CTIndex) -> None:
        self.ct = ct

    def stack(self, bookmark: Bookmark) -> tuple[np.ndarray, tuple[float, float] | None] | None:
        """HU ``(3, H, W)`` (slices below, at and above the key slice; the key slice where a
        neighbour is missing) and the (x, y) spacing, or None without an image."""
        ref = bookmark.image
        if ref is None:
            return None
        image: CTImage | None = None
        if ref.sop_instance_uid:
            image = self.ct.get(ref.sop_instance_uid)
        elif ref.path:
            path = Path(ref.path)
            if not path.is_file():
                return None
            if path.suffix.lower() == ".png":
                return _png_stack(path), None
            header = read_ct_header(path)
            image = header if isinstance(header, CTImage) else None
        if image is None:
            return None
        key = read_hu(image, ref.frame)
        if image.number_of_frames > 1:
            # A multi-frame (Enhanced CT) instance holds the neighbours as its other frames.
            at = ref.frame or 1
            channels = [
                read_hu(image, f) if 1 <= f <= image.number_of_frames else key
                for f in (at - 1, at + 1)
            ]
            return np.stack([channels[0], key, channels[1]]), image.pixel_spacing_mm
        around = ct_neighbours(self.ct, image, 1) if image.sop_instance_uid in self.ct else []
        below = [i for i in around if (i.slice_position_mm or 0) < (image.slice_position_mm or 0)]
        above = [i for i in around if i not in below]
        channels = [
            read_hu(below[-1]) if below else key,
            key,
            read_hu(above[0]) if above else key,
        ]
        channels = [c if c.shape == key.shape else key for c in channels]
        return np.stack(channels), image.pixel_spacing_mm


def _png_stack(path: Path) -> np.ndarray:
    from lesionkg.model.transforms import read_hu_png, read_slice_stack

    stem = path.stem
    if stem.isdigit():
        return read_slice_stack(path, f"{path.parent.name}_{path.name}")
    _, _, tail = stem.rpartition("_")
    if tail.isdigit():
        return read_slice_stack(path, path.name)
    key = read_hu_png(path)
    return np.stack([key, key, key])


class _Models:
    """The optional models: the triplet embedder and body-part regression."""

    def __init__(self, options: EtlOptions) -> None:
        self.embedder = None
        self.ssbr = None
        if options.model_dir is not None:
            from lesionkg.model.embedder import Embedder

            self.embedder = Embedder.load(Path(options.model_dir), device=options.device)
        if options.ssbr_dir is not None:
            from lesionkg.model.ssbr import load_ssbr

            self.ssbr = load_ssbr(Path(options.ssbr_dir), device=options.device)
            if self.ssbr.calibration is None:
                raise ModelError(
                    f"{options.ssbr_dir}: the SSBR model is not calibrated (training did not "
                    "finish); it cannot give z"
                )


def _prepare_pacs(
    bookmarks: Sequence[Bookmark],
    pseudonymizer: Pseudonymizer,
    images: _Images,
    models: _Models,
    kind: str,
    dataset: str,
) -> _Prepared:
    prepared = _Prepared(kind, dataset, [], True, {}, {})
    seen: dict[str, int] = {}
    for bookmark in bookmarks:
        pb = pseudonymizer.pseudonymise(bookmark)
        if pb.lesion_id in seen:
            # Two measurement groups of one report with the same image and endpoints.
            prepared.in_file_duplicates += 1
            continue
        seen[pb.lesion_id] = bookmark.source_index
        lesion = _pacs_lesion(pb, bookmark, kind, dataset)
        stack = None
        if bookmark.image is not None:
            try:
                stack = images.stack(bookmark)
            except (InvalidInputError, ModelError) as exc:
                prepared.skipped.append(
                    Problem(bookmark.source, bookmark.source_index, "image", str(exc))
                )
                continue
        lesion.props["image_status"] = "found" if stack is not None else "missing"
        if stack is not None and pb.long_axis_px is not None:
            hu, spacing = stack
            spacing = pb.pixel_spacing_mm or spacing
            box = lesion_box(pb.long_axis_px, pb.short_axis_px)
            lesion.props["bbox"] = list(box)
            lesion.props["image_size"] = [int(hu.shape[1]), int(hu.shape[2])]
            if lesion.location is None:
                _locate(lesion, hu[1], box, models)
            if models.embedder is not None and spacing is not None:
                lesion.network_input = models.embedder.inputs.prepare_stack(hu, box, spacing)
        elif lesion.location is None:
            lesion.props["location_source"] = "none: no image"
        prepared.lesions.append(lesion)
        prepared.patients.setdefault(
            pb.patient_id, {"patient_id": pb.patient_id, "sex": None, "dataset": dataset}
        )
        prepared.studies.setdefault(
            pb.study_id,
            {
                "study_id": pb.study_id,
                "patient_id": pb.patient_id,
                "study_datetime": pb.study_datetime,
            },
        )
    for lesion in prepared.lesions:
        _add_cues(lesion)
    return prepared


def embed_lesions(lesions: Sequence[_Lesion], models: _Models, batch_size: int = 32) -> int:
    """Run the network on the prepared inputs of ``lesions`` (a whole write batch at once: the
    network is far faster on 32 crops than on a file's 3); how many were embedded."""
    todo = [lesion for lesion in lesions if lesion.network_input is not None]
    if models.embedder is None or not todo:
        return 0
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        crops = np.stack([lesion.network_input[0] for lesion in chunk])
        boxes = np.stack([lesion.network_input[1] for lesion in chunk])
        vectors = models.embedder.embed_arrays(crops, boxes)
        for lesion, vector in zip(chunk, vectors, strict=True):
            lesion.network_input = None
            lesion.vectors["triplet"] = vector
            lesion.props.update(
                embedding=vector.tolist(),
                embedding_model=models.embedder.sha256,
                embedding_space="triplet",
                embedding_dim=int(vector.shape[0]),
            )
    return len(todo)


def _locate(
    lesion: _Lesion, key_hu: np.ndarray, box: tuple[float, float, float, float], models: _Models
) -> None:
    """x, y from the body outline; z from body-part regression when a model is configured."""
    centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    xy = relative_xy(key_hu, centre)
    if xy is None:
        lesion.props["location_source"] = "none: no body found in the key slice"
        return
    if models.ssbr is None:
        lesion.props["location_xy"] = list(xy)
        lesion.props["location_source"] = "image x, y; z needs an SSBR model (--ssbr)"
        return
    z = float(models.ssbr.normalised_z(key_hu[None])[0])
    lesion.location = (xy[0], xy[1], z)
    lesion.props["location"] = list(lesion.location)
    lesion.props["location_source"] = f"image x, y; SSBR z ({models.ssbr.sha256[:12]})"


def _add_cues(lesion: _Lesion) -> None:
    row = cues.with_short_axis(lesion.props)
    if cues.cueable(row):
        vector = cues.cue_matrix_from_props([row])[0]
        lesion.vectors["cues"] = vector
        lesion.props["cues"] = vector.tolist()
        lesion.props["cues_version"] = cues.CUES_VERSION


def _pacs_lesion(pb: PseudonymousBookmark, bookmark: Bookmark, kind: str, dataset: str) -> _Lesion:
    props: dict[str, Any] = {
        "lesion_id": pb.lesion_id,
        "dataset": dataset,
        "source_kind": kind,
        "patient_id": pb.patient_id,
        "study_id": pb.study_id,
        "series_id": pb.series_id or NO_SERIES,
        "long_axis_mm": pb.long_axis_mm,
        "short_axis_mm": pb.short_axis_mm,
        "long_axis_px": list(pb.long_axis_px) if pb.long_axis_px else None,
        "short_axis_px": list(pb.short_axis_px) if pb.short_axis_px else None,
        "spacing_mm": list(pb.pixel_spacing_mm) if pb.pixel_spacing_mm else None,
        "coarse_type": pb.coarse_type,
        "coarse_type_name": COARSE_TYPES.get(pb.coarse_type) if pb.coarse_type else None,
        "finding": pb.finding,
        "finding_site": pb.finding_site,
        "tracking_uid": pb.tracking_uid,
        "tracking_id": pb.tracking_id,
        "window": list(pb.window_hu) if pb.window_hu else None,
    }
    if pb.long_axis_px and pb.short_axis_px:
        props["recist"] = [*pb.long_axis_px, *pb.short_axis_px]
    location = pb.location
    if location is not None:
        props["location"] = list(location)
        props["location_source"] = "given by the source"
    return _Lesion(
        lesion_id=pb.lesion_id,
        patient_id=pb.patient_id,
        study_id=pb.study_id,
        study_datetime=pb.study_datetime,
        props=props,
        coarse_type=pb.coarse_type,
        location=location,
        tracking_uid=pb.tracking_uid,
    )


def _prepare_deeplesion(
    path: Path, records: Sequence[LesionRecord], options: EtlOptions, models: _Models
) -> _Prepared:
    from lesionkg.etl.bulk import dataset_of
    from lesionkg.loaders.images import find_key_slice

    dataset = dataset_of(path)
    prepared = _Prepared("deeplesion", dataset, [], False, {}, {})
    seen: set[str] = set()
    for rec in records:
        if rec.lesion_id in seen:
            prepared.in_file_duplicates += 1
            continue
        seen.add(rec.lesion_id)
        image = None
        for root in options.images:
            image = find_key_slice(Path(root), rec.file_name)
            if image is not None:
                break
        props = lesion_props(rec, str(image.resolve()) if image else None, dataset)
        props["source_kind"] = "deeplesion"
        props["location_source"] = "given by the source"
        lesion = _Lesion(
            rec.lesion_id,
            rec.patient_id,
            rec.study_id,
            None,
            props,
            rec.coarse_type,
            rec.location,
        )
        prepared.lesions.append(lesion)
        prepared.patients.setdefault(
            rec.patient_id, {"patient_id": rec.patient_id, "sex": rec.sex, "dataset": dataset}
        )
        prepared.studies.setdefault(
            rec.study_id,
            {
                "study_id": rec.study_id,
                "patient_id": rec.patient_id,
                "study_index": rec.study_index,
                "patient_age": rec.age_years,
            },
        )
        if image is not None and models.embedder is not None:
            from lesionkg.model.transforms import LesionImage

            lesion.network_input = models.embedder.inputs.prepare(
                LesionImage(rec.lesion_id, rec.file_name, image, rec.bbox_px, rec.spacing_mm[:2])
            )
    for lesion in prepared.lesions:
        _add_cues(lesion)
    return prepared


# --- the graph side -----------------------------------------------------------------------------


@dataclass
class _SpaceIndex:
    """One similarity space's index, with the given types of its lesions for type votes."""

    space: Space
    producer: str
    index: LesionIndex
    types: dict[str, int | None]
    prefix: Path
    dirty: bool = False


class Importer:
    """Imports bookmark files one at a time into one database (the caller owns ``driver``).

    Holds what is costly to set up once: the pseudonymisation key, the models, the similarity
    indexes. Call :meth:`close` (or use it as a context manager) to save the indexes.
    """

    def __init__(
        self,
        driver: Driver,
        *,
        database: str = "neo4j",
        options: EtlOptions | None = None,
    ) -> None:
        self.driver = driver
        self.database = database
        self.options = options or EtlOptions()
        if self.options.k < 1:
            raise ConfigurationError(f"k must be at least 1, got {self.options.k}")
        self.pseudonymizer = Pseudonymizer(load_or_create_secret(self.options.secret_path))
        self.models = _Models(self.options)
        self.retries = 0
        #: what the bookmarks written so far gave
        self.outcome = Outcome()
        self._on_retry_file = ""
        with_retries(self._setup, self.options.retry, "connecting to Neo4j", self._retrying)

    # -- setup --

    def _retrying(self, attempt: int, wait: float, exc: BaseException) -> None:
        self.retries += 1
        print(
            f"Neo4j unreachable ({type(exc).__name__}){self._on_retry_file}; try {attempt + 1} "
            f"in {wait:.1f} s",
            file=sys.stderr,
        )

    def _setup(self) -> None:
        apply_schema(self.driver, self.database)
        found = run_statement(
            self.driver, self.database, "etl/pseudonym_key", "reading the key id", read=True
        )
        key_id = self.pseudonymizer.key_id
        if found and found[0]["key_id"] != key_id:
            raise ConfigurationError(
                f"the graph's PACS ids were made with pseudonymisation key {found[0]['key_id']}, "
                f"but the key file gives {key_id}: with another key the same patient would get "
                "another id. Use the original key file (--secret), or a new database"
            )
        self.spaces: dict[str, _SpaceIndex] = {}
        index_dir = Path(self.options.index_dir or default_index_dir(self.database))
        index_dir.mkdir(parents=True, exist_ok=True)
        wanted = {"cues": cues.CUES_VERSION}
        if self.models.embedder is not None:
            wanted["triplet"] = self.models.embedder.sha256
        for name, producer in wanted.items():
            spec = SPACES[name]
            rows = run_statement(
                self.driver,
                self.database,
                "graph/space_vectors",
                "reading vectors",
                read=True,
                space=name,
            )
            others = {str(r["producer"]) for r in rows} - {producer}
            if others:
                raise ConfigurationError(
                    f"the graph's {name} vectors come from {', '.join(sorted(others))}, not "
                    f"{producer}: run `lesionkg embed` (triplet) or `lesionkg link` (cues) with "
                    "the same model first, so that the space never mixes producers"
                )
            ids = [r["lesion_id"] for r in rows]
            vectors = (
                np.array([r["vector"] for r in rows], dtype=np.float32)
                if rows
                else np.zeros((0, 1408 if name == "triplet" else cues.CUE_DIM), dtype=np.float32)
            )
            index, _, _ = space_index(index_dir / name, spec, ids, vectors, producer)
            index.ef = max(index.ef, MIN_EF)
            self.spaces[name] = _SpaceIndex(
                spec,
                producer,
                index,
                {r["lesion_id"]: r["coarse_type"] for r in rows},
                index_dir / name,
            )

    def close(self) -> None:
        """Save the similarity indexes that grew (a later run or ``link`` starts from them)."""
        for state in self.spaces.values():
            if state.dirty:
                state.index.save(state.prefix)
                state.dirty = False

    def __enter__(self) -> Importer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one file --

    def read_file(
        self, path: Path, ct: CTIndex, ct_paths: set[Path] | None = None
    ) -> _Prepared | FileReport:
        """Parse and check one bookmark file; a :class:`FileReport` when it is not one.

        ``ct_paths``: the resolved paths of ``ct``'s images (computed here when not given)."""
        if ct_paths is None:
            ct_paths = {image.path.resolve() for image in ct.values()}
        kind = file_kind(path)
        source = str(path)
        try:
            if kind in ("image", "metadata"):
                return FileReport(source, kind, kind)
            if kind == "dicom" and path.resolve() in ct_paths:
                return FileReport(source, "ct", "image")
            if kind == "unknown":
                raise InvalidInputError(
                    [
                        Problem(
                            source,
                            None,
                            None,
                            "not a DICOM file (no 'DICM' marker), a JSON Lines file (.jsonl) or "
                            "a DeepLesion CSV (.csv)",
                        )
                    ]
                )
            images = _Images(ct)
            if kind == "jsonl":
                from lesionkg.loaders.jsonl import read_jsonl_bookmarks

                bookmarks = read_jsonl_bookmarks(
                    path, allow_missing_images=self.options.allow_missing_images
                )
                return _prepare_pacs(
                    bookmarks, self.pseudonymizer, images, self.models, kind, _dataset_of(path)
                )
            if kind == "dicom":
                from lesionkg.loaders.dicom_sr import read_measurement_report

                result = read_measurement_report(
                    path, ct, allow_missing_images=self.options.allow_missing_images
                )
                prepared = _prepare_pacs(
                    result.bookmarks,
                    self.pseudonymizer,
                    images,
                    self.models,
                    "dicom-sr",
                    _dataset_of(path),
                )
                prepared.skipped = list(result.skipped) + prepared.skipped
                return prepared
            return self._read_deeplesion(path)
        except InvalidInputError as exc:
            return FileReport(source, kind, "rejected", problems=exc.problems)

    def _read_deeplesion(self, path: Path) -> _Prepared:
        from lesionkg.loaders.deeplesion import RejectedRow, parse_dl_info

        records, problems = [], []
        for item in parse_dl_info(path):
            if isinstance(item, RejectedRow):
                problems.extend(item.problems)
            else:
                records.append(item)
        if problems:
            raise InvalidInputError(problems)
        return _prepare_deeplesion(path, records, self.options, self.models)

    def import_file(self, path: str | Path, ct: CTIndex | None = None) -> FileReport:
        """Import one file: everything it holds in one transaction, or nothing."""
        return self.import_files([path], ct)[0]

    def import_files(
        self,
        paths: Sequence[str | Path],
        ct: CTIndex | None = None,
        on_files: Callable[[int], None] | None = None,
    ) -> list[FileReport]:
        """Import ``paths`` in order; one report per file.

        Files are parsed and checked one by one; the bookmarks of consecutive good files are
        written together, up to ``options.batch_bookmarks`` per transaction (each file's
        bookmarks always in one): a commit per small file would cap an import at Neo4j's commit
        rate. Rejected files never reach a transaction. ``on_files(n)`` reports
        progress.
        """
        ct = ct if ct is not None else index_ct_images([])
        ct_paths = {image.path.resolve() for image in ct.values()}
        reports: list[FileReport] = []
        batch: list[tuple[FileReport, _Prepared]] = []

        def flush() -> None:
            if batch:
                self._write_batch(batch)
                if on_files is not None:
                    on_files(len(batch))
                batch.clear()

        for raw in paths:
            started = time.perf_counter()
            path = Path(raw)
            prepared = self.read_file(path, ct, ct_paths)
            if isinstance(prepared, FileReport):
                prepared.seconds = time.perf_counter() - started
                reports.append(prepared)
                if on_files is not None:
                    on_files(1)
                continue
            report = FileReport(str(path), prepared.kind, "imported", problems=prepared.skipped)
            report.bookmarks = len(prepared.lesions) + prepared.in_file_duplicates
            report.seconds = time.perf_counter() - started
            reports.append(report)
            if not prepared.lesions:
                report.status = "rejected" if prepared.skipped else "duplicate"
                report.duplicates = prepared.in_file_duplicates
                if on_files is not None:
                    on_files(1)
                continue
            if batch and (
                batch[0][1].ordered_by_time != prepared.ordered_by_time
                or sum(len(p.lesions) for _, p in batch) + len(prepared.lesions)
                > self.options.batch_bookmarks
            ):
                flush()
            batch.append((report, prepared))
        flush()
        return reports

    def _write_batch(self, batch: list[tuple[FileReport, _Prepared]]) -> None:
        """Write the bookmarks of several checked files in one transaction, with retries."""
        started = time.perf_counter()
        merged = _Prepared(
            batch[0][1].kind, batch[0][1].dataset, [], batch[0][1].ordered_by_time, {}, {}
        )
        owner: dict[str, FileReport] = {}
        for report, prepared in batch:
            merged.patients.update(prepared.patients)
            merged.studies.update(prepared.studies)
            for lesion in prepared.lesions:
                if lesion.lesion_id in owner:
                    # The same bookmark in two files of one batch: the later is a duplicate.
                    report.duplicates += 1
                    continue
                owner[lesion.lesion_id] = report
                merged.lesions.append(lesion)
        embed_lesions(merged.lesions, self.models)
        retries_before = self.retries
        names = batch[0][0].file if len(batch) == 1 else f"{len(batch)} files"
        self._on_retry_file = f" importing {Path(names).name}"
        present = with_retries(
            lambda: self._write(merged), self.options.retry, f"importing {names}", self._retrying
        )
        seconds = (time.perf_counter() - started) / len(batch)
        batch[0][0].retries = self.retries - retries_before
        for report, prepared in batch:
            report.duplicates += prepared.in_file_duplicates
            report.seconds += seconds
        for lesion_id, report in owner.items():
            if lesion_id in present:
                report.duplicates += 1
            else:
                report.new += 1
        for report, _ in batch:
            report.status = "imported" if report.new else "duplicate"

    def _write(self, prepared: _Prepared) -> set[str]:
        """Write the new lesions of ``prepared`` in one transaction; the ids already present."""
        ids = [lesion.lesion_id for lesion in prepared.lesions]
        found = run_statement(
            self.driver,
            self.database,
            "etl/existing_lesions",
            "finding duplicates",
            read=True,
            lesion_ids=ids,
        )
        present = {r["lesion_id"] for r in found}
        new = [lesion for lesion in prepared.lesions if lesion.lesion_id not in present]
        outcome = Outcome()
        if not new:
            self._index_graph_lesions(prepared.lesions)
            return present
        patients = sorted({lesion.patient_id for lesion in new})
        studies = self._study_rows(prepared, new, patients)
        similar = self._similar(new)
        votes = self._votes(new, similar)
        for lesion in new:
            lesion.props["study_index"] = studies["index_of"][lesion.study_id]
            source = str(lesion.props.get("location_source", "none"))
            outcome.location[source.split(";")[0].split(" (")[0]] += 1
            outcome.embedded += "triplet" in lesion.vectors
        patient_rows = [prepared.patients[p] for p in patients]
        lesion_rows = sorted(
            (
                {
                    "lesion_id": lesion.lesion_id,
                    "study_id": lesion.study_id,
                    "coarse_type": lesion.coarse_type,
                    "props": lesion.props,
                }
                for lesion in new
            ),
            key=lambda row: -1 if row["coarse_type"] is None else row["coarse_type"],
        )
        key_id = self.pseudonymizer.key_id if prepared.ordered_by_time else None

        def work(tx: ManagedTransaction) -> None:
            if key_id is not None:
                tx.run(statement("etl/record_key"), key_id=key_id).consume()
            tx.run(statement("db/upsert_patients"), rows=patient_rows).consume()
            tx.run(
                statement(
                    "etl/upsert_studies" if prepared.ordered_by_time else "db/upsert_studies"
                ),
                rows=studies["new"],
            ).consume()
            tx.run(statement("db/upsert_lesions"), rows=lesion_rows).consume()
            if studies["renumbered"]:
                tx.run(statement("etl/study_order"), rows=studies["renumbered"]).consume()
            for space, (sources, rows) in similar.items():
                tx.run(
                    statement("graph/write_similar"),
                    sources=sources,
                    rows=rows,
                    space=space,
                    producer=self.spaces[space].producer,
                ).consume()
            for space, rows in votes.items():
                tx.run(statement("graph/set_predicted_types"), rows=rows, space=space).consume()
            # Matching reads the patients back in this transaction: their new lesions and the
            # re-numbered studies are what it must see, exactly as `lesionkg match` would.
            stored = read_match_lesions(tx, self.database, patients)
            tracks = {pid: match_patient(stored[pid], self.options.matching) for pid in patients}
            tx.run(statement("graph/write_tracks"), patients=track_rows(tracks)).consume()
            return stored, tracks

        try:
            with self.driver.session(database=self.database) as session:
                stored, tracks = session.execute_write(work)
        except Neo4jError as exc:
            if isinstance(exc, RETRYABLE):
                raise
            raise DatabaseError(f"writing {len(new)} bookmarks failed: {exc}") from exc
        self._count_reader_links(stored, tracks, outcome)
        outcome.similar_edges = sum(len(rows) for _, rows in similar.values())
        outcome.patients_rematched = len(patients)
        self.outcome.add(outcome)
        self._index_graph_lesions(prepared.lesions)
        return present

    def _study_rows(
        self, prepared: _Prepared, new: Sequence[_Lesion], patients: Sequence[str]
    ) -> dict[str, Any]:
        """New studies' rows, existing studies whose index changes, and every index."""
        new_studies = {lesion.study_id for lesion in new}
        if not prepared.ordered_by_time:
            rows = [prepared.studies[s] for s in sorted(new_studies)]
            return {
                "new": rows,
                "renumbered": [],
                "index_of": {s: prepared.studies[s]["study_index"] for s in new_studies},
            }
        existing = run_statement(
            self.driver,
            self.database,
            "etl/patient_studies",
            "reading the patients' studies",
            read=True,
            patient_ids=list(patients),
        )
        by_patient: dict[str, list[tuple[str, str | None]]] = defaultdict(list)
        old_index = {}
        for r in existing:
            by_patient[r["patient_id"]].append((r["study_id"], r["study_datetime"]))
            old_index[r["study_id"]] = r["study_index"]
        for s in new_studies:
            row = prepared.studies[s]
            by_patient[row["patient_id"]].append((s, row["study_datetime"]))
        index_of: dict[str, int] = {}
        for pid in patients:
            index_of.update(study_order(by_patient[pid]))
        renumbered = [
            {"study_id": s, "study_index": i}
            for s, i in index_of.items()
            if s in old_index and old_index[s] != i
        ]
        rows = [
            {**prepared.studies[s], "study_index": index_of[s]}
            for s in sorted(new_studies)
            if s not in old_index
        ]
        return {"new": rows, "renumbered": renumbered, "index_of": index_of}

    def _similar(self, new: Sequence[_Lesion]) -> dict[str, tuple[list[str], list[dict]]]:
        """Per space: the new lesions with a vector, and their SIMILAR_TO rows."""
        out: dict[str, tuple[list[str], list[dict]]] = {}
        k = self.options.k
        for name, state in self.spaces.items():
            members = [lesion for lesion in new if name in lesion.vectors]
            if not members:
                continue
            ids = [lesion.lesion_id for lesion in members]
            # hnswlib and exact_knn normalise cosine vectors themselves.
            vectors = np.stack([lesion.vectors[name] for lesion in members]).astype(np.float32)
            pos, dist = state.index.query(vectors, k)
            found = merge_neighbours(
                pos, dist, state.index.ids, ids, vectors, state.space.metric, k
            )
            rows = [
                {"source": source, "target": target, "distance": d, "rank": rank}
                for source, neighbours in zip(ids, found, strict=True)
                for rank, (target, d) in enumerate(neighbours, start=1)
            ]
            out[name] = (ids, rows)
        return out

    def _votes(
        self, new: Sequence[_Lesion], similar: dict[str, tuple[list[str], list[dict]]]
    ) -> dict[str, list[dict]]:
        """Predicted types of new lesions without a given type, from one space's neighbours
        (the triplet space when the lesion has an embedding, as ``link`` does, else cues)."""
        type_of = {lesion.lesion_id: lesion.coarse_type for lesion in new}
        out: dict[str, list[dict]] = {}
        done: set[str] = set()
        for space in ("triplet", "cues"):
            if space not in similar:
                continue
            known = {**self.spaces[space].types, **type_of}
            by_source: dict[str, list[dict]] = defaultdict(list)
            for row in similar[space][1]:
                by_source[row["source"]].append(row)
            todo = [s for s in similar[space][0] if type_of[s] is None and s not in done]
            if not todo:
                continue
            k = self.options.k
            types = np.full((len(todo), k), MISSING, dtype=np.int64)
            dist = np.full((len(todo), k), np.inf)
            for i, source in enumerate(todo):
                for j, row in enumerate(by_source[source][:k]):
                    t = known.get(row["target"])
                    types[i, j] = MISSING if t is None else t
                    dist[i, j] = row["distance"]
            predicted, confidence = predict_types(types, dist)
            out[space] = [
                {"lesion_id": s, "type": int(p) if p != MISSING else None, "confidence": float(c)}
                for s, p, c in zip(todo, predicted, confidence, strict=True)
            ]
            done.update(todo)
        return out

    def _count_reader_links(
        self,
        stored: dict[str, list[MatchLesion]],
        tracks: dict[str, Tracks],
        outcome: Outcome,
    ) -> None:
        """Reader links written, and how often matching without the UIDs agrees with them."""
        for pid, patient_tracks in tracks.items():
            outcome.reader_links += sum(1 for link in patient_tracks.links if link.by == "reader")
            if any(m.tracking_uid for m in stored[pid]):
                agreement = reader_agreement(stored[pid], self.options.matching)
                outcome.reader_agreement.update(
                    pairs=agreement.pairs, agree=agreement.agree, disagree=agreement.disagree
                )

    def _index_graph_lesions(self, lesions: Sequence[_Lesion]) -> None:
        """Add the file's lesions (now in the graph) to the in-memory indexes."""
        for name, state in self.spaces.items():
            todo = [
                lesion
                for lesion in lesions
                if name in lesion.vectors and state.index.position(lesion.lesion_id) is None
            ]
            if todo:
                state.index.add(
                    [lesion.lesion_id for lesion in todo],
                    np.stack([lesion.vectors[name] for lesion in todo]).astype(np.float32),
                )
                for lesion in todo:
                    state.types[lesion.lesion_id] = lesion.coarse_type
                state.dirty = True


def run_etl(
    driver: Driver,
    paths: Sequence[str | Path],
    *,
    database: str = "neo4j",
    options: EtlOptions | None = None,
    progress: bool = True,
) -> EtlSummary:
    """Import every bookmark file among ``paths`` (see the module docstring); a summary.

    CT images among the inputs and in ``options.images`` are indexed first, so a report may come
    before or after its images. Files are imported in sorted path order (see
    :meth:`Importer.import_files` for how they share transactions).
    """
    options = options or EtlOptions()
    started = time.perf_counter()
    files = input_files(paths)
    ct = index_ct_images([*(p for p in files if file_kind(p) == "dicom"), *options.images])
    summary = EtlSummary()
    bar = tqdm(total=len(files), desc="etl", unit="file", disable=not progress, file=sys.stderr)
    with Importer(driver, database=database, options=options) as importer:
        summary.retries += importer.retries
        reports = importer.import_files(files, ct, on_files=bar.update)
        for report in reports:
            summary.add(report)
        summary.take(importer.outcome)
    bar.close()
    summary.seconds = time.perf_counter() - started
    return summary
