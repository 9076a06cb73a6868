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
    highlight: dict[str, str] = Field(
        default_factory=dict,
        description="title_zh, title_en with the matches in <em>; abstract_zh, abstract_en "
        "cropped around them too with snippet=true",
    )
    offers: list[OfferSummary] = Field(
        default_factory=list, description="every searchable offer on this asset"
    )


class SearchResult(BaseModel):
    items: list[SearchHit]
    total: int = Field(
        description="results (assets when grouped, offers otherwise): exact, an estimate or a "
        "floor, as total_relation says",
        examples=[1049],
    )
    total_is_exact: bool = Field(examples=[False])
    total_relation: Literal["eq", "about", "gte"] = Field(
        description="eq: exact; about: an estimate, never below the exact count (it counts "
        "matching offers before grouping them by asset); gte: at least this many (counts stop "
        "at 10,000, and no result past the 10,000th is served)",
        examples=["about"],
    )
    page: int = Field(examples=[1])
    page_size: int = Field(examples=[20])
    total_pages: int = Field(description="pages of `total`, up to the 10,000th result")
    next_page_token: str = Field(
        default="", description="the next page's page_token (empty at the end)"
    )
    facets: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description="counts per value of kind, transaction_type, province, legal_status, "
        "exchange, nice and price_mode (the 100 most frequent values of each)",
        examples=[{"kind": {"invention_patent": 901, "utility_model": 148}}],
    )
    facets_are_exact: bool = Field(
        default=False,
        description="facet counts come from an exact count (exact_total); otherwise they "
        "are estimates like `total`",
    )
    query: dict[str, Any] = Field(
        default_factory=dict,
        description="how the query was read; `count`: estimated, exact, too_broad (an exact "
        "count was asked for a query with 10,000 results or more) or over_budget (it would "
        "have taken too long)",
        examples=[{"identifier": None, "sort": "relevance", "grouped": True, "count": "estimated"}],
    )
