"""GET /v1/changes: the change feed, cursor-paginated, with long-polling."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from services.listing.feed.repository import events_after, head
from shared.auth import Principal, require_roles
from shared.contracts.events import ChangeEvent, ChangeFeedPage, FeedHead
from shared.errors import problem_responses
from shared.notifier import long_poll
from shared.outbox import START, parse_cursor

router = APIRouter(prefix="/v1/changes", tags=["change feed"])
FeedReader = Annotated[Principal, Depends(require_roles("service", "operator"))]


@router.get("", response_model=ChangeFeedPage, responses=problem_responses(401, 403, 422))
async def read_changes(
    request: Request,
    _: FeedReader,
    after: Annotated[str, Query(max_length=48, description="cursor; '0.0' from the start")] = START,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    wait: Annotated[float, Query(ge=0, le=30, description="long-poll up to this many seconds")] = 0,
) -> ChangeFeedPage:
    """Events in commit-safe order after `after`. With `wait`, an empty answer is held until an
    event commits or the wait ends. Withdrawn and closed listings stay as tombstones."""
    parse_cursor(after)

    async def read() -> list[ChangeEvent]:
        async with request.app.state.engine.connect() as conn:
            return await events_after(conn, after, limit)

    events = await long_poll(read, request.app.state.feed_notifier, wait)
    return ChangeFeedPage(events=events, next_cursor=events[-1].cursor if events else after)


@router.get("/head", response_model=FeedHead, responses=problem_responses(401, 403, 422))
async def read_head(
    request: Request,
    _: FeedReader,
    after: Annotated[str | None, Query(max_length=48, description="count events after it")] = None,
) -> FeedHead:
    """The newest event a reader can see now, and how many follow `after` (for lag)."""
    if after is not None:
        parse_cursor(after)
    async with request.app.state.engine.connect() as conn:
        newest = await head(conn, after)
    if newest is None:
        return FeedHead(cursor=START, occurred_at=None)
    return FeedHead(cursor=newest[0], occurred_at=newest[1], pending=newest[2])
