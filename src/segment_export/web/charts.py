"""Charts drawn on the server as inline SVG: no script, readable by screen readers (each
chart has a title, a description and the numbers in a table beside it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 16, 40


@dataclass(frozen=True, slots=True)
class Series:
    """One named row of values, drawn in ``css_class`` (colours live in the stylesheet)."""

    name: str
    values: Sequence[int]
    css_class: str


def _nice_max(value: int) -> int:
    if value <= 5:
        return 5
    magnitude = int(10 ** (len(str(value)) - 1))
    # Steps that keep the axis close to the data and its quarter ticks round.
    for step in (1, 1.2, 1.6, 2, 2.4, 3, 4, 5, 6, 8, 10):
        if value <= step * magnitude:
            return int(step * magnitude)
    return value


def _axis(top: int, height: int, width: int) -> list[str]:
    parts = []
    for i in range(5):
        value = top * i // 4
        y = TOP + height - height * i / 4
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{LEFT + width}" y1="{y:.1f}" '
                     f'y2="{y:.1f}"/>')
        parts.append(f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" '
                     f'text-anchor="end">{value:,}</text>')
    return parts


def _svg(title: str, description: str, body: list[str], chart_id: str) -> Markup:
    # Every piece is either escaped here or a number we formatted.
    return Markup(  # noqa: S704
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc" '
        f'xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{chart_id}-title">{escape(title)}</title>'
        f'<desc id="{chart_id}-desc">{escape(description)}</desc>' + "".join(body) + "</svg>")


def bar_chart(*, chart_id: str, title: str, labels: Sequence[str],
              series: Sequence[Series]) -> Markup:
    """Grouped bars, one group per label (e.g. per run), one bar per series."""
    if not labels:
        return Markup("")
    width, height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = _nice_max(max([max(s.values, default=0) for s in series], default=0))
    body = _axis(top, height, width)
    group = width / len(labels)
    bar = max(2.0, min(28.0, group * 0.8 / max(1, len(series))))
    for i, label in enumerate(labels):
        x0 = LEFT + group * i + (group - bar * len(series)) / 2
        for j, one in enumerate(series):
            value = one.values[i]
            h = height * value / top if top else 0
            body.append(
                f'<rect class="{one.css_class}" x="{x0 + j * bar:.1f}" '
                f'y="{TOP + height - h:.1f}" width="{bar - 1:.1f}" height="{h:.1f}">'
                f"<title>{escape(label)}: {escape(one.name)} {value:,}</title></rect>")
        if len(labels) <= 12 or i % max(1, len(labels) // 12) == 0:
            body.append(f'<text class="tick" x="{LEFT + group * (i + 0.5):.1f}" '
                        f'y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">'
                        f"{escape(label)}</text>")
    legend_x = LEFT
    for one in series:
        body.append(f'<rect class="{one.css_class}" x="{legend_x}" y="{HEIGHT - 14}" '
                    f'width="10" height="10"/>')
        body.append(f'<text class="legend" x="{legend_x + 14}" y="{HEIGHT - 5}">'
                    f"{escape(one.name)}</text>")
        legend_x += 18 + 8 * len(one.name)
    description = "; ".join(
        f"{label}: " + ", ".join(f"{s.name} {s.values[i]:,}" for s in series)
        for i, label in enumerate(labels))
    return _svg(title, description, body, chart_id)


def line_chart(*, chart_id: str, title: str, labels: Sequence[str],
               values: Sequence[int], css_class: str = "series-a") -> Markup:
    """One line with a dot per point (e.g. a segment's size at each refresh)."""
    if not values:
        return Markup("")
    width, height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = _nice_max(max(values))
    body = _axis(top, height, width)
    step = width / max(1, len(values) - 1)
    points = [(LEFT + (step * i if len(values) > 1 else width / 2),
               TOP + height - (height * v / top if top else 0)) for i, v in enumerate(values)]
    body.append(f'<polyline class="{css_class} line" fill="none" points="'
                + " ".join(f"{x:.1f},{y:.1f}" for x, y in points) + '"/>')
    for (x, y), label, value in zip(points, labels, values, strict=True):
        body.append(f'<circle class="{css_class}" cx="{x:.1f}" cy="{y:.1f}" r="3.5">'
                    f"<title>{escape(label)}: {value:,}</title></circle>")
    for i in (0, len(labels) - 1) if len(labels) > 1 else (0,):
        x, _ = points[i]
        body.append(f'<text class="tick" x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" '
                    f'text-anchor="middle">{escape(labels[i])}</text>')
    description = "; ".join(f"{label}: {value:,}" for label, value in zip(labels, values,
                                                                          strict=True))
    return _svg(title, description, body, chart_id)
