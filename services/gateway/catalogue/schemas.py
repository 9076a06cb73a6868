"""What the open catalogue answers beyond the search (shared/contracts/search.py): the public
change feed and an asset with its offers."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from shared.contracts.catalogue import AssetOffer, CatalogueDocument
from shared.contracts.deals import DealPublic
from shared.contracts.listings import AssetPublic

PublicEventType = Literal[
    "listing.published", "listing.updated", "listing.withdrawn", "listing.closed", "deal.closed"
]


class CatalogueChange(BaseModel):
    cursor: str = Field(description="pass as `after` to read what follows this event")
    type: PublicEventType
    timestamp: datetime
    data: CatalogueDocument | DealPublic = Field(
        description="a listing's catalogue document (a withdrawn, closed or expired one is its "
        "tombstone), or a deal announcement for deal.closed"
    )


class CatalogueChangePage(BaseModel):
    events: list[CatalogueChange]
    next_cursor: str = Field(description="the cursor to continue from (unchanged when empty)")


class CatalogueAsset(BaseModel):
    """A right with every offer on it across exchanges."""

    asset: AssetPublic
    offers: list[AssetOffer] = Field(description="oldest first; on the market unless asked")
