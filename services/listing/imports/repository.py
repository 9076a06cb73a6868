"""Set-based SQL of an import batch: one statement per step, whatever the batch size."""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any
from uuid import UUID

from asyncpg.exceptions import UniqueViolationError
from pydantic_core import to_json
from sqlalchemy import select, text, update
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
    ImportRowResult,
    Listing,
    ListingHistory,
    Organization,
)


def _encode(value: Any) -> str:
    """A JSONB cell as text for COPY, by pydantic-core's encoder: about twice as fast as the
    json module's on the events' catalogue documents (docs/DECISIONS.md, Listing, "Bulk
    import")."""
    return to_json(value).decode()


# _BY_EACH: the look-ups of a batch probe an index once per key, `unnest(keys), LATERAL
# (SELECT ... WHERE key = k.key OFFSET 0)` (OFFSET 0 keeps the planner from merging the
# subquery into a join). As a join or `= ANY(array)` the planner, with no statistics yet for
# the rows an import has just written, scanned the seller's listings (or all assets) for every
# batch (docs/DECISIONS.md, Listing, "Bulk import").
# A seller's listing that an import row updates instead of creating another.
OPEN = ("draft", *sorted(ACTIVE))


class ImportRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def limit_lock_waits(self, seconds: int) -> None:
        """For the rest of the transaction, a lock not granted within `seconds` fails the
        statement (LockNotAvailableError)."""
        await self.session.execute(text(f"SET LOCAL lock_timeout = '{int(seconds)}s'"))

    async def new_ids(self, count: int) -> list[UUID]:
        """`count` random UUIDs (v4) made by PostgreSQL and decoded by asyncpg, both in C: made
        in Python, the ids and their text forms cost several microseconds each, per row."""
        if not count:
            return []
        ids = await self.session.scalar(
            text("SELECT array_agg(gen_random_uuid()) FROM generate_series(1, :count)"),
            {"count": count},
        )
        return list(ids)

    async def assets_by_key(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """Column values by (kind, identifier), as plain rows, not ORM objects. One unique-index
        probe per key (see _BY_EACH): a row-value IN list or a join cost far more
        (docs/DECISIONS.md, Listing, "Bulk import")."""
        if not keys:
            return {}
        rows = await self.session.execute(
            text(
                "SELECT a.* FROM unnest(CAST(:kinds AS varchar[]), "
                "CAST(:identifiers AS varchar[])) AS k(kind, identifier), LATERAL "
                "(SELECT * FROM listing.assets WHERE kind = k.kind AND identifier = k.identifier "
                "OFFSET 0) AS a"
            ),
            {"kinds": [k for k, _ in keys], "identifiers": [i for _, i in keys]},
        )
        return {(r["kind"], r["identifier"]): dict(r) for r in rows.mappings()}

    async def insert_assets(self, values: list[dict[str, Any]]) -> set[UUID]:
        """The rights were looked up just before, so they are new: COPY straight into the table,
        in a savepoint. Should one have been registered meanwhile (unique violation), the rows go
        through a staging table and INSERT ... ON CONFLICT DO NOTHING instead, and that right
        stays as it is. Returns the ids inserted."""
        if not values:
            return set()
        try:
            async with self.session.begin_nested():
                await self.copy(Asset, values)
            return {row["id"] for row in values}
        except UniqueViolationError:
            pass
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
        # Per row: one C-level itemgetter, and the encoder only on the JSONB cells (a generator
        # over every cell cost more than the COPY itself).
        values = itemgetter(*columns)
        encoded = [i for i, c in enumerate(columns) if c in jsonb]
        records: list[tuple[Any, ...]] = []
        for row in rows:
            record = values(row) if len(columns) > 1 else (row[columns[0]],)
            if encoded:
                cells = list(record)
                for i in encoded:
                    cells[i] = _encode(cells[i])
                record = tuple(cells)
            records.append(record)
        connection = await self.session.connection()
        raw = await connection.get_raw_connection()
        await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
            table_name or table.name, records=records, columns=columns, schema_name=schema
        )

    async def open_listings(
        self, seller_id: UUID, asset_ids: Sequence[UUID]
    ) -> dict[UUID, dict[str, Any]]:
        """The seller's newest open listing on each asset (the one a re-import updates), as
        plain rows, unlocked: a re-import of unchanged rows writes nothing, not even row locks
        (the rows that will change are locked with lock_listings). One index probe per asset
        (see _BY_EACH)."""
        if not asset_ids:
            return {}
        table = Listing.__table__  # type: ignore[attr-defined]
        query = text(
            "SELECT l.* FROM unnest(CAST(:ids AS uuid[])) AS k(asset_id), LATERAL "
            "(SELECT * FROM listing.listings WHERE asset_id = k.asset_id OFFSET 0) AS l "
            "WHERE l.seller_id = :seller_id AND l.exchange = 'jjj' AND l.status = ANY(:open) "
            "ORDER BY l.created_at"
        ).columns(*table.columns)
        rows = await self.session.execute(
            query, {"ids": list(asset_ids), "seller_id": seller_id, "open": list(OPEN)}
        )
        return {r["asset_id"]: dict(r) for r in rows.mappings()}  # newest wins

    async def lock_listings(
        self, seller_id: UUID, listing_ids: Sequence[UUID]
    ) -> dict[UUID, dict[str, Any]]:
        """Those listings locked (FOR UPDATE) and read again, by asset, the ones still the
        seller's open listings. One primary-key probe per listing (see _BY_EACH)."""
        if not listing_ids:
            return {}
        table = Listing.__table__  # type: ignore[attr-defined]
        query = text(
            "SELECT l.* FROM unnest(CAST(:ids AS uuid[])) AS k(id), LATERAL "
            "(SELECT * FROM listing.listings WHERE id = k.id OFFSET 0 FOR UPDATE) AS l "
            "ORDER BY l.created_at"
        ).columns(*table.columns)
        rows = await self.session.execute(query, {"ids": list(listing_ids)})
        return {
            r["asset_id"]: dict(r)
            for r in rows.mappings()
            if r["seller_id"] == seller_id and r["exchange"] == "jjj" and r["status"] in OPEN
        }

    async def lock_assets(self, asset_ids: Sequence[UUID]) -> dict[UUID, dict[str, Any]]:
        """Those assets locked (FOR UPDATE, in id order) and read again, by id: the ones a
        batch corrects (few: a batch of unchanged rows locks none)."""
        if not asset_ids:
            return {}
        table = Asset.__table__  # type: ignore[attr-defined]
        query = text(
            "SELECT * FROM listing.assets WHERE id = ANY(CAST(:ids AS uuid[])) "
            "ORDER BY id FOR UPDATE"
        ).columns(*table.columns)
        rows = await self.session.execute(query, {"ids": sorted(asset_ids)})
        return {r["id"]: dict(r) for r in rows.mappings()}

    async def lock_other_listings(
        self, asset_ids: Sequence[UUID], excluded: Sequence[UUID]
    ) -> list[dict[str, Any]]:
        """Every listing on those assets but the `excluded` ones (any seller, exchange and
        status), locked in id order, each with its seller's name as `seller_org_name`."""
        if not asset_ids:
            return []
        table = Listing.__table__  # type: ignore[attr-defined]
        seller = Organization.__table__.c.name.label("seller_org_name")  # type: ignore[attr-defined]
        query = text(
            "SELECT l.*, o.name AS seller_org_name FROM listing.listings AS l "
            "JOIN listing.organizations AS o ON o.id = l.seller_id "
            "WHERE l.asset_id = ANY(CAST(:assets AS uuid[])) "
            "AND NOT (l.id = ANY(CAST(:excluded AS uuid[]))) "
            "ORDER BY l.id FOR UPDATE OF l"
        ).columns(*table.columns, seller)
        rows = await self.session.execute(
            query, {"assets": list(asset_ids), "excluded": list(excluded)}
        )
        return [dict(r) for r in rows.mappings()]

    async def update_assets(self, values: list[dict[str, Any]]) -> None:
        """Bulk update by primary key (each dict carries `id`, all the same keys); the rows are
        locked already."""
        if values:
            await self.session.execute(update(Asset), values)

    async def bump_listings(self, values: list[dict[str, Any]]) -> None:
        """New versions (`id`, `version`, `updated_at`) of locked listings."""
        if values:
            await self.session.execute(update(Listing), values)

    async def assets_with_exclusive(self, asset_ids: Sequence[UUID], seller_id: UUID) -> set[UUID]:
        """Assets with an exclusive licence offered by another listing than the seller's own.
        One index probe per asset (see _BY_EACH)."""
        if not asset_ids:
            return set()
        rows = await self.session.execute(
            text(
                "SELECT l.asset_id FROM unnest(CAST(:ids AS uuid[])) AS k(asset_id), LATERAL "
                "(SELECT * FROM listing.listings WHERE asset_id = k.asset_id OFFSET 0) AS l "
                "WHERE l.transaction_type = 'exclusive_license' AND l.status = ANY(:active) "
                "AND (l.seller_id <> :seller_id OR l.exchange <> 'jjj')"
            ).columns(Listing.__table__.c.asset_id),  # type: ignore[attr-defined]
            {"ids": list(asset_ids), "active": sorted(ACTIVE), "seller_id": seller_id},
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

    async def insert_outcomes(self, values: list[dict[str, Any]]) -> None:
        await self.copy(ImportRowResult, values)

    async def outcomes(
        self, job_id: UUID, outcome: str | None, after_line: int, limit: int
    ) -> list[ImportRowResult]:
        query = select(ImportRowResult).where(
            col(ImportRowResult.import_id) == job_id, col(ImportRowResult.line) > after_line
        )
        if outcome is not None:
            query = query.where(col(ImportRowResult.outcome) == outcome)
        rows = await self.session.execute(query.order_by(col(ImportRowResult.line)).limit(limit))
        return list(rows.scalars())

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
