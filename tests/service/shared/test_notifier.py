"""The LISTEN-based notifier that wakes long-polling readers (shared.notifier), on a real
PostgreSQL: a NOTIFY that arrives while a reader is still querying must not be lost (the
reader would otherwise sleep a whole re-check with its rows committed)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

import shared.notifier
from shared.db import asyncpg_connect_kwargs
from shared.notifier import FeedNotifier
from shared.settings import Settings

CHANNEL = "test_feed_notifier"


@pytest.fixture
async def notifier(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[FeedNotifier]:
    # No timed re-check: a wait ends on a NOTIFY or not at all within these tests.
    monkeypatch.setattr(shared.notifier, "RECHECK_SECONDS", 60.0)
    notifier = FeedNotifier(settings.database_url, channel=CHANNEL)
    await notifier.start()
    try:
        await until(lambda: notifier.mark() >= 1)  # listening (it counts the connect as a wake)
        yield notifier
    finally:
        await notifier.stop()


@pytest.fixture
async def sender(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(**asyncpg_connect_kwargs(settings.database_url))
    try:
        yield conn
    finally:
        await conn.close()


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Polls: the conditions are the notifier's counter, which has no event of its own to
    await (the one a test would wait on is what is under test)."""
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


async def test_a_notify_during_the_read_is_not_lost(
    notifier: FeedNotifier, sender: asyncpg.Connection
) -> None:
    mark = notifier.mark()  # the reader, before its query
    await sender.execute(f"NOTIFY {CHANNEL}")  # a row commits while the query runs
    await until(lambda: notifier.mark() != mark)
    waiting = notifier.wait(30, since=mark)
    with pytest.raises(StopIteration):  # returns without suspending
        waiting.send(None)


async def test_a_reader_up_to_date_sleeps_until_the_next_notify(
    notifier: FeedNotifier, sender: asyncpg.Connection
) -> None:
    mark = notifier.mark()
    waiting = asyncio.create_task(notifier.wait(30, since=mark))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await sender.execute(f"NOTIFY {CHANNEL}")
    await asyncio.wait_for(waiting, 5)
    assert notifier.mark() == mark + 1


async def test_a_wait_without_notify_ends_at_its_recheck(notifier: FeedNotifier) -> None:
    """The match worker's idle wait: woken by a NOTIFY, else after its own re-check (2 s), not
    the readers' default (patched to 60 s here)."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    await asyncio.wait_for(notifier.wait(30, since=notifier.mark(), recheck=0.3), 5)
    assert loop.time() - began >= 0.3
