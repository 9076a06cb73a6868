"""The indexer's lease, taken from a running indexer if need be (docs/DECISIONS.md, Matching,
"Index rebuild and check"): lock the indexer's tables so its next statement waits, cancel
exactly that statement, and win the advisory lock while the indexer backs off."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from services.matching.repair import repository
from services.matching.repair.reports import LeaseBusy, LeaseTimeout, RepairError
from shared.settings import Settings

__all__ = ["APPLICATION_NAME", "Lease", "hold_lease"]

logger = logging.getLogger("ipx.matching.repair")

APPLICATION_NAME = "ipx-index-maintenance"  # our lease sessions: never preempted by another


@dataclass
class Lease:
    conn: asyncpg.Connection
    key: int
    preempted: bool

    async def verify(self) -> None:
        """Still ours (the connection that holds it is alive)."""
        try:
            held = await repository.holds(self.conn, self.key)
        except (asyncpg.PostgresError, OSError) as exc:
            raise RepairError(f"lost the indexer's lease ({type(exc).__name__})") from exc
        if not held:
            raise RepairError("lost the indexer's lease")


async def _preempt(conn: asyncpg.Connection, key: int, wait_seconds: float) -> bool:
    """Take the lease from a running indexer; True when a page of the indexer's had to be
    cancelled."""
    if await repository.holder(conn, key) == APPLICATION_NAME:
        raise LeaseBusy("another rebuild or repair of this index is running")
    deadline = time.monotonic() + wait_seconds
    cancelled = False
    try:
        async with conn.transaction():
            await repository.lock_indexer_tables(conn, wait_seconds)
            while not await repository.try_lock(conn, key):
                for pid in await repository.waiting_on_indexer_tables(conn):
                    logger.warning(
                        "taking the indexer's lease: cancelling the statement of pid %s, "
                        "which waits on the indexer's tables",
                        pid,
                    )
                    cancelled = await repository.cancel(conn, pid) or cancelled
                if await repository.holder(conn, key) == APPLICATION_NAME:
                    raise LeaseBusy("another rebuild or repair of this index is running")
                if time.monotonic() > deadline:
                    raise LeaseTimeout(
                        "the running indexer did not hand over its lease "
                        f"within {wait_seconds:.0f}s"
                    )
                await asyncio.sleep(0.05)
    except asyncpg.LockNotAvailableError as exc:
        raise LeaseTimeout(
            f"the indexer's tables stayed locked for over {wait_seconds:.0f}s"
        ) from exc
    return cancelled


@asynccontextmanager
async def hold_lease(
    settings: Settings, key: int, *, wait_seconds: float = 60.0
) -> AsyncIterator[Lease]:
    """The indexer's lease for the duration of the block (taken from a running indexer if
    need be; it resumes from its cursor when the block ends)."""
    conn = await repository.connect(settings, APPLICATION_NAME)
    try:
        preempted = False
        if not await repository.try_lock(conn, key):
            preempted = await _preempt(conn, key, wait_seconds)
        yield Lease(conn, key, preempted)
    finally:
        with contextlib.suppress(Exception):
            await conn.close(timeout=5)  # releases the lease
