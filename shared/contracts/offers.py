"""Partner offers upserted into listing by the gateway (PUT /v1/offers/{exchange}/{id}), v1.

Request body: a `CatalogueDocument` whose `source.exchange` and `source.listing_id` equal the
path. Query: `exchange_name` and `exchange_region` (used when listing first sees the exchange).
"""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel, Field


class OfferUpsertResult(BaseModel):
    listing_id: UUID
    asset_id: UUID
    version: int = Field(description="our listing's version after the call")
    source_version: int = Field(description="the partner's version now stored")
    applied: bool = Field(
        description="false when the stored partner version is as new or "
        "newer: the call changed nothing"
    )
    needs_review: bool = Field(
        description="the partner's holders differ from ours: an operator should look"
    )
