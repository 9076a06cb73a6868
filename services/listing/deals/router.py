"""Inquiry and deal endpoints."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response, status

from services.listing import idempotency
from services.listing.deals import service
from services.listing.deals.repository import DealFilters
from services.listing.deals.schemas import (
    DealCreate,
    DealStats,
    GroupBy,
    InquiryCreate,
    InquiryPublic,
    InquirySummary,
    MessageCreate,
)
from services.listing.dependencies import CallerOrganizationDep, MemberDep, TodayDep
from services.listing.listings.repository import serialize_writers
from services.listing.listings.router import context
from shared.auth import OptionalCallerDep
from shared.contracts.deals import DealPublic, DealQuery, deal_query
from shared.db import SessionDep
from shared.errors import problem_responses
from shared.reads import CatalogueSessionDep
from shared.schemas import Page, PageSize, PageToken

INQUIRE_SCOPE = "POST /v1/listings/{id}/inquiries"
DEAL_SCOPE = "POST /v1/deals"

inquiries = APIRouter(tags=["inquiries"])
deals = APIRouter(prefix="/v1/deals", tags=["deals"])


@inquiries.post(
    "/v1/listings/{listing_id}/inquiries",
    status_code=status.HTTP_201_CREATED,
    response_model=InquiryPublic,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def inquire(
    listing_id: UUID,
    data: InquiryCreate,
    request: Request,
    session: SessionDep,
    principal: MemberDep,
    organization: CallerOrganizationDep,
    today: TodayDep,
    idempotency_key: idempotency.IdempotencyKeyHeader = None,
) -> Response:
    """Buyer: open the organisation's thread on a published listing (or one under negotiation),
    or add to it. The first offer on a published listing puts it under negotiation. Not on the
    caller's own listing (403, rule `own_listing`). Not on another exchange's offer (409,
    `/problems/partner-offer`, rule `partner_offer`): inquiries go to that exchange, at the
    `source_url` in the problem; nothing is stored."""
    ctx = context(request, session, principal, organization, today)
    await serialize_writers(session, listing_id)  # before the idempotency claim writes
    # The same key on another listing is another request.
    digest = hashlib.sha256(f"{listing_id}\n{data.model_dump_json()}".encode()).hexdigest()

    async def create() -> tuple[dict[str, Any], dict[str, str]]:
        thread = await service.inquire(ctx, listing_id, data)
        return thread.model_dump(mode="json"), {"Location": f"/v1/inquiries/{thread.id}"}

    return await idempotency.create_once(
        session,
        principal.organization_id,
        scope=INQUIRE_SCOPE,
        key=idempotency_key,
        digest=digest,
        create=create,
    )


@inquiries.get(
    "/v1/inquiries",
    response_model=Page[InquirySummary],
    responses=problem_responses(401, 403, 404, 422),
)
async def list_inquiries(
    session: SessionDep,
    principal: MemberDep,
    listing_id: Annotated[
        UUID | None,
        Query(
            description="one listing's threads",
            examples=["7d5e0c1e-3f7b-4d3a-9b84-1f0f5c3f2a10"],
        ),
    ] = None,
    page_size: PageSize = 50,
    page_token: PageToken = "",
) -> Page[InquirySummary]:
    """With `listing_id`: the seller sees every thread on its listing, a buyer its own.
    Without: the threads the caller's organisation is a party to (operators: all)."""
    return await service.list_inquiries(
        session, principal, listing_id=listing_id, page_size=page_size, page_token=page_token
    )


@inquiries.get(
    "/v1/inquiries/{inquiry_id}",
    response_model=InquiryPublic,
    responses=problem_responses(401, 403, 404, 422),
)
async def read_inquiry(
    inquiry_id: UUID, session: SessionDep, principal: MemberDep
) -> InquiryPublic:
    """The thread with its messages in order: for its buyer, the listing's seller and
    operators (404 for anyone else)."""
    return await service.read_inquiry(session, principal, inquiry_id)


@inquiries.post(
    "/v1/inquiries/{inquiry_id}/messages",
    status_code=status.HTTP_201_CREATED,
    response_model=InquiryPublic,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def post_message(
    inquiry_id: UUID,
    data: MessageCreate,
    request: Request,
    session: SessionDep,
    principal: MemberDep,
    organization: CallerOrganizationDep,
    today: TodayDep,
) -> InquiryPublic:
    """Buyer or seller: a message, optionally with an offer (or counter-offer), while the
    listing is open. Returns the whole thread. Not in a thread on another exchange's offer
    (409, `/problems/partner-offer`)."""
    ctx = context(request, session, principal, organization, today)
    return await service.post_message(ctx, inquiry_id, data)


@deals.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DealPublic,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def close_deal(
    data: DealCreate,
    request: Request,
    session: SessionDep,
    principal: MemberDep,
    organization: CallerOrganizationDep,
    today: TodayDep,
    idempotency_key: idempotency.IdempotencyKeyHeader = None,
) -> Response:
    """Seller (or operator): record the deal and close the listing. The buyer is the
    organisation of `inquiry_id`, or `buyer_name` for a buyer met off the platform. The deal is
    announced in the change feed (`listing.closed`, then `deal.closed`), without the amount when
    `confidential`. Another exchange's offer is closed on that exchange, not here (409,
    `/problems/partner-offer`, with its `source_url`), operators included."""
    ctx = context(request, session, principal, organization, today)

    await serialize_writers(session, data.listing_id)  # before the idempotency claim writes

    async def create() -> tuple[dict[str, Any], dict[str, str]]:
        return (await service.close_deal(ctx, data)).model_dump(mode="json"), {}

    return await idempotency.create_once(
        session,
        principal.organization_id,
        scope=DEAL_SCOPE,
        key=idempotency_key,
        digest=idempotency.request_hash(data),
        create=create,
    )


async def deal_filters(query: Annotated[DealQuery, Depends(deal_query)]) -> DealFilters:
    return service.deal_filters(
        region=query.region,
        kind=query.kind,
        transaction_type=query.transaction_type,
        since=query.since,
        until=query.until,
        asset_id=query.asset_id,
    )


DealFiltersDep = Annotated[DealFilters, Depends(deal_filters)]


@deals.get("", response_model=Page[DealPublic], responses=problem_responses(401, 422))
async def list_deals(
    session: CatalogueSessionDep,
    principal: OptionalCallerDep,
    filters: DealFiltersDep,
    page_size: PageSize = 50,
    page_token: PageToken = "",
) -> Page[DealPublic]:
    """Public deal announcements, newest first. A confidential deal's `amount` is null except
    for its seller, its buyer's organisation and operators."""
    return await service.list_deals(
        session, principal, filters, page_size=page_size, page_token=page_token
    )


@deals.get("/stats", response_model=DealStats, responses=problem_responses(422))
async def deal_stats(
    session: CatalogueSessionDep,
    filters: DealFiltersDep,
    group_by: Annotated[GroupBy, Query(examples=["month"])] = "region",
) -> DealStats:
    """Deal statistics per province (`110000`), asset kind or month (`2026-11`): the number of
    deals, how many disclosed their amount, and the total and median of the disclosed amounts
    (confidential amounts never count). Groups of fewer than three deals are suppressed: they
    are not returned at all."""
    return await service.stats(session, group_by, filters)


router = APIRouter()
router.include_router(inquiries)
router.include_router(deals)
