"""The match queue: listings that became searchable, matched against the demands by a worker.

- The indexer queues a page's newly searchable listings held by that page when it plans it,
  and releases them in the transaction that moves its cursor past the page (`IndexerQueue`):
  a page is released exactly once, the cursor does not wait for the demand searches, and the
  pages in flight keep no documents in memory (so more of them fit: larger Meilisearch
  batches). Only released rows are claimed; when the indexer starts, no page is in flight, so
  it drops the held rows and the replay from its cursor queues them again.
- The worker claims a batch with a lease (`FOR UPDATE SKIP LOCKED` only for the claim: no row
  lock and no transaction is held across the Meilisearch call, NOTES.md), searches the demands,
  then stores the matches, their events and the removal of the batch in one transaction. A crash
  before that commit stores nothing and the lease runs out, so another loop (or replica) takes
  the batch again; a batch matched twice (a lease that ran out under a slow worker) writes no
  second `match.created`, because an event is written only when the match row is inserted.
- A claim is CLAIM_BATCH listings and each found demand is scored and let go, so memory stays
  flat whatever the backlog.
- While the indexer works through a bulk backlog, the loops wait (at most YIELD_SECONDS at a
  time): the demand searches would compete with Meilisearch's indexing for the same cores; the
  backlog's listings become searchable sooner and are matched right after. Measured:
  docs/DECISIONS.md, Matching, "Match queue".
- An outage (Meilisearch or PostgreSQL unreachable) gives the batch back at once and the loop
  backs off. Any other failure is retried listing by listing: the listings that match are
  stored, and one that fails on its own waits a back-off that grows with its attempts (it stays
  queued and counted in `matches_pending`), so it holds back neither its batch nor the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from pydantic_core import to_json
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.matching.demands import repository
from services.matching.demands.matcher import MULTI_SEARCH_BATCH, QUEUED_FIELDS, Matcher
from services.matching.demands.repository import Claimed
from services.matching.meili import MeiliUnavailable
from shared.errors import is_database_unavailable

logger = logging.getLogger("ipx.matching.matches")

LEASE_SECONDS = 60.0
# Listings per claim: eight multi-searches of MULTI_SEARCH_BATCH, then one transaction for their
# matches. Each demand the batch finds is read and compiled once for the whole batch, so a larger
# claim compiles less (docs/DECISIONS.md, Matching, "Matching's speed").
CLAIM_BATCH = 8 * MULTI_SEARCH_BATCH
# Two loops keep two multi-searches in flight: Meilisearch runs each on one thread, so one loop
# left a core idle while Python scored and stored the previous batch.
CONCURRENCY = 2
# An idle loop looks at the queue this often without a NOTIFY (leases that ran out).
IDLE_WAIT_SECONDS = 2.0
CHANNEL = repository.CHANNEL  # notified by the statements that make rows claimable
# A listing whose matching failed on its own is retried after RETRY_BASE_SECONDS * 2**(attempts
# - 1), at most RETRY_MAX_SECONDS.
RETRY_BASE_SECONDS = 1.0
RETRY_MAX_SECONDS = 600.0
# The longest a loop waits for the indexer's backlog before it matches one batch anyway.
YIELD_SECONDS = 10.0


async def enqueue(
    session: AsyncSession, docs: list[dict[str, Any]], held_by: str | None = None
) -> None:
    """Queue listings that became searchable (search documents), in the caller's transaction:
    claimable once it commits or, `held_by` an indexer page, once that page is released."""
    if not docs:
        return
    await repository.enqueue(
        session,
        [UUID(doc["listing_id"]) for doc in docs],
        [int(doc["version"]) for doc in docs],
        # One JSON array for the page (one encoder call instead of one per listing).
        to_json([{name: doc.get(name) for name in QUEUED_FIELDS} for doc in docs]).decode(),
        held_by,
    )


class IndexerQueue:
    """The match queue as the indexer uses it (`services.matching.indexer.MatchQueue`)."""

    async def enqueue(
        self, session: AsyncSession, docs: list[dict[str, Any]], held_by: str | None
    ) -> None:
        await enqueue(session, docs, held_by)

    async def release(self, session: AsyncSession, pages: list[str]) -> None:
        await repository.release_held(session, pages)

    async def drop_held(self, session: AsyncSession, prefix: str) -> int:
        return await repository.drop_held(session, prefix)


def retry_delay(attempts: int) -> float:
    """Seconds before a listing whose matching failed `attempts` times is tried again."""
    return float(min(RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0), RETRY_MAX_SECONDS))


async def wait_while(condition: Callable[[], bool], seconds: float, poll: float = 0.1) -> None:
    """Until `condition()` is false, or `seconds` have passed. Polls: the indexer's backlog is
    a condition over its pages in flight, with no event of its own (ten checks a second cost
    nothing)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while condition() and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(poll)


def is_outage(exc: BaseException) -> bool:
    """Meilisearch or PostgreSQL unreachable: nothing to do with the listings at hand."""
    return isinstance(exc, MeiliUnavailable) or is_database_unavailable(exc)


class MatchWorker:
    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        matcher: Matcher,
        indexer_backlog: Callable[[], bool] | None = None,
        batch: int = CLAIM_BATCH,
        lease_seconds: float = LEASE_SECONDS,
        concurrency: int = CONCURRENCY,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.matcher = matcher
        self.indexer_backlog = indexer_backlog
        self.batch = batch
        self.lease_seconds = lease_seconds
        self.concurrency = concurrency

    async def process(self, items: list[Claimed]) -> int:
        """Match claimed listings: search (no transaction open), then store the matches and
        remove the items in one transaction. Returns how many matches were new."""
        docs = [item.document for item in items]
        found = await self.matcher.find_demands(docs)
        async with self.sessionmaker() as session, session.begin():
            new = await self.matcher.store_listing_matches(session, docs, found)
            await self.complete(session, items)
        return new

    async def complete(self, session: AsyncSession, items: list[Claimed]) -> None:
        await repository.complete(session, items)

    async def run_once(self) -> int:
        """Claim one batch and match it; how many listings it held (0: the queue is empty)."""
        async with self.sessionmaker() as session, session.begin():
            items = await repository.claim(session, self.batch, self.lease_seconds)
        if items:
            await self.settle(items)
        return len(items)

    async def settle(self, items: list[Claimed]) -> None:
        """Match claimed listings; after a failure that is not an outage, one by one, each that
        fails alone backed off (module docstring). An outage or a cancellation gives back what
        is left and raises."""
        try:
            try:
                await self.process(items)
                return
            except Exception as exc:
                if is_outage(exc):
                    raise
                if len(items) == 1:
                    await self.defer(items[0], exc)
                    return
                logger.warning(
                    "matching a batch of %d failed (%s: %s); matching them one by one",
                    len(items),
                    type(exc).__name__,
                    exc,
                )
            for item in items:
                try:
                    await self.process([item])
                except Exception as exc:
                    if is_outage(exc):
                        raise
                    await self.defer(item, exc)
        except BaseException:
            with contextlib.suppress(Exception):  # what completed is gone: nothing to release
                async with self.sessionmaker() as session, session.begin():
                    await repository.release(session, items)
            raise

    async def defer(self, item: Claimed, exc: Exception) -> None:
        """A listing whose matching failed on its own: retried after a back-off."""
        delay = retry_delay(item.attempts)
        async with self.sessionmaker() as session, session.begin():
            await repository.release(session, [item], datetime.now(UTC) + timedelta(seconds=delay))
        logger.error(
            "matching listing %s (version %d) failed, attempt %d (%s: %s); retried in %.0f s",
            item.listing_id,
            item.version,
            item.attempts,
            type(exc).__name__,
            exc,
            delay,
            exc_info=exc,
        )

    async def after_indexer_backlog(self, step: Callable[[], Awaitable[int]]) -> int:
        """`step()` once the indexer has no backlog, or after YIELD_SECONDS anyway."""
        if self.indexer_backlog is not None:
            await wait_while(self.indexer_backlog, YIELD_SECONDS)
        return await step()
