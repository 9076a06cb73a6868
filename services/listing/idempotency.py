"""`Idempotency-Key` on creates: the first response is stored with the change (same
transaction) and replayed for a repeat; the same key with another body is a 422."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from uuid import UUID

from fastapi import Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.listing.models import IdempotencyRecord
from shared.errors import UnprocessableEntity

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="repeat a create safely: the same key returns the first response",
    ),
]
IN_FLIGHT = 0


def request_hash(body: BaseModel) -> str:
    return hashlib.sha256(body.model_dump_json().encode()).hexdigest()


async def claim(
    session: AsyncSession, organization_id: UUID, scope: str, key: str, digest: str
) -> tuple[int, dict[str, Any]] | None:
    """None when this request owns the key (go on and `remember`); else the stored response.

    A concurrent request with the same key waits on the primary key until the first commits.
    """
    inserted = await session.execute(
        insert(IdempotencyRecord)
        .values(
            organization_id=organization_id,
            scope=scope,
            key=key,
            request_hash=digest,
            status_code=IN_FLIGHT,
            response={},
        )
        .on_conflict_do_nothing()
        .returning(col(IdempotencyRecord.key))
    )
    if inserted.scalar_one_or_none() is not None:
        return None
    stored = (
        await session.execute(
            select(IdempotencyRecord).where(
                col(IdempotencyRecord.organization_id) == organization_id,
                col(IdempotencyRecord.scope) == scope,
                col(IdempotencyRecord.key) == key,
            )
        )
    ).scalar_one()
    if stored.request_hash != digest:
        raise UnprocessableEntity.single(
            "Idempotency-Key",
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request body",
        )
    return stored.status_code, stored.response


async def remember(
    session: AsyncSession,
    organization_id: UUID,
    scope: str,
    key: str,
    status_code: int,
    response: dict[str, Any],
) -> None:
    await session.execute(
        update(IdempotencyRecord)
        .where(
            col(IdempotencyRecord.organization_id) == organization_id,
            col(IdempotencyRecord.scope) == scope,
            col(IdempotencyRecord.key) == key,
        )
        .values(status_code=status_code, response=response)
    )


async def create_once(
    session: AsyncSession,
    organization_id: UUID | None,
    *,
    scope: str,
    key: str | None,
    digest: str,
    create: Callable[[], Awaitable[tuple[dict[str, Any], dict[str, str]]]],
) -> JSONResponse:
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
    if keyed:
        await remember(session, organization_id, scope, key, 201, body)  # type: ignore[arg-type]
    return JSONResponse(body, status_code=201, headers=headers)
