"""Demand and match request/response models."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from shared.contracts.catalogue import AssetKind, TransactionType
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
    budget_max: Decimal | None = Field(
        default=None, ge=0, max_digits=16, decimal_places=2, examples=["2000000.00"]
    )


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
    budget_max: Decimal | None = Field(default=None, ge=0, max_digits=16, decimal_places=2)
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
    budget_max: Decimal | None
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
    kinds: list[str]
    ipc_prefixes: list[str]
    transaction_types: list[str]
    regions: list[str]
    budget_max: Decimal | None
    status: Literal["active", "closed"]
    version: int
    created_at: datetime
    updated_at: datetime
    understood: DemandReading | None = Field(
        default=None, description="what matching read from title and text"
    )


class MatchPublic(BaseModel):
    demand_id: UUID
    listing_id: UUID
    asset_id: UUID
    score: float
    reasons: list[dict[str, Any]]
    listing_version: int
    created_at: datetime
    listing: dict[str, Any] | None = Field(
        default=None, description="the listing as indexed now (absent when it left the market)"
    )


class MatchEventPublic(BaseModel):
    cursor: str
    type: str
    demand_id: UUID
    organization_id: UUID
    listing_id: UUID
    occurred_at: datetime
    data: dict[str, Any]


class MatchFeedPage(BaseModel):
    events: list[MatchEventPublic]
    next_cursor: str
