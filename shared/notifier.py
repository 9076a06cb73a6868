"""Wakes long-polling feed readers when rows commit, from one dedicated LISTEN connection.

Readers never hold a pooled connection while they wait. If the LISTEN connection is lost, readers
fall back to short sleeps until it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from shared.db import asyncpg_connect_kwargs

logger = logging.getLogger("ipx.feed")
T = TypeVar("T")
# While a transaction holds the feed back, no NOTIFY marks the moment it ends: re-check this often.
RECHECK_SECONDS = 0.25


class FeedNotifier:
    def __init__(self, database_url: str, channel: str) -> None:
        self.channel = channel
        self._connect_kwargs = asyncpg_connect_kwargs(database_url)
        # Named in pg_stat_activity, so connections can be counted by kind (infra/DEPLOY.md).
        self._connect_kwargs["server_settings"] = {"application_name": f"ipx-listen-{channel}"}
        # One event per generation: a NOTIFY sets the current one and starts the next, so a
        # reader that marked the generation before its query cannot miss a NOTIFY that arrives
        # while the query runs (a shared flag cleared before waiting would lose it, and the
        # reader would sleep a whole re-check although its rows had committed).
        self._generation = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="feed-notifier")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _notify(self, *args: object) -> None:
        self._generation += 1
        self._changed.set()
        self._changed = asyncio.Event()

    def mark(self) -> int:
        """Taken before reading: `wait(since=mark)` returns at once if a NOTIFY came after it."""
        return self._generation

    async def _listen(self) -> None:
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(timeout=5, **self._connect_kwargs)
                closed = asyncio.Event()
                conn.add_termination_listener(lambda _conn, closed=closed: closed.set())
                await conn.add_listener(self.channel, self._notify)
                self._notify()  # events may have arrived while we were not listening
                await closed.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("feed listener unavailable (%s); retrying", type(exc).__name__)
                await asyncio.sleep(1)
            finally:
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=1)

    async def wait(self, seconds: float, *, since: int, recheck: float | None = None) -> None:
        """Until events may have committed after the generation `since` (see `mark`), or
        `seconds` pass, at most `recheck` (by default RECHECK_SECONDS: a reader held back by a
        transaction in flight, or whose LISTEN connection is lost, looks again that often)."""
        if self._generation != since:
            return
        most = RECHECK_SECONDS if recheck is None else recheck
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), min(seconds, most))


async def long_poll(
    read: Callable[[], Awaitable[list[T]]], notifier: FeedNotifier, wait: float
) -> list[T]:
    """`read()` until it returns something or `wait` seconds pass, sleeping on the notifier in
    between (the caller's query takes a pooled connection only while it runs)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        mark = notifier.mark()
        rows = await read()
        remaining = deadline - loop.time()
        if rows or remaining <= 0:
            return rows
        await notifier.wait(remaining, since=mark)
