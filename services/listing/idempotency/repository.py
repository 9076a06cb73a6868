"""Queries of idempotency keys (their removal is retention's). On every keyed create, so straight
to the driver in the session's transaction: building them with SQLAlchemy cost more CPU than
PostgreSQL spends running them. Never commits: callers own the transaction."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import driver_connection, utcnow

__all__ = ["claim", "remember", "stored"]

IN_FLIGHT = 0  # the status of a key whose response is not stored yet

CLAIM = """
INSERT INTO listing.idempotency_keys
    (organization_id, scope, key, request_hash, status_code, response, created_at)
VALUES ($1, $2, $3, $4, $5, '{}', $6)
ON CONFLICT DO NOTHING
RETURNING key
"""
STORED = """
SELECT request_hash, status_code, response FROM listing.idempotency_keys
WHERE organization_id = $1 AND scope = $2 AND key = $3
"""
REMEMBER = """
UPDATE listing.idempotency_keys SET status_code = $4, response = $5
WHERE organization_id = $1 AND scope = $2 AND key = $3
"""


async def claim(
    session: AsyncSession, organization_id: UUID, scope: str, key: str, digest: str
) -> bool:
    """Take the key for this request (False when it is taken: a concurrent request with the
    same key waits on the primary key until the first commits)."""
    conn = await driver_connection(session)
    inserted = await conn.fetchval(CLAIM, organization_id, scope, key, digest, IN_FLIGHT, utcnow())
    return inserted is not None


async def stored(
    session: AsyncSession, organization_id: UUID, scope: str, key: str
) -> tuple[str, int, dict[str, Any]] | None:
    """(request hash, status code, response) stored under the key."""
    conn = await driver_connection(session)
    row = await conn.fetchrow(STORED, organization_id, scope, key)
    return None if row is None else (row["request_hash"], row["status_code"], row["response"])


async def remember(
    session: AsyncSession,
    organization_id: UUID,
    scope: str,
    key: str,
    status_code: int,
    response: str,
) -> None:
    """Store the response (its JSON text) to replay."""
    conn = await driver_connection(session)
    await conn.execute(REMEMBER, organization_id, scope, key, status_code, response)
