"""The signing secrets the gateway stores, sealed (shared/encryption.py): partners' inbound
secrets and webhook subscriptions' secrets. Sealing what was stored in clear before, and
sealing everything again under the newest key (`ipx secrets rotate`)."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from services.gateway import repository
from services.gateway.models import Partner, Subscription
from shared.encryption import SecretBox
from shared.errors import is_database_unavailable

__all__ = ["reseal", "seal_stored_in_clear"]

logger = logging.getLogger("ipx.gateway.secrets")
BATCH = 200
# (model, its key column, its secret column)
SEALED_COLUMNS: tuple[tuple[Any, Any, Any], ...] = (
    (Partner, col(Partner.code), col(Partner.inbound_secret)),
    (Subscription, col(Subscription.id), col(Subscription.secret)),
)


async def reseal(
    sessionmaker: async_sessionmaker[AsyncSession], box: SecretBox, *, in_clear_only: bool
) -> int:
    """Seal every stored secret again under the box's first key (`in_clear_only`: only those
    stored in clear). Batches of BATCH rows, each its own short transaction, locked while
    rewritten; returns how many were rewritten."""
    rewritten = 0
    for model, key, secret in SEALED_COLUMNS:
        after: Any = None
        while True:
            async with sessionmaker() as session, session.begin():
                rows = await repository.lock_secrets(
                    session, model, key, secret, after, BATCH, in_clear_only=in_clear_only
                )
                for row in rows:
                    setattr(row, secret.key, box.reseal(getattr(row, secret.key)))
                rewritten += len(rows)
            if len(rows) < BATCH:
                break
            after = getattr(rows[-1], key.key)
    return rewritten


async def seal_stored_in_clear(
    sessionmaker: async_sessionmaker[AsyncSession], box: SecretBox
) -> None:
    """At start-up: seal the secrets stored before sealing (none after the first start). A
    database that cannot be reached is left for the next start: a secret in clear is still
    read as it is."""
    try:
        sealed = await reseal(sessionmaker, box, in_clear_only=True)
    except Exception as exc:
        if not is_database_unavailable(exc):
            raise
        logger.warning("secrets in clear not sealed: the database is unavailable")
        return
    if sealed:
        logger.info("sealed %d signing secrets stored in clear", sealed)
