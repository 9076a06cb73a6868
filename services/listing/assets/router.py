"""Asset endpoints."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request, Response, status

from services.listing.assets import corrections, service
from services.listing.assets.schemas import AssetCreate, AssetUpdate
from services.listing.dependencies import CallerOrganizationDep, MemberDep, TodayDep
from services.listing.listings.service import Context
from shared.contracts.catalogue import AssetKind
from shared.contracts.listings import AssetPublic
from shared.db import SessionDep
from shared.errors import problem_responses
from shared.etags import etag, parse_if_match
from shared.reads import CatalogueSessionDep
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
async def read_asset(
    asset_id: UUID, session: CatalogueSessionDep, response: Response
) -> AssetPublic:
    """A registered right; its `ETag` is what a correction sends as `If-Match` (read it with
    your key: an anonymous read may come from a replica a moment behind)."""
    asset = await service.get(session, asset_id)
    response.headers["ETag"] = etag(asset.version)
    return service.to_public(asset)


@router.patch(
    "/{asset_id}",
    response_model=AssetPublic,
    responses=problem_responses(401, 403, 404, 409, 422, 428),
)
async def correct_asset(
    asset_id: UUID,
    data: AssetUpdate,
    request: Request,
    response: Response,
    session: SessionDep,
    principal: MemberDep,
    organization: CallerOrganizationDep,
    today: TodayDep,
    if_match: Annotated[str | None, Header(alias="If-Match")] = None,
) -> AssetPublic:
    """Correct a registered right (its holders, and organisations offering it here; operators
    any). Needs the version it is based on (`If-Match` or `version`): a lost update is a 409
    naming the current version. Every listing on the asset gets a new version, a history entry
    (`asset_corrected`) and a `listing.updated` event, so the catalogue shows the correction.
    `kind` and `identifier` are not editable (422 `not_editable`)."""
    ctx = Context(
        session=session,
        principal=principal,
        organization=organization,
        today=today,
        catalogue_url=request.app.state.settings.gateway_url,
    )
    asset = await corrections.correct(ctx, asset_id, data, parse_if_match(if_match, "asset"))
    response.headers["ETag"] = etag(asset.version)
    return service.to_public(asset)


@router.get("", response_model=Page[AssetPublic], responses=problem_responses(422))
async def find_asset(
    session: CatalogueSessionDep,
    kind: Annotated[AssetKind, Query(examples=["invention_patent"])],
    identifier: Annotated[
        str, Query(min_length=1, max_length=200, examples=["ZL 2017 1 0601862.3"])
    ],
) -> Page[AssetPublic]:
    """Look a right up by any typed form of its identifier (`ZL 2017 1 0601862.3`, ...)."""
    asset = await service.lookup(session, kind, identifier)
    return Page(items=[service.to_public(asset)] if asset else [])
