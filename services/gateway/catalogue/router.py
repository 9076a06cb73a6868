"""The open catalogue API (no key): search (the catalogue index, directly), an asset with every
offer across exchanges, one listing, deal announcements, and the public change feed. Reads carry
strong ETags (If-None-Match gives 304) and Cache-Control; the paths are rate-limited per client."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal
from uuid import UUID

import httpx
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic_core import to_json

from services.gateway.catalogue.engine import CatalogueEngine
from services.gateway.catalogue.schemas import CatalogueAsset, CatalogueChangePage, DealStats
from shared.contracts.deals import DealPublic, DealQuery, deal_query
from shared.contracts.events import ChangeFeedPage
from shared.contracts.listings import ListingPublic
from shared.contracts.search import SearchResult
from shared.errors import NotFound, ProblemResponse, ServiceUnavailable, problem_responses
from shared.outbox import START, FeedAfter, FeedLimit, FeedWait, parse_cursor
from shared.schemas import Page, PageSize, PageToken
from shared.search import SearchParams, search_params
from shared.search import catalogue_search as search_index

router = APIRouter(prefix="/v1/catalogue", tags=["catalogue"])
# What the public may see of a listing's life (drafts and reviews stay private).
PUBLIC_STATUSES = {"published", "under_negotiation", "closed", "withdrawn", "expired"}
PUBLIC_EVENTS = {
    "listing.published": "listing.published",
    "listing.updated": "listing.updated",
    "listing.negotiation": "listing.updated",
    "listing.reopened": "listing.updated",
    "listing.withdrawn": "listing.withdrawn",
    "listing.closed": "listing.closed",
    "listing.expired": "listing.withdrawn",
    "deal.closed": "deal.closed",
}


async def _upstream(
    request: Request, url: str, params: Any = None, *, service: bool = False
) -> httpx.Response:
    settings = request.app.state.settings
    headers = (
        {"Authorization": f"Bearer {settings.service_key.get_secret_value()}"} if service else {}
    )
    try:
        response: httpx.Response = await request.app.state.http.get(
            url, params=params, headers=headers
        )
    except httpx.HTTPError as exc:
        raise ServiceUnavailable(
            "the catalogue is unavailable, retry shortly", headers={"Retry-After": "2"}
        ) from exc
    if response.status_code >= 500:
        raise ServiceUnavailable(
            "the catalogue is unavailable, retry shortly", headers={"Retry-After": "2"}
        )
    return response


def _cached(request: Request, content: bytes, max_age: int, status: int = 200) -> Response:
    """A JSON answer with a strong ETag; 304 when the client has it already."""
    tag = '"' + hashlib.sha256(content).hexdigest()[:32] + '"'
    headers = {"ETag": tag, "Cache-Control": f"public, max-age={max_age}"}
    if tag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    return Response(content, status_code=status, media_type="application/json", headers=headers)


def _relay_problem(response: httpx.Response) -> Response:
    """An upstream 4xx problem, passed on as it is (it names the parameter and the rule)."""
    return ProblemResponse(response.json(), status_code=response.status_code)


@router.get(
    "/search",
    response_model=SearchResult,
    responses=problem_responses(422, 429, 503),
)
async def catalogue_search(
    request: Request, params: Annotated[SearchParams, Depends(search_params)]
) -> Response:
    """Search the catalogue (published listings) in Chinese or English, or by patent number
    (matched exactly), with filters, facets, sorting and pages: the same parameters and answer
    as matching's GET /v1/search, queried from the catalogue index directly."""
    engine: CatalogueEngine = request.app.state.catalogue
    return _cached(request, await search_index(engine, params), max_age=10)


@router.get(
    "/assets/{asset_id}",
    response_model=CatalogueAsset,
    responses=problem_responses(404, 422, 429, 503),
)
async def catalogue_asset(
    asset_id: UUID,
    request: Request,
    include_closed: Annotated[
        bool, Query(description="closed and withdrawn offers too", examples=[False])
    ] = False,
) -> Response:
    """An asset with every offer on it across exchanges."""
    settings = request.app.state.settings
    found = await _upstream(request, f"{settings.listing_url}/v1/assets/{asset_id}")
    if found.status_code == 404:
        raise NotFound(f"no asset {asset_id}")
    if found.status_code != 200:
        return _relay_problem(found)
    offers = await _upstream(
        request,
        f"{settings.listing_url}/v1/assets/{asset_id}/offers",
        params={"include_closed": str(include_closed).lower()},
    )
    if offers.status_code != 200:
        return _relay_problem(offers)
    body = {"asset": found.json(), "offers": offers.json()["items"]}
    return _cached(request, json.dumps(body, ensure_ascii=False).encode(), max_age=30)


@router.get(
    "/listings/{listing_id}",
    response_model=ListingPublic,
    responses=problem_responses(404, 422, 429, 503),
)
async def catalogue_listing(listing_id: UUID, request: Request) -> Response:
    """One offer (published, under negotiation, or closed, withdrawn and expired ones by id)."""
    settings = request.app.state.settings
    found = await _upstream(request, f"{settings.listing_url}/v1/listings/{listing_id}")
    if found.status_code == 404:
        raise NotFound(f"no listing {listing_id}")
    if found.status_code != 200:
        return _relay_problem(found)
    return _cached(request, found.content, max_age=30)


@router.get("/deals", response_model=Page[DealPublic], responses=problem_responses(422, 429, 503))
async def catalogue_deals(
    request: Request,
    query: Annotated[DealQuery, Depends(deal_query)],
    page_size: PageSize = 50,
    page_token: PageToken = "",
) -> Response:
    """Public deal announcements, newest first (confidential amounts are null)."""
    settings = request.app.state.settings
    params = {**query.params(), "page_size": str(page_size)}
    if page_token:
        params["page_token"] = page_token
    found = await _upstream(request, f"{settings.listing_url}/v1/deals", params=params)
    if found.status_code != 200:
        return _relay_problem(found)
    return _cached(request, found.content, max_age=60)


@router.get("/deals/stats", response_model=DealStats, responses=problem_responses(422, 429, 503))
async def catalogue_deal_stats(
    request: Request,
    query: Annotated[DealQuery, Depends(deal_query)],
    group_by: Annotated[Literal["region", "kind", "month"], Query(examples=["month"])] = "region",
) -> Response:
    """Public deal statistics per province (`110000`), asset kind or month (`2026-11`): the
    number of deals, how many disclosed their amount, and the total and median of the disclosed
    amounts. Groups of fewer than three deals are left out."""
    settings = request.app.state.settings
    params = {**query.params(), "group_by": group_by}
    found = await _upstream(request, f"{settings.listing_url}/v1/deals/stats", params=params)
    if found.status_code != 200:
        return _relay_problem(found)
    return _cached(request, found.content, max_age=60)


@router.get(
    "/changes", response_model=CatalogueChangePage, responses=problem_responses(422, 429, 503)
)
async def catalogue_changes(
    request: Request,
    after: FeedAfter = START,
    limit: FeedLimit = 100,
    wait: FeedWait = 0,
) -> Response:
    """The open change feed of catalogue documents: listings that are or were public, with
    tombstones for withdrawn, closed and expired ones, and deal announcements."""
    parse_cursor(after)
    settings = request.app.state.settings
    found = await _upstream(
        request,
        f"{settings.listing_url}/v1/changes",
        params={"after": after, "limit": limit, "wait": wait},
        service=True,
    )
    if found.status_code != 200:
        return _relay_problem(found)
    page = ChangeFeedPage.model_validate_json(found.content)
    events = [
        {
            "cursor": e.cursor,
            "type": PUBLIC_EVENTS[e.type],
            "timestamp": e.occurred_at,
            "data": e.data,
        }
        for e in page.events
        if e.type in PUBLIC_EVENTS
        and (
            e.entity == "deal"
            or (e.data.get("status") in PUBLIC_STATUSES and e.data.get("published_at"))
        )
    ]
    # Documented by CatalogueChangePage; the documents are relayed as listing wrote them.
    content = to_json({"events": events, "next_cursor": page.next_cursor})
    return Response(content, media_type="application/json")
