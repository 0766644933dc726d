"""Preparing one bookmark file for the graph, before the graph is consulted: read and check it,
pseudonymise its ids, locate its lesions (box, body outline, body-part regression), give them
cue vectors and their network input, and collect its patients and studies as parameter rows.

A file that holds no bookmarks (an image, a metadata file) or cannot be read is a
:class:`~lesionkg.etl.report.FileReport` instead; nothing here touches the database.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from lesionkg.config.paths import image_store_dir
from lesionkg.core import cues, provenance
from lesionkg.core.body import relative_xy
from lesionkg.core.errors import InvalidInputError, ModelError, Problem
from lesionkg.core.pseudonym import Pseudonymizer, PseudonymousBookmark
from lesionkg.core.records import COARSE_TYPES, Bookmark, ImageRef, LesionRecord
from lesionkg.db.writes import lesion_props
from lesionkg.etl.bulk import dataset_of
from lesionkg.etl.discovery import dicom_kind, file_kind, other_image_kind, pacs_dataset_of
from lesionkg.etl.image_store import store_key_slice
from lesionkg.etl.imaging import KeySlices, Models
from lesionkg.etl.options import EtlOptions
from lesionkg.etl.report import FileReport
from lesionkg.loaders.ct import CTIndex

#: a key slice and its neighbours in HU ``(3, H, W)`` and the (x, y) spacing, or None
Stack = tuple[np.ndarray, tuple[float, float] | None] | None
#: series id of lesions whose source names no series: one volume per study
NO_SERIES = "SE-none"
#: how far beyond the axis endpoints the lesion box reaches, pixels (DeepLesion pads by 5)
BOX_PAD_PX = 5.0
#: findings that name a normal anatomical structure (code meanings, lower case, without a
#: trailing " structure"): a measurement of one (the aorta's diameter) is not a lesion. Such a
#: bookmark is skipped with the reason "finding: normal anatomy", counted, and etl exits 1.
NORMAL_ANATOMY = frozenset(
    {
        "aorta",
        "thoracic aorta",
        "abdominal aorta",
        "ascending aorta",
        "descending aorta",
        "aortic arch",
        "aortic root",
        "pulmonary artery",
        "main pulmonary artery",
        "pulmonary trunk",
        "inferior vena cava",
        "superior vena cava",
        "portal vein",
        "heart",
        "left ventricle",
        "right ventricle",
        "left atrium",
        "right atrium",
        "liver",
        "spleen",
        "kidney",
        "pancreas",
        "gallbladder",
        "common bile duct",
        "thyroid gland",
        "prostate",
        "uterus",
        "ovary",
        "adrenal gland",
        "lung",
        "trachea",
        "esophagus",
        "urinary bladder",
        "spinal canal",
        "vertebral body",
    }
)
#: ``source_kind`` of AIM bookmarks by the reader's format name
_AIM_KINDS = {"AIM v3 XML": "aim-xml", "AIM v4 XML": "aim-xml", "ePAD AIM JSON": "aim-json"}


def normal_anatomy(finding: str | None) -> bool:
    """Whether a finding's code meaning names a normal anatomical structure, not a lesion."""
    if not finding:
        return False
    name = finding.strip().lower()
    return name.removesuffix(" structure") in NORMAL_ANATOMY


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


@dataclass
class PreparedLesion:
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
class PreparedFile:
    """A parsed and checked file, before the graph is consulted."""

    kind: str
    dataset: str
    lesions: list[PreparedLesion]
    #: studies come with their own index (DeepLesion) or are ordered by time (PACS)
    ordered_by_time: bool
    patients: dict[str, dict[str, Any]]
    studies: dict[str, dict[str, Any]]
    skipped: list[Problem] = field(default_factory=list)
    in_file_duplicates: int = 0


def prepare_file(
    path: Path,
    ct: CTIndex,
    pseudonymizer: Pseudonymizer,
    models: Models,
    options: EtlOptions,
    ct_paths: set[Path] | None = None,
) -> PreparedFile | FileReport:
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
        if kind == "dicom" and (other := other_image_kind(path)) is not None:
            # MR, SEG, secondary capture ... beside the reports: counted as images, not used.
            return FileReport(source, other, "image")
        if kind == "unknown":
            raise InvalidInputError(
                [
                    Problem(
                        source,
                        None,
                        None,
                        "not a DICOM file (no 'DICM' marker), an AIM file (XML with an AIM "
                        "namespace, ePAD JSON with an ImageAnnotationCollection), a JSON Lines "
                        "file (.jsonl) or a DeepLesion CSV (.csv)",
                    )
                ]
            )
        images = KeySlices(ct)
        store = options.image_store or image_store_dir()
        if kind == "jsonl":
            from lesionkg.loaders.jsonl import read_jsonl_bookmarks

            bookmarks = read_jsonl_bookmarks(
                path, allow_missing_images=options.allow_missing_images, limits=options.limits
            )
            return _prepare_pacs(
                bookmarks, pseudonymizer, images, models, kind, pacs_dataset_of(path), store
            )
        if kind == "aim" or (kind == "dicom" and dicom_kind(path) == "aim-sr"):
            return _read_aim(path, ct, pseudonymizer, images, models, options, store)
        if kind == "dicom":
            from lesionkg.loaders.dicom_sr import read_measurement_report

            result = read_measurement_report(
                path,
                ct,
                allow_missing_images=options.allow_missing_images,
                limits=options.limits,
            )
            prepared = _prepare_pacs(
                result.bookmarks,
                pseudonymizer,
                images,
                models,
                "dicom-sr",
                pacs_dataset_of(path),
                store,
            )
            prepared.skipped = list(result.skipped) + prepared.skipped
            return prepared
        return _read_deeplesion(path, options, models)
    except InvalidInputError as exc:
        return FileReport(source, kind, "rejected", problems=exc.problems)


def _read_aim(
    path: Path,
    ct: CTIndex,
    pseudonymizer: Pseudonymizer,
    images: KeySlices,
    models: Models,
    options: EtlOptions,
    store: Path,
) -> PreparedFile:
    """An AIM file (v3/v4 XML, ePAD JSON, AIM SR) through the AIM reader, like an SR report:
    an annotation whose image is not among the CT inputs is skipped with its reason unless
    missing images are allowed; the annotation's uid names the measurement (an AIM file and its
    AIM SR twin give the same lesion)."""
    from lesionkg.loaders.aim import read_aim

    result = read_aim(
        path, ct, require_images=not options.allow_missing_images, limits=options.limits
    )
    bookmarks = [
        replace(bookmark, measurement_uid=f"aim:{annotation.uid}") if annotation.uid else bookmark
        for bookmark, annotation in zip(result.bookmarks, result.annotations, strict=True)
    ]
    kind = _AIM_KINDS.get(result.format, "aim-sr")
    prepared = _prepare_pacs(
        bookmarks, pseudonymizer, images, models, kind, pacs_dataset_of(path), store
    )
    prepared.skipped = list(result.skipped) + prepared.skipped
    return prepared


def _read_deeplesion(path: Path, options: EtlOptions, models: Models) -> PreparedFile:
    from lesionkg.loaders.deeplesion import RejectedRow, parse_dl_info

    records: list[LesionRecord] = []
    problems: list[Problem] = []
    for item in parse_dl_info(path, limits=options.limits):
        if isinstance(item, RejectedRow):
            problems.extend(item.problems)
        else:
            records.append(item)
    if problems:
        raise InvalidInputError(problems)
    return _prepare_deeplesion(path, records, options, models)


def _prepare_pacs(
    bookmarks: Sequence[Bookmark],
    pseudonymizer: Pseudonymizer,
    images: KeySlices,
    models: Models,
    kind: str,
    dataset: str,
    store: Path,
) -> PreparedFile:
    """The lesions of ``bookmarks``; the key slice of each one with an image goes into the image
    ``store`` (pixels only, by lesion id: :mod:`lesionkg.etl.image_store`), before any
    transaction."""
    prepared = PreparedFile(kind, dataset, [], True, {}, {})
    seen: dict[str, int] = {}
    # A report's lesions are often on one slice: read its stack (and neighbours) once per file.
    stacks: dict[ImageRef, Stack | InvalidInputError | ModelError] = {}
    for bookmark in bookmarks:
        if normal_anatomy(bookmark.finding):
            prepared.skipped.append(
                Problem(
                    bookmark.source,
                    bookmark.source_index,
                    "finding",
                    f"normal anatomy, not a lesion (finding '{bookmark.finding}'): LesionKG keeps "
                    "lesion measurements only",
                )
            )
            continue
        pb = pseudonymizer.pseudonymise(bookmark)
        if pb.lesion_id in seen:
            # The same measurement given twice in one file (same group or annotation id).
            prepared.in_file_duplicates += 1
            continue
        seen[pb.lesion_id] = bookmark.source_index
        lesion = _pacs_lesion(pb, bookmark, kind, dataset)
        stack = None
        if bookmark.image is not None:
            if bookmark.image not in stacks:
                try:
                    stacks[bookmark.image] = images.stack(bookmark)
                except (InvalidInputError, ModelError) as exc:
                    stacks[bookmark.image] = exc
            found = stacks[bookmark.image]
            if isinstance(found, InvalidInputError | ModelError):
                # The image's own problems (file: reason), not the whole error's summary line.
                reason = (
                    "; ".join(str(p) for p in found.problems)
                    if isinstance(found, InvalidInputError)
                    else str(found)
                )
                prepared.skipped.append(
                    Problem(bookmark.source, bookmark.source_index, "image", reason)
                )
                continue
            stack = found
        status = images.status(bookmark, stack)
        lesion.props["image_status"] = status.value
        if stack is not None:
            store_key_slice(store, pb.lesion_id, stack[0][1])
            lesion.props["image_stored"] = True
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
            # Both fields say the same thing: the image's fate is why there is no location.
            lesion.props["location_source"] = (
                provenance.NO_COORDINATES if stack is not None else provenance.without_image(status)
            )
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


def embed_lesions(lesions: Sequence[PreparedLesion], models: Models, batch_size: int = 32) -> int:
    """Run the network on the prepared inputs of ``lesions`` (a whole write batch at once: the
    network is far faster on 32 crops than on a file's 3); how many were embedded."""
    todo = [(lesion, net) for lesion in lesions if (net := lesion.network_input) is not None]
    if models.embedder is None or not todo:
        return 0
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        crops = np.stack([crop for _, (crop, _) in chunk])
        boxes = np.stack([box for _, (_, box) in chunk])
        vectors = models.embedder.embed_arrays(crops, boxes)
        for (lesion, _), vector in zip(chunk, vectors, strict=True):
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
    lesion: PreparedLesion,
    key_hu: np.ndarray,
    box: tuple[float, float, float, float],
    models: Models,
) -> None:
    """x, y from the body outline; z from body-part regression when a model is configured."""
    centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    xy = relative_xy(key_hu, centre)
    if xy is None:
        lesion.props["location_source"] = provenance.NO_BODY
        return
    if models.ssbr is None:
        lesion.props["location_xy"] = list(xy)
        lesion.props["location_source"] = provenance.XY_ONLY
        return
    z = float(models.ssbr.normalised_z(key_hu[None])[0])
    lesion.location = (xy[0], xy[1], z)
    lesion.props["location"] = list(lesion.location)
    lesion.props["location_source"] = provenance.from_ssbr(models.ssbr.sha256)


def _add_cues(lesion: PreparedLesion) -> None:
    row = cues.with_short_axis(lesion.props)
    if cues.cueable(row):
        vector = cues.cue_matrix_from_props([row])[0]
        lesion.vectors["cues"] = vector
        lesion.props["cues"] = vector.tolist()
        lesion.props["cues_version"] = cues.CUES_VERSION


def _pacs_lesion(
    pb: PseudonymousBookmark, bookmark: Bookmark, kind: str, dataset: str
) -> PreparedLesion:
    # AIM names its lesions per reader ("reader1: lesion1", hashed with the patient as TI-...):
    # without a lesion UID that name is the reader's link across timepoints, as in ePAD's RECIST.
    link = pb.tracking_uid
    if link is None and kind.startswith("aim"):
        link = pb.tracking_id
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
        "tracking_uid": link,
        "tracking_id": pb.tracking_id,
        "window": list(pb.window_hu) if pb.window_hu else None,
        "recomputed_long_axis_mm": pb.recomputed_long_axis_mm,
    }
    if pb.long_axis_px and pb.short_axis_px:
        props["recist"] = [*pb.long_axis_px, *pb.short_axis_px]
    location = pb.location
    if location is not None:
        props["location"] = list(location)
        props["location_source"] = provenance.GIVEN
    return PreparedLesion(
        lesion_id=pb.lesion_id,
        patient_id=pb.patient_id,
        study_id=pb.study_id,
        study_datetime=pb.study_datetime,
        props=props,
        coarse_type=pb.coarse_type,
        location=location,
        tracking_uid=link,
    )


def _prepare_deeplesion(
    path: Path, records: Sequence[LesionRecord], options: EtlOptions, models: Models
) -> PreparedFile:
    from lesionkg.loaders.images import find_key_slice

    dataset = dataset_of(path)
    prepared = PreparedFile("deeplesion", dataset, [], False, {}, {})
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
        props["location_source"] = provenance.GIVEN
        lesion = PreparedLesion(
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
