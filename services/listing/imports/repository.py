"""Set-based SQL of an import batch: one statement per step, whatever the batch size."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import ARRAY, Uuid, any_, cast, or_, select, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel, col

from services.listing.listings.rules import ACTIVE
from services.listing.models import (
    SCHEMA,
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

    async def assets_by_key(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """Column values by (kind, identifier), as plain rows (ORM objects cost ~50 µs each).
        Joined against unnest(): a row-value IN list of a thousand pairs costs PostgreSQL
        ~150 ms of planning alone."""
        if not keys:
            return {}
        rows = await self.session.execute(
            text(
                "SELECT a.* FROM listing.assets a JOIN unnest(CAST(:kinds AS varchar[]), "
                "CAST(:identifiers AS varchar[])) AS k(kind, identifier) "
                "ON a.kind = k.kind AND a.identifier = k.identifier"
            ),
            {"kinds": [k for k, _ in keys], "identifiers": [i for _, i in keys]},
        )
        return {(r["kind"], r["identifier"]): dict(r) for r in rows.mappings()}

    async def insert_assets(self, values: list[dict[str, Any]]) -> set[UUID]:
        """COPY into a per-connection staging table, then one INSERT ... ON CONFLICT DO NOTHING
        (a right registered concurrently stays as it is). Returns the ids inserted."""
        if not values:
            return set()
        await self.session.execute(
            text(
                "CREATE TEMP TABLE IF NOT EXISTS import_assets "
                "(LIKE listing.assets INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
        )
        await self.copy(Asset, values, table_name="import_assets", schema=None)
        columns = ", ".join(f'"{name}"' for name in values[0])
        inserted = await self.session.execute(
            text(
                f"INSERT INTO listing.assets ({columns}) SELECT {columns} FROM import_assets "
                "ON CONFLICT DO NOTHING RETURNING id"
            )
        )
        return set(inserted.scalars())

    async def copy(
        self,
        model: type[SQLModel],
        rows: list[dict[str, Any]],
        *,
        table_name: str | None = None,
        schema: str | None = SCHEMA,
    ) -> None:
        """COPY rows into a model's table (or a staging table shaped like it) in the session's
        transaction: the fastest bulk path."""
        if not rows:
            return
        table = model.__table__  # type: ignore[attr-defined]
        columns = list(rows[0])
        jsonb = {c.name for c in table.columns if isinstance(c.type, JSONB)}
        records = [
            tuple(json.dumps(row[c], ensure_ascii=False) if c in jsonb else row[c] for c in columns)
            for row in rows
        ]
        connection = await self.session.connection()
        raw = await connection.get_raw_connection()
        await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
            table_name or table.name, records=records, columns=columns, schema_name=schema
        )

    async def open_listings(
        self, seller_id: UUID, asset_ids: Sequence[UUID], *, lock: bool = False
    ) -> dict[UUID, dict[str, Any]]:
        """The seller's newest open listing on each asset (the one a re-import updates), as
        plain rows. Unlocked: a re-import of unchanged rows writes nothing, not even row locks;
        the rows that will change are read again with `lock=True`."""
        if not asset_ids:
            return {}
        table = Listing.__table__  # type: ignore[attr-defined]
        query = (
            select(table)
            .where(
                table.c.seller_id == seller_id,
                table.c.exchange == "jjj",
                table.c.asset_id == any_(cast(list(asset_ids), ARRAY(Uuid()))),
                table.c.status.in_(OPEN),
            )
            .order_by(table.c.created_at)
        )
        rows = await self.session.execute(query.with_for_update() if lock else query)
        return {r["asset_id"]: dict(r) for r in rows.mappings()}  # newest wins

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
        await self.copy(Listing, values)

    async def update_listings(self, values: list[dict[str, Any]]) -> None:
        """Bulk update by primary key (each dict carries `id`); the rows are locked already."""
        if values:
            await self.session.execute(update(Listing), values)

    async def insert_history(self, values: list[dict[str, Any]]) -> None:
        await self.copy(ListingHistory, values)

    async def insert_events(self, values: list[dict[str, Any]]) -> None:
        await self.copy(ChangeEvent, values)

    async def insert_rejections(self, values: list[dict[str, Any]]) -> None:
        await self.copy(ImportRejection, values)

    async def record_progress(self, job_id: UUID, counts: Any) -> None:
        await self.session.execute(
            update(ImportJob)
            .where(col(ImportJob.id) == job_id)
            .values(
                total_rows=counts.total,
                created_count=counts.created,
                updated_count=counts.updated,
                unchanged_count=counts.unchanged,
                rejected_count=counts.rejected,
            )
        )

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
