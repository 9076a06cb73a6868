"""Response models of the incentives report."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

from services.listing.incentives.rules import Programme

__all__ = [
    "Chart",
    "ExportFormat",
    "ExportTable",
    "IncentiveDeal",
    "IncentiveGroup",
    "IncentiveReport",
    "OrganizationIncentive",
    "ProgrammeAmounts",
    "ProgrammeRate",
]

Chart = Literal["month", "region", "kind"]
ExportFormat = Literal["csv", "xlsx"]
ExportTable = Literal["organizations", "deals", "region", "kind", "transaction_type", "month"]


class ProgrammeRate(BaseModel):
    programme: Programme
    rate: Decimal = Field(examples=["0.010000"], description="a fraction: 0.01 is 1 %")
    basis: str = Field(examples=["the deal's value"], description="what the rate is applied to")
    computed: bool = Field(
        description="false where the records to compute it from do not exist (pledge-loan "
        "interest is computed from the loans repaid through the exchange's financing)"
    )


class ProgrammeAmounts(BaseModel):
    """One programme's deals, their value and what they earn."""

    deal_count: int
    value: Decimal = Field(examples=["1150000.00"], description="sum of the deals' amounts")
    eligible: Decimal = Field(examples=["11500.00"], description="what the deals earn")


class IncentiveGroup(BaseModel):
    """A group's deals: how many, how many carry an amount, their value, what they earn."""

    group: str = Field(examples=["130600"], description="region group, kind, type or YYYY-MM")
    name: str | None = Field(
        default=None, examples=["保定市"], description="the region's name (region groups)"
    )
    deal_count: int
    amount_count: int = Field(description="deals with an amount")
    value: Decimal = Field(examples=["3450000.00"])
    eligible: Decimal = Field(examples=["34500.00"])


class IncentiveReport(BaseModel):
    """A year's incentives: rates, totals, programmes and totals by region, kind, transaction
    type and month. Amounts are CNY with two places; every total is the sum of its deals'
    amounts, each rounded to the cent."""

    year: int = Field(examples=[2026])
    currency: Literal["CNY"] = "CNY"
    rates: list[ProgrammeRate]
    organization_count: int = Field(description="organisations with deals in the year")
    totals: IncentiveGroup
    programmes: dict[Programme, ProgrammeAmounts]
    by_region: list[IncentiveGroup]
    by_kind: list[IncentiveGroup]
    by_transaction_type: list[IncentiveGroup]
    by_month: list[IncentiveGroup]
    notes: list[str] = Field(description="what the figures do not cover")


class OrganizationIncentive(BaseModel):
    """One organisation's year: its deals as seller, their value and what each programme
    earns it."""

    organization_id: UUID
    name: str = Field(examples=["河北农业大学"])
    uscc: str | None = Field(examples=["12130000401960217L"])
    region: str = Field(examples=["130600"], description="the organisation's region code")
    region_group: str = Field(examples=["130600"])
    deal_count: int
    value: Decimal = Field(examples=["2300000.00"])
    eligible: Decimal = Field(examples=["23000.00"], description="all programmes")
    programmes: dict[Programme, ProgrammeAmounts]


class IncentiveDeal(BaseModel):
    """A deal an amount rests on, with what it earns."""

    deal_id: UUID = Field(description="the deal's id, or the repaid pledge's")
    listing_id: UUID | None = Field(
        description="null for a pledge loan repaid through the exchange's financing"
    )
    organization_id: UUID = Field(description="the seller, to whom the amount is attributed")
    organization_name: str
    buyer_name: str
    closed_on: date
    region: str = Field(examples=["130627"])
    region_group: str = Field(examples=["130600"])
    kind: str = Field(examples=["invention_patent"])
    transaction_type: str = Field(examples=["exclusive_license"])
    programme: Programme | None
    amount: Decimal | None = Field(examples=["1150000.00"])
    rate: Decimal | None = Field(examples=["0.010000"])
    eligible: Decimal | None = Field(
        examples=["11500.00"],
        description="null where it cannot be computed: no amount, or a pledge loan recorded "
        "as a deal (its interest is not in the deal; a repaid pledge of the exchange's "
        "financing earns on its interest)",
    )
    confidential: bool
