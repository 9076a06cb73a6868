"""Queries of the catalogue index's records: the indexer's cursor and the version of each listing
the index holds (the indexer, the index status, rebuild and check). Never commits: callers own the
transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.matching.models import SCHEMA, IndexedListing, IndexerState
from shared.outbox import START

__all__ = [
    "cursor",
    "delete_records",
    "indexed_versions",
    "indexer_state",
    "indexer_states",
    "record_indexed",
    "records",
    "save_cursor",
    "searchable_among",
]

# Arrays through unnest: five parameters whatever the page's size, where a multi-row VALUES
# cost seconds of statement building (docs/DECISIONS.md, Matching, "Indexer").
_RECORD = (
    f"INSERT INTO {SCHEMA}.indexed_listings "
    "(listing_id, asset_id, version, searchable, indexed_at) "
    "SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:assets AS uuid[]), "
    "CAST(:versions AS integer[]), CAST(:searchable AS boolean[]), "
    "CAST(:at AS timestamptz[])) "
    "ON CONFLICT (listing_id) DO UPDATE SET version = excluded.version, "
    "searchable = excluded.searchable, asset_id = excluded.asset_id, "
    "indexed_at = excluded.indexed_at"
)
_RECORD_ANY = text(_RECORD)
_RECORD_NEWER = text(_RECORD + f" WHERE {SCHEMA}.indexed_listings.version < excluded.version")
# One array parameter: an IN list of a page's 1,000 ids is a new statement of 1,000 parameters
# that SQLAlchemy builds in Python for every page.
_INDEXED_VERSIONS = text(
    f"SELECT listing_id, version, searchable FROM {SCHEMA}.indexed_listings "
    "WHERE listing_id = ANY(CAST(:ids AS uuid[]))"
)


async def indexer_state(session: AsyncSession, index_uid: str) -> IndexerState | None:
    return await session.get(IndexerState, index_uid)


async def indexer_states(session: AsyncSession, keys: Sequence[str]) -> dict[str, IndexerState]:
    """The states of several indexers (the primary node's and its replicas'), by key."""
    rows = await session.execute(
        select(IndexerState).where(col(IndexerState.index_uid).in_(list(keys)))
    )
    return {state.index_uid: state for state in rows.scalars()}


async def cursor(session: AsyncSession, index_uid: str) -> str:
    """Where the indexer is in the listing feed (the start before its first page)."""
    state = await indexer_state(session, index_uid)
    return state.cursor if state else START


async def lock_cursor(session: AsyncSession, index_uid: str) -> str:
    """The stored cursor, its row locked until the transaction ends (the start if none yet)."""
    stored = await session.execute(
        select(col(IndexerState.cursor))
        .where(col(IndexerState.index_uid) == index_uid)
        .with_for_update()
    )
    return stored.scalar_one_or_none() or START


async def save_cursor(
    session: AsyncSession, index_uid: str, cursor: str, last_event_at: datetime | None
) -> None:
    """Move the cursor (`last_event_at` None keeps the one stored)."""
    state = insert(IndexerState).values(
        index_uid=index_uid,
        cursor=cursor,
        last_event_at=last_event_at,
        updated_at=datetime.now(UTC),
    )
    await session.execute(
        state.on_conflict_do_update(
            index_elements=["index_uid"],
            set_={
                "cursor": state.excluded.cursor,
                "updated_at": state.excluded.updated_at,
                "last_event_at": func.coalesce(
                    state.excluded.last_event_at, IndexerState.last_event_at
                ),
            },
        )
    )


async def record_indexed(
    session: AsyncSession, records: Sequence[dict[str, Any]], *, only_newer: bool
) -> None:
    """Upsert the versions the index holds (`only_newer`: never move a listing back). One row
    per listing in `records`."""
    if not records:
        return
    await session.execute(
        _RECORD_NEWER if only_newer else _RECORD_ANY,
        {
            "ids": [r["listing_id"] for r in records],
            "assets": [r["asset_id"] for r in records],
            "versions": [r["version"] for r in records],
            "searchable": [r["searchable"] for r in records],
            "at": [r["indexed_at"] for r in records],
        },
    )


async def indexed_versions(
    session: AsyncSession, listing_ids: Sequence[UUID]
) -> dict[UUID, tuple[int, bool]]:
    """listing id -> (version indexed, searchable), for those of `listing_ids` recorded."""
    rows = await session.execute(_INDEXED_VERSIONS, {"ids": list(listing_ids)})
    return {r[0]: (r[1], r[2]) for r in rows}


async def records(session: AsyncSession) -> dict[UUID, tuple[int, bool, UUID]]:
    """Every record: listing id -> (version, searchable, asset id)."""
    rows = await session.execute(
        select(
            col(IndexedListing.listing_id),
            col(IndexedListing.version),
            col(IndexedListing.searchable),
            col(IndexedListing.asset_id),
        )
    )
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


async def delete_records(session: AsyncSession, listing_ids: Sequence[UUID]) -> None:
    await session.execute(
        delete(IndexedListing).where(col(IndexedListing.listing_id).in_(list(listing_ids)))
    )


async def searchable_among(session: AsyncSession, listing_ids: Sequence[UUID]) -> set[UUID]:
    """Those of `listing_ids` the index holds as searchable now."""
    rows = await session.execute(
        select(col(IndexedListing.listing_id)).where(
            col(IndexedListing.listing_id).in_(list(listing_ids)),
            col(IndexedListing.searchable),
        )
    )
    return set(rows.scalars())
