"""The retention job's SQL on listing's tables (the rules: `retention.rules`). One batch of rows
with ``FOR UPDATE SKIP LOCKED``: a row a writer holds is skipped, never waited for. Never commits:
the caller runs each batch in its own short transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["delete_idempotency_keys"]

# No index on created_at (it would cost every keyed create one more index entry): a sequential
# scan with a LIMIT. The table holds about one window of keys, oldest first in the heap, so a
# batch is found at the start and a round ends with one scan that finds less than a batch.
DELETE_IDEMPOTENCY_KEYS = text(
    """
    DELETE FROM listing.idempotency_keys AS k
    USING (
        SELECT organization_id, scope, key FROM listing.idempotency_keys
        WHERE created_at < :cutoff
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    ) AS old
    WHERE k.organization_id = old.organization_id AND k.scope = old.scope AND k.key = old.key
    """
)


async def delete_idempotency_keys(session: AsyncSession, cutoff: datetime, batch: int) -> int:
    result = await session.execute(DELETE_IDEMPOTENCY_KEYS, {"cutoff": cutoff, "batch": batch})
    return int(getattr(result, "rowcount", 0))
