"""Where a DeepLesion key slice lives on disk.

DeepLesion's image archives unpack to ``Images_png/{patient}_{study}_{series}/{slice:03d}.png``;
curated subsets (like ``../shared/data/deeplesion/images``) keep flat ``File_name`` PNGs. Both are
accepted, with or without the ``Images_png`` level.
"""

from __future__ import annotations

from pathlib import Path


def key_slice_candidates(root: Path, file_name: str) -> list[Path]:
    """Paths where the key slice of ``file_name`` (``000002_01_01_162.png``) may be, in order."""
    stem = file_name.removesuffix(".png")
    volume, _, slice_part = stem.rpartition("_")
    return [
        root / "Images_png" / volume / f"{slice_part}.png",
        root / volume / f"{slice_part}.png",
        root / file_name,
        root / "Images_png" / file_name,
    ]


def find_key_slice(root: Path, file_name: str) -> Path | None:
    """The first existing candidate path for ``file_name`` under ``root``, or None."""
    for path in key_slice_candidates(root, file_name):
        if path.is_file():
            return path
    return None
