"""The byte canvas that writes a chunk's rows as DL_info.csv text (and its track rows): whole
columns at once with exact integer arithmetic, so the output is byte-identical everywhere."""

from __future__ import annotations

import numpy as np

from lesionkg.synthetic.cohort.drawing import Chunk
from lesionkg.synthetic.cohort.tables import WINDOW_STRINGS

_NUL = np.uint8(0)
_ZERO = np.uint8(ord("0"))
_DOT = np.uint8(ord("."))
_POW10 = np.array([1e-4, 1e-3, 1e-2, 1e-1, 1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6])
_SCALE = np.array([10.0**k for k in range(10)])  # exact powers of ten
_INT_LIMITS = 10 ** np.arange(1, 19, dtype=np.int64)  # 10, 100, ...: digit counts by search
_FORMAT_ROWS = 8192  # rows drawn at once: keeps the canvas (~4 MB) in cache


class Canvas:
    """Character columns of a block of CSV lines: one byte per row (an array) or a constant."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.cols: list[np.ndarray | int] = []

    def text(self, literal: str) -> None:
        self.cols.extend(literal.encode("ascii"))

    def table(self, strings: tuple[str, ...], index: np.ndarray) -> None:
        """Strings picked from a small table by ``index``."""
        width = max(len(x) for x in strings)
        tab = np.zeros((width, len(strings)), np.uint8)
        for i, x in enumerate(strings):
            tab[: len(x), i] = np.frombuffer(x.encode("ascii"), np.uint8)
        self.cols.extend(tab[:, index])

    def ints(self, x: np.ndarray, min_digits: int = 1) -> None:
        """Non-negative integers like ``%d``, or ``%0{min_digits}d`` when ``min_digits`` > 1."""
        x = np.asarray(x, np.int64)
        ndig = np.maximum(np.searchsorted(_INT_LIMITS, x, side="right") + 1, min_digits)
        width = int(ndig.max()) if self.n else min_digits
        digits = []
        rest = x
        for _ in range(width):
            digits.append((rest % 10).astype(np.uint8) + _ZERO)
            rest = rest // 10
        for pos in range(width):  # left to right; shown when the number has >= width-pos digits
            self.cols.append(np.where(ndig >= width - pos, digits[width - 1 - pos], _NUL))

    def g6_cells(self, cells: list[np.ndarray]) -> None:
        """List cells ``"a, b, c"`` (``%.6g`` numbers), one (rows, k) array per cell.

        All numbers of all cells are formatted in one vectorised pass: 6 significant digits,
        trailing zeros dropped, "0.000..." for numbers below 1; valid for [1e-4, 1e6).
        """
        v = np.ascontiguousarray(np.concatenate(cells, axis=1).T, np.float64)  # (numbers, rows)
        if v.size and not (np.all(v >= 1e-4) and np.all(v < 999_999.5)):
            raise ValueError("value outside the range the fixed-point formatter handles")
        exp = np.searchsorted(_POW10, v, side="right") - 5  # floor(log10 v), exact
        scaled = np.rint(v * _SCALE[5 - exp])
        carry = scaled >= 1e6  # 9.999996 -> 10.0000: one more integer digit
        exp = np.where(carry, exp + 1, exp)
        sig = np.where(carry, np.rint(v * _SCALE[5 - exp]), scaled).astype(np.int64)
        digits: list[np.ndarray] = []  # the 6 significant digits, most significant first
        for _ in range(6):
            digits.append((sig % 10).astype(np.uint8))
            sig //= 10
        digits.reverse()
        trailing = np.zeros(v.shape, np.int64)
        run = np.ones(v.shape, bool)
        for d in reversed(digits):
            run &= d == 0
            trailing += run
        n_frac = np.where(exp >= 0, 5 - exp, 6)  # significant digits after the point
        shown = 6 - np.minimum(trailing, n_frac)  # digits written
        has_frac = trailing < n_frac
        chars = [  # character slots of one number; NUL where unused
            np.where(exp < 0, _ZERO, _NUL),
            np.where(exp < 0, _DOT, _NUL),
            *(np.where(-exp - 1 > k, _ZERO, _NUL) for k in range(3)),
        ]
        for i, d in enumerate(digits):
            chars.append(np.where(shown > i, d + _ZERO, _NUL))
            if i < 5:
                chars.append(np.where((exp == i) & has_frac, _DOT, _NUL))
        number = 0
        for c, cell in enumerate(cells):
            if c:
                self.text('","')
            for j in range(cell.shape[1]):
                if j:
                    self.text(", ")
                # slots no row of the block uses (e.g. "0." before numbers >= 1) are left out
                self.cols.extend(ch[number] for ch in chars if ch[number].any())
                number += 1

    def render(self) -> bytes:
        lines = np.empty((self.n, len(self.cols)), np.uint8)
        for i, col in enumerate(self.cols):
            lines[:, i] = col
        return lines.tobytes().translate(None, b"\0")  # C loop, faster than a numpy mask


_TYPE_STRINGS = tuple(str(t) for t in range(-1, 9))


def _file_names(c: Canvas, chunk: Chunk, rows: slice) -> None:
    c.ints(chunk.patient[rows], 6)
    c.text("_")
    c.ints(chunk.study[rows], 2)
    c.text("_")
    c.ints(chunk.series[rows], 2)
    c.text("_")
    c.ints(chunk.key[rows], 3)
    c.text(".png")


def format_chunk(chunk: Chunk, first_row: int) -> tuple[bytes, bytes]:
    """CSV bytes of the chunk's rows (official layout) and of their track ground truth."""
    csv_parts: list[bytes] = []
    track_parts: list[bytes] = []
    n_all = len(chunk.patient)
    for start in range(0, n_all, _FORMAT_ROWS):
        r = slice(start, min(start + _FORMAT_ROWS, n_all))
        n = r.stop - r.start
        c = Canvas(n)
        _file_names(c, chunk, r)
        for col in (chunk.patient, chunk.study, chunk.series, chunk.key):
            c.text(",")
            c.ints(col[r])
        c.text(',"')
        c.g6_cells([chunk.recist[r], chunk.bbox[r], chunk.diam[r], chunk.loc[r]])
        c.text('",')
        c.table(_TYPE_STRINGS, chunk.type[r] + 1)
        c.text(",")
        c.ints(chunk.noisy[r])
        c.text(',"')
        c.ints(chunk.slice_lo[r])
        c.text(", ")
        c.ints(chunk.slice_hi[r])
        c.text('","')
        xy = chunk.xy_spacing[r, None]
        c.g6_cells([np.hstack([xy, xy, chunk.z_spacing[r, None]])])
        c.text('","512, 512","')
        c.table(WINDOW_STRINGS, chunk.window[r])
        c.text('",')
        c.table(("F", "M"), chunk.sex[r].astype(np.int64))
        c.text(",")
        c.ints(chunk.age[r])
        c.text(",")
        c.ints(chunk.split[r])
        c.text("\n")
        csv_parts.append(c.render())

        t = Canvas(n)
        t.ints(np.arange(first_row + r.start, first_row + r.stop))
        t.text(",")
        _file_names(t, chunk, r)
        t.text(",")
        t.ints(chunk.patient[r], 6)
        t.text("_L")
        t.ints(chunk.track_no[r], 3)
        t.text("\n")
        track_parts.append(t.render())
    return b"".join(csv_parts), b"".join(track_parts)


# ---- images: key slices of every volume, SSBR training volumes -----------------------------------
