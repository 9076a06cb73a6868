"""SQL of assets."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from sqlalchemy import exists, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.listing.models import Asset, Listing, Organization
from shared.contracts.catalogue import OUR_EXCHANGE
from shared.db import driver_connection

JSONB_COLUMNS = frozenset({"classifications", "holders", "encumbrances"})
SELECT_BY_IDENTITY = "SELECT * FROM listing.assets WHERE kind = $1 AND identifier = $2"


class AssetRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, asset_id: UUID) -> Asset | None:
        return await self.session.get(Asset, asset_id)

    async def locked(self, asset_id: UUID) -> Asset | None:
        """The asset row-locked (FOR UPDATE) and read again, whatever the session holds."""
        query = (
            select(Asset)
            .where(col(Asset.id) == asset_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def listing_ids(self, asset_id: UUID) -> list[UUID]:
        """Every listing on the asset (any exchange, any status), by id."""
        rows = await self.session.execute(
            select(col(Listing.id))
            .where(col(Listing.asset_id) == asset_id)
            .order_by(col(Listing.id))
        )
        return list(rows.scalars())

    async def sells(self, asset_id: UUID, organization_id: UUID) -> bool:
        """The organisation offers the asset in a listing of this exchange (any status)."""
        query = select(
            exists().where(
                col(Listing.asset_id) == asset_id,
                col(Listing.seller_id) == organization_id,
                col(Listing.exchange) == OUR_EXCHANGE,
            )
        )
        return bool(await self.session.scalar(query))

    async def lock_listings(self, listing_ids: list[UUID]) -> list[tuple[Listing, Organization]]:
        """Those listings, row-locked in id order, each with its seller."""
        if not listing_ids:
            return []
        query = (
            select(Listing, Organization)
            .join(Organization, col(Organization.id) == col(Listing.seller_id))
            .where(col(Listing.id).in_(listing_ids))
            .order_by(col(Listing.id))
            .with_for_update(of=Listing)
            .execution_options(populate_existing=True)
        )
        return [(row[0], row[1]) for row in await self.session.execute(query)]

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
