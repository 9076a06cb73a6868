"""Queries over the gateway's tables as a whole (maintenance, not one domain's). Never commits:
callers own the transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.encryption import SEALED

__all__ = ["lock_secrets"]


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
