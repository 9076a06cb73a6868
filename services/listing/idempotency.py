"""`Idempotency-Key` on creates: the first response is stored with the change (same
transaction) and replayed for a repeat; the same key with another body is a 422."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from uuid import UUID

from fastapi import Header
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import driver_connection, utcnow
from shared.errors import UnprocessableEntity

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="repeat a create safely: the same key returns the first response "
        "(for IPX_RETENTION_IDEMPOTENCY_HOURS, 24 by default)",
    ),
]
IN_FLIGHT = 0


def request_hash(body: BaseModel) -> str:
    return hashlib.sha256(body.model_dump_json().encode()).hexdigest()


# Straight to the driver, in the session's transaction: these run on every keyed create, and
# building them with SQLAlchemy cost more CPU than PostgreSQL spends running them.
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
) -> tuple[int, dict[str, Any]] | None:
    """None when this request owns the key (go on and `remember`); else the stored response.

    A concurrent request with the same key waits on the primary key until the first commits.
    """
    conn = await driver_connection(session)
    args = (organization_id, scope, key)
    while True:
        if await conn.fetchval(CLAIM, *args, digest, IN_FLIGHT, utcnow()) is not None:
            return None
        stored = await conn.fetchrow(STORED, *args)
        # The conflicting row is committed (ON CONFLICT waited for it); gone again only when
        # retention removed it, past its window, in between: then the key is free again.
        if stored is not None:
            break
    if stored["request_hash"] != digest:
        raise UnprocessableEntity.single(
            "Idempotency-Key",
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request body",
        )
    response: dict[str, Any] = stored["response"]
    return stored["status_code"], response


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


async def create_once(
    session: AsyncSession,
    organization_id: UUID | None,
    *,
    scope: str,
    key: str | None,
    digest: str,
    create: Callable[[], Awaitable[tuple[dict[str, Any], dict[str, str]]]],
) -> Response:
    """Run `create` (returning the 201 body and headers) once per key: a repeat replays the
    stored response with `Idempotent-Replayed: true`. Without a key, `create` just runs."""
    keyed = key is not None and organization_id is not None
    if keyed:
        stored = await claim(session, organization_id, scope, key, digest)  # type: ignore[arg-type]
        if stored is not None:
            return JSONResponse(
                stored[1], status_code=stored[0], headers={"Idempotent-Replayed": "true"}
            )
    body, headers = await create()
    # Rendered once, as JSONResponse renders, for both the client and the stored copy.
    content = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    if keyed:
        await remember(session, organization_id, scope, key, 201, content)  # type: ignore[arg-type]
    return Response(content, status_code=201, headers=headers, media_type="application/json")
