"""The source: the listing service's offers and change feed (over HTTP), and waiting until the
feed shows every write that committed before a given moment."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

from services.matching.repair import repository
from services.matching.repair.context import Context
from services.matching.repair.reports import RepairError
from shared.contracts.events import ChangeFeedPage, FeedHead, OfferSnapshotPage
from shared.outbox import parse_cursor

FEED_PAGE = 1000
VISIBILITY_WAIT_SECONDS = 30.0


async def _get(ctx: Context, path: str, params: dict[str, Any]) -> bytes:
    response = await ctx.http.get(
        f"{ctx.settings.listing_url}{path}",
        params=params,
        headers={"Authorization": f"Bearer {ctx.settings.service_key.get_secret_value()}"},
        timeout=max(60.0, ctx.settings.upstream_timeout_seconds),
    )
    response.raise_for_status()
    return response.content


async def head(ctx: Context) -> FeedHead:
    return FeedHead.model_validate_json(await _get(ctx, "/v1/changes/head", {}))


async def offers(ctx: Context, page_size: int) -> AsyncIterator[OfferSnapshotPage]:
    token = ""
    while True:
        page = OfferSnapshotPage.model_validate_json(
            await _get(ctx, "/v1/offers", {"page_size": page_size, "page_token": token})
        )
        yield page
        if not page.next_page_token:
            return
        token = page.next_page_token


async def changes(ctx: Context, after: str, until: str) -> AsyncIterator[ChangeFeedPage]:
    """Feed pages after `after`, up to `until` (a head read before: a busy feed cannot keep
    us reading for ever) or the end."""
    cursor = after
    while parse_cursor(cursor) < parse_cursor(until):
        page = ChangeFeedPage.model_validate_json(
            await _get(ctx, "/v1/changes", {"after": cursor, "limit": FEED_PAGE})
        )
        if not page.events:
            return
        yield page
        cursor = page.next_cursor


async def pending(ctx: Context, after: str) -> dict[UUID, int]:
    """Listings with events after `after`: the first such version of each."""
    until = await head(ctx)
    first: dict[UUID, int] = {}
    async for page in changes(ctx, after, until.cursor):
        for event in page.events:
            if event.entity == "listing":
                seen = first.get(event.entity_id)
                first[event.entity_id] = event.version if seen is None else min(seen, event.version)
    return first


async def horizon(ctx: Context) -> str:
    """Every transaction that committed before now has an id below this."""
    async with ctx.sessionmaker() as session:
        return await repository.snapshot_horizon(session)


async def wait_visible(ctx: Context, horizon: str) -> None:
    """Until every transaction below `horizon` has ended: the feed (which hands out only
    events older than every running transaction) then shows everything they wrote."""
    deadline = time.monotonic() + VISIBILITY_WAIT_SECONDS
    while True:
        async with ctx.sessionmaker() as session:
            if await repository.transactions_ended(session, horizon):
                return
        if time.monotonic() > deadline:
            raise RepairError(
                "a write transaction has been open for over "
                f"{VISIBILITY_WAIT_SECONDS:.0f}s and holds the change feed back; retry later"
            )
        await asyncio.sleep(0.05)
