"""GET /v1/offers: every listing's current catalogue document, paged by listing id (services)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import select
from sqlmodel import col

from services.listing.listings import service as listings
from services.listing.models import Asset, Listing, Organization
from shared.auth import Principal, require_roles
from shared.contracts.events import OfferSnapshot, OfferSnapshotPage
from shared.db import SessionDep
from shared.errors import problem_responses
from shared.schemas import PageToken, decode_page_token, encode_page_token

router = APIRouter(prefix="/v1/offers", tags=["offers"])


@router.get("", response_model=OfferSnapshotPage, responses=problem_responses(401, 403, 422))
async def offer_snapshot(
    request: Request,
    session: SessionDep,
    _: Annotated[Principal, Depends(require_roles("service", "operator"))],
    page_size: Annotated[int, Query(ge=1, le=1000)] = 500,
    page_token: PageToken = "",
) -> OfferSnapshotPage:
    """Current documents of all listings (every status) in listing-id order. Read the change
    feed's head before the first page and resume the feed from it afterwards: nothing is
    missed, and a version seen twice is harmless."""
    position = decode_page_token(page_token, "id")
    query = (
        select(Listing, Asset, Organization)
        .join(Asset, col(Asset.id) == col(Listing.asset_id))
        .join(Organization, col(Organization.id) == col(Listing.seller_id))
        .order_by(col(Listing.id))
        .limit(page_size + 1)
    )
    if position:
        query = query.where(col(Listing.id) > UUID(position["id"]))
    rows = list(await session.execute(query))
    more = len(rows) > page_size
    rows = rows[:page_size]
    catalogue_url = request.app.state.settings.gateway_url
    items = [
        OfferSnapshot(
            listing_id=listing.id,
            asset_id=asset.id,
            seller_id=listing.seller_id,
            version=listing.version,
            status=listing.status,
            document=listings.document(listing, asset, seller, catalogue_url),
        )
        for listing, asset, seller in rows
    ]
    token = encode_page_token({"id": str(rows[-1][0].id)}) if more else ""
    return OfferSnapshotPage(items=items, next_page_token=token)
