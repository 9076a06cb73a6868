"""The incentives report's writers: CSV, XLSX (read back with openpyxl, not the library that
wrote it) and SVG charts (parsed as XML), on a report built here."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import date
from decimal import Decimal
from xml.etree import ElementTree

import openpyxl

from services.listing.incentives import charts, exports
from services.listing.incentives.repository import DealLine, OrganizationLine, ProgrammeLine
from services.listing.incentives.rules import PROGRAMMES, Rates
from services.listing.incentives.schemas import (
    IncentiveGroup,
    IncentiveReport,
    ProgrammeAmounts,
    ProgrammeRate,
)

RATES = Rates(Decimal("0.01"), Decimal("0.5"), Decimal("0.1"))
SVG = "{http://www.w3.org/2000/svg}"
ORG = uuid.UUID("7d5e0c1e-3f7b-4d3a-9b84-1f0f5c3f2a10")


def group(key: str, deals: int, value: str, earned: str, name: str | None = None) -> IncentiveGroup:
    return IncentiveGroup(
        group=key,
        name=name,
        deal_count=deals,
        amount_count=deals,
        value=Decimal(value),
        eligible=Decimal(earned),
    )


def report() -> IncentiveReport:
    return IncentiveReport(
        year=2025,
        rates=[
            ProgrammeRate(programme=p, rate=RATES.of(p), basis="b", computed=p != "pledge_interest")
            for p in PROGRAMMES
        ],
        organization_count=1,
        totals=group("total", 2, "3150000.00", "11500.00"),
        programmes={
            "licence_transfer": ProgrammeAmounts(
                deal_count=1, value=Decimal("1150000.00"), eligible=Decimal("11500.00")
            ),
            "pledge_interest": ProgrammeAmounts(
                deal_count=1, value=Decimal("2000000.00"), eligible=Decimal("0.00")
            ),
            "equity": ProgrammeAmounts(deal_count=0, value=Decimal(0), eligible=Decimal(0)),
        },
        by_region=[
            group("130600", 1, "1150000.00", "11500.00", "保定市"),
            group("139001", 1, "2000000.00", "0.00", "定州市"),
        ],
        by_kind=[group("invention_patent", 2, "3150000.00", "11500.00")],
        by_transaction_type=[
            group("exclusive_license", 1, "1150000.00", "11500.00"),
            group("pledge_financing", 1, "2000000.00", "0.00"),
        ],
        by_month=[group("2025-03", 2, "3150000.00", "11500.00")],
        notes=["a note"],
    )


def organizations() -> list[OrganizationLine]:
    lines = {p: ProgrammeLine(0, Decimal("0.00"), Decimal("0.00")) for p in PROGRAMMES}
    lines["licence_transfer"] = ProgrammeLine(1, Decimal("1150000.00"), Decimal("11500.00"))
    lines["pledge_interest"] = ProgrammeLine(1, Decimal("2000000.00"), Decimal("0.00"))
    return [
        OrganizationLine(
            organization_id=ORG,
            name='河北"某"研究院, 保定',  # a quote and a comma: CSV must quote them
            uscc=None,
            region="130682",
            deal_count=2,
            value=Decimal("3150000.00"),
            eligible=Decimal("11500.00"),
            programmes=lines,
        )
    ]


def deals() -> list[DealLine]:
    def line(type_: str, programme: str, amount: str, earned: str | None) -> DealLine:
        return DealLine(
            deal_id=uuid.uuid4(),
            listing_id=uuid.uuid4(),
            organization_id=ORG,
            organization_name="河北某研究院",
            buyer_name="某银行",
            closed_on=date(2025, 3, 1),
            region="130627",
            region_group="130600",
            kind="invention_patent",
            transaction_type=type_,
            programme=programme,  # type: ignore[arg-type]
            amount=Decimal(amount),
            eligible=None if earned is None else Decimal(earned),
            confidential=type_ == "pledge_financing",
        )

    return [
        line("exclusive_license", "licence_transfer", "1150000.00", "11500.00"),
        line("pledge_financing", "pledge_interest", "2000000.00", None),
    ]


def read_csv(content: bytes) -> list[dict[str, str]]:
    assert content.startswith("\ufeff".encode())
    return list(csv.DictReader(io.StringIO(content.decode("utf-8-sig"))))


def test_csv_of_organisations_quotes_names_and_writes_plain_decimals() -> None:
    header, rows = exports.table_rows("organizations", report(), organizations(), [], RATES)
    [row] = read_csv(exports.to_csv(header, rows))
    assert row["name"] == '河北"某"研究院, 保定'
    assert (row["region_group"], row["region_name"]) == ("139001", "定州市")
    assert (row["value"], row["eligible"]) == ("3150000.00", "11500.00")
    assert row["pledge_interest_value"] == "2000000.00"
    assert row["uscc"] == ""


def test_csv_of_deals_leaves_what_is_not_computed_blank() -> None:
    header, rows = exports.table_rows("deals", report(), [], deals(), RATES)
    licence, pledge = read_csv(exports.to_csv(header, rows))
    assert (licence["rate"], licence["eligible"]) == ("0.01", "11500.00")
    assert (pledge["rate"], pledge["eligible"], pledge["confidential"]) == ("", "", "true")


def test_csv_of_a_grouping_has_the_reports_groups() -> None:
    header, rows = exports.table_rows("region", report(), [], [], RATES)
    got = read_csv(exports.to_csv(header, rows))
    assert [(r["group"], r["name"], r["eligible"]) for r in got] == [
        ("130600", "保定市", "11500.00"),
        ("139001", "定州市", "0.00"),
    ]


def test_xlsx_opens_with_another_library_and_holds_numbers() -> None:
    content = exports.to_xlsx(report(), organizations(), deals(), RATES)
    book = openpyxl.load_workbook(io.BytesIO(content))
    assert book.sheetnames[0] == "Summary" and "Deals" in book.sheetnames
    sheet = book["Deals"]
    header = [c.value for c in sheet[1]]
    eligible = header.index("eligible") + 1
    assert sheet.cell(2, eligible).value == 11500.0
    assert sheet.cell(2, eligible).number_format == "#,##0.00"
    assert sheet.cell(3, eligible).value is None  # the pledge loan earns nothing computed
    assert sheet.cell(2, header.index("rate") + 1).value == 0.01
    orgs = book["Organisations"]
    assert orgs.cell(2, 2).value == '河北"某"研究院, 保定'
    summary = {row[0].value: row[1].value for row in book["Summary"].iter_rows() if row[0].value}
    assert summary["Eligible"] == 11500.0 and summary["Incentives report"] == 2025


def test_a_bar_chart_is_svg_with_bars_in_proportion() -> None:
    svg = charts.bar_chart(
        "标题 <&>",
        "副标题",
        [("北京市", 10, Decimal("1000000.00")), ("a<b", 5, Decimal("250000.00"))],
    )
    root = ElementTree.fromstring(svg)  # escaping holds: it parses
    assert root.tag == f"{SVG}svg"
    deals = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "deals"]
    values = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "value"]
    assert float(deals[0].get("width", 0)) == 2 * float(deals[1].get("width", 0))
    assert float(values[0].get("width", 0)) == 4 * float(values[1].get("width", 0))
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "标题 <&>" in texts and "a<b" in texts
    assert "100.00" in texts  # 1,000,000 yuan is 100 万元


def test_an_empty_chart_says_so() -> None:
    root = ElementTree.fromstring(charts.bar_chart("t", "s", []))
    assert "无成交 No deals" in [t.text for t in root.iter(f"{SVG}text")]


def test_the_month_chart_has_every_month_and_kinds_read_in_chinese() -> None:
    month = ElementTree.fromstring(charts.chart(report(), "month"))
    bars = [r for r in month.iter(f"{SVG}rect") if r.get("class") == "deals"]
    assert len(bars) == 12
    assert [float(b.get("width", 0)) > 0 for b in bars].count(True) == 1  # March only
    kind = ElementTree.fromstring(charts.chart(report(), "kind"))
    assert "发明专利" in [t.text for t in kind.iter(f"{SVG}text")]
