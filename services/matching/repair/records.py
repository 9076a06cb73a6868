"""The indexer's records (the version of each listing the index holds), made to agree with the
index after a rebuild or a repair."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from services.matching import repository
from services.matching.repair.context import Context, chunks


@dataclass(frozen=True, slots=True)
class Known:
    """A listing as an index holds it (or should): its version, whether it is searchable."""

    version: int
    searchable: bool
    asset_id: UUID


async def cursor(ctx: Context) -> str:
    """The indexer's cursor (it does not move while we hold the lease)."""
    async with ctx.sessionmaker() as session:
        return await repository.cursor(session, ctx.index_uid)


async def read(ctx: Context) -> dict[UUID, Known]:
    async with ctx.sessionmaker() as session:
        rows = await repository.records(session)
    return {listing_id: Known(*row) for listing_id, row in rows.items()}


def plan(
    records: dict[UUID, Known], desired: dict[UUID, Known], pending: dict[UUID, int]
) -> tuple[dict[UUID, Known], list[UUID]]:
    """The records to write and to delete so the indexer's idempotency record agrees with the
    index. `desired`: what the index holds (or must hold) for listings without pending events.
    Pending listings keep their records (the indexer applies their events, and sees a listing
    become searchable), except one at or past its first pending version, which would make the
    indexer skip events it has not applied."""
    upserts: dict[UUID, Known] = {}
    for listing_id, want in desired.items():
        have = records.get(listing_id)
        first = pending.get(listing_id)
        if first is None:
            if have != want:
                upserts[listing_id] = want
        elif have is not None and have.version >= first:
            upserts[listing_id] = Known(first - 1, have.searchable, have.asset_id)
    deletes = [
        listing_id
        for listing_id in records
        if listing_id not in desired and listing_id not in pending
    ]
    return upserts, deletes


async def write(ctx: Context, upserts: dict[UUID, Known], deletes: Sequence[UUID]) -> None:
    """`plan`'s writes, in one transaction."""
    if not upserts and not deletes:
        return
    now = datetime.now(UTC)
    rows = [
        {
            "listing_id": listing_id,
            "asset_id": known.asset_id,
            "version": known.version,
            "searchable": known.searchable,
            "indexed_at": now,
        }
        for listing_id, known in upserts.items()
    ]
    async with ctx.sessionmaker() as session, session.begin():
        for chunk in chunks(rows, 1000):
            await repository.record_indexed(session, chunk, only_newer=False)
        for ids in chunks(list(deletes), 1000):
            await repository.delete_records(session, ids)
