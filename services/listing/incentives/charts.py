"""SVG charts of the incentives report: deals and value by month, by region, by kind.

Plain SVG written here (no plotting library): two bar panels side by side, the number of deals
and their value (in 万元, ten thousand yuan, as Chinese reports give amounts), one row per group,
each bar labelled with its figure. A fixed size (900 px wide) and system CJK fonts, so the file
pastes into a Word or WPS report as it is, and scales without blurring.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final
from xml.sax.saxutils import escape

from services.listing.incentives.schemas import Chart, IncentiveGroup, IncentiveReport

__all__ = ["KIND_NAMES", "SVG_MEDIA_TYPE", "bar_chart", "chart"]

SVG_MEDIA_TYPE: Final = "image/svg+xml"

KIND_NAMES: Final[dict[str, str]] = {
    "invention_patent": "发明专利",
    "utility_model": "实用新型",
    "design_patent": "外观设计",
    "trademark": "商标",
    "software_copyright": "软件著作权",
    "copyright_work": "作品著作权",
    "ic_layout": "集成电路布图设计",
    "plant_variety": "植物新品种",
    "geographical_indication": "地理标志",
}
TITLES: Final[dict[Chart, str]] = {
    "month": "按月份 By month",
    "region": "按地区 By region",
    "kind": "按类型 By kind",
}

WIDTH: Final = 900
LABEL_WIDTH: Final = 170
PANEL_GAP: Final = 30
ROW: Final = 26
BAR: Final = 18
TOP: Final = 76
BOTTOM: Final = 40
FONT: Final = "'Noto Sans CJK SC','Source Han Sans SC','Microsoft YaHei','SimHei',sans-serif"
DEALS_COLOUR: Final = "#2f6db5"
VALUE_COLOUR: Final = "#d9822b"
TEN_THOUSAND: Final = Decimal(10_000)


def _label(chart: Chart, group: IncentiveGroup) -> str:
    if chart == "kind":
        return KIND_NAMES.get(group.group, group.group)
    if chart == "region":
        return group.name or group.group
    return group.group


def _figure(value: Decimal) -> str:
    return f"{value:,.2f}"


def bar_chart(title: str, subtitle: str, rows: list[tuple[str, int, Decimal]]) -> str:
    """Two horizontal bar panels, deals and value (万元), one row per (label, deals, value)."""
    panel = (WIDTH - LABEL_WIDTH - PANEL_GAP - 20) // 2
    figure_room = 70  # room right of the longest bar for its figure
    scale = panel - figure_room
    height = TOP + max(len(rows), 1) * ROW + BOTTOM
    max_deals = max((r[1] for r in rows), default=0) or 1
    max_value = max((r[2] for r in rows), default=Decimal(0)) or Decimal(1)
    left_deals = LABEL_WIDTH
    left_value = LABEL_WIDTH + panel + PANEL_GAP
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="{FONT}" font-size="13">',
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
        f'<text x="20" y="28" font-size="18" font-weight="bold">{escape(title)}</text>',
        f'<text x="20" y="48" fill="#555555">{escape(subtitle)}</text>',
        f'<text x="{left_deals}" y="{TOP - 8}" font-weight="bold">成交笔数 Deals</text>',
        f'<text x="{left_value}" y="{TOP - 8}" font-weight="bold">'
        "成交金额（万元） Value (10,000 CNY)</text>",
    ]
    if not rows:
        out.append(f'<text x="{left_deals}" y="{TOP + 18}" fill="#555555">无成交 No deals</text>')
    for i, (label, deals, value) in enumerate(rows):
        y = TOP + i * ROW
        middle = y + BAR / 2 + 4
        deals_width = round(scale * deals / max_deals, 1)
        value_width = round(float(scale * value / max_value), 1)
        wan = value / TEN_THOUSAND
        out += [
            f'<text x="{LABEL_WIDTH - 10}" y="{middle}" text-anchor="end">{escape(label)}</text>',
            f'<rect class="deals" x="{left_deals}" y="{y}" width="{deals_width}" '
            f'height="{BAR}" fill="{DEALS_COLOUR}"><title>{deals}</title></rect>',
            f'<text x="{left_deals + deals_width + 5}" y="{middle}">{deals:,}</text>',
            f'<rect class="value" x="{left_value}" y="{y}" width="{value_width}" '
            f'height="{BAR}" fill="{VALUE_COLOUR}"><title>{value:f}</title></rect>',
            f'<text x="{left_value + value_width + 5}" y="{middle}">{_figure(wan)}</text>',
        ]
    axis_bottom = TOP + max(len(rows), 1) * ROW - (ROW - BAR)
    for left in (left_deals, left_value):
        out.append(
            f'<line x1="{left}" y1="{TOP - 2}" x2="{left}" y2="{axis_bottom}" '
            'stroke="#333333" stroke-width="1"/>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def chart(report: IncentiveReport, which: Chart) -> str:
    """One chart of a year's report."""
    groups = {
        "month": report.by_month,
        "region": report.by_region,
        "kind": report.by_kind,
    }[which]
    t = report.totals
    subtitle = (
        f"{report.year} 年 · {t.deal_count:,} 笔成交 deals · "
        f"{_figure(t.value / TEN_THOUSAND)} 万元 · 奖补 eligible {_figure(t.eligible)} 元"
    )
    rows = [(_label(which, g), g.deal_count, g.value) for g in groups]
    if which == "month":  # every month of the year, those without deals too
        seen = {g.group: (g.deal_count, g.value) for g in groups}
        months = [f"{report.year}-{m:02d}" for m in range(1, 13)]
        rows = [(m, *seen.get(m, (0, Decimal(0)))) for m in months]
    title = f"知识产权交易 IP deals {report.year}: {TITLES[which]}"
    return bar_chart(title, subtitle, rows)
