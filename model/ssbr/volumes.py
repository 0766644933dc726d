"""SSBR training data: slices read as HU and preprocessed, volumes listed from folders of
numbered PNG slices, groups of equidistant slices drawn from them, and the slice cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F
from tqdm import tqdm

from lesionkg.core.errors import InvalidInputError, ModelError, Problem
from lesionkg.model.ssbr.config import SLICE_NAME
from lesionkg.model.transforms import HU_OFFSET, SIXTEEN_BIT_MODES, Window, read_hu_png

# --- slices and volumes -------------------------------------------------------------------------


def _problem(path: Path, reason: str) -> InvalidInputError:
    return InvalidInputError([Problem(str(path), None, None, reason)], outcome="nothing was read")


def png_mode_problem(path: Path) -> str | None:
    """Why ``path`` is not a 16-bit grayscale PNG, or None; reads the header only."""
    try:
        with Image.open(path) as image:
            if image.format != "PNG":
                return f"not a PNG (Pillow reads it as {image.format})"
            if image.mode not in SIXTEEN_BIT_MODES:
                return (
                    f"PNG mode {image.mode}: expected 16-bit grayscale "
                    f"(pixel = HU + {HU_OFFSET}, DeepLesion Images_png)"
                )
    except OSError as exc:
        return f"not a readable image: {exc}"
    return None


def read_hu_slice(path: Path) -> np.ndarray:
    """A DeepLesion 16-bit PNG slice as HU, float32 ``(H, W)``.

    Raises :class:`InvalidInputError` naming ``path`` if it is not a 16-bit grayscale PNG.
    """
    path = Path(path)
    reason = png_mode_problem(path)
    if reason is not None:
        raise _problem(path, reason)
    return read_hu_png(path)


def preprocess_slices(
    hu_slices: np.ndarray, size: int, window: tuple[float, float]
) -> torch.Tensor:
    """Network input ``(N, 1, size, size)`` float32 from HU slices ``(N, H, W)``.

    Clips to ``window`` (HU), maps to [0, 1], normalises like ImageNet grey levels
    (:class:`~lesionkg.model.transforms.Window`), and resizes (bilinear, antialiased). The network
    replicates the channel.
    """
    hu = np.asarray(hu_slices, dtype=np.float32)
    if hu.ndim != 3 or hu.shape[0] == 0 or min(hu.shape[1:]) < 2:
        raise ModelError(f"hu_slices: expected an array (N, H, W) of HU, got shape {hu.shape}")
    tensor = torch.from_numpy(Window(*window)(hu)).unsqueeze(1)
    if tensor.shape[-2:] != (size, size):
        tensor = F.interpolate(
            tensor, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
    return tensor.contiguous()


@dataclass(frozen=True, eq=False)
class Volume:
    """One volume folder: its slice numbers (ascending) and PNG paths."""

    name: str
    directory: Path
    numbers: np.ndarray  # (n,) int64, ascending
    paths: tuple[Path, ...]
    #: strides (slice numbers) at which at least one full group exists, ascending
    strides: np.ndarray

    def path_of(self, number: int) -> Path:
        return self.paths[int(np.searchsorted(self.numbers, number))]


def list_slices(directory: Path) -> list[tuple[int, Path]]:
    """``(slice number, path)`` of the ``{number}.png`` files in ``directory``, ascending."""
    found = []
    for path in directory.iterdir():
        match = SLICE_NAME.match(path.name)
        if match and path.is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def _presence(numbers: np.ndarray) -> np.ndarray:
    """Boolean mask over slice numbers ``numbers[0] .. numbers[-1]``: True where a slice exists."""
    mask = np.zeros(int(numbers[-1] - numbers[0]) + 1, dtype=bool)
    mask[numbers - numbers[0]] = True
    return mask


def group_starts(numbers: np.ndarray, stride: int, m: int) -> np.ndarray:
    """Slice numbers ``a`` such that ``a, a + stride, ..., a + (m - 1) stride`` all exist."""
    if len(numbers) < m:
        return np.zeros(0, dtype=np.int64)
    mask = _presence(numbers)
    length = len(mask) - (m - 1) * stride
    if length <= 0:
        return np.zeros(0, dtype=np.int64)
    ok = mask[:length].copy()
    for j in range(1, m):
        ok &= mask[j * stride : j * stride + length]
    return np.flatnonzero(ok).astype(np.int64) + int(numbers[0])


def group_strides(numbers: np.ndarray, m: int, max_stride: int | None = None) -> np.ndarray:
    """Strides at which ``numbers`` (ascending slice numbers) hold a group of ``m`` slices."""
    if len(numbers) < m:
        return np.zeros(0, dtype=np.int64)
    longest = int(numbers[-1] - numbers[0]) // (m - 1)
    if max_stride is not None:
        longest = min(longest, max_stride)
    return np.array(
        [k for k in range(1, longest + 1) if len(group_starts(numbers, k, m))], dtype=np.int64
    )


def sample_group(
    volume: Volume, m: int, rng: np.random.Generator, max_stride: int | None = None
) -> np.ndarray:
    """``m`` equidistant existing slice numbers of ``volume``, ascending: a uniform stride among
    those possible, then a uniform start among those possible for it."""
    strides = volume.strides if max_stride is None else volume.strides[volume.strides <= max_stride]
    if len(strides) == 0:
        raise ModelError(f"{volume.directory}: no {m} equidistant slices")
    stride = int(rng.choice(strides))
    start = int(rng.choice(group_starts(volume.numbers, stride, m)))
    return start + stride * np.arange(m, dtype=np.int64)


@dataclass(frozen=True)
class VolumeScan:
    """The usable volumes of a training folder and the skipped ones with why."""

    root: Path
    volumes: tuple[Volume, ...]
    skipped: tuple[tuple[str, str], ...]  # (volume name, reason)

    @property
    def slices(self) -> int:
        return sum(len(v.numbers) for v in self.volumes)


def scan_volumes(
    root: Path, m: int = 8, max_stride: int | None = None, progress: bool = False
) -> VolumeScan:
    """The volume folders under ``root`` (or ``root/Images_png``) usable for groups of ``m``.

    Volumes without ``m`` equidistant slices, and subfolders without slice PNGs, are skipped and
    listed. Every slice of a usable volume must be a 16-bit grayscale PNG: all offending files are
    reported together (:class:`InvalidInputError`). No usable volume is a :class:`ModelError`.
    """
    root = Path(root)
    if not root.is_dir():
        raise ModelError(f"{root}: volumes folder not found")
    if (root / "Images_png").is_dir():
        root = root / "Images_png"
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        hint = (
            " (it holds slice PNGs itself: give the folder above it)" if list_slices(root) else ""
        )
        raise ModelError(
            f"{root}: no volume folders ({{volume}}/{{slice:03d}}.png, 16-bit PNG){hint}"
        )
    volumes, skipped, problems = [], [], []
    for folder in tqdm(
        folders, desc="scanning volumes", unit="vol", disable=not progress, leave=False
    ):
        slices = list_slices(folder)
        if not slices:
            skipped.append((folder.name, "no {slice}.png files"))
            continue
        numbers = np.array([n for n, _ in slices], dtype=np.int64)
        strides = group_strides(numbers, m, max_stride)
        if len(strides) == 0:
            skipped.append((folder.name, f"{len(numbers)} slices, no {m} equidistant ones"))
            continue
        for _, path in slices:
            reason = png_mode_problem(path)
            if reason is not None:
                problems.append(Problem(str(path), None, None, reason))
        volumes.append(Volume(folder.name, folder, numbers, tuple(p for _, p in slices), strides))
    if problems:
        raise InvalidInputError(problems, outcome="nothing was trained")
    if not volumes:
        raise ModelError(
            f"{root}: none of its {len(folders)} volume folders has {m} equidistant slices "
            f"(e.g. {skipped[0][0]}: {skipped[0][1]})"
        )
    return VolumeScan(root, tuple(volumes), tuple(skipped))


class SliceStore:
    """Preprocessed training slices, read on demand and kept up to ``cache_mb`` MiB."""

    def __init__(self, size: int, window: tuple[float, float], cache_mb: int) -> None:
        self.size, self.window = size, window
        self.capacity = (cache_mb << 20) // (size * size * 4)
        self._cache: dict[Path, torch.Tensor] = {}

    def load(self, paths: list[Path]) -> torch.Tensor:
        """Network input ``(len(paths), 1, size, size)``."""
        out = []
        for path in paths:
            tensor = self._cache.get(path)
            if tensor is None:
                # scan_volumes checked every slice's header already: read it once, not twice.
                tensor = preprocess_slices(read_hu_png(path)[None], self.size, self.window)[0]
                if len(self._cache) < self.capacity:
                    self._cache[path] = tensor
            out.append(tensor)
        return torch.stack(out)
