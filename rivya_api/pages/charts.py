"""Server-rendered SVG charts: no JavaScript and no chart library, so they print, scale and work offline.

``daily_stacked_bars`` draws one stacked bar per day (credits spent, split by
model kind). Numbers are integers all the way; the SVG uses a fixed viewBox
and scales to its container's width. Every bar has a ``<title>`` (hover text
and what a screen reader announces); the page shows the same numbers as a table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

# The kinds in stacking order, with colours that stay apart for common colour-vision deficiencies.
KIND_COLOURS: dict[str, str] = {
    "image": "#4a3aff",
    "video": "#e8710a",
    "audio": "#12a4a4",
    "chat": "#c2185b",
}

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 10, 26


@dataclass(frozen=True)
class Series:
    kind: str
    values: list[int]

    @property
    def colour(self) -> str:
        return KIND_COLOURS.get(self.kind, "#5b6475")


def nice_ceiling(value: int) -> tuple[int, int]:
    """``(top, step)`` of the y axis: the smallest round step (1, 2, 2.5 or 5 × 10ⁿ, whole
    numbers only) that reaches ``value`` in at most five steps, and the top it reaches."""
    if value <= 0:
        return 4, 1
    magnitude = 1
    while True:
        for factor in (10, 20, 25, 50):
            step = magnitude * factor // 10
            if step and -(-value // step) <= 5:
                return -(-value // step) * step, step
        magnitude *= 10


def daily_stacked_bars(*, days: list[date], series: list[Series], title: str, unit: str = "credits") -> SafeString:
    """An SVG stacked bar chart of ``series`` (one value per day in ``days``)."""
    totals = [sum(s.values[index] for s in series) for index in range(len(days))]
    top, step = nice_ceiling(max(totals, default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(days), 1)
    bar_w = max(2.0, slot * 0.7)

    def y(value: float) -> float:
        return TOP + plot_h - plot_h * value / top

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="chart-title" '
        f'xmlns="http://www.w3.org/2000/svg"><title id="chart-title">{escape(title)}</title>'
    ]
    for tick in range(0, top + 1, step):
        ty = y(tick)
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="#e3e6ec" stroke-width="1"/>'
            f'<text x="{LEFT - 6}" y="{ty + 4:.1f}" text-anchor="end">{tick}</text>'
        )
    for index, day in enumerate(days):
        x = LEFT + slot * index + (slot - bar_w) / 2
        base = 0
        label = day.isoformat()
        for s in series:
            value = s.values[index]
            if value <= 0:
                continue
            parts.append(
                f'<rect x="{x:.1f}" y="{y(base + value):.1f}" width="{bar_w:.1f}" '
                f'height="{y(base) - y(base + value):.1f}" fill="{s.colour}" data-kind="{escape(s.kind)}" '
                f'data-day="{label}"><title>{label} · {escape(s.kind)}: {value} {escape(unit)}</title></rect>'
            )
            base += value
        if index % 5 == 0 or index == len(days) - 1:
            # The last label ends at its bar's right edge, so it stays inside the chart at any size.
            last = index == len(days) - 1
            anchor, tx = ("end", x + bar_w) if last else ("middle", x + bar_w / 2)
            parts.append(f'<text x="{tx:.1f}" y="{HEIGHT - 8}" text-anchor="{anchor}">{day:%b} {day.day}</text>')
    parts.append(
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#5b6475" stroke-width="1"/>'
    )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308  (every interpolated string is escaped above)
