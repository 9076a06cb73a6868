"""SQL of listings and their history."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Select, exists, or_, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.listing.assets.rules import ENDED_STATUSES
from services.listing.listings.rules import ACTIVE
from services.listing.models import Asset, Listing, ListingHistory, Organization
from shared.db import driver_connection


def _placeholders(start: int, count: int) -> str:
    return ", ".join(f"${i}" for i in range(start, start + count))


async def serialize_writers(session: AsyncSession, listing_id: UUID) -> None:
    """Queue behind other writers of this listing until the transaction ends. Call it before
    any write: a transaction takes its id at its first write and the change feed is ordered by
    transaction id, so a writer that wrote before waiting could list a later version before an
    earlier one. (An advisory lock takes no transaction id.)"""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"listing:{listing_id}"},
    )


def with_asset_and_seller() -> Select[Listing, Asset, Organization]:
    """Listings joined with their asset and their seller (every listing read needs the three)."""
    return (
        select(Listing, Asset, Organization)
        .join(Asset, col(Asset.id) == col(Listing.asset_id))
        .join(Organization, col(Organization.id) == col(Listing.seller_id))
    )


class ListingRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, listing_id: UUID, *, lock: bool = False) -> Listing | None:
        """With `lock`: the writers' queue first, then the row lock — always in this order, so
        two writers never wait on each other's lock (advisory locks are re-entrant)."""
        query = select(Listing).where(col(Listing.id) == listing_id)
        if lock:
            await serialize_writers(self.session, listing_id)
            query = query.with_for_update()
        return (await self.session.execute(query)).scalar_one_or_none()

    async def with_asset(self, listing_id: UUID) -> tuple[Listing, Asset, Organization] | None:
        row = (
            await self.session.execute(with_asset_and_seller().where(col(Listing.id) == listing_id))
        ).first()
        return (row[0], row[1], row[2]) if row else None

    async def other_active_exclusive(self, asset_id: UUID, listing_id: UUID) -> bool:
        query = select(
            exists().where(
                col(Listing.asset_id) == asset_id,
                col(Listing.id) != listing_id,
                col(Listing.transaction_type) == "exclusive_license",
                col(Listing.status).in_(ACTIVE),
            )
        )
        return bool(await self.session.scalar(query))

    async def page(
        self,
        *,
        seller_id: UUID | None,
        status: str | None,
        after: tuple[datetime, UUID] | None,
        limit: int,
    ) -> list[tuple[Listing, Asset, Organization]]:
        query = (
            with_asset_and_seller().order_by(col(Listing.created_at), col(Listing.id)).limit(limit)
        )
        if seller_id is not None:
            query = query.where(col(Listing.seller_id) == seller_id)
        if status is not None:
            query = query.where(col(Listing.status) == status)
        if after is not None:
            query = query.where(tuple_(col(Listing.created_at), col(Listing.id)) > after)
        return [(r[0], r[1], r[2]) for r in await self.session.execute(query)]

    async def history(
        self, listing_id: UUID, after_id: int | None, limit: int
    ) -> list[ListingHistory]:
        query = select(ListingHistory).where(col(ListingHistory.listing_id) == listing_id)
        if after_id is not None:
            query = query.where(col(ListingHistory.id) > after_id)
        rows = await self.session.execute(query.order_by(col(ListingHistory.id)).limit(limit))
        return list(rows.scalars())

    async def insert_created(
        self, listing: dict[str, Any], *, history: dict[str, Any], event: dict[str, Any]
    ) -> None:
        """A new listing, its history entry and its outbox event in one statement (one round
        trip; the foreign keys are checked at its end), straight to the driver in the session's
        transaction. `history` and `event` lack the listing's id (the event's `entity_id`)."""
        h = {**history, "changes": json.dumps(history["changes"])}
        e = {**event, "payload": json.dumps(event["payload"])}
        n, m = len(listing), len(h)
        sql = (
            f"WITH created AS (INSERT INTO listing.listings ({', '.join(listing)})"
            f" VALUES ({_placeholders(1, n)}) RETURNING id),"
            f" audited AS (INSERT INTO listing.listing_history (listing_id, {', '.join(h)})"
            f" SELECT id, {_placeholders(n + 1, m)} FROM created)"
            f" INSERT INTO listing.change_events (entity_id, {', '.join(e)})"
            f" SELECT id, {_placeholders(n + m + 1, len(e))} FROM created"
        )
        conn = await driver_connection(self.session)
        await conn.execute(sql, *listing.values(), *h.values(), *e.values())


# Statuses a listing can expire from.
LIVE = ("draft", "pending_review", "published", "under_negotiation")


async def lapsed_listing_ids(session: AsyncSession, today: date, limit: int) -> list[UUID]:
    """Live listings of rights that have ended (expired, or a legal status that ends them)."""
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
