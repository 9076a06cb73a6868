"""Queries over the gateway's tables as a whole (maintenance, not one domain's). Never commits:
callers own the transaction."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from shared.db import statement_connection
from shared.encryption import SEALED

__all__ = ["SharedBuckets", "lock_secrets"]


async def lock_secrets(
    session: AsyncSession,
    model: Any,
    key: Any,
    secret: Any,
    after: Any,
    limit: int,
    *,
    in_clear_only: bool,
) -> list[Any]:
    """The next `limit` rows of `model` after `after` in `key` order, locked for rewriting
    their `secret` (`in_clear_only`: only rows whose secret is not sealed yet)."""
    query = select(model).order_by(key).limit(limit).with_for_update()
    if after is not None:
        query = query.where(key > after)
    if in_clear_only:
        query = query.where(~secret.startswith(SEALED))
    return list((await session.execute(query)).scalars())


# Take up to $3 whole tokens from the client's bucket (full at $2, refilled at $4 a second
# since it was last touched); a new client starts full. One statement, no transaction around it:
# concurrent grants of one client serialise on its row. `granted` returns what this one took.
GRANT = """
INSERT INTO gateway.rate_limit_buckets AS b (client, tokens, granted, updated_at)
VALUES ($1, CAST($2 AS double precision) - least($3, $2), least($3, $2), now())
ON CONFLICT (client) DO UPDATE SET
    granted = least($3, floor(least(CAST($2 AS double precision),
        b.tokens + extract(epoch FROM now() - b.updated_at) * CAST($4 AS double precision)))),
    tokens = least(CAST($2 AS double precision),
            b.tokens + extract(epoch FROM now() - b.updated_at) * CAST($4 AS double precision))
        - least($3, floor(least(CAST($2 AS double precision),
            b.tokens + extract(epoch FROM now() - b.updated_at) * CAST($4 AS double precision)))),
    updated_at = now()
RETURNING granted, tokens
"""
# Buckets untouched for longer than it takes them to fill are full: the row can go.
PURGE = """
DELETE FROM gateway.rate_limit_buckets WHERE client IN (
    SELECT client FROM gateway.rate_limit_buckets
    WHERE updated_at < now() - make_interval(secs => $1)
    LIMIT 10000
)
"""
PURGE_EVERY_SECONDS = 60.0


class SharedBuckets:
    """The rate limits' token buckets, one per client, in PostgreSQL: every gateway replica
    takes from the same one (shared/ratelimit.py's BucketStore)."""

    def __init__(self, engine: AsyncEngine, full_after_seconds: float) -> None:
        self.engine = engine
        self.full_after_seconds = full_after_seconds
        self.purged = time.monotonic()

    async def grant(
        self, client: str, limit: int, per_second: float, want: int
    ) -> tuple[int, float]:
        async with statement_connection(self.engine) as connection:
            row = await connection.fetchrow(GRANT, client, limit, want, per_second)
            if time.monotonic() - self.purged > PURGE_EVERY_SECONDS:
                self.purged = time.monotonic()
                await connection.execute(PURGE, self.full_after_seconds)
        assert row is not None
        return int(row["granted"]), float(row["tokens"])
