"""A registered right and a listing as listing's API answers them, and as the gateway relays
them (GET /v1/catalogue/assets/{id}, GET /v1/catalogue/listings/{id})."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel

from shared.contracts.catalogue import AssetDocument, ListingStatus, TransactionTerms

__all__ = ["AssetPublic", "ListingPublic"]


class AssetPublic(AssetDocument):
    id: UUID
    version: int
    needs_review: bool
    created_at: datetime
    updated_at: datetime


class ListingPublic(BaseModel):
    id: UUID
    offer_id: str
    asset_id: UUID
    seller_id: UUID
    seller_name: str | None
    exchange: str
    source_url: str | None
    status: ListingStatus
    version: int
    transaction: TransactionTerms
    pledge_disclosed: bool
    rejection_reason: str | None
    published_at: datetime | None
    created_at: datetime
    updated_at: datetime
    asset: AssetPublic
