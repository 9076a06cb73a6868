"""Thin endpoints of the partner registry and the signed inbound webhook intake."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, status
from fastapi.responses import JSONResponse

from services.gateway.partners import service
from services.gateway.partners.schemas import (
    InboundAccepted,
    PartnerCreate,
    PartnerCreated,
    PartnerPublic,
    PartnerUpdate,
    PartnerUpdated,
    RejectedEventPublic,
    inbound_openapi,
)
from shared.auth import CallerDep, Principal, require_roles
from shared.db import SessionDep
from shared.encryption import SecretBox, secret_box
from shared.errors import Forbidden, ProblemResponse, problem_responses
from shared.schemas import (
    Page,
    PageSize,
    PageToken,
    encode_page_token,
    page_position,
    token_int,
    token_str,
)

__all__ = ["router"]

router = APIRouter(prefix="/v1")
Operator = Annotated[Principal, Depends(require_roles("operator"))]


def _box(request: Request) -> SecretBox:
    return secret_box(request.app.state.settings.secret_keys)


def _gateway_url(request: Request) -> str:
    return str(request.app.state.settings.gateway_url)


@router.post(
    "/partners",
    status_code=status.HTTP_201_CREATED,
    response_model=PartnerCreated,
    tags=["partners"],
    responses=problem_responses(401, 403, 409, 422),
)
async def register_partner(
    data: PartnerCreate, request: Request, session: SessionDep, _: Operator
) -> PartnerCreated:
    """Register a partner exchange (operators). The answer carries its inbound signing secret,
    shown this once: give it to the partner, who signs its pushes with it."""
    partner, secret = await service.register_partner(session, data, _box(request))
    return PartnerCreated(
        **service.to_public(partner, _gateway_url(request)), inbound_secret=secret
    )


@router.get(
    "/partners",
    response_model=Page[PartnerPublic],
    tags=["partners"],
    responses=problem_responses(401, 403, 422),
)
async def list_partners(
    request: Request,
    session: SessionDep,
    _: Operator,
    page_size: PageSize = 50,
    page_token: PageToken = "",
) -> Page[PartnerPublic]:
    """Every partner exchange, by code, with its pull state (operators)."""
    position = page_position(page_token, code=token_str)
    partners = await service.list_partners(
        session, position["code"] if position else None, page_size + 1
    )
    more = len(partners) > page_size
    partners = partners[:page_size]
    url = _gateway_url(request)
    return Page[PartnerPublic](
        items=[PartnerPublic(**service.to_public(p, url)) for p in partners],
        next_page_token=encode_page_token({"code": partners[-1].code}) if more else "",
    )


@router.get(
    "/partners/{code}",
    response_model=PartnerPublic,
    tags=["partners"],
    responses=problem_responses(401, 403, 404),
)
async def read_partner(
    code: str, request: Request, session: SessionDep, _: Operator
) -> PartnerPublic:
    partner = await service.get_partner(session, code)
    return PartnerPublic(**service.to_public(partner, _gateway_url(request)))


@router.patch(
    "/partners/{code}",
    response_model=PartnerUpdated,
    tags=["partners"],
    responses=problem_responses(401, 403, 404, 422),
)
async def update_partner(
    code: str, data: PartnerUpdate, request: Request, session: SessionDep, _: Operator
) -> PartnerUpdated:
    """Suspend or reactivate a partner, change its name, adapter or feed, reset its pull
    cursor, or rotate its signing secret (`{"rotate_secret": true}`: the new one is in the
    answer, shown this once)."""
    partner, secret = await service.update_partner(session, code, data, _box(request))
    return PartnerUpdated(
        **service.to_public(partner, _gateway_url(request)), inbound_secret=secret
    )


@router.get(
    "/partners/{code}/rejected",
    response_model=Page[RejectedEventPublic],
    tags=["partners"],
    responses=problem_responses(401, 403, 404, 422),
)
async def list_rejected(
    code: str,
    session: SessionDep,
    principal: CallerDep,
    page_size: PageSize = 50,
    page_token: PageToken = "",
) -> Page[RejectedEventPublic]:
    """The partner's events that were refused (at intake, or by listing), newest first, each
    with every reason. For the partner exchange's own keys (its organisation) and operators."""
    if not principal.is_operator and principal.organization_id is None:
        raise Forbidden("only the partner exchange itself and operators see its rejected events")
    partner = await service.get_partner(session, code)
    service.ensure_can_read_rejected(principal, partner)
    position = page_position(page_token, id=token_int)
    before = position["id"] if position else None
    items = await service.list_rejected(session, partner, before, page_size + 1)
    more = len(items) > page_size
    items = items[:page_size]
    return Page[RejectedEventPublic](
        items=items,
        next_page_token=encode_page_token({"id": items[-1].id}) if more else "",
    )


@router.post(
    "/inbound/{partner}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=InboundAccepted,
    tags=["partners"],
    responses=problem_responses(401, 403, 404, 413, 422),
    openapi_extra=inbound_openapi(),
)
async def receive_partner_push(partner: str, request: Request, session: SessionDep) -> Any:
    """A partner's push, signed per Standard Webhooks (no API key: the signature
    authenticates). A catalogue document in the partner's format, bare or in an event
    envelope. 202 once it is in the inbox (again 202, and nothing new, for a webhook-id seen
    before); it reaches the catalogue shortly after. 401 for a missing or bad signature or a
    timestamp more than five minutes off, 403 for a suspended partner, 404 for an unknown one,
    422 with every error for a payload that does not validate (the partner sees it in
    GET /v1/partners/{code}/rejected)."""
    body = await request.body()
    found = await service.get_partner(session, partner)
    event_id = service.verify_push(found, body, request.headers, _box(request))
    if found.status != "active":
        raise Forbidden(f"the partner {found.code!r} is suspended: its events are refused")
    try:
        accepted = await service.accept_push(session, found, event_id, body)
    except service.EventRejected as exc:
        # Rendered here, not raised: the rejection just recorded must commit.
        return ProblemResponse(
            exc.to_problem(instance=request.url.path), status_code=exc.status_code
        )
    return JSONResponse(accepted.model_dump(mode="json"), status_code=status.HTTP_202_ACCEPTED)
