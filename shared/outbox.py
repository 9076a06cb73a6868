"""Reading an outbox table in a never-skipping order, for any service's change feed.

Rows are ordered by (transaction id, sequence). Only rows of transactions older than every
transaction still in flight (`pg_snapshot_xmin`) are handed out: a transaction that took its
sequence numbers early but commits late is still in flight while it could be skipped, so it holds
the feed back instead of being lost. The table needs `seq bigint identity` and
`xid xid8 DEFAULT pg_current_xact_id()` with an index on (xid, seq).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any
from uuid import UUID

from fastapi import Query
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.errors import UnprocessableEntity

__all__ = [
    "START",
    "FeedAfter",
    "FeedLimit",
    "FeedWait",
    "cursor_of",
    "parse_cursor",
    "read_head",
    "read_page",
]

CURSOR = re.compile(r"^(\d{1,20})\.(\d{1,20})$")
START = "0.0"
# A feed's query parameters, the same on every feed (listing's, the public catalogue's, the
# buyers' matches): a cursor, a batch size and an optional long-poll.
FeedAfter = Annotated[
    str,
    Query(max_length=48, description="cursor; '0.0' from the start", examples=["0.0", "1742.3"]),
]
FeedLimit = Annotated[int, Query(ge=1, le=1000, description="events at most", examples=[100])]
FeedWait = Annotated[
    float,
    Query(ge=0, le=30, description="long-poll up to this many seconds", examples=[0, 25]),
]
TABLE = re.compile(r"^[a-z_]+\.[a-z_]+$")


def parse_cursor(cursor: str, field: str = "after") -> tuple[int, int]:
    match = CURSOR.match(cursor)
    if not match:
        raise UnprocessableEntity.single(
            field, "cursor_format", "a cursor looks like '<xid>.<seq>' (start with '0.0')"
        )
    xid, seq = int(match.group(1)), int(match.group(2))
    # Both travel as bigint parameters: a larger number is no cursor we issued (and would
    # fail in PostgreSQL as a 500).
    if xid >= 2**63 or seq >= 2**63:
        raise UnprocessableEntity.single(
            field, "cursor_format", "a cursor looks like '<xid>.<seq>' (start with '0.0')"
        )
    return xid, seq


def cursor_of(row: Any) -> str:
    return f"{row.xid}.{row.seq}"


async def read_page(
    conn: AsyncConnection,
    table: str,
    columns: Sequence[str],
    after: str,
    limit: int,
    *,
    organization_id: UUID | None = None,
) -> list[Any]:
    """Rows after `after` (each with `seq` and `xid` as text besides `columns`); with
    `organization_id`, only that organisation's rows (the table has the column)."""
    assert TABLE.match(table)
    xid, seq = parse_cursor(after)
    scoped = "AND e.organization_id = :organization_id " if organization_id else ""
    # ORDER BY names the table's xid8 column: a bare `xid` would be the text output column,
    # and "1000" sorts before "999" (a page cut by LIMIT then skips events for good).
    query = text(
        f"SELECT seq, xid::text AS xid, {', '.join(columns)} FROM {table} AS e "
        "WHERE (e.xid, e.seq) > (CAST(:xid AS xid8), :seq) "
        "AND e.xid < pg_snapshot_xmin(pg_current_snapshot()) "
        f"{scoped}ORDER BY e.xid, e.seq LIMIT :limit"
    )
    parameters: dict[str, Any] = {"xid": xid, "seq": seq, "limit": limit}
    if organization_id:
        parameters["organization_id"] = organization_id
    return list(await conn.execute(query, parameters))


async def read_head(
    conn: AsyncConnection, table: str, after: str | None = None
) -> tuple[str, Any, int] | None:
    """The newest visible row's cursor and time, and how many visible rows follow `after`."""
    assert TABLE.match(table)
    row = (
        await conn.execute(
            text(
                f"SELECT xid::text AS xid, seq, occurred_at FROM {table} AS e "
                "WHERE e.xid < pg_snapshot_xmin(pg_current_snapshot()) "
                "ORDER BY e.xid DESC, e.seq DESC LIMIT 1"  # the xid8, not its text (above)
            )
        )
    ).first()
    if row is None:
        return None
    pending = 0
    if after is not None:
        xid, seq = parse_cursor(after)
        pending = int(
            await conn.scalar(
                text(
                    f"SELECT count(*) FROM {table} WHERE (xid, seq) > (CAST(:xid AS xid8), :seq) "
                    "AND xid < pg_snapshot_xmin(pg_current_snapshot())"
                ),
                {"xid": xid, "seq": seq},
            )
            or 0
        )
    return cursor_of(row), row.occurred_at, pending
