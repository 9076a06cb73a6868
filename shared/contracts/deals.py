"""A deal announcement, as listing's GET /v1/deals answers it, the change feed's `deal.closed`
carries it and the gateway relays it (GET /v1/catalogue/deals, webhooks)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from typing import Annotated, Literal
from uuid import UUID

from fastapi import Query
from pydantic import BaseModel, Field

from shared.contracts.catalogue import AssetKind, LocalizedText, Money, TransactionType

__all__ = ["DealAsset", "DealPublic", "DealQuery", "deal_query"]


class DealAsset(BaseModel):
    kind: AssetKind
    identifier: str
    title: LocalizedText


class DealPublic(BaseModel):
    """A deal announcement. `amount` is null when the seller keeps it confidential, except for
    the seller, the buyer's organisation and operators."""

    id: UUID
    listing_id: UUID
    offer_id: str = Field(examples=["jjj:7d5e0c1e-3f7b-4d3a-9b84-1f0f5c3f2a10"])
    asset: DealAsset
    transaction_type: TransactionType
    amount: Money | None = Field(examples=["1150000.00"])
    currency: Literal["CNY"] = "CNY"
    confidential: bool
    seller_name: str
    buyer_name: str
    closed_on: date
    region: str = Field(examples=["110108"])


@dataclass(frozen=True)
class DealQuery:
    """The filters of a deals list (listing's GET /v1/deals and /v1/deals/stats, the gateway's
    GET /v1/catalogue/deals), as the client sent them."""

    region: str | None = None
    kind: AssetKind | None = None
    transaction_type: TransactionType | None = None
    since: date | None = None
    until: date | None = None
    asset_id: UUID | None = None

    def params(self) -> dict[str, str]:
        """As query parameters, for a service that relays them."""
        return {k: str(v) for k, v in asdict(self).items() if v is not None}


async def deal_query(
    region: Annotated[
        str | None,
        Query(
            pattern=r"^[0-9]{2}([0-9]{4})?$",
            description="a province's two digits (11, 12, 13) or a six-digit GB/T 2260 code "
            "(110000: all of Beijing; 130600: all of Baoding; 110108: Haidian)",
            examples=["13", "110000"],
        ),
    ] = None,
    kind: Annotated[AssetKind | None, Query(examples=["invention_patent"])] = None,
    transaction_type: Annotated[
        TransactionType | None, Query(examples=["exclusive_license"])
    ] = None,
    since: Annotated[
        date | None, Query(description="closed on or after", examples=["2026-01-01"])
    ] = None,
    until: Annotated[
        date | None, Query(description="closed on or before", examples=["2026-12-31"])
    ] = None,
    asset_id: Annotated[
        UUID | None,
        Query(
            description="the deals on one asset (on any of its offers here): its deal history",
            examples=["0b7d1c52-5e0e-4c8f-9a0e-2f4f3d9b6a11"],
        ),
    ] = None,
) -> DealQuery:
    """A FastAPI dependency: one definition of the deal filters for every route that takes
    them (async: run inline, not in the thread pool)."""
    return DealQuery(region, kind, transaction_type, since, until, asset_id)
