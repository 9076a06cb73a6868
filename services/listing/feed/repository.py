"""Reading the listing outbox (the never-skipping order is shared.outbox's)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from shared.contracts.events import ChangeEvent
from shared.outbox import cursor_of, read_head, read_page

TABLE = "listing.change_events"
COLUMNS = ("entity", "entity_id", "type", "version", "payload", "occurred_at")


def _event(row: Any) -> ChangeEvent:
    payload = row.payload
    return ChangeEvent(
        cursor=cursor_of(row),
        type=row.type,
        entity=row.entity,
        entity_id=row.entity_id,
        version=row.version,
        occurred_at=row.occurred_at,
        asset_id=payload.get("asset_id"),
        seller_id=payload.get("seller_id"),
        data=payload["data"],
    )


async def events_after(conn: AsyncConnection, after: str, limit: int) -> list[ChangeEvent]:
    return [_event(row) for row in await read_page(conn, TABLE, COLUMNS, after, limit)]


async def head(conn: AsyncConnection, after: str | None = None) -> tuple[str, Any, int] | None:
    return await read_head(conn, TABLE, after)
