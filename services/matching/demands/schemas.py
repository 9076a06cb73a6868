"""Demand and match request/response models."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

from shared.contracts.catalogue import AssetKind, Money, TransactionType
from shared.contracts.search import SearchHit
from shared.schemas import StrictModel

RegionCode = str


class DemandFields(StrictModel):
    kinds: list[AssetKind] = Field(default_factory=list, max_length=9)
    ipc_prefixes: list[str] = Field(
        default_factory=list, max_length=20, examples=[["H01M", "H01M 50/40"]]
    )
    transaction_types: list[TransactionType] = Field(default_factory=list, max_length=7)
    regions: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="preferred: provinces (13) or GB/T 2260 codes",
        examples=[["13"]],
    )
    budget_max: Money | None = Field(default=None, examples=["2000000.00"])


class DemandCreate(DemandFields):
    title: str = Field(min_length=1, max_length=300, examples=["锂离子电池隔膜技术"])
    text: str = Field(
        min_length=1,
        max_length=5000,
        examples=["我公司需要锂电池隔膜的生产技术，预算200万元以内，独占许可，河北优先"],
    )


class DemandUpdate(StrictModel):
    title: str | None = Field(default=None, min_length=1, max_length=300)
    text: str | None = Field(default=None, min_length=1, max_length=5000)
    kinds: list[AssetKind] | None = Field(default=None, max_length=9)
    ipc_prefixes: list[str] | None = Field(default=None, max_length=20)
    transaction_types: list[TransactionType] | None = Field(default=None, max_length=7)
    regions: list[str] | None = Field(default=None, max_length=20)
    budget_max: Money | None = None
    version: int | None = Field(default=None, ge=1)


class TermRead(BaseModel):
    text: str = Field(description="a technical term as read from the demand (lower case)")
    source: Literal["title", "text"]
    alternatives: list[str] = Field(description="the same term in the field's other names")
    weight: float = Field(
        description="how much the term counts: title terms twice, rare words in the catalogue "
        "more than common ones"
    )


class ConstraintsRead(BaseModel):
    budget_max: Money | None
    regions: list[str]
    transaction_types: list[TransactionType]
    kinds: list[AssetKind]


class DemandReading(BaseModel):
    """What matching read from the demand's title and text: the terms it looks for and the
    constraints stated in prose (used where the demand's own fields leave them open)."""

    terms: list[TermRead]
    constraints: ConstraintsRead


class DemandPublic(BaseModel):
    id: UUID
    organization_id: UUID
    title: str
    text: str
    kinds: list[AssetKind]
    ipc_prefixes: list[str]
    transaction_types: list[TransactionType]
    regions: list[str]
    budget_max: Money | None
    status: Literal["active", "closed"]
    version: int
    created_at: datetime
    updated_at: datetime
    understood: DemandReading | None = Field(
        default=None, description="what matching read from title and text"
    )


class TermFound(BaseModel):
    term: str = Field(description="the demand's term")
    written_as: str = Field(description="how it was found: as written or in another name")
    field: Literal["title", "abstract"] = Field(description="where in the listing")
    share: float = Field(description="the share of the term's weight found, 0-1")


class MatchReason(BaseModel):
    """Why a listing was proposed, factor by factor (a factor the buyer left open is not
    listed: it fits)."""

    factor: Literal["text", "budget", "region", "kind", "transaction_type"]
    fit: float = Field(description="0-1")
    detail: str
    terms: list[TermFound] = Field(
        default_factory=list, description="text only: the demand's terms found in the listing"
    )


class MatchPublic(BaseModel):
    """One match per asset: its best offer for the demand, with every offer on it."""

    demand_id: UUID
    asset_id: UUID
    listing_id: UUID = Field(description="the asset's offer that fits the demand best")
    score: float = Field(description="text fit x (0.7 + 0.3 x constraint fit), 0-1")
    reasons: list[MatchReason]
    listing_version: int
    created_at: datetime
    updated_at: datetime
    listing: SearchHit | None = Field(
        default=None,
        description="the offer as the catalogue shows it now, with every searchable offer on "
        "the asset (absent when none is on the market any more)",
    )


class MatchEventData(BaseModel):
    demand_id: UUID
    demand_title: str
    asset_id: UUID | None = None
    score: float
    reasons: list[MatchReason]
    listing: SearchHit


class MatchEventPublic(BaseModel):
    cursor: str
    type: str
    demand_id: UUID
    organization_id: UUID
    listing_id: UUID
    occurred_at: datetime
    data: MatchEventData


class MatchFeedPage(BaseModel):
    events: list[MatchEventPublic]
    next_cursor: str
