"""The incentives report: the repository's sums as response models, pages and exports."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from services.listing.incentives.repository import (
    DealLine,
    GroupTotals,
    IncentiveRepository,
    OrganizationLine,
    ReportTotals,
)
from services.listing.incentives.rules import (
    PROGRAMMES,
    Programme,
    Rates,
    programme_of,
    rate_applies,
    region_group,
    region_name,
)
from services.listing.incentives.schemas import (
    IncentiveDeal,
    IncentiveGroup,
    IncentiveReport,
    OrganizationIncentive,
    ProgrammeAmounts,
    ProgrammeRate,
)
from shared.errors import UnprocessableEntity
from shared.schemas import Page, cut_page, page_position, token_str, token_uuid
from shared.settings import Settings

__all__ = [
    "NOTES",
    "check_year",
    "deal_page",
    "export_lines",
    "organization_page",
    "rates_of",
    "report",
]

FIRST_YEAR = 1985  # the Patent Law's first year in force

BASES: dict[Programme, str] = {
    "licence_transfer": "the value of licences and assignments",
    "pledge_interest": "the interest paid on pledge loans",
    "equity": "the valuation of IP contributed as equity",
}
NOTES = [
    "Amounts are attributed to the seller of each deal (licensor, assignor, pledgor, "
    "contributor); a buyer met off the platform is a name, not an organisation.",
    "Pledge loans recorded as deals (type pledge_financing) are counted with their loan "
    "amount, but earn nothing: the subsidy is a share of the interest paid, which deals do not "
    "record. A pledge loan repaid through the exchange's financing (issue 22) is a line of its "
    "year of repayment with the interest paid as its amount (no listing), and earns the rate "
    "of it.",
    "Deals without an amount are counted and earn nothing; confidential amounts count.",
    "Each deal's amount is rounded to the cent; every total is the sum of its deals'.",
]


def rates_of(settings: Settings) -> Rates:
    return Rates(
        licence_transfer=settings.incentive_licence_rate,
        pledge_interest=settings.incentive_pledge_interest_rate,
        equity=settings.incentive_equity_rate,
    )


def check_year(year: int, today: date) -> None:
    """A report covers a year that has begun (Beijing's calendar), from 1985 on."""
    if year > today.year:
        raise UnprocessableEntity.single(
            "year", "not_in_future", f"{year} has not begun (today is {today}, Beijing time)"
        )
    if year < FIRST_YEAR:
        raise UnprocessableEntity.single(
            "year", "before_patent_law", f"no IP deal before {FIRST_YEAR}: {year}"
        )


def _group(line: GroupTotals, *, named: bool = False) -> IncentiveGroup:
    return IncentiveGroup(
        group=line.key,
        name=region_name(line.key) if named else None,
        deal_count=line.deal_count,
        amount_count=line.amount_count,
        value=line.value,
        eligible=line.eligible,
    )


def _programmes(totals: ReportTotals) -> dict[Programme, ProgrammeAmounts]:
    """Programme totals: the transaction types' totals, summed by programme."""
    sums: dict[Programme, list[int | Decimal]] = {
        p: [0, Decimal("0.00"), Decimal("0.00")] for p in PROGRAMMES
    }
    for line in totals.by_transaction_type:
        programme = programme_of(line.key)
        if programme is not None:
            sums[programme][0] += line.deal_count
            sums[programme][1] += line.value
            sums[programme][2] += line.eligible
    return {
        p: ProgrammeAmounts(deal_count=int(s[0]), value=Decimal(s[1]), eligible=Decimal(s[2]))
        for p, s in sums.items()
    }


async def report(session: AsyncSession, rates: Rates, year: int) -> IncentiveReport:
    totals = await IncentiveRepository(session, rates).totals(year)
    return IncentiveReport(
        year=year,
        rates=[
            ProgrammeRate(
                programme=p,
                rate=rates.of(p).quantize(Decimal("0.000001")),
                basis=BASES[p],
                computed=True,
            )
            for p in PROGRAMMES
        ],
        organization_count=totals.organization_count,
        totals=_group(totals.total),
        programmes=_programmes(totals),
        by_region=[_group(line, named=True) for line in totals.by_region],
        by_kind=[_group(line) for line in totals.by_kind],
        by_transaction_type=[_group(line) for line in totals.by_transaction_type],
        by_month=[_group(line) for line in totals.by_month],
        notes=NOTES,
    )


def _organization(line: OrganizationLine) -> OrganizationIncentive:
    return OrganizationIncentive(
        organization_id=line.organization_id,
        name=line.name,
        uscc=line.uscc,
        region=line.region,
        region_group=region_group(line.region),
        deal_count=line.deal_count,
        value=line.value,
        eligible=line.eligible,
        programmes={
            p: ProgrammeAmounts(deal_count=a.deal_count, value=a.value, eligible=a.eligible)
            for p, a in line.programmes.items()
        },
    )


def _deal(line: DealLine, rates: Rates) -> IncentiveDeal:
    programme = line.programme
    computed = rate_applies(programme, line.source)
    return IncentiveDeal(
        deal_id=line.deal_id,
        listing_id=line.listing_id,
        organization_id=line.organization_id,
        organization_name=line.organization_name,
        buyer_name=line.buyer_name,
        closed_on=line.closed_on,
        region=line.region,
        region_group=line.region_group,
        kind=line.kind,
        transaction_type=line.transaction_type,
        programme=programme,
        amount=line.amount,
        rate=rates.of(programme).quantize(Decimal("0.000001")) if computed and programme else None,
        eligible=line.eligible,
        confidential=line.confidential,
    )


def _decimal(value: object) -> Decimal:
    text = token_str(value)
    number = Decimal(text)
    # A forged token's number must still fit numeric(18, 2) sums: a 422, never a 500.
    if not number.is_finite() or abs(number) >= Decimal("1e20"):
        raise ValueError(text)
    return number


def _date(value: object) -> date:
    return date.fromisoformat(token_str(value))


async def organization_page(
    session: AsyncSession, rates: Rates, year: int, *, page_size: int, page_token: str
) -> Page[OrganizationIncentive]:
    position = page_position(page_token, eligible=_decimal, id=token_uuid)
    after = (position["eligible"], position["id"]) if position else None
    lines = await IncentiveRepository(session, rates).organizations(
        year, after=after, limit=page_size + 1
    )
    page, token = cut_page(
        lines,
        page_size,
        lambda line: {"eligible": str(line.eligible), "id": str(line.organization_id)},
    )
    return Page(items=[_organization(line) for line in page], next_page_token=token)


async def deal_page(
    session: AsyncSession,
    rates: Rates,
    year: int,
    *,
    organization_id: UUID | None,
    page_size: int,
    page_token: str,
) -> Page[IncentiveDeal]:
    position = page_position(page_token, closed_on=_date, id=token_uuid)
    after = (position["closed_on"], position["id"]) if position else None
    lines = await IncentiveRepository(session, rates).deals(
        year, organization_id=organization_id, after=after, limit=page_size + 1
    )
    page, token = cut_page(
        lines,
        page_size,
        lambda line: {"closed_on": line.closed_on.isoformat(), "id": str(line.deal_id)},
    )
    return Page(items=[_deal(line, rates) for line in page], next_page_token=token)


async def export_lines(
    session: AsyncSession,
    rates: Rates,
    year: int,
    *,
    organizations: bool = True,
    deals: bool = True,
) -> tuple[IncentiveReport, list[OrganizationLine], list[DealLine]]:
    """The report with every organisation and every deal of the year (those asked for), as the
    repository gives them: plain rows, no response models (an export of 100,000 deals builds
    none)."""
    repo = IncentiveRepository(session, rates)
    return (
        await report(session, rates, year),
        await repo.organizations(year) if organizations else [],
        await repo.deals(year) if deals else [],
    )
