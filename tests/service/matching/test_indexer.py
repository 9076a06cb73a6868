"""The indexer's pipeline against the real listing feed, PostgreSQL and Meilisearch: many small
pages in flight, committed in order (consecutive finished pages together), a trickle indexed
while pages are pending, and no cursor move past a page whose task failed. The match queue rows
a page queues are held (not claimable) until its commit releases them; those of a page that
never committed are dropped when the pipeline starts again and queued again by the replay.
Also: the feed page
that PostgreSQL renders as JSON is the ChangeEvent contract, field for field, and a long-poll
hands out events held back by an older transaction soon after that transaction ends."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from infra.seed.records import SeedRecord, load_records
from services.matching.demands.queue import IndexerQueue
from services.matching.demands.repository import claim
from services.matching.indexer import CursorMoved, Indexer, ensure_index
from services.matching.meili import MeiliClient, MeiliTaskFailed
from services.matching.models import IndexedListing, IndexerState, MatchQueueItem
from services.matching.repository import save_cursor
from shared.contracts.events import ChangeEvent
from shared.db import create_engine, create_sessionmaker
from shared.outbox import START
from shared.settings import Settings
from support import bearer, new_organization, publish_records

SELLER = "科大讯飞股份有限公司"
DEADLINE = 60.0  # seconds any wait below may take on a loaded 2-core machine


@pytest.fixture(scope="module")
def records() -> list[SeedRecord]:
    return [r for r in load_records() if r.asset.holders[0].name == SELLER][:20]


@pytest.fixture(scope="module")
async def seller_id(listing: httpx.AsyncClient, operator_key: str) -> str:
    org, _ = await new_organization(
        listing, operator_key, name=SELLER, region="340104", kind="enterprise"
    )
    return org


@pytest.fixture(scope="module")
async def sessionmaker(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings, application_name="test-indexer-pipeline")
    yield create_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
async def upstreams(listing_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """One client for listing (in process) and Meilisearch (real), as the service has."""
    mounts = {"http://listing.test": httpx.ASGITransport(app=listing_app)}
    async with httpx.AsyncClient(mounts=mounts, timeout=30) as client:
        yield client


class Published(IndexerQueue):
    """The match queue, recording what the indexer asked of it: the listings each page held,
    what became searchable commit by commit (`calls`: the listings the commit released), the
    rows dropped at each start, and whether the indexer (once set) reported a backlog at each
    commit."""

    def __init__(self) -> None:
        self.held: dict[str, list[str]] = {}
        self.calls: list[list[str]] = []
        self.dropped: list[int] = []
        self.indexer: Indexer | None = None
        self.backlog: list[bool] = []

    async def enqueue(
        self, session: AsyncSession, docs: list[dict[str, Any]], held_by: str | None
    ) -> None:
        assert held_by is not None  # the pipeline holds what it queues until the commit
        self.held[held_by] = [d["listing_id"] for d in docs]
        await super().enqueue(session, docs, held_by)

    async def release(self, session: AsyncSession, pages: list[str]) -> None:
        assert session.in_transaction()  # in the transaction that moves the cursor
        self.calls.append([i for page in pages for i in self.held[page]])
        if self.indexer is not None:
            self.backlog.append(self.indexer.backlog())
        await super().release(session, pages)

    async def drop_held(self, session: AsyncSession, prefix: str) -> int:
        dropped = await super().drop_held(session, prefix)
        self.dropped.append(dropped)
        return dropped


def indexer(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    upstreams: httpx.AsyncClient,
    on_published: Published,
    uid: str,
) -> Indexer:
    meili = MeiliClient(upstreams, settings.meili_url, settings.meili_master_key.get_secret_value())
    return Indexer(
        settings=settings,
        sessionmaker=sessionmaker,
        http=upstreams,
        meili=meili,
        index_uid=uid,
        match_queue=on_published,
        page_size=2,  # many pages in flight at once
    )


async def feed_head(listing: httpx.AsyncClient, key: str) -> str:
    head = await listing.get("/v1/changes/head", headers=bearer(key))
    return str(head.json()["cursor"])


async def cursor(sessionmaker: async_sessionmaker[AsyncSession], uid: str) -> str | None:
    async with sessionmaker() as session:
        state = await session.get(IndexerState, uid)
    return state.cursor if state else None


async def published_listings(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        query = text("SELECT count(*) FROM listing.listings WHERE status = 'published'")
        return int((await session.execute(query)).scalar_one())


async def queue_rows(
    sessionmaker: async_sessionmaker[AsyncSession], listing_ids: list[str]
) -> dict[str, str | None]:
    """The match queue's rows of `listing_ids`: who holds each (None: released)."""
    async with sessionmaker() as session:
        rows = await session.execute(
            select(MatchQueueItem).where(
                col(MatchQueueItem.listing_id).in_([uuid.UUID(i) for i in listing_ids])
            )
        )
        return {str(row.listing_id): row.held_by for row in rows.scalars()}


async def index_versions(meili: MeiliClient, uid: str) -> dict[str, int]:
    docs = await meili.fetch_documents(uid, ["id", "version"], 0, 1000)
    return {d["id"]: d["version"] for d in docs}


async def until(check: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {DEADLINE:.0f} s: {what}")
        await asyncio.sleep(0.05)


async def test_the_feed_json_is_the_change_event_contract(
    listing: httpx.AsyncClient,
    operator_key: str,
    seller_id: str,
    records: list[SeedRecord],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await publish_records(listing, operator_key, seller_id, records[:2])
    page = (
        await listing.get(
            "/v1/changes", params={"after": "0.0", "limit": 1000}, headers=bearer(operator_key)
        )
    ).json()
    assert page["events"] and page["next_cursor"] == page["events"][-1]["cursor"]
    async with sessionmaker() as session:
        rows = (
            await session.execute(
                text(
                    "SELECT xid::text || '.' || seq AS cursor, type, entity, entity_id, version,"
                    " occurred_at, payload FROM listing.change_events ORDER BY xid, seq"
                )
            )
        ).all()
    assert len(rows) == len(page["events"])
    for event, row in zip(page["events"], rows, strict=True):
        parsed = ChangeEvent.model_validate(event)
        payload = row.payload
        assert (parsed.cursor, parsed.type, parsed.entity) == (row.cursor, row.type, row.entity)
        assert (parsed.entity_id, parsed.version) == (row.entity_id, row.version)
        assert parsed.occurred_at == row.occurred_at  # the same instant, to the microsecond
        assert event["occurred_at"].endswith("Z")
        assert parsed.data == payload["data"]
        assert event["asset_id"] == payload["asset_id"]
        assert event["seller_id"] == payload["seller_id"]


async def test_pages_in_flight_commit_in_order_and_a_trickle_is_indexed(
    settings: Settings,
    listing: httpx.AsyncClient,
    operator_key: str,
    seller_id: str,
    records: list[SeedRecord],
    sessionmaker: async_sessionmaker[AsyncSession],
    upstreams: httpx.AsyncClient,
) -> None:
    await publish_records(listing, operator_key, seller_id, records[2:9])
    uid = f"pipeline_{uuid.uuid4().hex[:8]}"
    published = Published()
    worker = published.indexer = indexer(settings, sessionmaker, upstreams, published, uid)
    await ensure_index(worker.meili, uid)
    head = await feed_head(listing, operator_key)
    running = asyncio.create_task(worker.pipeline(wait=1.0))
    try:
        await until(lambda: _at(sessionmaker, uid, head, running), "the cursor at the feed head")
        # A page's worth of events was in flight at the first commit (the match worker waits
        # then); at the head, with nothing in flight, there is no backlog.
        assert published.backlog[0] is True
        assert worker.backlog() is False
        async with sessionmaker() as session:
            recorded = {
                str(r.listing_id): r.version
                for r in (await session.execute(select(IndexedListing))).scalars()
            }
        assert await index_versions(worker.meili, uid) == recorded
        assert len(recorded) == await published_listings(sessionmaker)
        flat = [i for call in published.calls for i in call]
        assert sorted(flat) == sorted(recorded)  # each became searchable once
        # ... and each was released at its commit: nothing of this run is held any more.
        assert set((await queue_rows(sessionmaker, flat)).values()) == {None}

        # A trickle while the pipeline runs: one more listing, searchable without a restart.
        await publish_records(listing, operator_key, seller_id, records[9:10])
        after = await feed_head(listing, operator_key)
        await until(lambda: _at(sessionmaker, uid, after, running), "the new event indexed")
        assert len(await index_versions(worker.meili, uid)) == len(recorded) + 1
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await worker.meili.wait_task(await worker.meili.delete_index(uid))


async def _at(
    sessionmaker: async_sessionmaker[AsyncSession], uid: str, head: str, running: asyncio.Task[None]
) -> bool:
    if running.done():
        running.result()  # the pipeline failed: show why
        raise AssertionError("the pipeline ended")
    return await cursor(sessionmaker, uid) == head


async def failing_index(
    worker: Indexer, uid: str, sessionmaker: async_sessionmaker[AsyncSession], *tables: str
) -> None:
    """Index `uid` with another primary key, so that every document task fails, and no
    listing counted as indexed yet (`tables` emptied too)."""
    await worker.meili.wait_task(await worker.meili.create_index(uid, "listing_id"))
    async with sessionmaker() as session, session.begin():
        for table in ("matching.indexed_listings", *tables):
            await session.execute(text(f"DELETE FROM {table}"))


async def test_a_failed_task_ends_the_pipeline_without_moving_the_cursor(
    settings: Settings,
    listing: httpx.AsyncClient,
    operator_key: str,
    seller_id: str,
    records: list[SeedRecord],
    sessionmaker: async_sessionmaker[AsyncSession],
    upstreams: httpx.AsyncClient,
) -> None:
    await publish_records(listing, operator_key, seller_id, records[10:12])
    uid = f"pipeline_{uuid.uuid4().hex[:8]}"
    published = Published()
    worker = indexer(settings, sessionmaker, upstreams, published, uid)
    await failing_index(worker, uid, sessionmaker)
    try:
        with pytest.raises(MeiliTaskFailed):
            await asyncio.wait_for(worker.pipeline(wait=1.0), DEADLINE)
        assert await cursor(sessionmaker, uid) is None
        async with sessionmaker() as session:
            assert (await session.execute(select(IndexedListing))).first() is None
        assert published.calls == []
    finally:
        await worker.meili.wait_task(await worker.meili.delete_index(uid))


async def test_a_page_is_not_recorded_once_someone_else_moved_the_cursor(
    settings: Settings,
    listing: httpx.AsyncClient,
    operator_key: str,
    seller_id: str,
    records: list[SeedRecord],
    sessionmaker: async_sessionmaker[AsyncSession],
    upstreams: httpx.AsyncClient,
) -> None:
    """A replica that lost its lease without noticing (or raced an operator's replay) reads
    a page after the cursor it knew; another writer moved it meanwhile: the page's commit
    raises, and the cursor stays the other writer's."""
    await publish_records(listing, operator_key, seller_id, records[16:20])
    uid = f"pipeline_{uuid.uuid4().hex[:8]}"
    worker = indexer(settings, sessionmaker, upstreams, Published(), uid)
    worker.match_queue = None  # `apply` queues in its commit; Published expects held pages
    await ensure_index(worker.meili, uid)
    try:
        first = await worker.fetch(START, wait=0)
        second = await worker.fetch(first.next_cursor, wait=0)
        assert first.events and second.events
        async with sessionmaker() as session, session.begin():  # the other writer's commit
            await save_cursor(session, uid, second.next_cursor, None)
        with pytest.raises(CursorMoved):
            await worker.apply(first, START)
        assert await cursor(sessionmaker, uid) == second.next_cursor
        # Read after the stored cursor, the next page commits.
        third = await worker.fetch(second.next_cursor, wait=0)
        await worker.apply(third, second.next_cursor)
        assert await cursor(sessionmaker, uid) == third.next_cursor
    finally:
        await worker.meili.wait_task(await worker.meili.delete_index(uid))


async def test_held_rows_of_a_page_that_never_committed_are_queued_again_by_the_replay(
    settings: Settings,
    listing: httpx.AsyncClient,
    operator_key: str,
    seller_id: str,
    records: list[SeedRecord],
    sessionmaker: async_sessionmaker[AsyncSession],
    upstreams: httpx.AsyncClient,
) -> None:
    """A page whose task fails has queued its listings held: no worker claims them, and the
    next start drops them; the replay from the committed cursor queues them again and its
    commit releases them, each once."""
    await publish_records(listing, operator_key, seller_id, records[13:16])
    uid = f"pipeline_{uuid.uuid4().hex[:8]}"
    published = Published()
    worker = indexer(settings, sessionmaker, upstreams, published, uid)
    await failing_index(worker, uid, sessionmaker, "matching.match_queue")  # none queued yet
    try:
        with pytest.raises(MeiliTaskFailed):
            await asyncio.wait_for(worker.pipeline(wait=1.0), DEADLINE)
        # What the pages asked to hold; a hold still in flight when the failed send ended the
        # run was cancelled with it and left no row, so the rows are what was held.
        asked = {i for ids in published.held.values() for i in ids}
        rows = await queue_rows(sessionmaker, list(asked))
        held = set(rows)
        assert held and published.calls == []
        assert all(page is not None and page.startswith(f"{uid}/") for page in rows.values())
        async with sessionmaker() as session:
            claimed = await claim(session, 10_000, 60.0)
            await session.rollback()
        assert not {str(item.listing_id) for item in claimed} & held  # held: not claimed

        # Started again on a working index: the held rows go, the replay queues them again.
        await worker.meili.wait_task(await worker.meili.delete_index(uid))
        await ensure_index(worker.meili, uid)
        published.held.clear()
        head = await feed_head(listing, operator_key)
        running = asyncio.create_task(worker.pipeline(wait=1.0))
        try:
            await until(lambda: _at(sessionmaker, uid, head, running), "the replay at the head")
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
        assert published.dropped == [0, len(held)]
        released = [i for call in published.calls for i in call]
        assert sorted(released) == sorted(set(released))  # each once
        assert held <= set(released)
        assert set((await queue_rows(sessionmaker, list(held))).values()) == {None}
    finally:
        await worker.meili.wait_task(await worker.meili.delete_index(uid))


async def test_a_long_poll_sees_held_back_events_when_the_holder_ends(
    listing: httpx.AsyncClient,
    operator_key: str,
    seller_id: str,
    records: list[SeedRecord],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """A transaction that writes no event (so sends no NOTIFY) holds later events back; the
    long-poll hands them out soon after it ends, not at the end of its wait."""
    start = await feed_head(listing, operator_key)
    async with sessionmaker() as holder:
        await holder.begin()
        await holder.execute(text("SELECT pg_current_xact_id()"))  # an xid, older than the next
        await publish_records(listing, operator_key, seller_id, records[12:13])
        poll = asyncio.create_task(
            listing.get(
                "/v1/changes",
                params={"after": start, "wait": 20},
                headers=bearer(operator_key),
            )
        )
        await asyncio.sleep(0.5)
        assert not poll.done()  # held back while the holder is in flight
        await holder.rollback()
        ended = time.monotonic()
    page = (await asyncio.wait_for(poll, DEADLINE)).json()
    waited = time.monotonic() - ended
    assert page["events"] and all(e["entity"] == "listing" for e in page["events"])
    assert waited < 5.0, waited  # far less than the 20 s wait
