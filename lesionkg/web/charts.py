"""Small SVG charts drawn on the server: no chart library, no script, readable without either.

Each function returns an SVG string whose text comes only from numbers and from labels it
escapes, so templates may insert it as markup.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Any

from lesionkg.core.response import ResponseReport

CATEGORY_COLOURS = {
    "CR": "#2e9d5b",
    "PR": "#3b7dd8",
    "SD": "#8a8f98",
    "PD": "#d8453b",
    "NE": "#b0a040",
}
_FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def _axis(value: float, most: int = 5) -> tuple[float, float]:
    """A round axis top at or above ``value`` and its tick step (1, 2 or 5 times a power of 10),
    with at most ``most`` steps."""
    if value <= 0:
        return 1.0, 0.25
    magnitude = 10 ** math.floor(math.log10(value / most))
    for mult in (1, 2, 5, 10):
        step = mult * magnitude
        if value / step <= most:
            return math.ceil(value / step - 1e-9) * step, step
    return value, value


def _nice_max(value: float) -> float:
    return _axis(value)[0]


def _ticks(top: float) -> list[float]:
    _, step = _axis(top)
    count = round(top / step)
    return [step * i for i in range(count + 1)]


def _fmt(v: float) -> str:
    return f"{v:.0f}" if v >= 10 or v == int(v) else f"{v:.1f}"


def type_bars(types: Sequence[dict[str, Any]]) -> str:
    """Horizontal stacked bars: lesions per type, given label and predicted type."""
    width, row, left = 460, 22, 90
    height = row * max(len(types), 1) + 30
    top = _nice_max(max((t["given"] + t["predicted"] for t in types), default=1))
    scale = (width - left - 50) / top
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" '
        f'aria-label="lesions per coarse type" {_FONT}>'
    ]
    for i, t in enumerate(types):
        y = 8 + i * row
        given_w, pred_w = t["given"] * scale, t["predicted"] * scale
        parts.append(
            f'<text x="{left - 6}" y="{y + 13}" text-anchor="end">{escape(t["type"])}</text>'
            f'<rect x="{left}" y="{y + 3}" width="{given_w:.1f}" height="14" fill="#3b7dd8">'
            f"<title>{escape(t['type'])}: {t['given']} labelled</title></rect>"
            f'<rect x="{left + given_w:.1f}" y="{y + 3}" width="{pred_w:.1f}" height="14" '
            f'fill="#9bbcef"><title>{escape(t["type"])}: {t["predicted"]} predicted</title></rect>'
            f'<text x="{left + given_w + pred_w + 4:.1f}" y="{y + 14}">'
            f"{t['given'] + t['predicted']}</text>"
        )
    y = height - 10
    parts.append(
        f'<rect x="{left}" y="{y - 8}" width="10" height="10" fill="#3b7dd8"/>'
        f'<text x="{left + 14}" y="{y + 1}">labelled</text>'
        f'<rect x="{left + 80}" y="{y - 8}" width="10" height="10" fill="#9bbcef"/>'
        f'<text x="{left + 94}" y="{y + 1}">predicted (kNN)</text></svg>'
    )
    return "".join(parts)


def size_histogram(bins: Sequence[dict[str, Any]]) -> str:
    """Vertical bars: lesions per long-axis bin (mm); the last bin is open-ended."""
    width, height, left, bottom = 460, 200, 44, 30
    plot_w, plot_h = width - left - 10, height - bottom - 10
    top = _nice_max(max((b["lesions"] for b in bins), default=1))
    bar = plot_w / max(len(bins), 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="long axis histogram" {_FONT}>'
    ]
    for tick in _ticks(top):
        y = 10 + plot_h - tick / top * plot_h
        parts.append(
            f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e6ea"/>'
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{_fmt(tick)}</text>'
        )
    for i, b in enumerate(bins):
        h = b["lesions"] / top * plot_h
        x = left + i * bar
        upper = f"{b['to_mm']}" if b["to_mm"] is not None else "+"
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{10 + plot_h - h:.1f}" width="{bar - 2:.1f}" '
            f'height="{h:.1f}" fill="#3b7dd8"><title>{b["from_mm"]}-{upper} mm: '
            f"{b['lesions']} lesions</title></rect>"
        )
        if i % 2 == 0:
            parts.append(
                f'<text x="{x:.1f}" y="{height - bottom + 14}" text-anchor="middle">'
                f"{b['from_mm']}</text>"
            )
    parts.append(
        f'<text x="{left + plot_w / 2:.0f}" y="{height - 2}" text-anchor="middle">'
        "long axis, mm</text></svg>"
    )
    return "".join(parts)


def _line_chart(
    points: Sequence[tuple[int, float]],
    *,
    label: str,
    y_label: str,
    markers: Sequence[tuple[str, str]] | None = None,
    width: int = 300,
    height: int = 170,
) -> str:
    """A polyline over study indices (x) with round y axis; ``markers``: a (text, colour) per
    point drawn above it."""
    left, bottom, top_pad = 40, 30, 18
    plot_w, plot_h = width - left - 14, height - bottom - top_pad
    xs = [p[0] for p in points]
    x_lo, x_hi = min(xs, default=0), max(xs, default=1)
    span = max(x_hi - x_lo, 1)
    top = _nice_max(max((p[1] for p in points), default=1) * 1.1)

    inset = 16  # keeps the first and last points and their labels clear of the axis text

    def px(x: float) -> float:
        if x_hi == x_lo:
            return left + plot_w / 2
        return left + inset + (x - x_lo) / span * (plot_w - 2 * inset)

    def py(y: float) -> float:
        return top_pad + plot_h - y / top * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(label)}" {_FONT}>'
    ]
    for tick in _ticks(top):
        parts.append(
            f'<line x1="{left}" x2="{width - 14}" y1="{py(tick):.1f}" y2="{py(tick):.1f}" '
            f'stroke="#e3e6ea"/><text x="{left - 4}" y="{py(tick) + 4:.1f}" '
            f'text-anchor="end">{_fmt(tick)}</text>'
        )
    for x in sorted(set(xs)):
        parts.append(
            f'<text x="{px(x):.1f}" y="{height - bottom + 14}" text-anchor="middle">{x}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.0f}" y="{height - 3}" text-anchor="middle">study</text>'
        f'<text x="10" y="{top_pad - 6}">{escape(y_label)}</text>'
    )
    if len(points) > 1:
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#3b7dd8" stroke-width="2"/>')
    for i, (x, y) in enumerate(points):
        colour = markers[i][1] if markers else "#3b7dd8"
        parts.append(
            f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="4" fill="{colour}">'
            f"<title>study {x}: {y:.1f} mm</title></circle>"
        )
        if markers and markers[i][0]:
            parts.append(
                f'<text x="{px(x):.1f}" y="{py(y) - 8:.1f}" text-anchor="middle" '
                f'font-weight="bold" fill="{colour}">{escape(markers[i][0])}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def growth_chart(points: Sequence[tuple[int, float]]) -> str:
    """A track's long axis (mm) per study."""
    return _line_chart(points, label="growth: long axis per study", y_label="long axis, mm")


def response_chart(report: ResponseReport) -> str:
    """Sum of the target lesions' diameters per study, each follow-up marked CR/PR/SD/PD/NE."""
    points: list[tuple[int, float]] = []
    markers: list[tuple[str, str]] = []
    if report.baseline_study_index is not None and report.studies:
        first = report.studies[0]
        if first.baseline_sld_mm is not None:
            points.append((report.baseline_study_index, first.baseline_sld_mm))
            markers.append(("BL", "#444"))
    for s in report.studies:
        if s.sld_mm is None:
            continue
        points.append((s.study_index, s.sld_mm))
        markers.append((s.category, CATEGORY_COLOURS.get(s.category, "#444")))
    return _line_chart(
        points,
        label="RECIST response: sum of diameters per study",
        y_label="sum of diameters, mm",
        markers=markers,
        width=420,
        height=200,
    )
