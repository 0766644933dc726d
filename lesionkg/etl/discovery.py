"""The inputs of an import: the files under the paths given, what kind each one is, and which
dataset its bookmarks belong to."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from lesionkg.core.errors import InvalidInputError, Problem
from lesionkg.etl.bulk import marks_synthetic

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


def pacs_dataset_of(path: Path) -> str:
    """The dataset of a PACS bookmark file: ``synthetic`` when a ``SYNTHETIC.json`` beside it
    says so, else :data:`PACS_DATASET`."""
    return "synthetic" if marks_synthetic(path.parent / "SYNTHETIC.json") else PACS_DATASET
