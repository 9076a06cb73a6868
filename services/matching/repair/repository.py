"""Queries of rebuild and check: the indexer's lease and the feed's visibility horizon. The lease
is a session advisory lock on a connection of its own, outside the pool and any transaction of
the service, so its statements go straight to asyncpg. Never commits: callers own the
transaction."""

from __future__ import annotations

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.matching.models import SCHEMA
from shared.db import asyncpg_connect_kwargs
from shared.settings import Settings

__all__ = [
    "cancel",
    "connect",
    "holder",
    "holds",
    "lock_indexer_tables",
    "snapshot_horizon",
    "transactions_ended",
    "try_lock",
    "waiting_on_indexer_tables",
]

INDEXER_TABLES = (f"{SCHEMA}.indexed_listings", f"{SCHEMA}.indexer_state")
# The advisory lock of a bigint key as pg_locks shows it (two 32-bit halves, objsubid 1); {t}
# is the table's alias.
_KEY = (
    "{t}classid::bigint = $1::bigint >> 32 AND {t}objid::bigint = $1::bigint & 4294967295 "
    "AND {t}objsubid = 1"
)
_HOLDS = (
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
    f"AND pid = pg_backend_pid() AND {_KEY.format(t='')})"
)
_HOLDER = (
    "SELECT coalesce(a.application_name, '') AS app FROM pg_locks l "
    "LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.granted AND l.database = "
    "(SELECT oid FROM pg_database WHERE datname = current_database()) "
    f"AND {_KEY.format(t='l.')}"
)
_RELATIONS = ", ".join(f"'{table}'::regclass" for table in INDEXER_TABLES)
_WAITING = (
    "SELECT DISTINCT pid FROM pg_locks WHERE NOT granted AND locktype = 'relation' "
    f"AND relation IN ({_RELATIONS}) AND pid <> pg_backend_pid()"
)


async def connect(settings: Settings, application_name: str) -> asyncpg.Connection:
    return await asyncpg.connect(
        timeout=5,
        server_settings={"application_name": application_name},
        **asyncpg_connect_kwargs(settings.direct_database_url()),
    )


async def try_lock(conn: asyncpg.Connection, key: int) -> bool:
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))


async def holds(conn: asyncpg.Connection, key: int) -> bool:
    """This connection holds the lock `key`."""
    return bool(await conn.fetchval(_HOLDS, key))


async def holder(conn: asyncpg.Connection, key: int) -> str | None:
    """The application name of the session holding the lock `key` (None when free)."""
    row = await conn.fetchrow(_HOLDER, key)
    return None if row is None else str(row["app"])


async def lock_indexer_tables(conn: asyncpg.Connection, wait_seconds: float) -> None:
    """Inside the caller's transaction, waiting at most `wait_seconds` for them. Writes to the
    records wait (search reads them and goes on); every use of the cursor waits, reads too: an
    idle indexer only reads it, between two long-polls."""
    await conn.execute(f"SET LOCAL lock_timeout = '{max(1, int(wait_seconds))}s'")
    await conn.execute(f"LOCK TABLE {INDEXER_TABLES[0]} IN EXCLUSIVE MODE")
    await conn.execute(f"LOCK TABLE {INDEXER_TABLES[1]} IN ACCESS EXCLUSIVE MODE")


async def waiting_on_indexer_tables(conn: asyncpg.Connection) -> list[int]:
    """The other sessions whose statements wait on the indexer's tables."""
    return [row[0] for row in await conn.fetch(_WAITING)]


async def cancel(conn: asyncpg.Connection, pid: int) -> bool:
    """Cancel the statement `pid` is running (False when there was none)."""
    return bool(await conn.fetchval("SELECT pg_cancel_backend($1)", pid))


async def snapshot_horizon(session: AsyncSession) -> str:
    """Every transaction that committed before now has an id below this."""
    return str(await session.scalar(text("SELECT pg_snapshot_xmax(pg_current_snapshot())::text")))


_ENDED = text(
    "SELECT pg_snapshot_xmin(pg_current_snapshot()) >= CAST(CAST(:horizon AS text) AS xid8)"
)


async def transactions_ended(session: AsyncSession, horizon: str) -> bool:
    """Every transaction below `horizon` has ended."""
    return bool(await session.scalar(_ENDED, {"horizon": horizon}))
