"""SQL of assets."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.listing.models import Asset


class AssetRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, asset_id: UUID) -> Asset | None:
        return await self.session.get(Asset, asset_id)

    async def by_identity(self, kind: str, identifier: str, *, lock: bool = False) -> Asset | None:
        query = select(Asset).where(col(Asset.kind) == kind, col(Asset.identifier) == identifier)
        if lock:
            query = query.with_for_update()
        return (await self.session.execute(query)).scalar_one_or_none()

    async def insert_or_get(self, asset: Asset) -> tuple[Asset, bool]:
        """Insert unless (kind, identifier) exists; concurrent registrations of one right race
        to the unique index and the loser gets the winner's row."""
        values = asset.model_dump()
        inserted = await self.session.execute(
            insert(Asset).values(**values).on_conflict_do_nothing().returning(col(Asset.id))
        )
        new_id = inserted.scalar_one_or_none()
        existing = await self.by_identity(asset.kind, asset.identifier)
        assert existing is not None
        return existing, new_id is not None
