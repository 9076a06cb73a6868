"""Thin endpoints of the listing service: parse, call the service, return."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response, status
from pydantic import AfterValidator

from services.listing.models import ApiKey
from services.listing.organizations import service
from services.listing.organizations.schemas import (
    ApiKeyCreate,
    ApiKeyIssued,
    ApiKeyPublic,
    OrganizationCreate,
    OrganizationKind,
    OrganizationPublic,
    OrganizationSignedUp,
    OrganizationUpdate,
)
from shared.auth import CallerDep, KeyMaterial, Principal, require_roles
from shared.contracts.auth import IntrospectionRequest, IntrospectionResponse
from shared.db import SessionDep
from shared.errors import problem_responses
from shared.schemas import Page, PageSize, PageToken, nul_free

router = APIRouter(prefix="/v1")
Operator = Annotated[Principal, Depends(require_roles("operator"))]


def _issued(key: ApiKey, material: KeyMaterial) -> ApiKeyIssued:
    return ApiKeyIssued(
        **ApiKeyPublic.model_validate(key, from_attributes=True).model_dump(),
        key=material.plaintext,
    )


@router.post(
    "/organizations",
    status_code=status.HTTP_201_CREATED,
    response_model=OrganizationSignedUp,
    tags=["organizations"],
    responses=problem_responses(409, 422),
)
async def sign_up(data: OrganizationCreate, session: SessionDep) -> OrganizationSignedUp:
    """Self sign-up: the organisation (unverified until an operator verifies it) and its first
    admin key, shown this once."""
    organization, key, material = await service.sign_up(session, data)
    return OrganizationSignedUp(
        organization=OrganizationPublic.model_validate(organization, from_attributes=True),
        api_key=_issued(key, material),
    )


@router.get(
    "/organizations",
    response_model=Page[OrganizationPublic],
    tags=["organizations"],
    responses=problem_responses(401, 403, 422),
)
async def list_organizations(
    session: SessionDep,
    _: Operator,
    verified: Annotated[
        bool | None,
        Query(
            description="true: verified organisations; false: those waiting for an operator's "
            "verification (the queue)",
            examples=[False],
        ),
    ] = None,
    kind: Annotated[OrganizationKind | None, Query(examples=["university"])] = None,
    region: Annotated[
        str | None,
        Query(
            pattern=r"^[0-9]{2,6}$",
            description="2 to 6 digits. A six-digit GB/T 2260 code covers what lies in it "
            "(110000: all of Beijing; 130600: all of Baoding; 110108: Haidian only); fewer "
            "digits are a prefix of the seat's code (13: all of Hebei)",
            examples=["110000"],
        ),
    ] = None,
    name: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=200,
            description="part of the name, any case",
            examples=["理工"],
        ),
        AfterValidator(nul_free),
    ] = None,
    page_size: PageSize = 50,
    page_token: PageToken = "",
) -> Page[OrganizationPublic]:
    """Organisations, oldest sign-up first (operators only). Filters combine with AND;
    `verified=false` is the verification queue."""
    filters = service.organization_filters(verified=verified, kind=kind, region=region, name=name)
    return await service.list_organizations(
        session, filters, page_size=page_size, page_token=page_token
    )


@router.get(
    "/organizations/{organization_id}",
    response_model=OrganizationPublic,
    tags=["organizations"],
    responses=problem_responses(401, 403, 404),
)
async def read_organization(
    organization_id: UUID, session: SessionDep, principal: CallerDep
) -> OrganizationPublic:
    service.ensure_member(principal, organization_id)
    organization = await service.get_organization(session, organization_id)
    return OrganizationPublic.model_validate(organization, from_attributes=True)


@router.patch(
    "/organizations/{organization_id}",
    response_model=OrganizationPublic,
    tags=["organizations"],
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def update_organization(
    organization_id: UUID, data: OrganizationUpdate, session: SessionDep, principal: CallerDep
) -> OrganizationPublic:
    """Admins edit their organisation; operators also verify it."""
    organization = await service.update_organization(session, principal, organization_id, data)
    return OrganizationPublic.model_validate(organization, from_attributes=True)


@router.post(
    "/organizations/{organization_id}/api-keys",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyIssued,
    tags=["api keys"],
    responses=problem_responses(401, 403, 404, 422),
)
async def issue_key(
    organization_id: UUID, data: ApiKeyCreate, session: SessionDep, principal: CallerDep
) -> ApiKeyIssued:
    """A new key for the organisation, shown this once (stored only as a hash)."""
    service.ensure_member(principal, organization_id, admin=True)
    key, material = await service.issue_key(session, principal, organization_id, data)
    return _issued(key, material)


@router.post(
    "/organizations/{organization_id}/api-keys/{key_id}/rotate",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyIssued,
    tags=["api keys"],
    responses=problem_responses(401, 403, 404),
)
async def rotate_key(
    organization_id: UUID, key_id: UUID, session: SessionDep, principal: CallerDep
) -> ApiKeyIssued:
    """Replace a key: the new one (shown once) has the same name and roles; the old one is
    revoked at once."""
    service.ensure_member(principal, organization_id, admin=True)
    key, material = await service.rotate_key(session, organization_id, key_id)
    return _issued(key, material)


@router.get(
    "/organizations/{organization_id}/api-keys",
    response_model=Page[ApiKeyPublic],
    tags=["api keys"],
    responses=problem_responses(401, 403, 404, 422),
)
async def list_keys(
    organization_id: UUID,
    session: SessionDep,
    principal: CallerDep,
    page_size: PageSize = 50,
    page_token: PageToken = "",
) -> Page[ApiKeyPublic]:
    """The organisation's keys, oldest first (revoked ones too, with `revoked_at`)."""
    service.ensure_member(principal, organization_id, admin=True)
    return await service.list_keys(
        session, organization_id, page_size=page_size, page_token=page_token
    )


@router.delete(
    "/organizations/{organization_id}/api-keys/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["api keys"],
    responses=problem_responses(401, 403, 404),
)
async def revoke_key(
    organization_id: UUID, key_id: UUID, session: SessionDep, principal: CallerDep
) -> Response:
    """Revoke a key: it stops working at once here, and within the cache time elsewhere."""
    service.ensure_member(principal, organization_id, admin=True)
    await service.revoke_key(session, organization_id, key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/auth/introspect",
    response_model=IntrospectionResponse,
    tags=["auth"],
    responses=problem_responses(401, 403, 422),
)
async def introspect(
    data: IntrospectionRequest,
    request: Request,
    session: SessionDep,
    _: Annotated[Principal, Depends(require_roles("service", "operator"))],
) -> IntrospectionResponse:
    """RFC 7662-style: which organisation and roles a key stands for (services only)."""
    principal = await service.authenticate(session, request.app.state.settings, data.token)
    if principal is None:
        return IntrospectionResponse(active=False)
    return IntrospectionResponse(
        active=True,
        key_id=principal.key_id,
        organization_id=principal.organization_id,
        roles=sorted(principal.roles),
    )
