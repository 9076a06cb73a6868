"""Listings whose right has ended leave the market.

Safe with several replicas: each listing is expired in its own short transaction that locks its
row; a listing another replica expired first is skipped (the transition is refused).
"""

from __future__ import annotations

import contextlib
import logging
from datetime import date

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.listing.dependencies import today_in_china
from services.listing.listings import repository
from services.listing.listings import service as listings
from shared.auth import Principal
from shared.errors import Conflict
from shared.settings import Settings
from shared.workers import Worker

logger = logging.getLogger("ipx.listing.expiry")
SYSTEM = Principal(roles=frozenset({"service"}))


async def expire_lapsed(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    today: date,
    catalogue_url: str,
    batch: int = 500,
) -> int:
    """Expire every live listing of a right that has ended; returns how many."""
    expired = 0
    while True:
        async with sessionmaker() as session:
            ids = await repository.lapsed_listing_ids(session, today, batch)
        if not ids:
            return expired
        for listing_id in ids:
            async with sessionmaker() as session, session.begin():
                ctx = listings.Context(
                    session=session,
                    principal=SYSTEM,
                    organization=None,
                    today=today,
                    catalogue_url=catalogue_url,
                )
                with contextlib.suppress(Conflict):
                    await listings.transition(
                        ctx, listing_id, "expire", on_behalf=True, reason="the right has ended"
                    )
                    expired += 1
        if len(ids) < batch:
            return expired


def expiry_workers(app: FastAPI) -> list[Worker]:
    """Every IPX_EXPIRY_INTERVAL_SECONDS, the listings of rights that have ended expire."""
    settings: Settings = app.state.settings

    async def step() -> int:
        count = await expire_lapsed(
            app.state.sessionmaker, today=today_in_china(), catalogue_url=settings.gateway_url
        )
        if count:
            logger.info("expired %d listings whose right has ended", count)
        return 0  # the next round after the interval

    return [Worker("listing-expiry", step, interval=settings.expiry_interval_seconds)]
