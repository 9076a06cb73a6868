"""Asset endpoints."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response, status

from services.listing.assets import service
from services.listing.assets.schemas import AssetCreate, AssetPublic
from services.listing.dependencies import CallerOrganizationDep, MemberDep, TodayDep
from shared.contracts.catalogue import AssetKind
from shared.db import SessionDep
from shared.errors import problem_responses
from shared.schemas import Page

router = APIRouter(prefix="/v1/assets", tags=["assets"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=AssetPublic,
    responses={
        200: {"model": AssetPublic, "description": "the right was registered already"},
        **problem_responses(401, 403, 409, 422),
    },
)
async def register_asset(
    data: AssetCreate,
    response: Response,
    session: SessionDep,
    principal: MemberDep,
    organization: CallerOrganizationDep,
    today: TodayDep,
) -> AssetPublic:
    """Register a right. The same right again (any typed form of its identifier) returns the
    existing asset with 200; a right registered to another holder is a 409."""
    registered = await service.register(session, principal, organization, data, today=today)
    if not registered.created:
        response.status_code = status.HTTP_200_OK
    return registered.public


@router.get("/{asset_id}", response_model=AssetPublic, responses=problem_responses(404, 422))
async def read_asset(asset_id: UUID, session: SessionDep) -> AssetPublic:
    return service.to_public(await service.get(session, asset_id))


@router.get("", response_model=Page[AssetPublic], responses=problem_responses(422))
async def find_asset(
    session: SessionDep,
    kind: Annotated[AssetKind, Query()],
    identifier: Annotated[str, Query(min_length=1, max_length=200)],
) -> Page[AssetPublic]:
    """Look a right up by any typed form of its identifier (`ZL 2017 1 0601862.3`, ...)."""
    asset = await service.lookup(session, kind, identifier)
    return Page(items=[service.to_public(asset)] if asset else [])
