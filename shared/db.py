"""The async engine, the request session (commits on success, rolls back on error), readiness.

One PostgreSQL database, one schema per service. Services never commit: the session dependency
does, before the response is sent, so a handler cannot half-write.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from shared.settings import Settings

__all__ = [
    "SessionDep",
    "create_engine",
    "create_sessionmaker",
    "get_session",
    "schema_revision",
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
