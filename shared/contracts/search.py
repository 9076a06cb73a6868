"""The catalogue search's answer (built as JSON by shared/search.py; these models document it
in both services' OpenAPI)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from shared.contracts.catalogue import (
    AssetKind,
    LegalStatus,
    ListingStatus,
    PriceMode,
    TransactionType,
)

Amount = str | None  # the canonical decimal form, two places ("175000.00")


class OfferSummary(BaseModel):
    listing_id: str
    offer_id: str
    exchange: str = Field(examples=["tipei"])
    transaction_type: TransactionType
    price_mode: PriceMode | None
    amount: Amount = Field(examples=["175000.00"])
    currency: Literal["CNY"] = "CNY"
    status: ListingStatus
    source_url: str | None


class SearchHit(BaseModel):
    asset_id: str
    listing_id: str
    offer_id: str
    kind: AssetKind
    identifier: str
    publication_number: str | None
    title: dict[str, str | None]
    abstract: dict[str, str | None]
    holders: list[str]
    region: str | None
    ipc: list[str]
    legal_status: LegalStatus | None
    transaction_type: TransactionType
    price_mode: PriceMode | None
    amount: Amount = Field(examples=["160000.00"])
    currency: Literal["CNY"] = "CNY"
    status: ListingStatus
    exchange: str = Field(examples=["jjj"])
    seller: str | None
    score: float | None = Field(description="text relevance, 0-1")
    highlight: dict[str, str] = Field(default_factory=dict)
    offers: list[OfferSummary] = Field(
        default_factory=list, description="every searchable offer on this asset"
    )


class SearchResult(BaseModel):
    items: list[SearchHit]
    total: int
    page: int
    page_size: int
    total_pages: int
    facets: dict[str, dict[str, int]] = Field(default_factory=dict)
    query: dict[str, Any] = Field(default_factory=dict, description="how the query was read")
