"""Retention on the gateway's tables, on the real app and database: finished inbox rows and
old deliveries (with their attempts) go; pending rows, rejected events, recent rows and the
newest deliveries of every subscription stay; a kept delivery still replays; a row a writer
holds is skipped, not waited for; the counts reach /metrics; one replica runs a round."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from receiver import Receiver, receiving

from service.retention import replica_while_leased, run, sample, steps_until_done
from services.gateway.retention.rules import (
    TABLES,
    GatewayRetention,
    delivery_expired,
    delivery_floor,
    inbox_expired,
)
from services.gateway.retention.workers import GatewayRetentionJob
from shared.db import asyncpg_connect_kwargs, utcnow
from shared.retention import RetentionMetrics, retention_round
from shared.settings import Settings
from support import allow_local, bearer, new_organization

KEEP = 3
BATCH = 4
POLICY = GatewayRetention(
    inbox=timedelta(days=7), deliveries=timedelta(days=30), keep=KEEP, batch=BATCH
)
OLD_INBOX = timedelta(days=10)
OLD_DELIVERY = timedelta(days=40)
RECENT = timedelta(days=1)
_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    """No background rounds: the tests run the job themselves (the worker still starts and
    lists the metrics)."""
    return settings.model_copy(update={"retention_interval_seconds": 0})


@pytest.fixture(scope="module")
async def member_organization(listing: httpx.AsyncClient, operator_key: str) -> tuple[str, str]:
    return await new_organization(listing, operator_key, name="北京理工大学")


@pytest.fixture(scope="module")
async def member(member_organization: tuple[str, str]) -> str:
    return member_organization[1]


@pytest.fixture(scope="module")
async def receiver(
    gateway: httpx.AsyncClient, operator_key: str, member_organization: tuple[str, str]
) -> AsyncIterator[Receiver]:
    async with receiving(Receiver()) as running:
        await allow_local(gateway, operator_key, member_organization[0], running.url)
        yield running


async def subscribe(gateway: httpx.AsyncClient, key: str, url: str) -> str:
    response = await gateway.post(
        "/v1/subscriptions",
        json={"url": url, "event_types": ["listing.published"]},
        headers=bearer(key),
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def job(app: FastAPI, policy: GatewayRetention = POLICY) -> GatewayRetentionJob:
    return GatewayRetentionJob(app.state.sessionmaker, policy)


@dataclass(frozen=True)
class Ages:
    """How long ago each timestamp of a row was (None: the column stays null)."""

    created: timedelta
    tried: timedelta  # next_attempt_at (negative: due in the future)
    done: timedelta | None  # delivered_at / processed_at


async def add_delivery(
    app: FastAPI,
    now: datetime,
    subscription_id: str,
    status: str,
    ages: Ages,
    *,
    ordering_key: str = "jjj:L1",
    attempts: int = 2,
) -> str:
    n = next(_numbers)
    payload = {"type": "listing.published", "data": {"offer_id": f"jjj:{n}"}}
    (row,) = await run(
        app,
        """
        INSERT INTO gateway.deliveries (id, subscription_id, event_id, event_type, ordering_key,
            payload, status, attempts, next_attempt_at, created_at, delivered_at)
        VALUES (:id, :sub, :event_id, 'listing.published', :key, CAST(:payload AS jsonb),
            :status, :attempts, :tried, :created, :done)
        RETURNING id
        """,
        id=uuid.uuid4(),
        sub=uuid.UUID(subscription_id),
        event_id=f"msg_retention_{n}",
        key=ordering_key,
        payload=json.dumps(payload),
        status=status,
        attempts=attempts,
        tried=now - ages.tried,
        created=now - ages.created,
        done=None if ages.done is None else now - ages.done,
    )
    for i in range(attempts):
        await run(
            app,
            "INSERT INTO gateway.delivery_attempts (delivery_id, at, status_code, latency_ms)"
            " VALUES (:id, :at, :code, 12.5)",
            id=row.id,
            at=now - ages.tried - timedelta(minutes=attempts - i),
            code=200 if status == "delivered" and i == attempts - 1 else 500,
        )
    return str(row.id)


async def add_inbox(app: FastAPI, now: datetime, partner: str, status: str, ages: Ages) -> int:
    n = next(_numbers)
    (row,) = await run(
        app,
        """
        INSERT INTO gateway.inbound_events (partner_code, event_id, source, received_at,
            source_version, offer_key, document, status, attempts, next_attempt_at, processed_at)
        VALUES (:partner, :event_id, 'push', :received, 1, :offer, '{}', :status, 1, :tried,
            :done)
        RETURNING id
        """,
        partner=partner,
        event_id=f"msg_inbox_{n}",
        received=now - ages.created,
        offer=f"{partner}:{n}",
        status=status,
        tried=now - ages.tried,
        done=None if ages.done is None else now - ages.done,
    )
    return int(row.id)


async def ids(app: FastAPI, table: str) -> set[str]:
    return {str(r.id) for r in await run(app, f"SELECT id FROM gateway.{table}")}


OLD = Ages(created=OLD_DELIVERY, tried=OLD_DELIVERY, done=OLD_DELIVERY)
OLD_PENDING = Ages(created=OLD_DELIVERY, tried=-timedelta(days=1), done=None)
FRESH = Ages(created=RECENT, tried=RECENT, done=RECENT)
OLD_INBOX_AGES = Ages(OLD_INBOX, OLD_INBOX, OLD_INBOX)
ATTEMPTS = "SELECT DISTINCT delivery_id FROM gateway.delivery_attempts"


async def settled(app: FastAPI, delivery_id: str, seconds: float = 10.0) -> str:
    """The delivery's status once it is no longer pending (or when time runs out)."""
    for _ in range(int(seconds / 0.05)):
        (row,) = await run(
            app, "SELECT status FROM gateway.deliveries WHERE id = :id", id=uuid.UUID(delivery_id)
        )
        if row.status != "pending":
            break
        await asyncio.sleep(0.05)
    return str(row.status)


async def expected_survivors(app: FastAPI, now: datetime) -> dict[str, set[str]]:
    """What the rules keep, computed in Python from every row."""
    cutoffs = POLICY.cutoffs(now)
    rows = await run(
        app,
        "SELECT id, subscription_id, seq, status, created_at, next_attempt_at, delivered_at"
        " FROM gateway.deliveries",
    )
    seqs: dict[Any, list[int]] = {}
    for r in rows:
        seqs.setdefault(r.subscription_id, []).append(r.seq)
    floors = {sub: delivery_floor(s, KEEP) for sub, s in seqs.items()}
    deliveries = {
        str(r.id)
        for r in rows
        if not delivery_expired(
            r.status,
            r.seq,
            r.created_at,
            r.next_attempt_at,
            r.delivered_at,
            floors[r.subscription_id],
            cutoffs.deliveries,
        )
    }
    events = await run(
        app,
        "SELECT id, status, received_at, next_attempt_at, processed_at FROM gateway.inbound_events",
    )
    inbox = {
        str(r.id)
        for r in events
        if not inbox_expired(
            r.status, r.received_at, r.next_attempt_at, r.processed_at, cutoffs.inbox
        )
    }
    return {"deliveries": deliveries, "inbound_events": inbox}


async def test_what_is_past_its_window_goes_and_the_rest_stays(
    gateway_app: FastAPI,
    gateway: httpx.AsyncClient,
    member: str,
    receiver: Receiver,
) -> None:
    now = utcnow()
    busy = await subscribe(gateway, member, receiver.url)
    quiet = await subscribe(gateway, member, receiver.url)
    made = [
        await add_delivery(gateway_app, now, busy, "delivered", OLD),  # 0: goes
        # 1: pending (on another listing: a pending one holds back later ones on its own)
        await add_delivery(gateway_app, now, busy, "pending", OLD_PENDING, ordering_key="jjj:L2"),
        await add_delivery(gateway_app, now, busy, "delivered", FRESH),  # 2: recent
        await add_delivery(gateway_app, now, busy, "failed", OLD),  # 3: goes
        await add_delivery(gateway_app, now, busy, "delivered", OLD),  # 4: goes
        await add_delivery(gateway_app, now, busy, "delivered", OLD),  # 5: goes
        await add_delivery(gateway_app, now, busy, "delivered", OLD),  # 6: goes
        # Replayed yesterday: created long ago, tried since.
        await add_delivery(
            gateway_app, now, busy, "delivered", Ages(OLD_DELIVERY, RECENT, RECENT)
        ),  # 7: recent
        await add_delivery(gateway_app, now, busy, "delivered", OLD),  # 8: goes
        # The newest KEEP of the subscription stay whatever their age.
        await add_delivery(gateway_app, now, busy, "delivered", OLD),  # 9: kept
        await add_delivery(gateway_app, now, busy, "failed", OLD),  # 10: kept
        await add_delivery(gateway_app, now, busy, "delivered", OLD),  # 11: kept
    ]
    few = [await add_delivery(gateway_app, now, quiet, "delivered", OLD) for _ in range(KEEP)]
    partner = f"P{uuid.uuid4().hex[:8]}"
    inbox = {
        "applied": await add_inbox(gateway_app, now, partner, "applied", OLD_INBOX_AGES),
        "stale": await add_inbox(gateway_app, now, partner, "stale", OLD_INBOX_AGES),
        "rejected": await add_inbox(gateway_app, now, partner, "rejected", OLD_INBOX_AGES),
        "pending": await add_inbox(
            gateway_app, now, partner, "pending", Ages(OLD_INBOX, -timedelta(days=1), None)
        ),
        "retried lately": await add_inbox(
            gateway_app, now, partner, "applied", Ages(OLD_INBOX, RECENT, RECENT)
        ),
        "recent": await add_inbox(
            gateway_app, now, partner, "applied", Ages(RECENT, RECENT, RECENT)
        ),
    }
    await run(
        gateway_app,
        "INSERT INTO gateway.rejected_events (partner_code, event_id, source, received_at,"
        " errors, payload_excerpt) VALUES (:p, 'msg_bad', 'push', :at, '[]', '{}')",
        p=partner,
        at=now - timedelta(days=400),
    )
    expected = await expected_survivors(gateway_app, now)

    retention = job(gateway_app)
    await retention.begin(now)
    counts = await steps_until_done(retention)

    # Batches of BATCH: 6 deliveries go in two steps, the 2 inbox rows in the first.
    assert counts[0] == {"inbound_events": 2, "deliveries": BATCH, "delivery_attempts": 2 * BATCH}
    assert counts[1] == {"inbound_events": 0, "deliveries": 2, "delivery_attempts": 4}
    left = await ids(gateway_app, "deliveries")
    gone = {made[i] for i in (0, 3, 4, 5, 6, 8)}
    assert gone.isdisjoint(left)
    assert set(made) - gone <= left and set(few) <= left
    attempts = {str(r.delivery_id) for r in await run(gateway_app, ATTEMPTS)}
    assert gone.isdisjoint(attempts) and (set(made) - gone) <= attempts
    left_inbox = {int(i) for i in await ids(gateway_app, "inbound_events")}
    assert inbox["applied"] not in left_inbox and inbox["stale"] not in left_inbox
    assert {inbox[k] for k in ("rejected", "pending", "retried lately", "recent")} <= left_inbox
    (rejected,) = await run(
        gateway_app,
        "SELECT count(*) AS n FROM gateway.rejected_events WHERE partner_code = :p",
        p=partner,
    )
    assert rejected.n == 1
    # The SQL says what the rules say, row for row.
    assert await ids(gateway_app, "deliveries") == expected["deliveries"]
    assert await ids(gateway_app, "inbound_events") == expected["inbound_events"]

    # The subscriber still sees its newest deliveries, and a kept old one replays, on the
    # same ordering key as the deleted ones (finished rows never held the queue).
    listed = await gateway.get(f"/v1/subscriptions/{busy}/deliveries", headers=bearer(member))
    assert listed.status_code == 200, listed.text
    assert [d["id"] for d in listed.json()["items"]][:KEEP] == made[: -KEEP - 1 : -1]
    replay = f"/v1/subscriptions/{busy}/deliveries/{made[9]}/replay"
    queued = await gateway.post(replay, headers=bearer(member))
    assert queued.status_code == 202, queued.text
    await receiver.wait_for(lambda r: len(r.delivered()) == 1, what="the replay")
    assert receiver.delivered()[0].webhook_id == queued.json()["event_id"]
    assert await settled(gateway_app, made[9]) == "delivered"
    # A deleted delivery is gone for the subscriber too.
    missing = await gateway.post(
        f"/v1/subscriptions/{busy}/deliveries/{made[0]}/replay", headers=bearer(member)
    )
    assert missing.status_code == 404


async def test_rows_a_writer_holds_are_skipped_not_waited_for(
    gateway_app: FastAPI,
    gateway: httpx.AsyncClient,
    member: str,
    receiver: Receiver,
    settings: Settings,
) -> None:
    now = utcnow()
    subscription = await subscribe(gateway, member, receiver.url)
    old = [await add_delivery(gateway_app, now, subscription, "delivered", OLD) for _ in range(3)]
    for _ in range(KEEP):
        await add_delivery(gateway_app, now, subscription, "delivered", FRESH)
    partner = f"P{uuid.uuid4().hex[:8]}"
    events = [await add_inbox(gateway_app, now, partner, "applied", OLD_INBOX_AGES) for _ in "ab"]
    writer = await asyncpg.connect(**asyncpg_connect_kwargs(settings.database_url))
    try:
        async with writer.transaction():
            # A replay and the inbox worker hold these rows in their transactions.
            await writer.execute(
                "SELECT 1 FROM gateway.deliveries WHERE id = $1 FOR UPDATE", uuid.UUID(old[0])
            )
            await writer.execute(
                "SELECT 1 FROM gateway.inbound_events WHERE id = $1 FOR UPDATE", events[0]
            )
            retention = job(gateway_app)
            await retention.begin(now)
            counts = await asyncio.wait_for(steps_until_done(retention), timeout=5)
            assert sum(c["deliveries"] for c in counts) == 2
            assert sum(c["inbound_events"] for c in counts) == 1
            assert old[0] in await ids(gateway_app, "deliveries")
            assert str(events[0]) in await ids(gateway_app, "inbound_events")
    finally:
        await writer.close()
    # Released: the next round takes them.
    retention = job(gateway_app)
    await retention.begin(now)
    counts = await steps_until_done(retention)
    assert counts[0] == {"inbound_events": 1, "deliveries": 1, "delivery_attempts": 2}
    assert old[0] not in await ids(gateway_app, "deliveries")


async def test_a_round_counts_in_metrics_and_runs_on_one_replica(
    gateway_app: FastAPI,
    gateway: httpx.AsyncClient,
    member: str,
    receiver: Receiver,
    settings: Settings,
) -> None:
    before = (await gateway.get("/metrics")).text
    assert 'ipx_retention_deleted_total{table="deliveries"}' in before
    assert "ipx_retention_last_run_timestamp_seconds" in before
    now = utcnow()
    subscription = await subscribe(gateway, member, receiver.url)
    for _ in range(5):
        await add_delivery(gateway_app, now, subscription, "failed", OLD, attempts=1)
    for _ in range(KEEP):
        await add_delivery(gateway_app, now, subscription, "delivered", FRESH)
    metrics = RetentionMetrics.of(gateway_app, TABLES)

    await replica_while_leased(settings, "gateway", job(gateway_app))
    assert len(await ids(gateway_app, "deliveries")) >= 5 + KEEP

    totals = await retention_round(job(gateway_app), metrics, now)
    assert totals == {"inbound_events": 0, "deliveries": 5, "delivery_attempts": 5}
    after = (await gateway.get("/metrics")).text
    assert (
        sample(after, 'ipx_retention_deleted_total{table="deliveries"}')
        == sample(before, 'ipx_retention_deleted_total{table="deliveries"}') + 5
    )
    assert sample(after, "ipx_retention_last_run_timestamp_seconds") >= now.timestamp() - 1
