"""Small line charts of metric histories as static SVG: no JavaScript, kept in the saved
notebook, readable on GitHub, nbviewer and in an nbconvert export.

Pure functions over ``(step, value)`` points. A history of any length is cut down
to at most ``2 * buckets`` points, keeping each bucket's lowest and highest value,
so spikes survive and a card of 1,000-step metrics stays a few kilobytes.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

#: One colour per run in an overlaid chart (colour-blind friendly, Okabe-Ito).
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442",
           "#000000")
BUCKETS = 60
WIDTH, HEIGHT = 260, 96
#: Room for the axis labels inside the chart.
_LEFT, _RIGHT, _TOP, _BOTTOM = 44, 8, 16, 18

Point = tuple[float, float]


@dataclass(frozen=True)
class Series:
    """One line: a run's history of one metric."""

    label: str
    points: Sequence[Point]
    colour: str = PALETTE[0]


def downsample(points: Sequence[Point], buckets: int = BUCKETS) -> list[Point]:
    """At most ``2 * buckets`` points, in step order: each bucket's minimum and maximum."""
    finite = sorted((s, v) for s, v in points if math.isfinite(v))
    if len(finite) <= 2 * buckets:
        return finite
    size = len(finite) / buckets
    kept: list[Point] = []
    for i in range(buckets):
        chunk = finite[int(i * size):int((i + 1) * size)]
        if not chunk:
            continue
        low = min(chunk, key=lambda p: p[1])
        high = max(chunk, key=lambda p: p[1])
        kept.extend(sorted({low, high}))
    if kept[-1] != finite[-1]:
        kept.append(finite[-1])  # the last value is the one people read
    return kept


def fmt(value: float) -> str:
    """A value as a chart label: 4 significant digits."""
    return f"{value:.4g}"


def line_chart(title: str, series: Sequence[Series], width: int = WIDTH,
               height: int = HEIGHT) -> str:
    """An SVG line chart of ``series`` by step, with the last value and the y range."""
    lines = [s for s in series if s.points]
    every = [p for s in lines for p in s.points]
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" style="font:10px sans-serif">'
            f"<title>{html.escape(title)}</title>")
    label = f'<text x="{_LEFT}" y="11" font-weight="bold">{html.escape(title)}</text>'
    if not every:
        return (f'{head}{label}<text x="{_LEFT}" y="{height / 2:.0f}" fill="#888">no values '
                "yet</text></svg>")
    x0, x1 = min(p[0] for p in every), max(p[0] for p in every)
    y0, y1 = min(p[1] for p in every), max(p[1] for p in every)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    plot_w, plot_h = width - _LEFT - _RIGHT, height - _TOP - _BOTTOM

    def xy(point: Point) -> str:
        x = _LEFT + (point[0] - x0) / (x1 - x0) * plot_w
        y = _TOP + (1 - (point[1] - y0) / (y1 - y0)) * plot_h
        return f"{x:.1f},{y:.1f}"

    parts = [head, label,
             f'<rect x="{_LEFT}" y="{_TOP}" width="{plot_w}" height="{plot_h}" fill="none" '
             'stroke="#ddd"/>',
             f'<text x="{_LEFT - 3}" y="{_TOP + 8}" text-anchor="end" fill="#666">{fmt(y1)}</text>',
             f'<text x="{_LEFT - 3}" y="{_TOP + plot_h}" text-anchor="end" fill="#666">'
             f"{fmt(y0)}</text>",
             f'<text x="{_LEFT}" y="{height - 4}" fill="#666">step {fmt(x0)}</text>',
             f'<text x="{width - _RIGHT}" y="{height - 4}" text-anchor="end" fill="#666">'
             f"{fmt(x1)}</text>"]
    for s in lines:
        points = sorted(s.points)
        parts.append(f'<polyline fill="none" stroke="{s.colour}" stroke-width="1.5" '
                     f'points="{" ".join(xy(p) for p in points)}"/>')
        last_x, last_y = xy(points[-1]).split(",")
        parts.append(f'<circle cx="{last_x}" cy="{last_y}" r="2.5" fill="{s.colour}"/>')
    if len(lines) == 1:  # one run: say its last value, min and max
        values = [p[1] for p in lines[0].points]
        last = sorted(lines[0].points)[-1][1]
        parts.append(f'<text x="{width - _RIGHT}" y="11" text-anchor="end">last {fmt(last)} '
                     f'&#183; min {fmt(min(values))} &#183; max {fmt(max(values))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def legend(series: Sequence[Series]) -> str:
    """Which colour is which run, as HTML."""
    return " ".join(
        f'<span style="white-space:nowrap"><span style="display:inline-block;width:10px;'
        f'height:10px;background:{s.colour}"></span> {html.escape(s.label)}</span>'
        for s in series)
