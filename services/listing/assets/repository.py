"""SQL of assets."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.listing.models import Asset
from shared.db import driver_connection

JSONB_COLUMNS = frozenset({"classifications", "holders", "encumbrances"})
SELECT_BY_IDENTITY = "SELECT * FROM listing.assets WHERE kind = $1 AND identifier = $2"


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

    async def insert_or_get_values(self, values: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """`insert_or_get` for an asset's column values (all of them, `id` included), straight
        to the driver: on the create path SQLAlchemy's statement building cost more than the
        insert. The row is the values inserted, or the stored row of the same right."""
        conn = await driver_connection(self.session)
        columns = list(values)
        inserted = await conn.fetchval(
            f"INSERT INTO listing.assets ({', '.join(columns)})"
            f" VALUES ({', '.join(f'${i}' for i in range(1, len(columns) + 1))})"
            " ON CONFLICT DO NOTHING RETURNING id",
            *(json.dumps(values[c]) if c in JSONB_COLUMNS else values[c] for c in columns),
        )
        if inserted is not None:
            return values, True
        existing = await conn.fetchrow(SELECT_BY_IDENTITY, values["kind"], values["identifier"])
        assert existing is not None  # the conflicting row is committed: ON CONFLICT waited
        return dict(existing), False
