"""SQL of the incentives report: every figure is aggregated by PostgreSQL (GROUP BY), never by
loading deals into Python, so a year of 100,000 deals answers in a fraction of a second.

Each query starts from the same derived table of the year's deals (`_YEAR_DEALS`): the deal's
programme, its eligible amount (rounded to the cent on its own, as `rules.eligible` does) and its
region group (as `rules.region_group` does). The amounts are attributed to the seller: it is
always an organisation of the exchange, while a buyer met off the platform is only a name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Final
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.listing.incentives.rules import (
    CENT,
    EQUITY_TYPES,
    HEBEI_CITIES,
    LICENCE_TRANSFER_TYPES,
    PLEDGE_TYPES,
    PROGRAMMES,
    Programme,
    Rates,
    year_bounds,
)
from services.listing.models import SCHEMA

__all__ = [
    "DealLine",
    "GroupTotals",
    "IncentiveRepository",
    "OrganizationLine",
    "ReportTotals",
]


def _sql_list(values: Sequence[str]) -> str:
    """A list of constants of this module (never input) as SQL literals."""
    assert all(v.replace("_", "").isalnum() for v in values)
    return ", ".join(f"'{v}'" for v in values)


# Codes of Hebei whose group is the code itself, not its first four digits (`1390xx`).
_OWN_GROUP = [code for code in HEBEI_CITIES if code[4:] != "00"]

_PROGRAMME = f"""CASE
    WHEN d.source = 'pledge' THEN 'pledge_interest'
    WHEN d.transaction_type IN ({_sql_list(LICENCE_TRANSFER_TYPES)}) THEN 'licence_transfer'
    WHEN d.transaction_type IN ({_sql_list(PLEDGE_TYPES)}) THEN 'pledge_interest'
    WHEN d.transaction_type IN ({_sql_list(EQUITY_TYPES)}) THEN 'equity'
END"""
# Pledge loans recorded as deals earn nothing: their amount is the loan, the basis is the
# interest. A repaid pledge of the financing records (`source` 'pledge') carries its interest.
_ELIGIBLE = f"""CASE
    WHEN d.source = 'pledge' THEN round(d.amount * CAST(:pledge_rate AS numeric), 2)
    WHEN d.transaction_type IN ({_sql_list(LICENCE_TRANSFER_TYPES)})
        THEN round(d.amount * CAST(:licence_rate AS numeric), 2)
    WHEN d.transaction_type IN ({_sql_list(EQUITY_TYPES)})
        THEN round(d.amount * CAST(:equity_rate AS numeric), 2)
END"""
_REGION_GROUP = f"""CASE
    WHEN d.region = '130682' THEN '139001'
    WHEN d.region = '130181' THEN '139002'
    WHEN d.region IN ({_sql_list(_OWN_GROUP)}) THEN d.region
    WHEN left(d.region, 2) = '13' THEN left(d.region, 4) || '00'
    ELSE left(d.region, 2) || '0000'
END"""
# A pledge loan repaid through the exchange's financing (issue 22) is a line of the year of its
# repayment: attributed to the pledgor, with the pledgee as the other party, the region and kind
# of its first right (the pledgor's region when the right has none), the interest paid as its
# amount (confidential, as every figure of a loan).
_REPAID_PLEDGES = f"""SELECT p.id, NULL::uuid AS listing_id, p.pledgor_id AS seller_id,
           bank.name AS buyer_name, p.cancelled_on AS closed_on,
           coalesce(a.region, pledgor.region) AS region, a.kind AS asset_kind,
           'pledge_financing' AS transaction_type, p.interest_paid AS amount,
           true AS confidential, 'pledge' AS source
    FROM {SCHEMA}.pledges AS p
    JOIN {SCHEMA}.organizations AS bank ON bank.id = p.pledgee_id
    JOIN {SCHEMA}.organizations AS pledgor ON pledgor.id = p.pledgor_id
    JOIN LATERAL (
        SELECT x.region, x.kind FROM {SCHEMA}.financing_request_assets AS r
        JOIN {SCHEMA}.assets AS x ON x.id = r.asset_id
        WHERE r.request_id = p.request_id ORDER BY r.position LIMIT 1
    ) AS a ON true
    WHERE p.status = 'cancelled' AND p.cancellation_reason = 'repaid'
      AND p.cancelled_on BETWEEN :first AND :last"""
_YEAR_DEALS = f"""year_deals AS (
    SELECT d.id, d.listing_id, d.seller_id, d.buyer_name, d.closed_on, d.region,
           d.asset_kind, d.transaction_type, d.amount, d.confidential, d.source,
           {_PROGRAMME} AS programme,
           {_ELIGIBLE} AS eligible,
           {_REGION_GROUP} AS region_group
    FROM (
        SELECT id, listing_id, seller_id, buyer_name, closed_on, region, asset_kind,
               transaction_type, amount, confidential, 'deal' AS source
        FROM {SCHEMA}.deals
        WHERE closed_on BETWEEN :first AND :last
        UNION ALL
        {_REPAID_PLEDGES}
    ) AS d
)"""

_SUMMARY = text(
    f"""WITH {_YEAR_DEALS}
SELECT GROUPING(region_group) = 0 AS by_region,
       GROUPING(asset_kind) = 0 AS by_kind,
       GROUPING(transaction_type) = 0 AS by_type,
       GROUPING(to_char(closed_on, 'YYYY-MM')) = 0 AS by_month,
       coalesce(region_group, asset_kind, transaction_type,
                to_char(closed_on, 'YYYY-MM')) AS key,
       count(*) AS deal_count,
       count(amount) AS amount_count,
       coalesce(sum(amount), 0) AS value,
       coalesce(sum(eligible), 0) AS eligible
FROM year_deals
GROUP BY GROUPING SETS ((region_group), (asset_kind), (transaction_type),
                        (to_char(closed_on, 'YYYY-MM')), ())
ORDER BY key"""
)
_ORGANIZATION_COUNT = text(f"""WITH {_YEAR_DEALS}
SELECT count(DISTINCT seller_id) FROM year_deals""")


def _per_programme() -> str:
    columns = []
    for p in PROGRAMMES:
        where = f"FILTER (WHERE programme = '{p}')"
        columns += [
            f"count(*) {where} AS {p}_count",
            f"coalesce(sum(amount) {where}, 0) AS {p}_value",
            f"coalesce(sum(eligible) {where}, 0) AS {p}_eligible",
        ]
    return ",\n           ".join(columns)


_ORGANIZATIONS = f"""WITH {_YEAR_DEALS},
per_seller AS (
    SELECT seller_id,
           count(*) AS deal_count,
           coalesce(sum(amount), 0) AS value,
           coalesce(sum(eligible), 0) AS eligible,
           {_per_programme()}
    FROM year_deals
    GROUP BY seller_id
)
SELECT p.*, o.name, o.uscc, o.region
FROM per_seller AS p
JOIN {SCHEMA}.organizations AS o ON o.id = p.seller_id
{{after}}
ORDER BY p.eligible DESC, p.seller_id DESC
{{limit}}"""

_DEALS = f"""WITH {_YEAR_DEALS}
SELECT d.*, o.name AS organization_name
FROM year_deals AS d
JOIN {SCHEMA}.organizations AS o ON o.id = d.seller_id
{{where}}
ORDER BY d.closed_on, d.id
{{limit}}"""


@dataclass(frozen=True)
class GroupTotals:
    key: str
    deal_count: int
    amount_count: int
    value: Decimal
    eligible: Decimal


@dataclass(frozen=True)
class ReportTotals:
    organization_count: int
    total: GroupTotals
    by_region: list[GroupTotals]
    by_kind: list[GroupTotals]
    by_transaction_type: list[GroupTotals]
    by_month: list[GroupTotals]


@dataclass(frozen=True)
class ProgrammeLine:
    deal_count: int
    value: Decimal
    eligible: Decimal


@dataclass(frozen=True)
class OrganizationLine:
    organization_id: UUID
    name: str
    uscc: str | None
    region: str
    deal_count: int
    value: Decimal
    eligible: Decimal
    programmes: dict[Programme, ProgrammeLine]


@dataclass(frozen=True)
class DealLine:
    deal_id: UUID
    listing_id: UUID | None  # None: a repaid pledge loan (`source` "pledge")
    organization_id: UUID
    organization_name: str
    buyer_name: str
    closed_on: date
    region: str
    region_group: str
    kind: str
    transaction_type: str
    programme: Programme | None
    amount: Decimal | None
    eligible: Decimal | None
    confidential: bool
    source: str = "deal"  # "pledge": a pledge loan repaid through the exchange's financing


_LIMIT: Final = "LIMIT :limit"


def _money(value: object) -> Decimal:
    """A sum as the API writes money: two places (a sum over no row is a bare 0)."""
    return Decimal(str(value)).quantize(CENT)


class IncentiveRepository:
    def __init__(self, session: AsyncSession, rates: Rates) -> None:
        self.session = session
        self.rates = rates

    def _params(self, year: int, **extra: Any) -> dict[str, Any]:
        first, last = year_bounds(year)
        return {
            "first": first,
            "last": last,
            "licence_rate": self.rates.licence_transfer,
            "pledge_rate": self.rates.pledge_interest,
            "equity_rate": self.rates.equity,
            **extra,
        }

    async def totals(self, year: int) -> ReportTotals:
        """The year's totals, and by region group, kind, transaction type and month: one
        scan of the year's deals (GROUPING SETS)."""
        params = self._params(year)
        rows = (await self.session.execute(_SUMMARY, params)).all()
        count = await self.session.scalar(_ORGANIZATION_COUNT, params)
        groups: dict[str, list[GroupTotals]] = {
            "region": [],
            "kind": [],
            "type": [],
            "month": [],
        }
        total = GroupTotals("total", 0, 0, Decimal("0.00"), Decimal("0.00"))
        for row in rows:
            line = GroupTotals(
                key=row.key or "total",
                deal_count=row.deal_count,
                amount_count=row.amount_count,
                value=_money(row.value),
                eligible=_money(row.eligible),
            )
            if row.by_region:
                groups["region"].append(line)
            elif row.by_kind:
                groups["kind"].append(line)
            elif row.by_type:
                groups["type"].append(line)
            elif row.by_month:
                groups["month"].append(line)
            else:
                total = line
        return ReportTotals(
            organization_count=int(count or 0),
            total=total,
            by_region=groups["region"],
            by_kind=groups["kind"],
            by_transaction_type=groups["type"],
            by_month=groups["month"],
        )

    async def organizations(
        self, year: int, *, after: tuple[Decimal, UUID] | None = None, limit: int | None = None
    ) -> list[OrganizationLine]:
        """Each seller's year, most eligible first (then by id, descending)."""
        params = self._params(year)
        after_sql = ""
        if after is not None:
            after_sql = "WHERE (p.eligible, p.seller_id) < (:after_eligible, :after_id)"
            params.update(after_eligible=after[0], after_id=after[1])
        limit_sql = ""
        if limit is not None:
            limit_sql = _LIMIT
            params["limit"] = limit
        query = text(_ORGANIZATIONS.format(after=after_sql, limit=limit_sql))
        return [
            OrganizationLine(
                organization_id=row.seller_id,
                name=row.name,
                uscc=row.uscc,
                region=row.region,
                deal_count=row.deal_count,
                value=_money(row.value),
                eligible=_money(row.eligible),
                programmes={
                    p: ProgrammeLine(
                        deal_count=getattr(row, f"{p}_count"),
                        value=_money(getattr(row, f"{p}_value")),
                        eligible=_money(getattr(row, f"{p}_eligible")),
                    )
                    for p in PROGRAMMES
                },
            )
            for row in await self.session.execute(query, params)
        ]

    async def deals(
        self,
        year: int,
        *,
        organization_id: UUID | None = None,
        after: tuple[date, UUID] | None = None,
        limit: int | None = None,
    ) -> list[DealLine]:
        """The year's deals with what each earns, by (closed_on, id)."""
        params = self._params(year)
        conditions = []
        if organization_id is not None:
            conditions.append("d.seller_id = :organization_id")
            params["organization_id"] = organization_id
        if after is not None:
            conditions.append("(d.closed_on, d.id) > (:after_closed_on, :after_id)")
            params.update(after_closed_on=after[0], after_id=after[1])
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        limit_sql = ""
        if limit is not None:
            limit_sql = _LIMIT
            params["limit"] = limit
        query = text(_DEALS.format(where=where, limit=limit_sql))
        return [
            DealLine(
                deal_id=row.id,
                listing_id=row.listing_id,
                organization_id=row.seller_id,
                organization_name=row.organization_name,
                buyer_name=row.buyer_name,
                closed_on=row.closed_on,
                region=row.region,
                region_group=row.region_group,
                kind=row.asset_kind,
                transaction_type=row.transaction_type,
                programme=row.programme,
                amount=row.amount,
                eligible=row.eligible,
                confidential=row.confidential,
                source=row.source,
            )
            for row in await self.session.execute(query, params)
        ]
