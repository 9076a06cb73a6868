"""The async engine, the request session (commits on success, rolls back on error), readiness.

One PostgreSQL database, one schema per service. Services never commit: the session dependency
does, before the response is sent, so a handler cannot half-write.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Request
from sqlalchemy import DateTime, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql.base import ischema_names
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import UserDefinedType
from sqlmodel import Field, col

from shared.errors import is_database_unavailable
from shared.jitter import backoff_seconds
from shared.settings import Settings


class Xid8(UserDefinedType[int]):
    """PostgreSQL's 64-bit transaction id (outbox cursors are built on it, see shared.outbox)."""

    cache_ok = True

    def get_col_spec(self, **kw: object) -> str:
        return "xid8"


ischema_names["xid8"] = Xid8  # so reflection (migration checks) knows the type

__all__ = [
    "CLAIM_TIMEOUT_SECONDS",
    "ClaimTimedOut",
    "SessionDep",
    "Xid8",
    "asyncpg_connect_kwargs",
    "create_engine",
    "create_sessionmaker",
    "created_now",
    "driver_connection",
    "engine_connect_args",
    "get_session",
    "optional_timestamp",
    "record_when_reachable",
    "schema_revision",
    "statement_connection",
    "utcnow",
]


def create_engine(settings: Settings, *, application_name: str) -> AsyncEngine:
    engine = create_async_engine(
        settings.database_url,
        # At most pool size + overflow connections, as configured, but every one kept once
        # opened: SQLAlchemy closes an overflow connection as soon as it is checked in, so
        # under a steady load above the pool size each request paid for a new connection
        # (TCP, SSL refusal, authentication, codec setup).
        pool_size=settings.db_pool_size + settings.db_max_overflow,
        max_overflow=0,
        pool_timeout=5,
        # A database error's text (logged with its traceback) must not carry the statement's
        # values: they can be secrets (a partner's or a subscription's signing secret).
        hide_parameters=True,
        connect_args=engine_connect_args(settings, application_name=application_name),
    )
    event.listen(engine.sync_engine.pool, "checkout", _replace_if_closed)
    return engine


def engine_connect_args(settings: Settings, *, application_name: str) -> dict[str, Any]:
    """The pool's asyncpg connect arguments. Behind PgBouncer in transaction pooling mode
    (`IPX_DB_PGBOUNCER`) consecutive transactions of one client connection run on different
    server connections, so a statement prepared in one is unknown (or, by asyncpg's numbered
    names, already taken by another client) in the next: asyncpg's statement cache and
    SQLAlchemy's prepared statement cache are off, and SQLAlchemy's dialect, which prepares
    every statement, names each one uniquely (SQLAlchemy's asyncpg docs, "Prepared Statement
    Name with PGBouncer")."""
    args: dict[str, Any] = {
        "timeout": 5,
        "server_settings": {"application_name": application_name},
    }
    if settings.db_pgbouncer:
        args["statement_cache_size"] = 0
        args["prepared_statement_cache_size"] = 0
        args["prepared_statement_name_func"] = _unique_statement_name
    return args


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4().hex}__"


def _replace_if_closed(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
    """A connection broken by a PostgreSQL restart is replaced on checkout, so the service
    recovers by itself. asyncpg marks a connection closed as soon as the server ends it (the
    loop reads the EOF), so this costs no round trip; SQLAlchemy's pre-ping costs three (BEGIN,
    SELECT, ROLLBACK) on every checkout. A connection that dies in use fails that request and
    is replaced here at its next checkout."""
    if record.driver_connection is None or record.driver_connection.is_closed():
        raise sa_exc.DisconnectionError("the connection was closed by the server")


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


_DRIVER_CONNECTION = "ipx.driver_connection"


async def driver_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under `session`, inside the session's transaction: for hot paths
    where building SQLAlchemy statements costs more than running them. What runs on it commits
    or rolls back with the session."""
    # Remembered for the session's current transaction (the connection is the same until it
    # ends): asking the session for it costs more than some of the statements sent on it.
    cached = session.info.get(_DRIVER_CONNECTION)
    if cached is not None and cached[0] is session.sync_session.get_transaction():
        driver: asyncpg.Connection = cached[1]
        return driver
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    adapted: Any = raw.dbapi_connection
    # SQLAlchemy's asyncpg adapter sends BEGIN lazily, before its own first statement: begin
    # now, or statements sent straight to the driver would each commit on their own.
    if adapted._transaction is None:
        await adapted._start_transaction()
    driver = raw.driver_connection
    session.info[_DRIVER_CONNECTION] = (session.sync_session.get_transaction(), driver)
    return driver


@asynccontextmanager
async def statement_connection(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """A pooled asyncpg connection for statements that need no transaction around them (each
    commits on its own: no BEGIN, no ROLLBACK round trips)."""
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        driver: asyncpg.Connection = raw.driver_connection
        try:
            yield driver
        except BaseException:
            # Outside a transaction the pool's reset sends nothing, so a connection left
            # mid-operation by a failure (a PostgreSQL restart) would go back to the pool and
            # fail the next checkout with "another operation is in progress".
            await connection.invalidate()
            raise


# How long one claim of a work queue (webhook deliveries, partner inbox) may run. A healthy
# claim reads pending rows only, through its partial index: milliseconds, tens of them under a
# backlog (issue 21 measured 23-64 ms). One that runs longer has a wrong plan (issue 21's nested
# loop over the delivered history ran at 100 % CPU for 6 minutes): cancelled at 5 s, it becomes
# a failed step the worker logs and retries after its back-off, instead of holding a core and
# its row locks. 5 s leaves a loaded 2-core machine 100 times a healthy claim's time, and stays
# far under the leases a claim hands out (60 s), so a cancelled claim never strands work.
CLAIM_TIMEOUT_SECONDS = 5.0


class ClaimTimedOut(TimeoutError):
    """A claim cancelled after CLAIM_TIMEOUT_SECONDS: a worker logs it as an outage (no trace)
    and retries after its back-off."""


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


def by_creation(
    query: Any, model: Any, after: tuple[datetime, Any] | None, *, newest_first: bool = True
) -> Any:
    """`query` over `model` in (created_at, id) order, newest first by default, from the keyset
    position after `after` (a page token's, `shared.schemas.created_after`)."""
    created, identity = col(model.created_at), col(model.id)
    if after is not None:
        at, last = after
        if newest_first:
            query = query.where((created < at) | ((created == at) & (identity < last)))
        else:
            query = query.where((created > at) | ((created == at) & (identity > last)))
    if newest_first:
        return query.order_by(created.desc(), identity.desc())
    return query.order_by(created, identity)


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
    failures = 0
    while True:
        try:
            await record()
            return
        except Exception as exc:
            failures += 1
            delay = backoff_seconds(failures, 0.5, 2.0)
            if not is_database_unavailable(exc) or loop.time() + delay > deadline:
                raise
        await asyncio.sleep(delay)
