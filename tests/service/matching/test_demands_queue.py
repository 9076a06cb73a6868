"""The match queue: the indexer queues newly searchable listings, the match worker matches them
against the demands. Rows held by an indexer page wait for its release (which wakes the
worker). A worker that dies after claiming, or inside the transaction that stores the matches,
loses no match and writes no `match.created` twice; a listing that fails every time holds back
neither its batch nor the queue; an outage gives a batch back at once."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

import services.matching.demands.queue
from infra.seed.records import SeedRecord
from services.matching.demands.matcher import QUEUED_FIELDS, Matcher
from services.matching.demands.queue import (
    CHANNEL,
    IDLE_WAIT_SECONDS,
    MatchWorker,
    enqueue,
    retry_delay,
)
from services.matching.demands.repository import Claimed, complete, release_held
from services.matching.meili import MeiliUnavailable
from services.matching.models import Demand, MatchQueueItem
from shared.db import asyncpg_connect_kwargs
from shared.settings import Settings
from support import (
    bearer,
    new_organization,
    patent,
    publish_listing,
    publish_records,
    real_application_numbers,
    seller_records,
    terms,
    wait_matched,
)

NUMBERS = real_application_numbers("invention_patent")
SELLER = "京东方科技集团股份有限公司"
DEMAND = {
    "title": "虚拟现实头戴显示技术",
    "text": "我公司需要虚拟现实头戴显示及交互技术，北京优先",
}


@pytest.fixture(scope="module")
def vr_records() -> list[SeedRecord]:
    return seller_records(SELLER, 20)


@pytest.fixture(scope="module")
async def market(
    listing: httpx.AsyncClient, matching: httpx.AsyncClient, operator_key: str
) -> dict[str, Any]:
    seller_id, _ = await new_organization(listing, operator_key, name=SELLER)
    buyer_id, buyer = await new_organization(
        listing, operator_key, name="北京某虚拟现实科技有限公司", kind="enterprise", region="110108"
    )
    return {"seller_id": seller_id, "buyer_id": buyer_id, "buyer": buyer}


async def feed_events(matching: httpx.AsyncClient, key: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    after = "0.0"
    for _ in range(100):  # bounded: 100 pages of 1,000
        page = (
            await matching.get(
                "/v1/matches/changes", params={"after": after, "limit": 1000}, headers=bearer(key)
            )
        ).json()
        events += page["events"]
        if not page["events"]:
            return events
        after = page["next_cursor"]
    raise AssertionError("the match feed did not end")


async def matches_of(matching: httpx.AsyncClient, key: str, demand_id: str) -> list[Any]:
    page = await matching.get(
        f"/v1/demands/{demand_id}/matches", params={"page_size": 100}, headers=bearer(key)
    )
    assert page.status_code == 200, page.text
    items: list[Any] = page.json()["items"]
    return items


async def posted_before(app: FastAPI, organization_id: str) -> Demand:
    """A demand that was posted before the listings at hand: in PostgreSQL and in the demands
    index, not yet matched against them (as the API does it, minus its catalogue search)."""
    demand = Demand(
        organization_id=UUID(organization_id), title=DEMAND["title"], text=DEMAND["text"]
    )
    async with app.state.sessionmaker() as session, session.begin():
        session.add(demand)
    matcher: Matcher = app.state.matcher
    await matcher.index_demand(demand)
    return demand


async def queued_documents(app: FastAPI, count: int) -> list[dict[str, Any]]:
    """Search documents of listings in the catalogue index (the indexer's own output)."""
    docs = await app.state.meili.fetch_documents(app.state.index_uid, QUEUED_FIELDS, 0, count)
    assert len(docs) == count
    return [{name: doc.get(name) for name in QUEUED_FIELDS} for doc in docs]


async def put_leased(app: FastAPI, docs: list[dict[str, Any]], seconds: float) -> list[Claimed]:
    """Queue `docs` as a worker that claimed them and then stopped would have left them."""
    async with app.state.sessionmaker() as session, session.begin():
        for doc in docs:
            session.add(
                MatchQueueItem(
                    listing_id=UUID(doc["listing_id"]),
                    version=int(doc["version"]),
                    document=doc,
                    lease_until=datetime.now(UTC) + timedelta(seconds=seconds),
                    attempts=1,
                )
            )
    return [Claimed(UUID(d["listing_id"]), int(d["version"]), d) for d in docs]


async def wait_for_matches(
    matching: httpx.AsyncClient, key: str, demand_id: str, count: int, seconds: float = 20.0
) -> list[Any]:
    deadline = time.monotonic() + seconds
    found: list[Any] = []
    while time.monotonic() < deadline:
        found = await matches_of(matching, key, demand_id)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"{len(found)} of {count} matches after {seconds} s")


def created_for(events: list[dict[str, Any]], demand_id: str) -> list[str]:
    return [e["listing_id"] for e in events if e["demand_id"] == demand_id]


async def matches_pending(matching: httpx.AsyncClient, operator_key: str) -> int:
    status = (await matching.get("/v1/index/status", headers=bearer(operator_key))).json()
    pending: int = status["matches_pending"]
    return pending


async def announced_once(
    matching: httpx.AsyncClient,
    operator_key: str,
    service_key: str,
    buyer: str,
    demand: Demand,
    before: int,
) -> list[Any]:
    """Once the running worker has caught up: the demand's matches, found and each announced
    exactly once after the `before` events the match feed had."""
    await wait_matched(matching, operator_key)
    found = await matches_of(matching, buyer, str(demand.id))
    assert found
    events = await feed_events(matching, service_key)
    assert sorted(created_for(events, str(demand.id))) == sorted(m["listing_id"] for m in found)
    assert len(events) == before + len(found)
    return found


async def test_a_published_listing_is_queued_matched_and_announced_once(
    listing: httpx.AsyncClient,
    matching: httpx.AsyncClient,
    market: dict[str, Any],
    operator_key: str,
    service_key: str,
    vr_records: list[SeedRecord],
) -> None:
    created = await matching.post("/v1/demands", json=DEMAND, headers=bearer(market["buyer"]))
    assert created.status_code == 201, created.text
    demand = created.json()
    assert await matches_of(matching, market["buyer"], demand["id"]) == []  # empty catalogue

    await publish_records(listing, operator_key, market["seller_id"], vr_records[:10])
    status = await wait_matched(matching, operator_key)
    assert status["matches_pending"] == 0

    found = await matches_of(matching, market["buyer"], demand["id"])
    assert found, "no newly published listing matched"
    announced = created_for(await feed_events(matching, service_key), demand["id"])
    assert sorted(announced) == sorted(m["listing_id"] for m in found)  # each exactly once
    text = next(r for r in found[0]["reasons"] if r["factor"] == "text")
    # The matched terms are the demand's, found in the listing as written or in another name.
    assert text["detail"].startswith("matched: ") and text["terms"]
    for term in text["terms"]:
        assert term["term"] in (DEMAND["title"] + DEMAND["text"]).lower()
        assert term["field"] in ("title", "abstract") and term["share"] >= 0.5
    assert any(t["written_as"] in found[0]["listing"]["title"]["zh"] for t in text["terms"])


async def test_a_worker_that_dies_after_claiming_loses_no_match(
    matching_app: FastAPI,
    matching: httpx.AsyncClient,
    market: dict[str, Any],
    operator_key: str,
    service_key: str,
) -> None:
    await wait_matched(matching, operator_key)
    demand = await posted_before(matching_app, market["buyer_id"])
    docs = await queued_documents(matching_app, 10)
    before = len(await feed_events(matching, service_key))

    # Claimed for 2 s by a worker that died: nobody else takes the listings meanwhile.
    await put_leased(matching_app, docs, seconds=2.0)
    await asyncio.sleep(1.0)
    assert await matches_of(matching, market["buyer"], str(demand.id)) == []
    assert await matches_pending(matching, operator_key) == 10

    # Once the lease has run out, the running worker matches them.
    await announced_once(matching, operator_key, service_key, market["buyer"], demand, before)


class CrashAfterStoring(MatchWorker):
    """Fails inside the transaction, after the matches and their events were written."""

    async def complete(self, session: AsyncSession, items: list[Claimed]) -> None:
        await super().complete(session, items)
        raise RuntimeError("the worker dies before its commit")


async def test_a_crash_inside_the_store_transaction_stores_nothing_and_a_rerun_no_duplicate(
    matching_app: FastAPI,
    matching: httpx.AsyncClient,
    market: dict[str, Any],
    operator_key: str,
    service_key: str,
) -> None:
    await wait_matched(matching, operator_key)
    demand = await posted_before(matching_app, market["buyer_id"])
    docs = await queued_documents(matching_app, 10)
    before = len(await feed_events(matching, service_key))
    items = await put_leased(matching_app, docs, seconds=3.0)

    crashing = CrashAfterStoring(
        sessionmaker=matching_app.state.sessionmaker, matcher=matching_app.state.matcher
    )
    with pytest.raises(RuntimeError, match="dies before its commit"):
        await crashing.process(items)
    # Rolled back whole: no match, no event, the listings still queued.
    assert await matches_of(matching, market["buyer"], str(demand.id)) == []
    assert len(await feed_events(matching, service_key)) == before
    assert await matches_pending(matching, operator_key) == 10

    # The lease runs out and the running worker matches them, each announced once.
    found = await announced_once(
        matching, operator_key, service_key, market["buyer"], demand, before
    )

    # A batch matched again (a lease that ran out under a slow worker): re-scored, not
    # announced again.
    again = MatchWorker(
        sessionmaker=matching_app.state.sessionmaker, matcher=matching_app.state.matcher
    )
    assert await again.process(items) == 0
    assert len(await feed_events(matching, service_key)) == before + len(found)
    rescored = await matches_of(matching, market["buyer"], str(demand.id))
    assert sorted(m["listing_id"] for m in rescored) == sorted(m["listing_id"] for m in found)


async def test_a_newer_version_queued_meanwhile_stays_queued(
    matching_app: FastAPI, matching: httpx.AsyncClient, operator_key: str
) -> None:
    """A listing re-published while its older version is being matched keeps its newer entry:
    the older batch's completion removes only what it matched."""
    await wait_matched(matching, operator_key)
    (doc,) = await queued_documents(matching_app, 1)
    (old,) = await put_leased(matching_app, [doc], seconds=30.0)
    newer = {**doc, "version": int(doc["version"]) + 1}
    async with matching_app.state.sessionmaker() as session, session.begin():
        # One transaction: the running worker cannot take the row meanwhile (it skips locked
        # rows), so what is seen here is what the two statements did.
        await enqueue(session, [newer])
        await complete(session, [old])
        row = await session.get(MatchQueueItem, old.listing_id)
        assert row is not None and row.version == newer["version"]
        assert row.lease_until is None  # the newer version is free to claim at once
    # ... and the running worker matches it without waiting for the old lease.
    await wait_matched(matching, operator_key, seconds=10.0)


async def test_held_rows_wait_for_their_release_which_wakes_the_worker(
    matching_app: FastAPI,
    matching: httpx.AsyncClient,
    market: dict[str, Any],
    operator_key: str,
    service_key: str,
    matching_settings: Settings,
) -> None:
    """Rows an indexer page queued held (its commit not yet made) are neither claimed nor
    pending, and wake no worker; a replay of the page takes them over; their release wakes the
    worker, and it matches them, each announced once."""
    await wait_matched(matching, operator_key)
    demand = await posted_before(matching_app, market["buyer_id"])
    docs = await queued_documents(matching_app, 10)
    before = len(await feed_events(matching, service_key))
    page = "an_index/a_run/1.0"
    listener = await asyncpg.connect(**asyncpg_connect_kwargs(matching_settings.database_url))
    woken: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(CHANNEL, lambda *args: woken.put_nowait(str(args[2])))
    try:
        async with matching_app.state.sessionmaker() as session, session.begin():
            await enqueue(session, docs, held_by=page)
        # The running worker looks at the queue at least once meanwhile (no NOTIFY needed).
        await asyncio.sleep(IDLE_WAIT_SECONDS + 0.5)
        assert woken.empty()
        assert await matches_pending(matching, operator_key) == 0
        assert await matches_of(matching, market["buyer"], str(demand.id)) == []
        assert {row.held_by for row in await queue_rows(matching_app)} == {page}

        # A later run replays the page (its first run never committed): the replay takes the
        # rows over, so a hold that never commits cannot keep them from being matched.
        replay = "an_index/another_run/1.0"
        async with matching_app.state.sessionmaker() as session, session.begin():
            await enqueue(session, docs, held_by=replay)
        assert {row.held_by for row in await queue_rows(matching_app)} == {replay}
        assert woken.empty()

        async with matching_app.state.sessionmaker() as session, session.begin():
            await release_held(session, [replay])
        assert await asyncio.wait_for(woken.get(), 5.0) == CHANNEL
    finally:
        await listener.close()
    await announced_once(matching, operator_key, service_key, market["buyer"], demand, before)


class FailsOn(MatchWorker):
    """Fails every batch that holds `listing_id` (as a listing the matcher cannot handle
    would), with `error`."""

    def __init__(self, listing_id: UUID, error: Exception, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.listing_id, self.error = listing_id, error

    async def process(self, items: list[Claimed]) -> int:
        if any(item.listing_id == self.listing_id for item in items):
            raise self.error
        return await super().process(items)


async def queue_rows(app: FastAPI) -> list[MatchQueueItem]:
    async with app.state.sessionmaker() as session:
        return list((await session.execute(select(MatchQueueItem))).scalars())


def test_the_back_off_grows_with_the_attempts_and_is_capped() -> None:
    assert [retry_delay(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert retry_delay(40) == 600.0


async def test_a_listing_that_always_fails_holds_back_neither_its_batch_nor_the_queue(
    matching_app: FastAPI,
    matching: httpx.AsyncClient,
    market: dict[str, Any],
    operator_key: str,
) -> None:
    await wait_matched(matching, operator_key)
    demand = await posted_before(matching_app, market["buyer_id"])
    docs = await queued_documents(matching_app, 10)
    items = await put_leased(matching_app, docs, seconds=30.0)
    poison = items[-1]  # deferred last: its 1 s back-off outlasts the checks below
    worker = FailsOn(
        poison.listing_id,
        ValueError("this listing cannot be matched"),
        sessionmaker=matching_app.state.sessionmaker,
        matcher=matching_app.state.matcher,
    )

    began = datetime.now(UTC)
    await worker.settle(items)
    # The nine others are matched (their removal commits with their matches); the poison stays
    # queued, leased for its back-off instead of the 30 s claim.
    (left,) = await queue_rows(matching_app)
    assert (left.listing_id, left.attempts) == (poison.listing_id, 1)
    assert left.lease_until is not None
    assert began < left.lease_until <= datetime.now(UTC) + timedelta(seconds=retry_delay(1))
    found = await matches_of(matching, market["buyer"], str(demand.id))
    assert found, "the other listings of the batch were not matched"
    assert str(poison.listing_id) not in {m["listing_id"] for m in found}
    assert await matches_pending(matching, operator_key) == 1

    # Its back-off over, the running worker (which can match it) takes it again.
    await wait_matched(matching, operator_key, seconds=10.0)


async def test_an_outage_gives_the_batch_back_at_once(
    matching_app: FastAPI, matching: httpx.AsyncClient, operator_key: str
) -> None:
    await wait_matched(matching, operator_key)
    docs = await queued_documents(matching_app, 10)
    items = await put_leased(matching_app, docs, seconds=60.0)
    worker = FailsOn(
        items[0].listing_id,
        MeiliUnavailable("ConnectError"),
        sessionmaker=matching_app.state.sessionmaker,
        matcher=matching_app.state.matcher,
    )
    with pytest.raises(MeiliUnavailable):
        await worker.settle(items)
    # Not counted against the listings: all given back, so the running worker matches them
    # well before the 60 s lease would have run out.
    await wait_matched(matching, operator_key, seconds=10.0)


async def test_matching_waits_for_the_indexers_backlog_and_not_forever(
    matching_app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    backlog = True
    steps: list[float] = []

    async def step() -> int:
        steps.append(time.monotonic())
        return 0

    worker = MatchWorker(
        sessionmaker=matching_app.state.sessionmaker,
        matcher=matching_app.state.matcher,
        indexer_backlog=lambda: backlog,
    )
    waiting = asyncio.create_task(worker.after_indexer_backlog(step))
    await asyncio.sleep(0.5)
    assert steps == []  # not while the indexer works through a backlog
    backlog = False
    assert await asyncio.wait_for(waiting, 5) == 0
    assert len(steps) == 1

    # A backlog that lasts: one batch every YIELD_SECONDS all the same.
    backlog = True
    monkeypatch.setattr(services.matching.demands.queue, "YIELD_SECONDS", 0.3)
    began = time.monotonic()
    await asyncio.wait_for(worker.after_indexer_backlog(step), 5)
    assert len(steps) == 2 and steps[1] - began >= 0.3


async def test_a_listing_closed_since_it_was_queued_is_not_matched(
    matching_app: FastAPI,
    matching: httpx.AsyncClient,
    listing: httpx.AsyncClient,
    market: dict[str, Any],
    operator_key: str,
    service_key: str,
) -> None:
    """No match.created for a listing withdrawn (or sold) between its queueing and its match."""
    await wait_matched(matching, operator_key)
    demand = await posted_before(matching_app, market["buyer_id"])
    (doc,) = await queued_documents(matching_app, 1)
    withdrawn = await listing.post(
        f"/v1/listings/{doc['listing_id']}/withdraw", headers=bearer(operator_key)
    )
    assert withdrawn.status_code == 200, withdrawn.text
    await wait_matched(matching, operator_key)  # the index knows it left
    before = len(await feed_events(matching, service_key))
    (item,) = await put_leased(matching_app, [doc], seconds=30.0)
    worker = MatchWorker(
        sessionmaker=matching_app.state.sessionmaker, matcher=matching_app.state.matcher
    )
    assert await worker.process([item]) == 0
    assert len(await feed_events(matching, service_key)) == before
    assert doc["listing_id"] not in {
        m["listing_id"] for m in await matches_of(matching, market["buyer"], str(demand.id))
    }


async def test_a_price_change_scores_the_match_again(
    matching: httpx.AsyncClient,
    listing: httpx.AsyncClient,
    market: dict[str, Any],
    operator_key: str,
    service_key: str,
) -> None:
    number = next(NUMBERS)
    _, seller = await new_organization(listing, operator_key, name="北京某显示技术有限公司")
    body = {
        "asset": patent(
            "北京某显示技术有限公司",
            number,
            filed_on=f"{number[:4]}-03-01",
            title={"zh": "一种虚拟现实头戴显示设备的散热结构"},
            holders=[{"name": "北京某显示技术有限公司", "region": "110108"}],
        ),
        "transaction": terms(amount="3000000.00"),
    }
    lid = await publish_listing(listing, seller, operator_key, body)
    await wait_matched(matching, operator_key)
    demand = (
        await matching.post(
            "/v1/demands",
            json={
                "title": "头显散热",
                "text": "需要虚拟现实头戴显示设备的散热技术",
                "budget_max": "2000000.00",
            },
            headers=bearer(market["buyer"]),
        )
    ).json()

    def budget_fit(found: list[Any]) -> float:
        (match,) = [m for m in found if m["listing_id"] == lid]
        return float(next(r["fit"] for r in match["reasons"] if r["factor"] == "budget"))

    before = await matches_of(matching, market["buyer"], demand["id"])
    assert budget_fit(before) == 0.0  # 3,000,000 over the budget
    events = len(await feed_events(matching, service_key))
    version = (await listing.get(f"/v1/listings/{lid}", headers=bearer(seller))).json()["version"]
    cheaper = await listing.patch(
        f"/v1/listings/{lid}",
        json={"transaction": terms(amount="1500000.00"), "version": version},
        headers=bearer(seller),
    )
    assert cheaper.status_code == 200, cheaper.text
    await wait_matched(matching, operator_key)
    after = await matches_of(matching, market["buyer"], demand["id"])
    assert budget_fit(after) == 1.0
    rescored = next(m for m in after if m["listing_id"] == lid)
    assert rescored["score"] > next(m for m in before if m["listing_id"] == lid)["score"]
    assert len(await feed_events(matching, service_key)) == events  # re-scored, not new
