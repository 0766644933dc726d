"""Checks every reader runs before it trusts a file: what kind of file it is, how deep its JSON
nests, and whether a PNG is whole and small enough to decode.

Each check returns the reason and the rule (:mod:`lesionkg.core.limits`) of a refusal, or None;
the readers turn them into :class:`~lesionkg.core.errors.Problem` records with their own file,
line and field.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from xml.etree.ElementTree import Element

from lesionkg.core.limits import (
    IMAGE_PIXELS,
    IMAGE_TRUNCATED,
    JSON_DEPTH,
    NOT_REGULAR_FILE,
    OUTPUT_IS_INPUT,
    XML_DEPTH,
    InputLimits,
)

__all__ = [
    "PngInfo",
    "Refusal",
    "json_depth_refusal",
    "output_is_input_refusal",
    "png_refusal",
    "read_png_info",
    "regular_file_refusal",
    "xml_depth_refusal",
]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: bytes read per IDAT step while checking a PNG: bounds memory whatever the image claims
_INFLATE_STEP = 1 << 20


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an input is refused, and the stable name of the rule (None: no limit or
    plausibility rule, an ordinary format problem)."""

    reason: str
    rule: str | None


def regular_file_refusal(path: str | os.PathLike[str]) -> Refusal | None:
    """A refusal when ``path`` exists but is not a regular file (FIFO, device, socket).

    Checked with ``stat`` before ``open``: opening a FIFO for reading blocks until a writer
    comes, so a FIFO named ``.csv`` would hang the import. Missing files and folders are left to
    the reader's own messages.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    kind = (
        "a FIFO (named pipe)"
        if stat.S_ISFIFO(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "not a regular file"
    )
    return Refusal(f"is {kind}, expected a regular file", NOT_REGULAR_FILE)


def output_is_input_refusal(
    output: str | os.PathLike[str], inputs: list[str | os.PathLike[str]]
) -> Refusal | None:
    """A refusal when ``output`` is (a link to, another name of) one of ``inputs``."""
    target = Path(output).resolve()
    for given in inputs:
        same = Path(given).resolve() == target
        if not same:
            try:
                same = os.path.samefile(output, given)
            except OSError:
                same = False
        if same:
            return Refusal(
                f"is the input file {os.fspath(given)}: writing it would overwrite the input",
                OUTPUT_IS_INPUT,
            )
    return None


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


def json_depth_refusal(text: str, limits: InputLimits) -> Refusal | None:
    """A refusal when the JSON ``text`` nests arrays and objects deeper than the limit.

    Run before decoding: Python's decoder recurses once per level and dies with RecursionError
    near 1,000. Brackets inside strings do not count. Cheap for ordinary input: when the text
    holds no more opening brackets than the limit, it cannot nest deeper.
    """
    limit = limits.json_depth
    if text.count("[") + text.count("{") <= limit:
        return None
    depth = 0
    for match in _BRACKETS.finditer(_JSON_STRING.sub('""', text)):
        if match.group() in "[{":
            depth += 1
            if depth > limit:
                return Refusal(
                    f"JSON nested deeper than {limit} levels (arrays and objects); "
                    "refused before decoding",
                    JSON_DEPTH,
                )
        else:
            depth -= 1
    return None


def xml_depth_refusal(root: Element, limits: InputLimits) -> Refusal | None:
    """A refusal when XML elements nest deeper than the limit; walked without recursion (the
    parser itself does not recurse, but every reader of the tree after it does)."""
    limit = limits.xml_depth
    stack = [(root, 1)]
    while stack:
        element, depth = stack.pop()
        if depth > limit:
            return Refusal(f"XML elements nested deeper than {limit} levels", XML_DEPTH)
        stack.extend((child, depth + 1) for child in element)
    return None


@dataclass(frozen=True, slots=True)
class PngInfo:
    """What a PNG's IHDR chunk says."""

    width: int
    height: int
    bit_depth: int
    colour_type: int
    interlaced: bool


_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)


def read_png_info(head: bytes) -> PngInfo | None:
    """The IHDR facts from the first 33 bytes of a PNG, or None when they are not a PNG's."""
    if len(head) < 33 or not head.startswith(PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", head[16:29])
    return PngInfo(width, height, depth, colour, interlace == 1)


def _raw_size(info: PngInfo) -> int:
    """Bytes of the filtered scanlines the IDAT stream must inflate to."""
    bits = info.bit_depth * _CHANNELS.get(info.colour_type, 1)

    def rows(width: int, height: int) -> int:
        return 0 if width == 0 or height == 0 else height * (1 + (width * bits + 7) // 8)

    if not info.interlaced:
        return rows(info.width, info.height)
    total = 0
    for x0, y0, dx, dy in _ADAM7:
        total += rows(
            (info.width - x0 + dx - 1) // dx if info.width > x0 else 0,
            (info.height - y0 + dy - 1) // dy if info.height > y0 else 0,
        )
    return total


def png_refusal(path: str | os.PathLike[str], limits: InputLimits) -> Refusal | None:
    """A refusal when the PNG at ``path`` is too large or not whole, else None.

    The pixel count comes from the header, before anything is decoded. Then every chunk is
    walked with its CRC, and the image data is inflated in bounded steps (never held whole) to
    check that it holds exactly the scanlines the header promises and that IEND follows: a file
    cut after a valid header is refused as a whole file here, not when its pixels are first
    needed halfway through an import. The caller has checked the signature and type.
    """
    with open(path, "rb") as f:
        head = f.read(33)
        info = read_png_info(head)
        if info is None:
            return Refusal("the PNG header (IHDR) is missing or cut short", IMAGE_TRUNCATED)
        pixels = info.width * info.height
        if pixels > limits.image_pixels:
            return Refusal(
                f"image of {info.width} x {info.height} = {pixels:,} pixels (from its header) "
                f"exceeds the limit of {limits.image_pixels:,} pixels; refused before decoding",
                IMAGE_PIXELS,
            )
        if pixels == 0:
            return Refusal("the PNG header gives the image no pixels", IMAGE_TRUNCATED)
        return _png_body_refusal(f, info)


def _png_body_refusal(f: BinaryIO, info: PngInfo) -> Refusal | None:
    read = f.read
    expected = _raw_size(info)
    inflater = zlib.decompressobj()
    inflated = 0
    seen_idat = False
    while True:
        header = read(8)
        if len(header) < 8:
            return Refusal("the PNG ends before its IEND chunk (truncated file)", IMAGE_TRUNCATED)
        length, kind = struct.unpack(">I4s", header)
        crc = zlib.crc32(kind)
        remaining = length
        while remaining:
            chunk = read(min(remaining, _INFLATE_STEP))
            if not chunk:
                return Refusal(
                    f"the PNG ends inside its {kind.decode('latin-1')} chunk (truncated file)",
                    IMAGE_TRUNCATED,
                )
            remaining -= len(chunk)
            crc = zlib.crc32(chunk, crc)
            if kind == b"IDAT":
                seen_idat = True
                try:
                    # max_length bounds memory: only the count matters, not the pixels.
                    data = inflater.decompress(chunk, expected + 1 - inflated)
                    inflated += len(data)
                    while inflater.unconsumed_tail and inflated <= expected:
                        data = inflater.decompress(
                            inflater.unconsumed_tail, expected + 1 - inflated
                        )
                        inflated += len(data)
                except zlib.error as exc:
                    return Refusal(f"the PNG image data is corrupt ({exc})", IMAGE_TRUNCATED)
                if inflated > expected:
                    return Refusal(
                        "the PNG image data holds more than its header promises", IMAGE_TRUNCATED
                    )
        stored = read(4)
        if len(stored) < 4 or struct.unpack(">I", stored)[0] != crc:
            return Refusal(
                f"the PNG's {kind.decode('latin-1')} chunk is cut short or corrupt (CRC mismatch)",
                IMAGE_TRUNCATED,
            )
        if kind == b"IEND":
            break
    if not seen_idat or inflated != expected or not inflater.eof:
        return Refusal(
            f"the PNG image data holds {inflated:,} of the {expected:,} bytes its header "
            "promises (truncated or corrupt)",
            IMAGE_TRUNCATED,
        )
    return None
