"""Background work of the listing service: listings whose right has expired leave the market.

Safe with several replicas: each listing is expired in its own short transaction that locks its
row; a listing another replica expired first is skipped (the transition is refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import date
from uuid import UUID

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from services.listing.assets.rules import ENDED_STATUSES
from services.listing.listings import service as listings
from services.listing.models import Asset, Listing
from shared.auth import Principal
from shared.errors import Conflict

logger = logging.getLogger("ipx.listing.expiry")
SYSTEM = Principal(roles=frozenset({"service"}))
LIVE = ("draft", "pending_review", "published", "under_negotiation")


async def lapsed_listing_ids(session: AsyncSession, today: date, limit: int) -> list[UUID]:
    rows = await session.execute(
        select(col(Listing.id))
        .join(Asset, col(Asset.id) == col(Listing.asset_id))
        .where(
            col(Listing.status).in_(LIVE),
            or_(col(Asset.expires_on) < today, col(Asset.legal_status).in_(ENDED_STATUSES)),
        )
        .limit(limit)
    )
    return list(rows.scalars())


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
            ids = await lapsed_listing_ids(session, today, batch)
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


async def run_expiry(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    catalogue_url: str,
    today: Callable[[], date],
    interval_seconds: float,
) -> None:
    while True:
        try:
            count = await expire_lapsed(sessionmaker, today=today(), catalogue_url=catalogue_url)
            if count:
                logger.info("expired %d listings whose right has ended", count)
        except Exception:  # PostgreSQL down: try again next round
            logger.warning("expiry round failed", exc_info=True)
        await asyncio.sleep(interval_seconds)
