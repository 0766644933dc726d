"""The inputs of an import: the files under the paths given, what kind each one is, and which
dataset its bookmarks belong to."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from lesionkg.core.errors import InvalidInputError, Problem
from lesionkg.etl.bulk import marks_synthetic
from lesionkg.loaders.aim import looks_like_aim_json, looks_like_aim_sr, looks_like_aim_xml
from lesionkg.loaders.ct import dicom_object_kind
from lesionkg.loaders.guards import regular_file_refusal

#: dataset label of PACS bookmarks (DeepLesion rows keep "DeepLesion"; generated data "synthetic")
PACS_DATASET = "PACS"


def _is_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def file_kind(path: Path) -> str:
    """``jsonl``, ``deeplesion``, ``dicom``, ``aim``, ``image``, ``metadata`` or ``unknown``.

    ``aim``: AIM XML (v3, v4) or ePAD AIM JSON, recognised by content (an AIM namespace, an
    ``ImageAnnotationCollection``), whatever the name. DICOM files are all ``dicom`` here (CT
    images and reports alike); :func:`dicom_kind` tells an AIM SR from a TID 1500 report.
    """
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
    if looks_like_aim_xml(path) or looks_like_aim_json(path):
        return "aim"
    return "unknown"


def dicom_kind(path: Path) -> str:
    """``aim-sr`` for an AIM SR Report (the NCI AIM template, read through the AIM model), else
    ``dicom-sr`` (a TID 1500 measurement report, or something the SR reader will refuse)."""
    return "aim-sr" if looks_like_aim_sr(path) else "dicom-sr"


#: SOP Class UIDs of structured reports (SR documents) begin with this; every other DICOM object
#: in an export folder is an image or a non-report object the import does not use.
SR_SOP_CLASS_PREFIX = "1.2.840.10008.5.1.4.1.1.88."


def other_image_kind(path: Path) -> str | None:
    """What a DICOM file that is neither an SR document nor a CT image is ("MR image", "SEG
    object"), so the import counts it as an image it does not use instead of a rejected report;
    None for SR documents and CT images (the CT index reads those, and says why when it refuses
    one), and for headers that cannot be read (the SR reader then names the problem)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(
            path, stop_before_pixels=True, specific_tags=["SOPClassUID", "Modality"]
        )
    except (InvalidDicomError, OSError, ValueError, EOFError):
        return None
    sop_class = str(ds.get("SOPClassUID", ""))
    modality = str(ds.get("Modality", "")).strip().upper()
    if not sop_class or sop_class.startswith(SR_SOP_CLASS_PREFIX) or modality in ("CT", "SR"):
        return None
    return dicom_object_kind(sop_class, modality)


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
        elif refusal := regular_file_refusal(path):
            missing.append(Problem(str(path), None, None, refusal.reason, refusal.rule))
        else:
            missing.append(Problem(str(path), None, None, "no such file or folder"))
    if missing:
        raise InvalidInputError(missing, outcome="nothing was imported")
    return list(dict.fromkeys(files))


def pacs_dataset_of(path: Path) -> str:
    """The dataset of a PACS bookmark file: ``synthetic`` when a ``SYNTHETIC.json`` beside it
    says so, else :data:`PACS_DATASET`."""
    return "synthetic" if marks_synthetic(path.parent / "SYNTHETIC.json") else PACS_DATASET
