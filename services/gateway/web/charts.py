"""Bar charts as SVG, drawn on the server: no chart library for the project to maintain, and a
chart that shows without JavaScript. Each chart names itself for screen readers (`role="img"`
and a title); the page puts the same numbers in a table beside it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal

from markupsafe import Markup, escape

__all__ = ["bar_chart"]

ROW = 26  # px per bar
LABEL_WIDTH = 150
VALUE_WIDTH = 110
WIDTH = 640


def bar_chart(
    title: str,
    rows: Sequence[tuple[str, Decimal | int]],
    fmt: Callable[[Decimal | int], str],
    *,
    chart_id: str,
) -> Markup:
    """A horizontal bar chart of `rows` (label, value), values written by `fmt`. Horizontal so
    that long labels (provinces, kinds) stay readable on a phone: the SVG scales to its box."""
    height = ROW * len(rows) + 8
    top = max((v for _, v in rows), default=0) or 1
    span = WIDTH - LABEL_WIDTH - VALUE_WIDTH
    parts = [
        f'<svg class="chart" id="{escape(chart_id)}" viewBox="0 0 {WIDTH} {height}" '
        f'role="img" aria-labelledby="{escape(chart_id)}-title" '
        'preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
    ]
    for i, (label, value) in enumerate(rows):
        y = 4 + i * ROW
        length = max(1.0, float(value) / float(top) * span) if value else 0.0
        parts.append(
            f'<text x="{LABEL_WIDTH - 8}" y="{y + 17}" text-anchor="end" '
            f'class="chart-label">{escape(label)}</text>'
            f'<rect x="{LABEL_WIDTH}" y="{y + 3}" width="{length:.1f}" height="{ROW - 8}" '
            'class="chart-bar"/>'
            f'<text x="{LABEL_WIDTH + length + 6:.1f}" y="{y + 17}" '
            f'class="chart-value">{escape(fmt(value))}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
