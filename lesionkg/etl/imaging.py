"""Reading the CT images an import needs and the optional models it runs: a bookmark's key slice
with its neighbours as HU, the triplet embedder and body-part regression."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lesionkg.core.errors import InvalidInputError, ModelError, Problem
from lesionkg.core.provenance import ImageStatus
from lesionkg.core.records import Bookmark
from lesionkg.etl.options import EtlOptions
from lesionkg.loaders.ct import CTImage, CTIndex, read_ct_header, read_hu
from lesionkg.loaders.ct import neighbours as ct_neighbours

if TYPE_CHECKING:
    # torch is loaded only when a model is given
    from lesionkg.model.embedder import Embedder
    from lesionkg.model.ssbr import SSBRModel


class KeySlices:
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
                return png_stack(path), None
            header = read_ct_header(path)
            if isinstance(header, str):
                # The readers refuse these first; a file changed since is not taken for missing.
                raise InvalidInputError([Problem(str(path), None, None, header)])
            image = header
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

    def status(
        self, bookmark: Bookmark, stack: tuple[np.ndarray, tuple[float, float] | None] | None
    ) -> ImageStatus:
        """What became of ``bookmark``'s image, given what :meth:`stack` read for it."""
        ref = bookmark.image
        if ref is None:
            return ImageStatus.NOT_REFERENCED
        if stack is not None:
            return ImageStatus.FOUND
        if ref.sop_instance_uid and self.ct.found_instead(ref.sop_instance_uid) is not None:
            return ImageStatus.UNUSABLE
        return ImageStatus.MISSING


def png_stack(path: Path) -> np.ndarray:
    """HU ``(3, H, W)`` of a key slice PNG and the slices beside it in DeepLesion's layouts
    (``SERIES/NNN.png`` or ``SERIES_NNN.png``; a missing neighbour is the key slice again); any
    other PNG three times."""
    from lesionkg.model.transforms import read_hu_png, read_slice_stack

    stem = path.stem
    if stem.isdigit():
        return read_slice_stack(path, f"{path.parent.name}_{path.name}")
    _, _, tail = stem.rpartition("_")
    if tail.isdigit():
        return read_slice_stack(path, path.name)
    key = read_hu_png(path)
    return np.stack([key, key, key])


class Models:
    """The optional models: the triplet embedder and body-part regression."""

    def __init__(self, options: EtlOptions) -> None:
        self.embedder: Embedder | None = None
        self.ssbr: SSBRModel | None = None
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
