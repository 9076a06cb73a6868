"""CSV and XLSX exports of the incentives report.

CSV: one table per file (`organizations`, `deals`, or the totals by `region`, `kind`,
`transaction_type`, `month`), UTF-8 with a byte-order mark, which is how Excel on a Chinese
Windows recognises UTF-8 (without it, it reads the names as GBK), amounts as plain decimals.
XLSX: every table on its own sheet, with a summary sheet first (year, rates, totals, notes);
amounts are numbers (two places, thousands separated) so that an official can sum and chart
them, written by XlsxWriter (a number cell is a double: exact to the cent below ~9e13 CNY).
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import xlsxwriter

from services.listing.incentives.repository import DealLine, OrganizationLine
from services.listing.incentives.rules import (
    PROGRAMMES,
    Rates,
    rate_applies,
    region_group,
    region_name,
)
from services.listing.incentives.schemas import ExportTable, IncentiveGroup, IncentiveReport

__all__ = ["CSV_MEDIA_TYPE", "XLSX_MEDIA_TYPE", "table_rows", "to_csv", "to_xlsx"]

CSV_MEDIA_TYPE: Final = "text/csv; charset=utf-8"
XLSX_MEDIA_TYPE: Final = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

GROUP_HEADER: Final = ["group", "name", "deal_count", "amount_count", "value", "eligible"]
ORGANIZATION_HEADER: Final = [
    "organization_id",
    "name",
    "uscc",
    "region",
    "region_group",
    "region_name",
    "deal_count",
    "value",
    "eligible",
    *(f"{p}_{column}" for p in PROGRAMMES for column in ("count", "value", "eligible")),
]
DEAL_HEADER: Final = [
    "deal_id",
    "closed_on",
    "organization_id",
    "organization_name",
    "buyer_name",
    "region",
    "region_group",
    "region_name",
    "kind",
    "transaction_type",
    "programme",
    "amount",
    "rate",
    "eligible",
    "confidential",
    "listing_id",
]
# Columns written as numbers in the XLSX (and summed by the test that reads it back).
MONEY_COLUMNS: Final = frozenset(
    {"value", "eligible", "amount"}
    | {f"{p}_{c}" for p in PROGRAMMES for c in ("value", "eligible")}
)
RATE_COLUMNS: Final = frozenset({"rate"})
SHEETS: Final[dict[ExportTable, str]] = {
    "region": "By region",
    "kind": "By kind",
    "transaction_type": "By transaction type",
    "month": "By month",
    "organizations": "Organisations",
    "deals": "Deals",
}


def _groups(groups: Iterable[IncentiveGroup]) -> Iterable[list[Any]]:
    for g in groups:
        yield [g.group, g.name or "", g.deal_count, g.amount_count, g.value, g.eligible]


def _organizations(lines: Iterable[OrganizationLine]) -> Iterable[list[Any]]:
    for line in lines:
        group = region_group(line.region)
        row: list[Any] = [
            str(line.organization_id),
            line.name,
            line.uscc or "",
            line.region,
            group,
            region_name(group),
            line.deal_count,
            line.value,
            line.eligible,
        ]
        for p in PROGRAMMES:
            amounts = line.programmes[p]
            row += [amounts.deal_count, amounts.value, amounts.eligible]
        yield row


def _deals(lines: Iterable[DealLine], rates: Rates) -> Iterable[list[Any]]:
    for line in lines:
        programme = line.programme
        rate = rates.of(programme) if programme and rate_applies(programme, line.source) else None
        yield [
            str(line.deal_id),
            line.closed_on.isoformat(),
            str(line.organization_id),
            line.organization_name,
            line.buyer_name,
            line.region,
            line.region_group,
            region_name(line.region_group),
            line.kind,
            line.transaction_type,
            line.programme or "",
            line.amount,
            rate,
            line.eligible,
            "true" if line.confidential else "false",
            str(line.listing_id) if line.listing_id else "",
        ]


def table_rows(
    table: ExportTable,
    report: IncentiveReport,
    organizations: Sequence[OrganizationLine],
    deals: Sequence[DealLine],
    rates: Rates,
) -> tuple[list[str], Iterable[list[Any]]]:
    """The header and the rows of one table of the report."""
    if table == "organizations":
        return ORGANIZATION_HEADER, _organizations(organizations)
    if table == "deals":
        return DEAL_HEADER, _deals(deals, rates)
    groups = {
        "region": report.by_region,
        "kind": report.by_kind,
        "transaction_type": report.by_transaction_type,
        "month": report.by_month,
    }[table]
    return GROUP_HEADER, _groups(groups)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return f"{value:f}"
    return str(value)


def to_csv(header: list[str], rows: Iterable[list[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_text(v) for v in row])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def _summary(report: IncentiveReport) -> list[list[Any]]:
    t = report.totals
    rows: list[list[Any]] = [
        ["Incentives report", report.year],
        ["Currency", report.currency],
        ["Organisations", report.organization_count],
        ["Deals", t.deal_count],
        ["Deals with an amount", t.amount_count],
        ["Value", t.value],
        ["Eligible", t.eligible],
        [],
        ["Programme", "Rate", "Basis", "Computed", "Deals", "Value", "Eligible"],
    ]
    for rate in report.rates:
        amounts = report.programmes[rate.programme]
        rows.append(
            [
                rate.programme,
                rate.rate,
                rate.basis,
                "yes" if rate.computed else "no (financing records)",
                amounts.deal_count,
                amounts.value,
                amounts.eligible,
            ]
        )
    rows += [[], ["Notes"], *([note] for note in report.notes)]
    return rows


def to_xlsx(
    report: IncentiveReport,
    organizations: Sequence[OrganizationLine],
    deals: Sequence[DealLine],
    rates: Rates,
) -> bytes:
    """The whole report as one workbook (CPU-bound: call it in a worker thread)."""
    with tempfile.TemporaryDirectory(prefix="ipx-xlsx-") as folder:
        path = Path(folder) / "report.xlsx"
        _write_xlsx(path, report, organizations, deals, rates)
        return path.read_bytes()


def _write_xlsx(
    path: Path,
    report: IncentiveReport,
    organizations: Sequence[OrganizationLine],
    deals: Sequence[DealLine],
    rates: Rates,
) -> None:
    # constant_memory: each row goes to a temporary file once written, so 100,000 deals do
    # not sit in memory as 1.6 million cells (the rows are written in order, as it needs).
    book = xlsxwriter.Workbook(str(path), {"constant_memory": True, "tmpdir": str(path.parent)})
    money = book.add_format({"num_format": "#,##0.00"})
    rate_format = book.add_format({"num_format": "0.00####"})
    bold = book.add_format({"bold": True})

    def write(sheet: Any, r: int, values: list[Any], columns: list[str] | None) -> None:
        for c, value in enumerate(values):
            name = columns[c] if columns else ""
            if isinstance(value, Decimal):
                style = rate_format if name in RATE_COLUMNS else money
                sheet.write_number(r, c, float(value), style)
            elif value is None:
                continue  # a blank cell, as a spreadsheet has it
            elif isinstance(value, bool):
                sheet.write_string(r, c, str(value).lower())
            elif isinstance(value, int):
                sheet.write_number(r, c, value)
            else:
                sheet.write_string(r, c, str(value))

    summary = book.add_worksheet("Summary")
    summary.set_column(0, 0, 24)
    summary.set_column(1, 6, 16)
    for r, values in enumerate(_summary(report)):
        write(summary, r, values, None)
    summary.set_row(0, None, bold)
    for table, title in SHEETS.items():
        header, rows = table_rows(table, report, organizations, deals, rates)
        sheet = book.add_worksheet(title)
        sheet.write_row(0, 0, header, bold)
        sheet.freeze_panes(1, 0)
        sheet.set_column(0, len(header) - 1, 16)
        for r, values in enumerate(rows, start=1):
            write(sheet, r, values, header)
    book.close()
