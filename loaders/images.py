"""Where a DeepLesion key slice lives on disk, and whether a key slice image is usable.

DeepLesion's image archives unpack to ``Images_png/{patient}_{study}_{series}/{slice:03d}.png``;
curated subsets (like ``../shared/data/deeplesion/images``) keep flat ``File_name`` PNGs. Both are
accepted, with or without the ``Images_png`` level.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pydicom

from lesionkg.core.limits import InputLimits
from lesionkg.loaders.ct import dicom_pixels_refusal, read_ct_header
from lesionkg.loaders.guards import (
    PNG_SIGNATURE,
    Refusal,
    png_refusal,
    read_png_info,
    regular_file_refusal,
)

_PNG_GRAY = 0


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


@dataclass(frozen=True, slots=True)
class ImageCheck:
    """What checking one image file gave: why it is refused, and its width and height."""

    refusal: Refusal | None
    size_px: tuple[int, int] | None = None


def check_key_slice_image(path: Path, limits: InputLimits) -> ImageCheck:
    """Why ``path`` is not a usable key slice image (``refusal`` None when it is one), and its
    width and height when known: a 16-bit grayscale PNG checked whole (see
    :func:`~lesionkg.loaders.guards.png_refusal`) or a DICOM file whose header is within the
    pixel limits. The reasons name the path."""
    refusal = regular_file_refusal(path)
    if refusal is not None:
        return ImageCheck(Refusal(f"image {path} {refusal.reason}", refusal.rule))
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except FileNotFoundError:
        return _refused_image(
            f"image not found: {path} (--allow-missing-images imports it without the image)"
        )
    except IsADirectoryError:
        return _refused_image(f"image {path} is a directory, expected a PNG or DICOM file")
    except OSError as exc:
        return _refused_image(f"image {path} cannot be read ({exc.strerror})")
    if head.startswith(PNG_SIGNATURE):
        # IHDR is always the first chunk: bit depth at byte 24, colour type at byte 25. An 8-bit
        # or colour PNG holds no HU values, and would be read as garbage.
        if not (
            len(head) >= 26 and head[12:16] == b"IHDR" and head[24] == 16 and head[25] == _PNG_GRAY
        ):
            return _refused_image(
                f"image {path} is a PNG but not 16-bit grayscale: expected DeepLesion's "
                "convention (HU + 32768 in a 16-bit grayscale PNG)"
            )
        # The whole file is checked now (size from the header first, then every chunk): a PNG
        # cut after a valid header would otherwise fail when its pixels are first read, halfway
        # through the import, after other lines were written.
        try:
            refusal = png_refusal(path, limits)
        except OSError as exc:
            return _refused_image(f"image {path} cannot be read ({exc.strerror})")
        if refusal is not None:
            return ImageCheck(Refusal(f"image {path}: {refusal.reason}", refusal.rule))
        info = read_png_info(head)
        assert info is not None  # png_refusal read the same header
        return ImageCheck(None, (info.width, info.height))
    if head[128:132] == b"DICM":
        return _dicom_check(path, limits)
    return _refused_image(
        f"image {path} is neither a PNG nor a DICOM file (no PNG signature, no DICM preamble)"
    )


def _refused_image(reason: str) -> ImageCheck:
    return ImageCheck(Refusal(reason, None))


def _dicom_check(path: Path, limits: InputLimits) -> ImageCheck:
    """The size of a DICOM key slice, from its header only; a DICOM file that is not a usable CT
    image (an MR image, a SEG, a header without pixel spacing, too many pixels) is refused with
    its reason here, not found unusable after the lines before it were imported."""
    header = read_ct_header(path, limits)
    if not isinstance(header, str):
        return ImageCheck(None, (header.columns, header.rows))
    # Refused: read the header once more only to give a pixel limit its rule as a field.
    try:
        refusal = dicom_pixels_refusal(pydicom.dcmread(path, stop_before_pixels=True), limits)
    except Exception:  # pydicom raises many types; read_ct_header's reason names the problem
        refusal = None
    if refusal is not None:
        return ImageCheck(Refusal(f"image {path}: {refusal.reason}", refusal.rule))
    return _refused_image(f"image {path} is not a usable CT image: {header}")
