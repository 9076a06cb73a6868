"""SQL of partner offers: exchanges by code, offers by (exchange, external id), an asset's offers.

Inserts race to the unique constraints (`organizations.code`, `listings (exchange,
external_id)`) with ON CONFLICT DO NOTHING; the loser then reads (and locks) the winner's row.
The upsert's writes (`OfferWriter`) go straight to the driver, in the session's transaction.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.listing.listings.repository import with_asset_and_seller
from services.listing.models import Asset, Listing, Organization
from shared.db import driver_connection


class OfferRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def exchange(self, code: str) -> Organization | None:
        query = select(Organization).where(col(Organization.code) == code)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def insert_exchange(self, organization: Organization) -> Organization:
        """The exchange's organisation: this one, or the one a concurrent call inserted."""
        assert organization.code is not None
        await self.session.execute(
            insert(Organization)
            .values(**organization.model_dump())
            .on_conflict_do_nothing(index_elements=[col(Organization.code)])
        )
        found = await self.exchange(organization.code)
        assert found is not None
        return found

    async def snapshot_page(
        self, after: UUID | None, limit: int
    ) -> list[tuple[Listing, Asset, Organization]]:
        """Every listing, any status, in id order (the offer snapshot for index rebuilds)."""
        query = with_asset_and_seller().order_by(col(Listing.id)).limit(limit)
        if after is not None:
            query = query.where(col(Listing.id) > after)
        return [(r[0], r[1], r[2]) for r in await self.session.execute(query)]

    async def of_asset(
        self,
        asset_id: UUID,
        statuses: Collection[str],
        *,
        after: tuple[datetime, UUID] | None,
        limit: int,
    ) -> list[tuple[Listing, Asset, Organization]]:
        query = (
            with_asset_and_seller()
            .where(col(Listing.asset_id) == asset_id, col(Listing.status).in_(statuses))
            .order_by(col(Listing.created_at), col(Listing.id))
            .limit(limit)
        )
        if after is not None:
            query = query.where(tuple_(col(Listing.created_at), col(Listing.id)) > after)
        return [(r[0], r[1], r[2]) for r in await self.session.execute(query)]


# The offer and its asset in one read: asset columns are prefixed `asset__`.
_ASSET_COLUMNS = tuple(Asset.__table__.columns.keys())  # type: ignore[attr-defined]
OFFER_WITH_ASSET = (
    "SELECT l.*, "
    + ", ".join(f"a.{c} AS asset__{c}" for c in _ASSET_COLUMNS)
    + " FROM listing.listings AS l JOIN listing.assets AS a ON a.id = l.asset_id"
    " WHERE l.exchange = $1 AND l.external_id = $2 FOR UPDATE OF l"
)
# The writers' queue first (LEFT JOIN: the lock is taken whether or not the exchange exists),
# the exchange's organisation with it: it needs no fresher snapshot than the lock's.
LOCK_AND_EXCHANGE = (
    "SELECT o.* FROM (SELECT pg_advisory_xact_lock(hashtextextended($1, 0))) AS q"
    " LEFT JOIN listing.organizations AS o ON o.code = $2"
)


def _placeholders(start: int, count: int) -> str:
    return ", ".join(f"${i}" for i in range(start, start + count))


class OfferWriter:
    """The upsert's statements straight to the driver, in the session's transaction (the
    partner intake sends every push here: SQLAlchemy's statement building and the ORM cost more
    than the statements, and each extra round trip as much as a statement)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock_and_exchange(self, exchange: str, listing_id: str) -> dict[str, Any] | None:
        """Queue behind other writers of this offer until the transaction ends (an advisory lock
        takes no transaction id, unlike a row lock on a row that may not exist yet), and the
        exchange's organisation's row, or None when the code is new."""
        conn = await driver_connection(self.session)
        row = await conn.fetchrow(LOCK_AND_EXCHANGE, f"offer:{exchange}:{listing_id}", exchange)
        assert row is not None  # the lock's row is always there
        return dict(row) if row["id"] is not None else None

    async def offer(
        self, exchange: str, listing_id: str
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The stored offer (row-locked) and its asset, as column values. Read after the lock:
        a statement sees what committed before it began."""
        conn = await driver_connection(self.session)
        row = await conn.fetchrow(OFFER_WITH_ASSET, exchange, listing_id)
        if row is None:
            return None
        values = dict(row)
        asset = {c: values.pop(f"asset__{c}") for c in _ASSET_COLUMNS}
        return values, asset

    async def flag_asset(self, asset_id: UUID, now: datetime) -> None:
        conn = await driver_connection(self.session)
        await conn.execute(
            "UPDATE listing.assets SET needs_review = true, updated_at = $2 WHERE id = $1",
            asset_id,
            now,
        )

    async def insert(
        self, listing: dict[str, Any], *, history: dict[str, Any], event: dict[str, Any]
    ) -> bool:
        """A new offer, its history entry and its event in one statement; False (nothing
        written) when the offer exists already. `history` and `event` lack the listing's id."""
        h, e = _json_columns(history, event)
        n, m = len(listing), len(h)
        sql = (
            f"WITH created AS (INSERT INTO listing.listings ({', '.join(listing)})"
            f" VALUES ({_placeholders(1, n)})"
            " ON CONFLICT (exchange, external_id) DO NOTHING RETURNING id),"
            f" audited AS (INSERT INTO listing.listing_history (listing_id, {', '.join(h)})"
            f" SELECT id, {_placeholders(n + 1, m)} FROM created)"
            f" INSERT INTO listing.change_events (entity_id, {', '.join(e)})"
            f" SELECT id, {_placeholders(n + m + 1, len(e))} FROM created RETURNING seq"
        )
        conn = await driver_connection(self.session)
        seq = await conn.fetchval(sql, *listing.values(), *h.values(), *e.values())
        return seq is not None

    async def update(
        self,
        listing_id: UUID,
        changed: dict[str, Any],
        *,
        history: dict[str, Any],
        event: dict[str, Any],
    ) -> None:
        """The offer's changed columns, its history entry and its event in one statement."""
        h, e = _json_columns(history, event)
        n, m = len(changed), len(h)
        assignments = ", ".join(f"{c} = ${i}" for i, c in enumerate(changed, start=2))
        sql = (
            f"WITH updated AS (UPDATE listing.listings SET {assignments} WHERE id = $1),"
            f" audited AS (INSERT INTO listing.listing_history (listing_id, {', '.join(h)})"
            f" VALUES ($1, {_placeholders(n + 2, m)}))"
            f" INSERT INTO listing.change_events (entity_id, {', '.join(e)})"
            f" VALUES ($1, {_placeholders(n + m + 2, len(e))})"
        )
        conn = await driver_connection(self.session)
        await conn.execute(sql, listing_id, *changed.values(), *h.values(), *e.values())


def _json_columns(
    history: dict[str, Any], event: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The JSONB columns as the driver's codec takes them (JSON text)."""
    return (
        {**history, "changes": json.dumps(history["changes"])},
        {**event, "payload": json.dumps(event["payload"])},
    )
