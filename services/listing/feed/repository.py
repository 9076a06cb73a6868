"""Reading the outbox in a never-skipping order.

Events are ordered by (transaction id, sequence). Only events of transactions older than every
transaction still in flight (`pg_snapshot_xmin`) are handed out: a transaction that took its
sequence numbers early but commits late is still in flight while it could be skipped, so it holds
the feed back instead of being lost.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.contracts.events import ChangeEvent
from shared.errors import UnprocessableEntity

CURSOR = re.compile(r"^(\d{1,20})\.(\d{1,20})$")
START = "0.0"

_PAGE = text(
    """
    SELECT seq, xid::text AS xid, entity, entity_id, type, version, payload, occurred_at
    FROM listing.change_events
    WHERE (xid, seq) > (CAST(:xid AS xid8), :seq)
      AND xid < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY xid, seq
    LIMIT :limit
    """
)
_HEAD = text(
    """
    SELECT xid::text AS xid, seq, occurred_at FROM listing.change_events
    WHERE xid < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY xid DESC, seq DESC LIMIT 1
    """
)


def parse_cursor(cursor: str, field: str = "after") -> tuple[int, int]:
    match = CURSOR.match(cursor)
    if not match:
        raise UnprocessableEntity.single(
            field, "cursor_format", "a cursor looks like '<xid>.<seq>' (start with '0.0')"
        )
    return int(match.group(1)), int(match.group(2))


def _event(row: Any) -> ChangeEvent:
    payload = row.payload
    return ChangeEvent(
        cursor=f"{row.xid}.{row.seq}",
        type=row.type,
        entity=row.entity,
        entity_id=row.entity_id,
        version=row.version,
        occurred_at=row.occurred_at,
        asset_id=payload.get("asset_id"),
        seller_id=payload.get("seller_id"),
        data=payload["data"],
    )


async def read_page(conn: AsyncConnection, after: str, limit: int) -> list[ChangeEvent]:
    xid, seq = parse_cursor(after)
    rows = await conn.execute(_PAGE, {"xid": xid, "seq": seq, "limit": limit})
    return [_event(row) for row in rows]


async def head(conn: AsyncConnection) -> tuple[str, Any] | None:
    """The cursor of the newest event a reader can see, and when it happened."""
    row = (await conn.execute(_HEAD)).first()
    return (f"{row.xid}.{row.seq}", row.occurred_at) if row else None
