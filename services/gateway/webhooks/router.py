"""Outbound webhook subscriptions, their deliveries and replays; the operators' allow-list of
private targets."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response, status

from services.gateway.webhooks import repository, service
from services.gateway.webhooks.repository import Tenant
from services.gateway.webhooks.schemas import (
    DeliveryPublic,
    DeliveryStatus,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionPublic,
    TargetCreate,
    TargetPublic,
)
from shared.auth import CallerDep, Principal, require_roles
from shared.contracts.catalogue import EXCHANGE_CODE_PATTERN
from shared.db import SessionDep
from shared.encryption import secret_box
from shared.errors import problem_responses
from shared.schemas import (
    Page,
    PageSize,
    PageToken,
    created_after,
    created_position,
    cut_page,
    page_position,
    token_int,
)

__all__ = ["router"]

router = APIRouter(tags=["webhooks"])
Subscriber = Annotated[Principal, Depends(require_roles("member", "admin", "partner"))]
Operator = Annotated[Principal, Depends(require_roles("operator"))]


@router.post(
    "/v1/subscriptions",
    status_code=status.HTTP_201_CREATED,
    response_model=SubscriptionCreated,
    responses=problem_responses(401, 403, 422),
)
async def create_subscription(
    data: SubscriptionCreate, request: Request, session: SessionDep, principal: Subscriber
) -> SubscriptionCreated:
    """Subscribe a URL to webhook events (listing.published, listing.updated,
    listing.withdrawn: withdrawn or expired, listing.closed: a deal closed it, deal.closed,
    match.created, licence.taken, licence.recordal_due: 30 and 7 days before an open
    licence's recordal is due, licence.recorded, pledge.filed, pledge.registered,
    pledge.changed, pledge.cancelled, pledge.at_risk), optionally filtered like the catalogue
    search. Webhooks are signed per Standard Webhooks with the `secret`, shown only in this
    answer. The URL must resolve to public addresses (rule `ssrf_forbidden_target`) unless an
    operator allow-listed it. match.created is delivered only for the organisation's own
    demands, licence.* only to the licence's licensor and licensee, pledge.* only to the
    pledge's pledgor and pledgee (pledge.at_risk to the pledgee)."""
    box = secret_box(request.app.state.settings.secret_keys)
    subscription, secret = await service.create(session, principal, data, box)
    return SubscriptionCreated(**service.public(subscription).model_dump(), secret=secret)


@router.get(
    "/v1/subscriptions",
    response_model=Page[SubscriptionPublic],
    responses=problem_responses(401, 422),
)
async def list_subscriptions(
    session: SessionDep,
    principal: CallerDep,
    page_size: PageSize = 50,
    page_token: PageToken = "",
) -> Page[SubscriptionPublic]:
    """The caller's organisation's subscriptions, newest first (operators: everyone's)."""
    subscriptions, token = cut_page(
        await service.list_page(session, principal, created_after(page_token), page_size + 1),
        page_size,
        created_position,
    )
    return Page(items=[service.public(s) for s in subscriptions], next_page_token=token)


@router.get(
    "/v1/subscriptions/{subscription_id}",
    response_model=SubscriptionPublic,
    responses=problem_responses(401, 404, 422),
)
async def read_subscription(
    subscription_id: UUID, session: SessionDep, principal: CallerDep
) -> SubscriptionPublic:
    """One subscription (never its secret)."""
    return service.public(await service.get_visible(session, principal, subscription_id))


@router.delete(
    "/v1/subscriptions/{subscription_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 404, 422),
)
async def delete_subscription(
    subscription_id: UUID, session: SessionDep, principal: CallerDep
) -> Response:
    """Delete a subscription: nothing more is queued, what was still pending is given up, and
    the subscription and its deliveries are no longer listed or readable (404)."""
    await service.delete(session, principal, subscription_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/v1/subscriptions/{subscription_id}/deliveries",
    response_model=Page[DeliveryPublic],
    responses=problem_responses(401, 404, 422),
)
async def list_deliveries(
    subscription_id: UUID,
    session: SessionDep,
    principal: CallerDep,
    status_: Annotated[DeliveryStatus | None, Query(alias="status", examples=["failed"])] = None,
    page_size: PageSize = 50,
    page_token: PageToken = "",
) -> Page[DeliveryPublic]:
    """Deliveries newest first, each with its status, attempt count, last response code and
    every attempt (time, response code, latency, error)."""
    position = page_position(page_token, seq=token_int)
    before = position["seq"] if position else None
    rows = await service.deliveries(
        session, principal, subscription_id, status_, before, page_size + 1
    )
    items, token = cut_page(rows, page_size, lambda d: {"seq": d.seq})
    return Page(items=items, next_page_token=token)


@router.post(
    "/v1/subscriptions/{subscription_id}/deliveries/{delivery_id}/replay",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryPublic,
    responses=problem_responses(401, 404, 409, 422),
)
async def replay_delivery(
    subscription_id: UUID, delivery_id: UUID, session: SessionDep, principal: CallerDep
) -> DeliveryPublic:
    """Send a delivered or failed delivery again, with the same `webhook-id` (so the receiver
    can recognise a duplicate) and a fresh retry schedule."""
    return await service.replay(session, principal, subscription_id, delivery_id)


@router.post(
    "/v1/webhook-targets",
    status_code=status.HTTP_201_CREATED,
    response_model=TargetPublic,
    tags=["webhooks (operators)"],
    responses=problem_responses(401, 403, 422),
)
async def add_target(data: TargetCreate, session: SessionDep, _: Operator) -> TargetPublic:
    """Allow one tenant (an organisation's webhook subscriptions, or a partner's pull feed) to
    reach a private target on one port: a host name (`hooks.example.internal`,
    `*.example.internal`), an IP or a CIDR network. Cloud metadata addresses are allowed only
    when listed exactly. Adding an entry the tenant has already returns it."""
    target = await service.add_target(session, data)
    return TargetPublic.model_validate(target, from_attributes=True)


@router.get(
    "/v1/webhook-targets",
    response_model=Page[TargetPublic],
    tags=["webhooks (operators)"],
    responses=problem_responses(401, 403, 422),
)
async def list_targets(
    session: SessionDep,
    _: Operator,
    organization_id: Annotated[
        UUID | None, Query(examples=["3fa85f64-5717-4562-b3fc-2c963f66afa6"])
    ] = None,
    partner_code: Annotated[
        str | None, Query(pattern=EXCHANGE_CODE_PATTERN, examples=["tjipe"])
    ] = None,
    page_size: PageSize = 50,
    page_token: PageToken = "",
) -> Page[TargetPublic]:
    """The allow-list, newest first: every tenant's, or one organisation's or partner's."""
    tenant = (
        Tenant(organization_id, partner_code)
        if organization_id is not None or partner_code is not None
        else None
    )
    rows = await repository.list_targets(session, tenant, created_after(page_token), page_size + 1)
    targets, token = cut_page(rows, page_size, created_position)
    return Page(
        items=[TargetPublic.model_validate(t, from_attributes=True) for t in targets],
        next_page_token=token,
    )


@router.delete(
    "/v1/webhook-targets/{target_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["webhooks (operators)"],
    responses=problem_responses(401, 403, 404, 422),
)
async def delete_target(target_id: UUID, session: SessionDep, _: Operator) -> Response:
    """Remove an allow-list entry."""
    await service.delete_target(session, target_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
