"""Offers as catalogue documents.

- GET /v1/offers: every listing's current catalogue document, paged by listing id (services).
- PUT /v1/offers/{exchange}/{listing_id}: the gateway upserts a partner exchange's offer.
- GET /v1/assets/{asset_id}/offers (`asset_offers_router`): an asset's offers on every exchange.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query, Request

from services.listing.dependencies import TodayDep
from services.listing.listings import service as listings
from services.listing.offers import service
from services.listing.offers.repository import OfferRepository
from shared.auth import Principal, require_roles
from shared.contracts.catalogue import AssetOffer, CatalogueDocument
from shared.contracts.events import OfferSnapshot, OfferSnapshotPage
from shared.contracts.offers import OfferUpsertResult
from shared.db import SessionDep
from shared.errors import problem_responses
from shared.reads import CatalogueSessionDep
from shared.schemas import Page, PageSize, PageToken, encode_page_token, page_position, token_uuid

router = APIRouter(prefix="/v1/offers", tags=["offers"])
# Mounted beside `router` by the app: the read of an asset's offers lives under /v1/assets.
asset_offers_router = APIRouter(prefix="/v1/assets", tags=["offers"])


@router.get("", response_model=OfferSnapshotPage, responses=problem_responses(401, 403, 422))
async def offer_snapshot(
    request: Request,
    session: SessionDep,
    _: Annotated[Principal, Depends(require_roles("service", "operator"))],
    page_size: Annotated[
        int, Query(ge=1, le=1000, description="items per page", examples=[500])
    ] = 500,
    page_token: PageToken = "",
) -> OfferSnapshotPage:
    """Current documents of all listings (every status) in listing-id order. Read the change
    feed's head before the first page and resume the feed from it afterwards: nothing is
    missed, and a version seen twice is harmless."""
    position = page_position(page_token, id=token_uuid)
    after = position["id"] if position else None
    rows = await OfferRepository(session).snapshot_page(after, page_size + 1)
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


@router.put(
    "/{exchange}/{listing_id}",
    response_model=OfferUpsertResult,
    responses=problem_responses(401, 403, 409, 422),
)
async def upsert_partner_offer(
    request: Request,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require_roles("service", "operator"))],
    today: TodayDep,
    document: CatalogueDocument,
    exchange: Annotated[
        str,
        Path(pattern=r"^[a-z][a-z0-9_-]{1,31}$", examples=["tipei"], description="its code"),
    ],
    listing_id: Annotated[
        str,
        Path(min_length=1, max_length=200, examples=["L-2024-00017"]),
    ],
    exchange_name: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=200,
            examples=["天津知识产权交易中心"],
            description="the exchange's name; required the first time the exchange is seen",
        ),
    ] = None,
    exchange_region: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=12,
            examples=["120000"],
            description="the exchange's GB/T 2260 region code; required the first time",
        ),
    ] = None,
) -> OfferUpsertResult:
    """Gateway (service key), or an operator: create or update a partner exchange's offer from
    its catalogue document, attached to the asset with the same kind and normalised identifier.
    No review (the partner reviewed it). A `source.version` no newer than the stored one changes
    nothing (`applied: false`, still 200). Path and `source` must agree; `jjj` (this exchange)
    is refused; an ended right offered as published is a 409 (`right_not_in_force`)."""
    ctx = listings.Context(
        session=session,
        principal=principal,
        organization=None,
        today=today,
        catalogue_url=request.app.state.settings.gateway_url,
    )
    return await service.upsert(
        ctx,
        exchange,
        listing_id,
        document,
        exchange_name=exchange_name,
        exchange_region=exchange_region,
    )


@asset_offers_router.get(
    "/{asset_id}/offers",
    response_model=Page[AssetOffer],
    responses=problem_responses(404, 422),
)
async def asset_offers(
    request: Request,
    asset_id: UUID,
    session: CatalogueSessionDep,
    include_closed: Annotated[
        bool, Query(description="also the closed, withdrawn and expired offers", examples=[False])
    ] = False,
    page_size: PageSize = 50,
    page_token: PageToken = "",
) -> Page[AssetOffer]:
    """Anyone: the offers on this asset across exchanges (ours and partners'), each as its
    catalogue document, oldest first. Offers on the market (published, under negotiation) by
    default; drafts and offers in review never."""
    return await service.asset_offers(
        session,
        request.app.state.settings.gateway_url,
        asset_id,
        include_closed=include_closed,
        page_size=page_size,
        page_token=page_token,
    )
