"""The image store: the key slice of every lesion the ETL read an image for, as pixels only.

The ETL keeps no path to a PACS image (paths and file names may hold names), so the explorer could
not show those lesions. Instead the key slice is written here as ``<lesion_id>.png``, a 16-bit grey
PNG in DeepLesion's convention (HU + 32768): no DICOM header, no text chunk, nothing but pixels,
named by the pseudonymous lesion id. It is written before the graph transaction (so the graph never
names a picture that is not there), atomically (temporary file, then rename), and only when its
bytes differ: importing the same lesion again writes nothing.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from lesionkg.core.errors import ConfigurationError

#: DeepLesion's offset: a stored pixel is HU + 32768
PNG_OFFSET = 32768
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


def stored_slice_path(store: Path, lesion_id: str) -> Path | None:
    """Where the stored key slice of ``lesion_id`` is (or would be); None for an id that is not
    a plain file name (nothing from outside reaches the file system but a checked id)."""
    if not _ID.match(lesion_id) or ".." in lesion_id:
        return None
    return store / f"{lesion_id}.png"


def encode_key_slice(hu: np.ndarray) -> bytes:
    """HU ``(H, W)`` as a 16-bit grey PNG (HU + 32768, rounded, clipped); the same HU always give
    the same bytes."""
    pixels = np.clip(np.rint(hu) + PNG_OFFSET, 0, 65535).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def store_key_slice(store: Path, lesion_id: str, hu: np.ndarray) -> Path:
    """Write the key slice of ``lesion_id`` into ``store`` (see the module docstring); its path.

    Raises :class:`ConfigurationError` naming the folder when it cannot be written."""
    path = stored_slice_path(store, lesion_id)
    if path is None:
        raise ValueError(f"{lesion_id!r} is not a lesion id that can name a file")
    data = encode_key_slice(hu)
    try:
        try:
            if path.read_bytes() == data:
                return path
        except FileNotFoundError:
            pass
        store.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=store, prefix=".", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ConfigurationError(
            f"{store}: cannot store the key slice of lesion {lesion_id} ({exc.strerror or exc}); "
            "make the folder writable, or choose another with --image-store or LESIONKG_HOME"
        ) from exc
    return path
