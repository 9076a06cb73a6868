"""The indexer: tails the listing change feed and keeps the catalogue index in step.

- One writer at a time: a PostgreSQL advisory lock is the lease (a second replica waits).
- Idempotent by (listing id, version): the version indexed is kept in PostgreSQL and an event
  that is not newer is skipped, so replays and reorders never put an older version back.
- The cursor advances only after Meilisearch confirms the tasks and in the same transaction as
  the versions and the release of the page's match queue rows: a crash or an outage anywhere
  replays the page, nothing is lost.
- A page's newly searchable listings are queued for matching, held by the page, as it is sent
  (not kept in memory until its commit): the pages in flight cost little memory, so enough of
  them fit for Meilisearch to index large batches. A run starts by dropping the held rows (no
  page is in flight; the replay queues them again).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import zlib
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.matching import repository
from services.matching.catalogue import SEARCHABLE, SETTINGS, search_document
from services.matching.meili import MeiliClient
from shared.contracts.events import ChangeFeedPage
from shared.settings import Settings

logger = logging.getLogger("ipx.matching.indexer")


class MatchQueue(Protocol):
    """Where the search documents of a page that are searchable in a new version go (newly
    published, or changed while published: a new price is scored again): queued held by the
    page as it is sent, released in the transaction that records the page (so they are matched
    exactly when the cursor moves)."""

    async def enqueue(
        self, session: AsyncSession, docs: list[dict[str, Any]], held_by: str | None
    ) -> None:
        """Queue `docs`, held by the page `held_by` (None: claimable once this commits)."""

    async def release(self, session: AsyncSession, pages: list[str]) -> None:
        """Make the rows held by `pages` claimable, in the transaction that records them."""

    async def drop_held(self, session: AsyncSession, prefix: str) -> int:
        """Delete the rows held by the pages whose names start with `prefix` (an indexer's,
        none of them in flight); how many."""


# Pages sent to Meilisearch and not yet committed, and their events: enough that Meilisearch
# always has the next pages queued while it indexes a batch (it merges queued tasks into one
# batch, and a batch costs more the larger the index: docs/DECISIONS.md, Matching,
# "Indexer"), and that a trickle of small pages is never held back; the events bound the
# memory (a page in flight keeps its versions, not its documents).
IN_FLIGHT_PAGES = 64
IN_FLIGHT_EVENTS = 32000
# The longest pause between two polls of a page's tasks (a finished task is seen this soon).
TASK_POLL_SECONDS = 0.05


@dataclass
class Plan:
    events: int
    after: str  # the cursor the page was read after: the commit checks it is still stored
    cursor: str
    last_at: datetime | None
    upserts: list[dict[str, Any]] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    to_match: list[dict[str, Any]] = field(default_factory=list)
    held_by: str | None = None  # the page's name in the match queue, once its rows are queued
    tasks: list[int] = field(default_factory=list)
    upserted: int = 0
    deleted: int = 0
    sent: asyncio.Task[None] | None = None


class Flight:
    """The pages in flight (sent, not committed), oldest first, shared by the loop that reads
    and sends pages and the loop that commits them; `overlay` holds the versions they carry."""

    def __init__(self) -> None:
        self.pending: deque[Plan] = deque()
        self.events = 0
        self.overlay: dict[UUID, tuple[int, bool]] = {}
        self.changed = asyncio.Condition()

    def has_room(self) -> bool:
        return len(self.pending) < IN_FLIGHT_PAGES and self.events < IN_FLIGHT_EVENTS

    async def add(self, plan: Plan) -> None:
        for record in plan.records:
            self.overlay[record["listing_id"]] = (record["version"], record["searchable"])
        async with self.changed:
            self.pending.append(plan)
            self.events += plan.events
            self.changed.notify_all()

    async def remove(self, plans: list[Plan]) -> None:
        """`plans` (the oldest pending) are committed."""
        for plan in plans:
            for record in plan.records:
                if self.overlay.get(record["listing_id"], (0, False))[0] == record["version"]:
                    del self.overlay[record["listing_id"]]
        async with self.changed:
            for plan in plans:
                assert self.pending[0] is plan
                self.pending.popleft()
                self.events -= plan.events
            self.changed.notify_all()


class CursorMoved(Exception):
    """The stored cursor is not where this run's pages began: someone else indexed meanwhile.
    The run ends without recording; the next one starts from the stored cursor."""

    def __init__(self, index_uid: str, expected: str, stored: str) -> None:
        super().__init__(f"{index_uid}: the cursor moved from {expected} to {stored}")


@dataclass
class PageResult:
    events: int
    upserted: int
    deleted: int
    cursor: str


def lease_key(index_uid: str) -> int:
    """The advisory lock that is the indexer's lease (rebuild and check take the same one)."""
    return zlib.crc32(f"ipx-indexer:{index_uid}".encode())


async def ensure_index(meili: MeiliClient, uid: str) -> None:
    """Create the index if needed and apply the settings kept in code."""
    if not await meili.index_exists(uid):
        await meili.wait_task(await meili.create_index(uid, "id"))
    await meili.wait_task(await meili.update_settings(uid, SETTINGS))


class Indexer:
    def __init__(
        self,
        *,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        http: httpx.AsyncClient,
        meili: MeiliClient,
        index_uid: str,
        match_queue: MatchQueue | None = None,
        page_size: int = 1000,
        node: str | None = None,
    ) -> None:
        """`node`: a read replica's name (issue 21: a Meilisearch node of its own fed from the
        feed with a cursor and a lease of its own); None, the primary node, whose indexer keeps
        the versions indexed (`indexed_listings`: matching, rebuild and check read them) and
        queues new listings for matching."""
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.http = http
        self.meili = meili
        self.index_uid = index_uid
        self.node = node
        # Where its cursor is kept (and what its lease is named after).
        self.state_key = index_uid if node is None else f"{index_uid}@{node}"
        self.match_queue = match_queue if node is None else None
        self.page_size = page_size
        self.lease_key = lease_key(self.state_key)
        self._flight: Flight | None = None  # the pages in flight, while the pipeline runs

    def backlog(self) -> bool:
        """Working through a bulk backlog (a page's worth of events read and not yet committed:
        the reader runs ahead of the commits while there is more to read), as opposed to
        keeping up with a trickle. (Not "the last page was full": the next read may be a
        long-poll at the head.)"""
        flight = self._flight
        return flight is not None and flight.events >= self.page_size

    async def cursor(self) -> str:
        async with self.sessionmaker() as session:
            return await repository.cursor(session, self.state_key)

    async def fetch(self, after: str, wait: float) -> ChangeFeedPage:
        response = await self.http.get(
            f"{self.settings.listing_url}/v1/changes",
            params={"after": after, "limit": self.page_size, "wait": wait},
            headers={"Authorization": f"Bearer {self.settings.service_key.get_secret_value()}"},
            timeout=wait + self.settings.upstream_timeout_seconds,
        )
        response.raise_for_status()
        return ChangeFeedPage.model_validate_json(response.content)

    async def plan(
        self, page: ChangeFeedPage, after: str, overlay: dict[UUID, tuple[int, bool]]
    ) -> Plan:
        """What a page (read `after` a cursor) changes, against the versions indexed
        (PostgreSQL, then `overlay`: pages sent but not yet committed)."""
        latest: dict[UUID, Any] = {}
        for event in page.events:
            if event.entity != "listing":
                continue
            seen = latest.get(event.entity_id)
            if seen is None or event.version > seen.version:
                latest[event.entity_id] = event
        # Taken before PostgreSQL is read: a page committed meanwhile leaves the overlay only
        # after its versions are in PostgreSQL, so one of the two always has it.
        sent = {i: overlay[i] for i in latest if i in overlay}
        known: dict[UUID, tuple[int, bool]] = {}
        if self.node is None:  # a replica node applies the feed in order, versions unkept
            async with self.sessionmaker() as session:
                known = await repository.indexed_versions(session, list(latest))
        plan = Plan(
            events=len(page.events),
            after=after,
            cursor=page.next_cursor,
            last_at=page.events[-1].occurred_at if page.events else None,
        )
        for listing_id, event in latest.items():
            version, _ = max(sent.get(listing_id, (0, False)), known.get(listing_id, (0, False)))
            if event.version <= version:
                continue  # a replay or an older version: the index has newer
            searchable = event.data["status"] in SEARCHABLE
            if searchable:
                document = search_document(
                    str(listing_id),
                    str(event.asset_id),
                    event.version,
                    event.data,
                    seller_id=str(event.seller_id) if event.seller_id else None,
                )
                plan.upserts.append(document)
                plan.to_match.append(document)
            else:  # also when unrecorded: an interrupted page may have left it in the index
                plan.deletes.append(str(listing_id))
            plan.records.append(
                {
                    "listing_id": listing_id,
                    "asset_id": event.asset_id,
                    "version": event.version,
                    "searchable": searchable,
                    "indexed_at": datetime.now(UTC),
                }
            )
        return plan

    async def send(self, plan: Plan) -> None:
        """Enqueue the page's Meilisearch tasks without waiting (Meilisearch batches them)."""
        if plan.upserts:
            plan.tasks.append(await self.meili.add_documents(self.index_uid, plan.upserts))
        if plan.deletes:
            plan.tasks.append(await self.meili.delete_documents(self.index_uid, plan.deletes))
        # Only the counts are needed from here on.
        plan.upserted, plan.deleted = len(plan.upserts), len(plan.deletes)
        plan.upserts, plan.deletes = [], []

    async def hold(self, plan: Plan, run: str) -> None:
        """Queue the page's newly searchable listings for matching, held by the page until it
        commits (a transaction of its own), and let go of their documents."""
        if plan.to_match and self.match_queue is not None:
            held_by = f"{self.index_uid}/{run}/{plan.cursor}"
            async with self.sessionmaker() as session, session.begin():
                await self.match_queue.enqueue(session, plan.to_match, held_by)
            plan.held_by = held_by
        plan.to_match = []

    async def send_and_hold(self, plan: Plan, run: str) -> None:
        """`send` and `hold` at once (Meilisearch and PostgreSQL); the first failure ends both
        and is raised as it is (the worker tells outages by their type)."""
        both = [asyncio.create_task(self.send(plan)), asyncio.create_task(self.hold(plan, run))]
        try:
            await asyncio.gather(*both)
        finally:
            for task in both:
                task.cancel()
            await asyncio.gather(*both, return_exceptions=True)

    async def commit(self, plan: Plan) -> PageResult:
        """Once the page's tasks succeeded: its versions, its match queue rows and the cursor,
        in one transaction."""
        await self.meili.wait_tasks(plan.tasks, poll_cap=TASK_POLL_SECONDS)
        await self.record([plan])
        return PageResult(plan.events, plan.upserted, plan.deleted, plan.cursor)

    async def record(self, plans: list[Plan]) -> None:
        """Consecutive pages whose tasks succeeded: their versions, the release of their match
        queue rows (or their queueing, if not held) and the cursor after the last one, in one
        transaction."""
        records: dict[UUID, dict[str, Any]] = {}
        published: dict[str, dict[str, Any]] = {}
        held = [plan.held_by for plan in plans if plan.held_by is not None]
        for plan in plans:  # one row per listing: its newest version (an upsert takes a row once)
            for record in plan.records:
                seen = records.get(record["listing_id"])
                if seen is None or record["version"] > seen["version"]:
                    records[record["listing_id"]] = record
            for doc in plan.to_match:  # not held (`apply`)
                found = published.get(doc["listing_id"])
                if found is None or doc["version"] > found["version"]:
                    published[doc["listing_id"]] = doc
        last_at = next((p.last_at for p in reversed(plans) if p.last_at is not None), None)
        async with self.sessionmaker() as session, session.begin():
            # Compared first, under the row's lock: a replica that lost its lease without
            # noticing, an operator's replay or a rebuild's swap moved it, and this run's pages
            # must not be recorded over theirs (issue 21).
            stored = await repository.lock_cursor(session, self.state_key)
            if stored != plans[0].after:
                raise CursorMoved(self.state_key, plans[0].after, stored)
            if records and self.node is None:
                await repository.record_indexed(session, list(records.values()), only_newer=True)
            if self.match_queue is not None:
                if published:
                    await self.match_queue.enqueue(session, list(published.values()), None)
                if held:
                    await self.match_queue.release(session, held)
            await repository.save_cursor(session, self.state_key, plans[-1].cursor, last_at)

    async def apply(self, page: ChangeFeedPage, after: str) -> PageResult:
        """Index one page (read `after` a cursor) and record it (cursor, versions, match queue)
        atomically: its listings are queued in the commit, not held (another run may be in
        flight: its held rows stay)."""
        plan = await self.plan(page, after, {})
        await self.send(plan)
        return await self.commit(plan)

    async def step(self, wait: float) -> PageResult:
        after = await self.cursor()
        return await self.apply(await self.fetch(after, wait), after)

    async def pipeline(self, wait: float) -> None:
        """Index continuously: one loop reads and sends pages (up to IN_FLIGHT_PAGES and
        IN_FLIGHT_EVENTS ahead of the last commit), another commits them as their tasks succeed.

        Pages commit in order, each after its own tasks succeeded (consecutive finished pages
        in one transaction); on any failure both loops end and the caller restarts from the
        committed cursor (nothing is skipped). Match queue rows held by pages of an earlier run
        are dropped first: those pages are replayed and queue them again."""
        if self.match_queue is not None:
            async with self.sessionmaker() as session, session.begin():
                dropped = await self.match_queue.drop_held(session, f"{self.index_uid}/")
            if dropped:
                logger.info("dropped %d match queue rows of uncommitted pages", dropped)
        flight = self._flight = Flight()
        run = secrets.token_hex(4)  # names this run's pages in the match queue
        loops = [
            asyncio.create_task(self._send_pages(flight, wait, run), name="indexer-send"),
            asyncio.create_task(self._commit_pages(flight), name="indexer-commit"),
        ]
        try:
            done, _ = await asyncio.wait(loops, return_when=asyncio.FIRST_EXCEPTION)
            for loop in done:
                loop.result()  # the failure that ended it
        finally:
            # Nothing may be sent once we return (the caller releases the lease).
            sends = [p.sent for p in flight.pending if p.sent is not None]
            for task in (*loops, *sends):
                task.cancel()
            await asyncio.gather(*loops, *sends, return_exceptions=True)
            self._flight = None

    async def _send_pages(self, flight: Flight, wait: float, run: str) -> None:
        """Read the feed and send each page (and queue its listings for matching, held), the
        next page read while one is being sent."""
        cursor = await self.cursor()
        sending: asyncio.Task[None] | None = None
        while True:
            async with flight.changed:
                await flight.changed.wait_for(flight.has_room)
            if not flight.pending:
                # Nothing in flight: the committed cursor is the truth (an operator's replay or
                # a rebuild's swap may have moved it).
                cursor = await self.cursor()
                flight.overlay.clear()
            page = await self.fetch(cursor, wait)
            if not page.events:
                continue
            plan = await self.plan(page, cursor, flight.overlay)
            if sending is not None:
                await sending  # Meilisearch applies tasks in the order they are sent
            sending = plan.sent = asyncio.create_task(self.send_and_hold(plan, run))
            await flight.add(plan)
            cursor = page.next_cursor

    async def _commit_pages(self, flight: Flight) -> None:
        """Commit the oldest page once its tasks succeeded, with every page after it whose
        tasks succeeded too (Meilisearch indexes queued tasks together)."""
        while True:
            async with flight.changed:
                await flight.changed.wait_for(lambda: bool(flight.pending))
            oldest = flight.pending[0]
            assert oldest.sent is not None
            await oldest.sent
            await self.meili.wait_tasks(oldest.tasks, poll_cap=TASK_POLL_SECONDS)
            ready = [oldest]
            sent: list[Plan] = []  # the pages after it already sent, in order
            for plan in list(flight.pending)[1:]:
                if not _sent(plan):
                    break
                sent.append(plan)
            statuses = await self.meili.task_statuses([t for p in sent for t in p.tasks])
            for plan in sent:
                if any(statuses.get(t, {}).get("status") != "succeeded" for t in plan.tasks):
                    break  # not yet (or failed: the next round waits on it and raises)
                ready.append(plan)
            await self.record(ready)
            await flight.remove(ready)


def _sent(plan: Plan) -> bool:
    """The page's tasks are enqueued (its send ended without an error)."""
    task = plan.sent
    return task is not None and task.done() and not task.cancelled() and task.exception() is None
