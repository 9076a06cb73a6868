"""The async engine, the request session (commits on success, rolls back on error), readiness.

One PostgreSQL database, one schema per service. Services never commit: the session dependency
does, before the response is sent, so a handler cannot half-write.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import DateTime, text
from sqlalchemy.dialects.postgresql.base import ischema_names
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.types import UserDefinedType
from sqlmodel import Field

from shared.errors import is_database_unavailable
from shared.settings import Settings


class Xid8(UserDefinedType[int]):
    """PostgreSQL's 64-bit transaction id (outbox cursors are built on it, see shared.outbox)."""

    cache_ok = True

    def get_col_spec(self, **kw: object) -> str:
        return "xid8"


ischema_names["xid8"] = Xid8  # so reflection (migration checks) knows the type

__all__ = [
    "SessionDep",
    "Xid8",
    "asyncpg_connect_kwargs",
    "create_engine",
    "create_sessionmaker",
    "created_now",
    "get_session",
    "optional_timestamp",
    "record_when_reachable",
    "schema_revision",
    "utcnow",
]


def create_engine(settings: Settings, *, application_name: str) -> AsyncEngine:
    return create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        # A connection broken by a PostgreSQL restart is replaced on checkout, so the service
        # recovers by itself.
        pool_pre_ping=True,
        pool_timeout=5,
        # A database error's text (logged with its traceback) must not carry the statement's
        # values: they can be secrets (a partner's or a subscription's signing secret).
        hide_parameters=True,
        connect_args={
            "timeout": 5,
            "server_settings": {"application_name": application_name},
        },
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    maker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with maker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


# scope="function": the commit happens before the response is sent, so a failed commit is
# reported to the client instead of being lost after a 2xx.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


def asyncpg_connect_kwargs(database_url: str) -> dict[str, Any]:
    """Keyword arguments for asyncpg.connect() from our SQLAlchemy URL (TCP or unix socket),
    for the few dedicated connections (LISTEN, leases) that live outside the pool."""
    url = make_url(database_url)
    host = url.query.get("host") or url.host
    port = url.query.get("port") or url.port or 5432
    return {
        "user": url.username,
        "password": url.password,
        "database": url.database,
        "host": str(host),
        "port": int(str(port)),
    }


def utcnow() -> datetime:
    return datetime.now(UTC)


def created_now(**kwargs: Any) -> Any:
    """A timezone-aware timestamp column set to now (SQLModel defaults to naive ones)."""
    return Field(default_factory=utcnow, sa_type=DateTime(timezone=True), **kwargs)


def optional_timestamp(**kwargs: Any) -> Any:
    return Field(default=None, sa_type=DateTime(timezone=True), **kwargs)


async def schema_revision(engine: AsyncEngine, schema: str) -> str | None:
    """The Alembic revision applied to a service's schema, or None when it was never migrated."""
    async with engine.connect() as conn:
        exists = await conn.scalar(
            text("SELECT to_regclass(:table) IS NOT NULL"),
            {"table": f"{schema}.alembic_version"},
        )
        if not exists:
            return None
        revision = await conn.scalar(text(f'SELECT version_num FROM "{schema}".alembic_version'))
        return str(revision) if revision is not None else None


async def record_when_reachable(record: Callable[[], Awaitable[None]], seconds: float) -> None:
    """Run `record` (a short transaction writing an outcome already known), trying again while
    PostgreSQL is unreachable, for up to `seconds`. A worker that gave up at once would leave
    its lease to run out, and the work would wait that long after PostgreSQL is back."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    delay = 0.25
    while True:
        try:
            await record()
            return
        except Exception as exc:
            if not is_database_unavailable(exc) or loop.time() + delay > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)
