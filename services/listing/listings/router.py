"""Listing endpoints."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Header, Query, Request, Response, status

from services.listing import idempotency
from services.listing.dependencies import CallerOrganizationDep, MemberDep, TodayDep
from services.listing.listings import service
from services.listing.listings.rules import Action
from services.listing.listings.schemas import (
    HistoryEntry,
    ListingCreate,
    ListingUpdate,
    TransitionRequest,
)
from shared.auth import CallerDep, OptionalCallerDep
from shared.contracts.catalogue import ListingStatus
from shared.contracts.listings import ListingPublic
from shared.db import SessionDep
from shared.errors import problem_responses
from shared.etags import etag, parse_if_match
from shared.reads import CatalogueSessionDep
from shared.schemas import Page, PageSize, PageToken

router = APIRouter(prefix="/v1/listings", tags=["listings"])
CREATE_SCOPE = "POST /v1/listings"


def context(
    request: Request, session: Any, principal: Any, organization: Any, today: Any
) -> service.Context:
    return service.Context(
        session=session,
        principal=principal,
        organization=organization,
        today=today,
        catalogue_url=request.app.state.settings.gateway_url,
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ListingPublic,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def create_listing(
    data: ListingCreate,
    request: Request,
    session: SessionDep,
    principal: MemberDep,
    organization: CallerOrganizationDep,
    today: TodayDep,
    idempotency_key: idempotency.IdempotencyKeyHeader = None,
) -> Response:
    """A draft listing (registering its asset too when `asset` is given). With an
    `Idempotency-Key`, a repeat returns the first response instead of creating another."""
    ctx = context(request, session, principal, organization, today)

    async def create() -> tuple[dict[str, Any], dict[str, str]]:
        created = await service.create(ctx, data)
        body = created.model_dump(mode="json")
        return body, {"ETag": etag(created.version), "Location": f"/v1/listings/{created.id}"}

    return await idempotency.create_once(
        session,
        principal.organization_id,
        scope=CREATE_SCOPE,
        key=idempotency_key,
        digest=idempotency.request_hash(data),
        create=create,
    )


@router.get("/{listing_id}", response_model=ListingPublic, responses=problem_responses(404, 422))
async def read_listing(
    listing_id: UUID,
    session: CatalogueSessionDep,
    principal: OptionalCallerDep,
    response: Response,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
) -> Any:
    listing, asset, seller = await service.read(session, principal, listing_id)
    tag = etag(listing.version)
    if if_none_match and tag in [t.strip() for t in if_none_match.split(",")]:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": tag})
    response.headers["ETag"] = tag
    return service.to_public(listing, asset, seller)


@router.patch(
    "/{listing_id}",
    response_model=ListingPublic,
    responses=problem_responses(401, 403, 404, 409, 422, 428),
)
async def update_listing(
    listing_id: UUID,
    data: ListingUpdate,
    request: Request,
    response: Response,
    session: SessionDep,
    principal: MemberDep,
    organization: CallerOrganizationDep,
    today: TodayDep,
    if_match: Annotated[str | None, Header(alias="If-Match")] = None,
) -> ListingPublic:
    """Edit the terms. Needs the version it is based on (`If-Match` or `version`): a lost
    update is a 409 naming the current version."""
    ctx = context(request, session, principal, organization, today)
    listing, asset, seller = await service.update(
        ctx, listing_id, data, parse_if_match(if_match, "listing")
    )
    response.headers["ETag"] = etag(listing.version)
    return service.to_public(listing, asset, seller)


def _transition_route(action: Action, doc: str) -> None:
    async def endpoint(
        listing_id: UUID,
        request: Request,
        response: Response,
        session: SessionDep,
        principal: MemberDep,
        organization: CallerOrganizationDep,
        today: TodayDep,
        # Optional, but not nullable: generated clients then send no body rather than `null`.
        body: Annotated[TransitionRequest, Body(default_factory=TransitionRequest)],
        if_match: Annotated[str | None, Header(alias="If-Match")] = None,
    ) -> ListingPublic:
        expected = parse_if_match(if_match, "listing")
        ctx = context(request, session, principal, organization, today)
        listing, asset, seller = await service.transition(
            ctx,
            listing_id,
            action,
            reason=body.reason,
            expected_version=expected if expected is not None else body.version,
        )
        response.headers["ETag"] = etag(listing.version)
        return service.to_public(listing, asset, seller)

    endpoint.__doc__ = doc
    router.add_api_route(
        f"/{{listing_id}}/{action}",
        endpoint,
        methods=["POST"],
        response_model=ListingPublic,
        name=f"{action}_listing",
        responses=problem_responses(401, 403, 404, 409, 422),
    )


_transition_route("submit", "Seller: send a draft to review (verified organisations only).")
_transition_route("approve", "Operator: publish a listing in review.")
_transition_route("reject", "Operator: send a listing in review back to draft, with a reason.")
_transition_route("withdraw", "Seller or operator: take a listing off the market.")
_transition_route("reopen", "Seller: end a negotiation and offer the listing again.")
_transition_route("expire", "Operator: the right has ended (the service also checks hourly).")


@router.get("", response_model=Page[ListingPublic], responses=problem_responses(401, 403, 422))
async def list_listings(
    session: SessionDep,
    principal: MemberDep,
    status_: Annotated[
        ListingStatus | None, Query(alias="status", examples=["pending_review"])
    ] = None,
    seller: Annotated[
        UUID | None,
        Query(
            description="a seller organisation (operators)",
            examples=["0b7c4a51-8a4f-4d4e-9a43-1f1c2e3d4b5a"],
        ),
    ] = None,
    page_size: PageSize = 50,
    page_token: PageToken = "",
) -> Page[ListingPublic]:
    """The caller's listings; for operators any seller's (`status=pending_review` is the
    review queue)."""
    return await service.list_page(
        session,
        principal,
        status=status_,
        seller=seller,
        page_size=page_size,
        page_token=page_token,
    )


@router.get(
    "/{listing_id}/history",
    response_model=Page[HistoryEntry],
    responses=problem_responses(401, 404, 422),
)
async def listing_history(
    listing_id: UUID,
    session: SessionDep,
    principal: CallerDep,
    page_size: PageSize = 100,
    page_token: PageToken = "",
) -> Page[HistoryEntry]:
    """Every change, oldest first: who, when, what (seller and operators)."""
    return await service.history(
        session, principal, listing_id, page_size=page_size, page_token=page_token
    )
