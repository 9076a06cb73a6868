"""SQL of partner offers: exchanges by code, offers by (exchange, external id), an asset's offers.

Inserts race to the unique constraints (`organizations.code`, `listings (exchange,
external_id)`) with ON CONFLICT DO NOTHING; the loser then reads (and locks) the winner's row.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from uuid import UUID

from sqlalchemy import select, text, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.listing.listings.repository import with_asset_and_seller
from services.listing.models import Asset, Listing, Organization


class OfferRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def serialize(self, exchange: str, listing_id: str) -> None:
        """Queue behind other writers of this offer until the transaction ends (an advisory lock
        takes no transaction id, unlike a row lock on a row that may not exist yet)."""
        await self.session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": f"offer:{exchange}:{listing_id}"},
        )

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

    async def offer(self, exchange: str, external_id: str, *, lock: bool) -> Listing | None:
        query = (
            select(Listing)
            .where(col(Listing.exchange) == exchange, col(Listing.external_id) == external_id)
            .execution_options(populate_existing=True)
        )
        if lock:
            query = query.with_for_update()
        return (await self.session.execute(query)).scalar_one_or_none()

    async def insert_offer(self, listing: Listing) -> bool:
        """Insert unless the offer exists (or a concurrent call inserted it first); True when
        this call inserted it. Read it back with `offer(..., lock=True)` either way."""
        inserted = await self.session.execute(
            insert(Listing)
            .values(**listing.model_dump())
            .on_conflict_do_nothing(
                index_elements=[col(Listing.exchange), col(Listing.external_id)]
            )
            .returning(col(Listing.id))
        )
        return inserted.scalar_one_or_none() is not None

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
