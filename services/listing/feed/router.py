"""GET /v1/changes: the change feed, cursor-paginated, with long-polling."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from services.listing.feed.repository import events_json_after, head, held_back
from shared.auth import Principal, require_roles
from shared.contracts.events import ChangeFeedPage, FeedHead
from shared.errors import problem_responses
from shared.outbox import START, FeedAfter, FeedLimit, FeedWait, parse_cursor

router = APIRouter(prefix="/v1/changes", tags=["change feed"])
# Events committed but held back by an older transaction in flight become readable when that
# transaction ends, which sends no NOTIFY (it may write anything, anywhere): look again this soon
# rather than at the notifier's slow re-check, a partner push is waiting for them.
HELD_BACK_RECHECK_SECONDS = 0.05
FeedReader = Annotated[Principal, Depends(require_roles("service", "operator"))]


@router.get("", response_model=ChangeFeedPage, responses=problem_responses(401, 403, 422))
async def read_changes(
    request: Request,
    _: FeedReader,
    after: FeedAfter = START,
    limit: FeedLimit = 100,
    wait: FeedWait = 0,
) -> Response:
    """Events in commit-safe order after `after`. With `wait`, an empty answer is held until an
    event commits or the wait ends. Withdrawn and closed listings stay as tombstones."""
    parse_cursor(after)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    notifier = request.app.state.feed_notifier
    while True:
        mark = notifier.mark()
        # A pooled connection only while the queries run, never while waiting.
        async with request.app.state.engine.connect() as conn:
            events = await events_json_after(conn, after, limit)
            held = not events and wait > 0 and await held_back(conn, after)
        remaining = deadline - loop.time()
        if events or remaining <= 0:
            break
        pause = min(remaining, HELD_BACK_RECHECK_SECONDS) if held else remaining
        await notifier.wait(pause, since=mark)
    # The events are JSON already (made by PostgreSQL in the ChangeEvent shape); the cursor is
    # digits and a dot, nothing to escape.
    next_cursor = events[-1][0] if events else after
    body = '{"events":[' + ",".join(e for _, e in events) + f'],"next_cursor":"{next_cursor}"}}'
    return Response(body.encode(), media_type="application/json")


@router.get("/head", response_model=FeedHead, responses=problem_responses(401, 403, 422))
async def read_head(
    request: Request,
    _: FeedReader,
    after: Annotated[
        str | None, Query(max_length=48, description="count events after it", examples=["0.0"])
    ] = None,
) -> FeedHead:
    """The newest event a reader can see now, and how many follow `after` (for lag)."""
    if after is not None:
        parse_cursor(after)
    async with request.app.state.engine.connect() as conn:
        newest = await head(conn, after)
    if newest is None:
        return FeedHead(cursor=START, occurred_at=None)
    return FeedHead(cursor=newest[0], occurred_at=newest[1], pending=newest[2])
