"""What the open catalogue answers beyond the search (shared/contracts/search.py): the public
change feed and an asset with its offers."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
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


class DealGroup(BaseModel):
    group: str = Field(examples=["110000"], description="province code, kind, or YYYY-MM")
    deal_count: int
    disclosed_count: int = Field(description="deals with a public amount")
    disclosed_total: Decimal = Field(examples=["3450000.00"])
    disclosed_median: Decimal | None = Field(examples=["1150000.00"])


class DealStats(BaseModel):
    """Listing's public deal statistics, relayed: groups of fewer than three deals are left
    out, and only disclosed amounts count."""

    group_by: Literal["region", "kind", "month"]
    groups: list[DealGroup]
