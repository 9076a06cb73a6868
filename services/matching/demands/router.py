"""Demand endpoints, their matches, and the feed of new matches."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Request, Response, status

from services.matching.demands import repository, service
from services.matching.demands.matcher import Matcher, public_listing
from services.matching.demands.reading import stored_reading
from services.matching.demands.schemas import (
    ConstraintsRead,
    DemandCreate,
    DemandPublic,
    DemandReading,
    DemandUpdate,
    MatchEventData,
    MatchEventPublic,
    MatchFeedPage,
    MatchPublic,
    TermRead,
)
from services.matching.demands.scoring import term_weights
from services.matching.meili import MeiliUnavailable
from services.matching.models import Demand
from services.matching.vocabulary import Vocabulary
from shared.auth import CallerDep, Principal, require_roles
from shared.db import SessionDep
from shared.errors import ServiceUnavailable, problem_responses
from shared.etags import etag, parse_if_match
from shared.notifier import long_poll
from shared.outbox import START, FeedAfter, FeedLimit, FeedWait, cursor_of, parse_cursor
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

router = APIRouter(tags=["demands"])
Member = Annotated[Principal, Depends(require_roles("member", "admin"))]


def _matcher(request: Request) -> Matcher:
    matcher: Matcher = request.app.state.matcher
    return matcher


async def _vocabulary(request: Request) -> Vocabulary:
    """The catalogue's vocabulary the terms shown are weighed by."""
    try:
        return await _matcher(request).vocabulary.get()
    except MeiliUnavailable:
        return Vocabulary()  # weights as if every word were equally rare


def _public(demand: Demand, vocabulary: Vocabulary) -> DemandPublic:
    public = DemandPublic.model_validate(demand, from_attributes=True)
    reading = stored_reading(demand.title, demand.text, demand.reading)
    public.understood = DemandReading(
        terms=[
            TermRead(
                text=term.text,
                source=term.source,
                alternatives=list(term.alternatives),
                weight=round(weight, 3),
            )
            for term, weight in zip(reading.terms, term_weights(reading, vocabulary), strict=True)
        ],
        constraints=ConstraintsRead.model_validate(reading.to_json()["constraints"]),
    )
    return public


def _unavailable(exc: MeiliUnavailable) -> ServiceUnavailable:
    return ServiceUnavailable(
        "matching is unavailable, retry shortly", headers={"Retry-After": "2"}
    )


@router.post(
    "/v1/demands",
    status_code=status.HTTP_201_CREATED,
    response_model=DemandPublic,
    responses=problem_responses(401, 403, 422, 503),
)
async def create_demand(
    data: DemandCreate, request: Request, response: Response, session: SessionDep, principal: Member
) -> DemandPublic:
    """Post a need; matching listings are computed at once (GET .../matches), and new listings
    are matched as they are published."""
    try:
        demand, found = await service.create(session, _matcher(request), principal, data)
    except MeiliUnavailable as exc:
        raise _unavailable(exc) from exc
    response.headers["ETag"] = etag(demand.version)
    response.headers["X-Matches"] = str(found)
    return _public(demand, await _vocabulary(request))


@router.get(
    "/v1/demands", response_model=Page[DemandPublic], responses=problem_responses(401, 403, 422)
)
async def list_demands(
    request: Request,
    session: SessionDep,
    principal: Member,
    page_size: PageSize = 50,
    page_token: PageToken = "",
) -> Page[DemandPublic]:
    """The organisation's demands, newest first."""
    demands, token = cut_page(
        await service.list_mine(session, principal, created_after(page_token), page_size + 1),
        page_size,
        created_position,
    )
    vocabulary = await _vocabulary(request)
    return Page(items=[_public(d, vocabulary) for d in demands], next_page_token=token)


@router.get(
    "/v1/demands/{demand_id}",
    response_model=DemandPublic,
    responses=problem_responses(401, 404, 422),
)
async def read_demand(
    demand_id: UUID,
    request: Request,
    response: Response,
    session: SessionDep,
    principal: CallerDep,
) -> DemandPublic:
    demand = await service.get_owned(session, principal, demand_id)
    response.headers["ETag"] = etag(demand.version)
    return _public(demand, await _vocabulary(request))


@router.patch(
    "/v1/demands/{demand_id}",
    response_model=DemandPublic,
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
async def update_demand(
    demand_id: UUID,
    data: DemandUpdate,
    request: Request,
    response: Response,
    session: SessionDep,
    principal: Member,
    if_match: Annotated[str | None, Header(alias="If-Match")] = None,
) -> DemandPublic:
    expected = parse_if_match(if_match, "demand")
    try:
        demand = await service.update(
            session, _matcher(request), principal, demand_id, data, expected
        )
    except MeiliUnavailable as exc:
        raise _unavailable(exc) from exc
    response.headers["ETag"] = etag(demand.version)
    return _public(demand, await _vocabulary(request))


@router.delete(
    "/v1/demands/{demand_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404, 503),
)
async def close_demand(
    demand_id: UUID, request: Request, session: SessionDep, principal: CallerDep
) -> Response:
    """Close a demand: it stops matching; its matches stay readable."""
    try:
        await service.close(session, _matcher(request), principal, demand_id)
    except MeiliUnavailable as exc:
        raise _unavailable(exc) from exc
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/v1/demands/{demand_id}/matches",
    response_model=Page[MatchPublic],
    responses=problem_responses(401, 404, 422),
)
async def demand_matches(
    demand_id: UUID,
    request: Request,
    session: SessionDep,
    principal: CallerDep,
    page_size: PageSize = 20,
    page_token: PageToken = "",
) -> Page[MatchPublic]:
    """Ranked matches with the reasons each matched, and the listing as indexed now."""
    await service.get_owned(session, principal, demand_id)
    position = page_position(page_token, offset=token_int)
    offset = position["offset"] if position else 0
    rows, token = cut_page(
        await service.matches(session, demand_id, page_size + 1, offset),
        page_size,
        lambda _: {"offset": offset + page_size},
    )
    offers: dict[str, list[dict[str, Any]]] = {}
    if rows:
        try:
            offers = await _matcher(request).offers_of(
                list(dict.fromkeys(str(m.asset_id) for m in rows))
            )
        except MeiliUnavailable:
            offers = {}  # the matches themselves are in PostgreSQL: still answer
    items = []
    for m in rows:
        on_asset = offers.get(str(m.asset_id), [])
        shown = next((o for o in on_asset if o["listing_id"] == str(m.listing_id)), None)
        items.append(
            MatchPublic(
                demand_id=m.demand_id,
                asset_id=m.asset_id,
                listing_id=m.listing_id,
                score=m.score,
                reasons=m.reasons,
                listing_version=m.listing_version,
                created_at=m.created_at,
                updated_at=m.updated_at,
                listing=public_listing(shown or on_asset[0], on_asset) if on_asset else None,
            )
        )
    return Page(items=items, next_page_token=token)


@router.get(
    "/v1/matches/changes",
    response_model=MatchFeedPage,
    tags=["matches"],
    responses=problem_responses(401, 403, 422),
)
async def match_changes(
    request: Request,
    principal: Annotated[
        Principal, Depends(require_roles("member", "admin", "service", "operator"))
    ],
    after: FeedAfter = START,
    limit: FeedLimit = 100,
    wait: FeedWait = 0,
) -> MatchFeedPage:
    """New matches in commit-safe order. A buyer's key reads its organisation's matches only;
    the service (the gateway turns them into webhooks) and operators read every one."""
    parse_cursor(after)
    scope = None if principal.is_service or principal.is_operator else principal.organization_id

    async def read() -> list[Any]:
        async with request.app.state.engine.connect() as conn:
            return await repository.match_events_after(conn, after, limit, scope)

    rows = await long_poll(read, request.app.state.feed_notifier, wait)
    events = [
        MatchEventPublic(
            cursor=cursor_of(r),
            type=r.type,
            demand_id=r.demand_id,
            organization_id=r.organization_id,
            listing_id=r.listing_id,
            occurred_at=r.occurred_at,
            data=MatchEventData.model_validate(r.payload),
        )
        for r in rows
    ]
    return MatchFeedPage(events=events, next_cursor=events[-1].cursor if events else after)
