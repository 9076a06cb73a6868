"""The operators' incentives report: JSON, pages of organisations and deals, CSV and XLSX
exports, SVG charts."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from services.listing.dependencies import TodayDep
from services.listing.incentives import charts, exports, service
from services.listing.incentives.rules import Rates
from services.listing.incentives.schemas import (
    Chart,
    ExportFormat,
    ExportTable,
    IncentiveDeal,
    IncentiveReport,
    OrganizationIncentive,
)
from shared.auth import Principal, require_roles
from shared.errors import UnprocessableEntity, problem_responses
from shared.reads import ReadSessionDep
from shared.schemas import Page, PageSize, PageToken

__all__ = ["router"]

router = APIRouter(prefix="/v1/incentives", tags=["incentives"])

Operator = Annotated[Principal, Depends(require_roles("operator"))]


async def policy_rates(request: Request) -> Rates:
    return service.rates_of(request.app.state.settings)


RatesDep = Annotated[Rates, Depends(policy_rates)]


async def report_year(
    today: TodayDep,
    year: Annotated[
        int,
        Query(
            ge=service.FIRST_YEAR,
            le=9999,
            description="the calendar year of the deals' closing dates, not after this one",
            examples=[2026],
        ),
    ],
) -> int:
    service.check_year(year, today)
    return year


YearDep = Annotated[int, Depends(report_year)]
ERRORS = problem_responses(401, 403, 422)


@router.get("", response_model=IncentiveReport, responses=ERRORS)
async def incentives_report(
    _: Operator, session: ReadSessionDep, rates: RatesDep, year: YearDep
) -> IncentiveReport:
    """Operators: what the year's deals earn under the province's policy (1 % of licences'
    and assignments' value, 50 % of pledge-loan interest, 10 % of equity valuations; the rates
    are settings), in total, per programme and by region (Beijing, Tianjin, Hebei's cities,
    other provinces), asset kind, transaction type and month. Pledge-loan interest is not in
    the deals: pledge loans are counted but earn nothing until the financing records exist
    (`rates[].computed` is false)."""
    return await service.report(session, rates, year)


@router.get("/organizations", response_model=Page[OrganizationIncentive], responses=ERRORS)
async def incentive_organizations(
    _: Operator,
    session: ReadSessionDep,
    rates: RatesDep,
    year: YearDep,
    page_size: PageSize = 50,
    page_token: PageToken = "",
) -> Page[OrganizationIncentive]:
    """Operators: each organisation's year as seller, the largest eligible amount first."""
    return await service.organization_page(
        session, rates, year, page_size=page_size, page_token=page_token
    )


@router.get("/deals", response_model=Page[IncentiveDeal], responses=ERRORS)
async def incentive_deals(
    _: Operator,
    session: ReadSessionDep,
    rates: RatesDep,
    year: YearDep,
    organization_id: Annotated[
        UUID | None,
        Query(
            description="one organisation's deals",
            examples=["7d5e0c1e-3f7b-4d3a-9b84-1f0f5c3f2a10"],
        ),
    ] = None,
    page_size: PageSize = 50,
    page_token: PageToken = "",
) -> Page[IncentiveDeal]:
    """Operators: the deals the amounts rest on, each with its programme, rate and eligible
    amount, oldest first."""
    return await service.deal_page(
        session,
        rates,
        year,
        organization_id=organization_id,
        page_size=page_size,
        page_token=page_token,
    )


EXPORT_CONTENT: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the export",
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            exports.XLSX_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
        },
    },
    **ERRORS,
}


@router.get("/export", response_class=Response, responses=EXPORT_CONTENT)
async def export_incentives(
    _: Operator,
    session: ReadSessionDep,
    rates: RatesDep,
    year: YearDep,
    format: Annotated[ExportFormat, Query(description="csv or xlsx", examples=["xlsx"])],
    table: Annotated[
        ExportTable | None,
        Query(
            description="csv only, the table (default organizations); an xlsx has them all",
            examples=["organizations"],
        ),
    ] = None,
) -> Response:
    """Operators: the report as a file. CSV (UTF-8 with a byte-order mark, for Excel): one
    table, `organizations` (default), `deals`, or the totals by `region`, `kind`,
    `transaction_type` or `month`. XLSX: a summary sheet and every table."""
    if format == "xlsx" and table is not None:
        raise UnprocessableEntity.single(
            "table", "csv_only", "an xlsx export holds every table: leave table out"
        )
    chosen: ExportTable = table or "organizations"
    every = format == "xlsx"
    report, organizations, deals = await service.export_lines(
        session,
        rates,
        year,
        organizations=every or chosen == "organizations",
        deals=every or chosen == "deals",
    )
    name = f"incentives-{year}"
    if format == "csv":
        header, rows = exports.table_rows(chosen, report, organizations, deals, rates)
        content = await run_in_threadpool(exports.to_csv, header, rows)
        media_type, filename = exports.CSV_MEDIA_TYPE, f"{name}-{chosen}.csv"
    else:
        content = await run_in_threadpool(exports.to_xlsx, report, organizations, deals, rates)
        media_type, filename = exports.XLSX_MEDIA_TYPE, f"{name}.xlsx"
    return Response(
        content,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


CHART_CONTENT: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the chart",
        "content": {charts.SVG_MEDIA_TYPE: {"schema": {"type": "string"}}},
    },
    **ERRORS,
}


@router.get("/charts/{chart}", response_class=Response, responses=CHART_CONTENT)
async def incentive_chart(
    _: Operator, session: ReadSessionDep, rates: RatesDep, year: YearDep, chart: Chart
) -> Response:
    """Operators: deals and value by `month`, `region` or `kind` as an SVG image (900 px wide,
    Chinese and English labels), to paste into a report."""
    report = await service.report(session, rates, year)
    return Response(charts.chart(report, chart), media_type=charts.SVG_MEDIA_TYPE)
