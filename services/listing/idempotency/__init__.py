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

from services.listing.idempotency import repository
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


def request_hash(body: BaseModel) -> str:
    return hashlib.sha256(body.model_dump_json().encode()).hexdigest()


async def claim(
    session: AsyncSession, organization_id: UUID, scope: str, key: str, digest: str
) -> tuple[int, dict[str, Any]] | None:
    """None when this request owns the key (go on and `remember`); else the stored response.

    A concurrent request with the same key waits on the primary key until the first commits.
    """
    while True:
        if await repository.claim(session, organization_id, scope, key, digest):
            return None
        stored = await repository.stored(session, organization_id, scope, key)
        # The conflicting row is committed (ON CONFLICT waited for it); gone again only when
        # retention removed it, past its window, in between: then the key is free again.
        if stored is not None:
            break
    stored_hash, status_code, response = stored
    if stored_hash != digest:
        raise UnprocessableEntity.single(
            "Idempotency-Key",
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request body",
        )
    return status_code, response


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
        await repository.remember(session, organization_id, scope, key, 201, content)  # type: ignore[arg-type]
    return Response(content, status_code=201, headers=headers, media_type="application/json")
