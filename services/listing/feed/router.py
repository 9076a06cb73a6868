"""GET /v1/changes: the change feed, cursor-paginated, with long-polling."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from services.listing.feed.notifier import FeedNotifier
from services.listing.feed.repository import START, head, parse_cursor, read_page
from shared.auth import Principal, require_roles
from shared.contracts.events import ChangeFeedPage
from shared.errors import problem_responses

router = APIRouter(prefix="/v1/changes", tags=["change feed"])
FeedReader = Annotated[Principal, Depends(require_roles("service", "operator"))]


class FeedHead(BaseModel):
    cursor: str
    occurred_at: datetime | None


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
    notifier: FeedNotifier = request.app.state.feed_notifier
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        # A pooled connection only for the query, never across the wait.
        async with request.app.state.engine.connect() as conn:
            events = await read_page(conn, after, limit)
        remaining = deadline - loop.time()
        if events or remaining <= 0:
            return ChangeFeedPage(events=events, next_cursor=events[-1].cursor if events else after)
        await notifier.wait(remaining)


@router.get("/head", response_model=FeedHead, responses=problem_responses(401, 403))
async def read_head(request: Request, _: FeedReader) -> FeedHead:
    """The newest event a reader can see now (for lag measurements)."""
    async with request.app.state.engine.connect() as conn:
        newest = await head(conn)
    return (
        FeedHead(cursor=newest[0], occurred_at=newest[1])
        if newest
        else FeedHead(cursor=START, occurred_at=None)
    )
