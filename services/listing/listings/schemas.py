"""Listing request and response models."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field, model_validator

from services.listing.assets.schemas import AssetCreate
from shared.contracts.catalogue import TransactionTerms
from shared.schemas import StrictModel


class ListingCreate(StrictModel):
    """An offer on a registered asset (`asset_id`) or on a right registered in the same call
    (`asset`)."""

    asset_id: UUID | None = None
    asset: AssetCreate | None = None
    transaction: TransactionTerms
    pledge_disclosed: bool = Field(
        default=False, description="the seller discloses that the asset is pledged"
    )

    @model_validator(mode="after")
    def _one_asset(self) -> ListingCreate:
        if (self.asset_id is None) == (self.asset is None):
            raise ValueError("give exactly one of asset_id and asset")
        return self


class ListingUpdate(StrictModel):
    transaction: TransactionTerms | None = None
    pledge_disclosed: bool | None = None
    version: int | None = Field(
        default=None, ge=1, description="the version this update is based on (or If-Match)"
    )


class TransitionRequest(StrictModel):
    reason: str | None = Field(default=None, max_length=2000)
    version: int | None = Field(default=None, ge=1)


class HistoryEntry(BaseModel):
    version: int
    action: str
    at: datetime
    actor_organization_id: UUID | None
    actor_key_id: UUID | None
    actor_roles: list[str]
    changes: dict[str, Any]
    reason: str | None
