"""IP-backed financing request and response models."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from services.listing.financing.rules import CancellationReason, PledgeStatus
from shared.contracts.catalogue import AssetKind, Money, Rate
from shared.schemas import StrictModel

RequestStatus = Literal["open", "accepted", "withdrawn"]
OfferStatus = Literal["open", "accepted", "closed", "withdrawn"]
HoldType = Literal["preservation", "suspension"]
ValuationMethod = Literal["income", "market", "cost"]
ConsentType = Literal["assignment", "exclusive_license"]


class PartyRef(StrictModel):
    """A co-holder joining the borrower as pledgor (by credit code when both sides have one,
    else by the holder's exact name)."""

    name: str = Field(min_length=1, max_length=200, examples=["北京理工雷科电子信息技术有限公司"])
    uscc: str | None = Field(default=None, max_length=24, examples=[None])


class PledgedRight(StrictModel):
    asset_id: UUID
    annual_fee_due_on: date | None = Field(
        default=None,
        description="patents: the day the next annual fee falls due (CNIPA's fee notice); a "
        "day past means the fee is unpaid and in its grace period",
        examples=["2027-07-21"],
    )


class ValuationCreate(StrictModel):
    """A valuation report as a record: who valued which right, how, at what, when, and the
    SHA-256 of the signed document (kept by the parties)."""

    asset_id: UUID
    agency: str = Field(min_length=1, max_length=200, examples=["中联资产评估集团有限公司"])
    agency_id: UUID | None = Field(
        default=None, description="the agency's organisation here, if it has one"
    )
    method: ValuationMethod = Field(examples=["income"])
    value: Money = Field(gt=0, examples=["3200000.00"])
    valued_on: date = Field(examples=["2026-11-30"])
    document_sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        examples=["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"],
    )


class FinancingRequestCreate(StrictModel):
    """A holder asks for a pledge loan against one right or a portfolio. Every co-holder of a
    right joins as a pledgor (`pledgors`); no clause may hand the rights to the lender on
    default (`forfeiture_clause` must be false)."""

    assets: list[PledgedRight] = Field(min_length=1, max_length=200)
    amount: Money = Field(gt=0, examples=["2000000.00"])
    term_months: int = Field(ge=1, le=600, examples=[12])
    starts_on: date | None = Field(
        default=None, description="the loan's first day (default: today)", examples=[None]
    )
    purpose: str = Field(min_length=1, max_length=2000, examples=["研发投入与生产线改造"])
    pledgors: list[PartyRef] = Field(default_factory=list, max_length=50)
    valuations: list[ValuationCreate] = Field(min_length=1, max_length=200)
    forfeiture_clause: bool = Field(
        default=False,
        description="the contract hands the rights to the lender on default (refused)",
    )


class ValuationPublic(BaseModel):
    id: UUID
    asset_id: UUID
    agency: str
    agency_id: UUID | None
    method: ValuationMethod
    value: Money
    valued_on: date
    document_sha256: str


class RightSummary(BaseModel):
    asset_id: UUID
    kind: AssetKind
    identifier: str
    title: str | None
    legal_status: str
    expires_on: date | None
    annual_fee_due_on: date | None


class OrganizationRef(BaseModel):
    id: UUID
    name: str


class FinancingRequestPublic(BaseModel):
    """A financing request: seen by its borrower, verified banks (while open) and operators."""

    id: UUID
    status: RequestStatus
    version: int
    borrower: OrganizationRef
    region: str
    assets: list[RightSummary]
    amount: Money
    currency: Literal["CNY"] = "CNY"
    term_months: int
    starts_on: date
    ends_on: date
    purpose: str
    pledgors: list[PartyRef]
    valuations: list[ValuationPublic]
    offers: int = Field(description="offers made on it (the borrower and operators; else 0)")
    created_at: datetime
    updated_at: datetime


class OfferCreate(StrictModel):
    """A verified bank's offer: the loan, its annual interest rate, its term, its conditions."""

    amount: Money = Field(gt=0, examples=["1800000.00"])
    rate: Rate = Field(gt=0, description="annual interest rate, a fraction", examples=["0.0365"])
    term_months: int = Field(ge=1, le=600, examples=[12])
    conditions: str = Field(
        default="",
        max_length=4000,
        examples=["按季付息，到期还本；由河北省融资担保集团提供担保"],
    )
    forfeiture_clause: bool = Field(
        default=False,
        description="the offer hands the rights to the bank on default (refused)",
    )


class OfferPublic(BaseModel):
    """Visible to the borrower, the bank that made it, and operators."""

    id: UUID
    request_id: UUID
    bank: OrganizationRef
    status: OfferStatus
    amount: Money
    currency: Literal["CNY"] = "CNY"
    rate: Rate
    term_months: int
    conditions: str
    version: int
    created_at: datetime
    updated_at: datetime


class PledgePublic(BaseModel):
    """A pledge as the registry sees it; the figures are the parties' and operators' only."""

    id: UUID
    request_id: UUID
    offer_id: UUID
    status: PledgeStatus
    version: int
    pledgor: OrganizationRef
    pledgee: OrganizationRef
    co_pledgors: list[PartyRef]
    assets: list[RightSummary]
    amount: Money
    currency: Literal["CNY"] = "CNY"
    rate: Rate
    term_months: int
    starts_on: date
    ends_on: date
    filed_on: date
    registration_number: str | None
    registered_on: date | None
    cancelled_on: date | None
    cancellation_reason: CancellationReason | None
    interest_paid: Money | None
    consents: list[ConsentType] = Field(
        description="what the pledgee consented to (assignment, exclusive licence)"
    )
    created_at: datetime
    updated_at: datetime


class RegistrationEntry(StrictModel):
    """The registry registered the pledge: its registration number and day."""

    registration_number: str = Field(min_length=1, max_length=100, examples=["Y2026110000123"])
    registered_on: date = Field(examples=["2026-12-03"])


class PledgeChange(StrictModel):
    """A registered change of the pledge (the loan's amount, rate or term, as the registry
    recorded it)."""

    amount: Money | None = Field(default=None, gt=0, examples=["1500000.00"])
    rate: Rate | None = Field(default=None, gt=0, examples=[None])
    term_months: int | None = Field(default=None, ge=1, le=600, examples=[18])
    reason: str = Field(min_length=1, max_length=2000, examples=["展期六个月"])


class PledgeCancellation(StrictModel):
    """The registry cancelled the pledge: repaid, enforced (the right sold on default),
    released by the pledgee, or void (refused or annulled)."""

    reason: CancellationReason = Field(examples=["repaid"])
    cancelled_on: date = Field(examples=["2027-12-01"])
    interest_paid: Money | None = Field(
        default=None, description="repaid: the interest paid over the loan", examples=["65700.00"]
    )


class ConsentCreate(StrictModel):
    """The pledgee consents to an assignment or an exclusive licence of the pledged rights."""

    transaction_type: ConsentType = Field(examples=["exclusive_license"])
    note: str | None = Field(default=None, max_length=2000, examples=[None])


class HoldCreate(StrictModel):
    """An operator records a hold from the registry: a court's preservation of the right, or the
    suspension of its procedures."""

    asset_id: UUID
    type: HoldType = Field(examples=["preservation"])
    reference: str = Field(min_length=1, max_length=200, examples=["(2026)京0108执保1234号"])
    since: date = Field(examples=["2026-11-01"])


class HoldLift(StrictModel):
    lifted_on: date = Field(examples=["2026-12-01"])


class HoldPublic(BaseModel):
    id: UUID
    asset_id: UUID
    type: HoldType
    reference: str
    since: date
    lifted_on: date | None
    created_at: datetime


class PledgeHistoryEntry(BaseModel):
    """One audited transition of a pledge: who, when, what changed."""

    version: int
    action: str = Field(examples=["register"])
    at: datetime
    actor_organization_id: UUID | None
    actor_key_id: UUID | None
    actor_roles: list[str]
    changes: dict[str, Any]
