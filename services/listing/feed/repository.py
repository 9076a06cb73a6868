"""Reading the listing outbox (the never-skipping order is shared.outbox's)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.outbox import parse_cursor, read_head

TABLE = "listing.change_events"
# A page as JSON text made by PostgreSQL (the shape of ChangeEvent): the payload is never
# decoded into Python and encoded again, which was most of the cost of a page of 1,000 events.
# The order and the visibility rule are shared.outbox.read_page's (xid8 order, only
# transactions older than every one in flight).
_PAGE_JSON = text(
    "SELECT e.xid::text || '.' || e.seq::text AS cursor, json_build_object("
    "'cursor', e.xid::text || '.' || e.seq::text, 'type', e.type, 'entity', e.entity, "
    "'entity_id', e.entity_id, 'version', e.version, "
    "'occurred_at', to_char(e.occurred_at AT TIME ZONE 'UTC', "
    """'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), """
    "'asset_id', e.payload->'asset_id', 'seller_id', e.payload->'seller_id', "
    "'data', e.payload->'data')::text AS event "
    f"FROM {TABLE} AS e "
    "WHERE (e.xid, e.seq) > (CAST(:xid AS xid8), :seq) "
    "AND e.xid < pg_snapshot_xmin(pg_current_snapshot()) "
    "ORDER BY e.xid, e.seq LIMIT :limit"
)


async def events_json_after(conn: AsyncConnection, after: str, limit: int) -> list[tuple[str, str]]:
    """(cursor, the event as JSON) of the events after `after`, in feed order."""
    xid, seq = parse_cursor(after)
    rows = await conn.execute(_PAGE_JSON, {"xid": xid, "seq": seq, "limit": limit})
    return [(row.cursor, row.event) for row in rows]


_HELD_BACK = text(
    f"SELECT EXISTS (SELECT 1 FROM {TABLE} AS e WHERE (e.xid, e.seq) > (CAST(:xid AS xid8), :seq))"
)


async def held_back(conn: AsyncConnection, after: str) -> bool:
    """Committed events follow `after` that a transaction still in flight holds back (call it
    when the page was empty: those are the only ones it could not see)."""
    xid, seq = parse_cursor(after)
    return bool(await conn.scalar(_HELD_BACK, {"xid": xid, "seq": seq}))


async def head(conn: AsyncConnection, after: str | None = None) -> tuple[str, Any, int] | None:
    return await read_head(conn, TABLE, after)
