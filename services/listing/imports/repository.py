"""Set-based SQL of an import batch: one statement per step, whatever the batch size."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import insert, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.listing.listings.rules import ACTIVE
from services.listing.models import (
    Asset,
    ChangeEvent,
    ImportJob,
    ImportRejection,
    Listing,
    ListingHistory,
)

# A seller's listing that an import row updates instead of creating another.
OPEN = ("draft", *sorted(ACTIVE))


class ImportRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def assets_by_key(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Asset]:
        if not keys:
            return {}
        rows = await self.session.execute(
            select(Asset).where(tuple_(col(Asset.kind), col(Asset.identifier)).in_(list(keys)))
        )
        return {(a.kind, a.identifier): a for a in rows.scalars()}

    async def insert_assets(self, values: list[dict[str, Any]]) -> None:
        if values:
            await self.session.execute(pg_insert(Asset).on_conflict_do_nothing(), values)

    async def open_listings(
        self, seller_id: UUID, asset_ids: Sequence[UUID]
    ) -> dict[UUID, Listing]:
        """The seller's newest open listing on each asset (the one a re-import updates), locked
        for the batch's short transaction."""
        if not asset_ids:
            return {}
        rows = await self.session.execute(
            select(Listing)
            .where(
                col(Listing.seller_id) == seller_id,
                col(Listing.exchange) == "jjj",
                col(Listing.asset_id).in_(list(asset_ids)),
                col(Listing.status).in_(OPEN),
            )
            .order_by(col(Listing.created_at))
            .with_for_update()
        )
        return {listing.asset_id: listing for listing in rows.scalars()}  # newest wins

    async def assets_with_exclusive(self, asset_ids: Sequence[UUID], seller_id: UUID) -> set[UUID]:
        """Assets with an exclusive licence offered by another listing than the seller's own."""
        if not asset_ids:
            return set()
        rows = await self.session.execute(
            select(col(Listing.asset_id)).where(
                col(Listing.asset_id).in_(list(asset_ids)),
                col(Listing.transaction_type) == "exclusive_license",
                col(Listing.status).in_(ACTIVE),
                or_(col(Listing.seller_id) != seller_id, col(Listing.exchange) != "jjj"),
            )
        )
        return set(rows.scalars())

    async def insert_listings(self, values: list[dict[str, Any]]) -> None:
        if values:
            await self.session.execute(insert(Listing), values)

    async def update_listings(self, values: list[dict[str, Any]]) -> None:
        """Bulk update by primary key (each dict carries `id`); the rows are locked already."""
        if values:
            await self.session.execute(update(Listing), values)

    async def insert_history(self, values: list[dict[str, Any]]) -> None:
        if values:
            await self.session.execute(insert(ListingHistory), values)

    async def insert_events(self, values: list[dict[str, Any]]) -> None:
        if values:
            await self.session.execute(insert(ChangeEvent), values)

    async def insert_rejections(self, values: list[dict[str, Any]]) -> None:
        if values:
            await self.session.execute(insert(ImportRejection), values)

    async def job(self, job_id: UUID) -> ImportJob | None:
        return await self.session.get(ImportJob, job_id)

    async def rejections(self, job_id: UUID, after_id: int, limit: int) -> list[ImportRejection]:
        rows = await self.session.execute(
            select(ImportRejection)
            .where(col(ImportRejection.import_id) == job_id, col(ImportRejection.id) > after_id)
            .order_by(col(ImportRejection.id))
            .limit(limit)
        )
        return list(rows.scalars())
