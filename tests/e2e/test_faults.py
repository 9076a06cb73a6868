"""Fault injection with real processes, each fault followed by a ledger: what was acknowledged
is compared with what listing stored, what the search index holds and what a subscriber
received; nothing may be missing or duplicated.

This module runs its OWN PostgreSQL and Meilisearch (both get killed or restarted here) and the
three services as processes (`ipx serve`), the way the launcher starts them: the stack, the
peers and the ledger are crashlab.py's, shared with the crash tests (test_crashes.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import pytest
from crashlab import (
    CLIENT_TIMEOUT,
    Ledger,
    Outcomes,
    Stack,
    Subscriber,
    fetch_rows,
    final_ledger,
    identifier,
    offer,
    push,
    register_partner,
    running_stack,
    subscribe,
    unsubscribe,
    until_acknowledged,
)
from receiver import Receiver, receiving

from infra.processes import wait_ready
from shared.db import asyncpg_connect_kwargs
from shared.webhooks import signed_headers
from support import assert_problem, bearer

pytestmark = pytest.mark.e2e

INDEX = "catalogue_faults"
# The flood's distinct offers (x 4 versions, each pushed twice: 2,000 pushes at 250).
FLOOD_OFFERS = 250


@pytest.fixture(scope="module")
def stack(test_root: Path, service_key: str, operator_key: str) -> Iterator[Stack]:
    # fsync off: a clean stop keeps what was committed; test_crashes.py kills a durable one.
    with running_stack(
        test_root / "faults", service_key, operator_key, durable=False, index=INDEX
    ) as stack:
        yield stack


# --------------------------------------------------------------------------- 1. Meilisearch


async def test_meilisearch_killed_and_restarted_while_indexing(stack: Stack) -> None:
    partner_region = "110101"
    offers = 200
    async with (
        httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as http,
        receiving(Receiver()) as receiver,
    ):
        partner = await register_partner(http, stack, "mkill", partner_region)
        subscriber = await subscribe(
            http, stack, receiver, "北京某检索科技有限公司", partner_region
        )
        # Every offer once, every fourth updated to version 2 later in the stream.
        pushes = [(f"MK-{i:04d}", 8_100_000 + i, 1) for i in range(offers)]
        pushes += [(f"MK-{i:04d}", 8_100_000 + i, 2) for i in range(0, offers, 4)]
        acknowledged: dict[str, int] = {}
        killed, midway = asyncio.Event(), asyncio.Event()
        restarted = asyncio.Event()

        async def pusher(share: list[tuple[str, int, int]]) -> None:
            for ext, serial, version in share:
                answer = await push(
                    http, stack, partner, offer(partner, ext, serial, version), f"{ext}-v{version}"
                )
                assert answer.status_code == 202, answer.text
                acknowledged[ext] = max(acknowledged.get(ext, 0), version)
                if len(acknowledged) >= 60:
                    midway.set()
                await asyncio.sleep(0.01)  # a stream, not a burst

        async def fault() -> None:
            await midway.wait()
            await asyncio.to_thread(stack.kill_meilisearch)
            killed.set()
            # Meanwhile matching says which dependency is down and keeps serving.
            ready = await http.get(f"{stack.url('matching')}/readyz")
            assert_problem(ready, 503)
            assert ready.json()["checks"]["meilisearch"] != "ok"
            await asyncio.sleep(1.5)
            await asyncio.to_thread(stack.start_meilisearch)
            restarted.set()

        shares = [pushes[i::4] for i in range(4)]
        started = time.monotonic()
        await asyncio.gather(fault(), *(pusher(share) for share in shares))
        print(f"meili-kill: {len(pushes)} pushes in {time.monotonic() - started:.1f}s")
        assert killed.is_set() and restarted.is_set()
        # The kill came mid-stream: some offers were acknowledged after it.
        ledger = await final_ledger(stack, "meili-kill", partner.code, acknowledged, receiver)
        assert ledger.acknowledged == offers
        # matching's own view agrees: caught up, and the index holds what Meilisearch holds.
        status = (
            await http.get(
                f"{stack.url('matching')}/v1/index/status", headers=bearer(stack.operator_key)
            )
        ).json()
        assert status["lag_events"] == 0
        assert status["documents"] >= offers
        await unsubscribe(http, stack, subscriber)


# --------------------------------------------------------------------------- 2. PostgreSQL


async def test_postgres_restarted_under_load(stack: Stack) -> None:
    partner_region = "110102"
    pids = {name: s.process.pid for name, s in stack.services.items()}
    async with (
        httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as http,
        receiving(Receiver()) as receiver,
    ):
        partner = await register_partner(http, stack, "pgrst", partner_region)
        subscriber = await subscribe(
            http, stack, receiver, "北京某数据科技有限公司", partner_region
        )
        seller = await http.post(
            f"{stack.url('listing')}/v1/organizations",
            json={"name": "北京化工大学", "kind": "university", "region": "110105"},
        )
        assert seller.status_code == 201, seller.text
        seller_id, seller_key = seller.json()["organization"]["id"], seller.json()["api_key"]["key"]

        outcomes = Outcomes()
        pushed: dict[str, int] = {}
        created: dict[str, str] = {}  # Idempotency-Key -> listing id
        stop_at = time.monotonic() + 7.0
        serials = iter(range(8_200_000, 8_300_000))

        async def partner_client(n: int) -> None:
            i = 0
            while time.monotonic() < stop_at:
                ext, serial = f"PG-{n}-{i:04d}", next(serials)
                document = offer(partner, ext, serial, 1)
                send = functools.partial(push, http, stack, partner, document, f"{ext}-v1")
                await until_acknowledged(send, outcomes)
                pushed[ext] = 1
                i += 1

        async def seller_client(n: int) -> None:
            i = 0
            while time.monotonic() < stop_at:
                key, serial = f"create-{n}-{i:04d}", next(serials)
                body = {
                    "asset": {
                        "kind": "invention_patent",
                        "identifier": identifier(serial),
                        "title": {"zh": "一种化工废水处理装置"},
                        "classifications": {"ipc": ["C02F 9/00"]},
                        "holders": [{"name": "北京化工大学", "region": "110105"}],
                        "filed_on": "2019-03-01",
                        "legal_status": "granted",
                    },
                    "transaction": {
                        "type": "assignment",
                        "price": {"mode": "fixed", "amount": "500000.00"},
                    },
                }
                send = functools.partial(
                    http.post,
                    f"{stack.url('listing')}/v1/listings",
                    json=body,
                    headers={**bearer(seller_key), "Idempotency-Key": key},
                )
                answer = await until_acknowledged(send, outcomes)
                created[key] = answer.json()["id"]
                i += 1

        async def restart() -> float:
            await asyncio.sleep(1.5)
            down = time.monotonic()
            await asyncio.to_thread(stack.stop_postgres)
            await asyncio.sleep(2.0)
            await asyncio.to_thread(stack.start_postgres)
            return time.monotonic() - down

        clients = [partner_client(n) for n in range(4)] + [seller_client(n) for n in range(4)]
        outage, *_ = await asyncio.gather(restart(), *clients)

        print(
            f"PostgreSQL down {outage:.1f}s; answers {dict(outcomes.statuses)}; "
            f"slowest {outcomes.slowest:.2f}s; idempotent replays {outcomes.replayed}"
        )
        assert outcomes.statuses[503] > 0, "the outage was not seen by any client"
        assert outcomes.unexpected == []  # no 500, no other error, no dropped connection
        assert outcomes.hangs == 0 and outcomes.slowest < 10.0
        # Recovered without a restart: the same processes answer ready.
        for name, service in stack.services.items():
            assert service.process.poll() is None and service.process.pid == pids[name]
            wait_ready(service, timeout=30)

        await final_ledger(stack, "pg-restart (partner pushes)", partner.code, pushed, receiver)
        # Direct creates: each acknowledged create is stored once (drafts: not indexed).
        rows = await fetch_rows(
            stack,
            "SELECT l.id::text AS id, a.identifier FROM listing.listings l "
            "JOIN listing.assets a ON a.id = l.asset_id WHERE l.seller_id = $1::uuid",
            seller_id,
        )
        stored_ids = Counter(r["id"] for r in rows)
        per_asset = Counter(r["identifier"] for r in rows)
        acked_ids = set(created.values())
        creates = Ledger(
            fault="pg-restart (listing creates)",
            acknowledged=len(created),
            stored=len(acked_ids & set(stored_ids)),
            indexed=None,
            delivered=None,
            missing=len(acked_ids - set(stored_ids)),
            duplicated=sum(n - 1 for n in per_asset.values() if n > 1)
            + len(set(stored_ids) - acked_ids)
            + (len(created) - len(acked_ids)),
        )
        print(creates)
        assert creates.missing == 0 and creates.duplicated == 0, creates
        assert len(pushed) > 0 and len(created) > 0
        await unsubscribe(http, stack, subscriber)


# --------------------------------------------------------------------------- 3. subscribers


async def deliveries_of(
    http: httpx.AsyncClient, stack: Stack, subscriber: Subscriber
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    token = ""
    for _ in range(50):
        page = await http.get(
            f"{stack.url('gateway')}/v1/subscriptions/{subscriber.id}/deliveries",
            params={"page_size": 100, **({"page_token": token} if token else {})},
            headers=bearer(subscriber.key),
        )
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        token = page.json()["next_page_token"]
        if not token:
            return items
    raise AssertionError("too many pages of deliveries")


async def test_subscribers_that_time_out_fail_or_hang_up_get_every_event(stack: Stack) -> None:
    partner_region = "120101"
    offers, versions = 12, 3
    # Each webhook-id: (a) the first attempt outlives the delivery timeout, (b) three 500s,
    # (c) the connection closed twice without an answer; then 200.
    failures = {"timeout": ["hang"], "http500": ["fail"] * 3, "close": ["close"] * 2}
    async with contextlib.AsyncExitStack() as exits:
        http = await exits.enter_async_context(httpx.AsyncClient(timeout=CLIENT_TIMEOUT))
        partner = await register_partner(http, stack, "subs", partner_region)
        subscribers: dict[str, Subscriber] = {}
        for name, script in failures.items():
            receiver = await exits.enter_async_context(receiving(Receiver(per_event=script)))
            subscribers[name] = await subscribe(
                http, stack, receiver, f"天津某{name}科技有限公司", partner_region
            )
        acknowledged: dict[str, int] = {}
        for version in range(1, versions + 1):
            for i in range(offers):
                ext = f"SUB-{i:03d}"
                answer = await push(
                    http,
                    stack,
                    partner,
                    offer(partner, ext, 8_400_000 + i, version),
                    f"{ext}-v{version}",
                )
                assert answer.status_code == 202, answer.text
                acknowledged[ext] = version

        for name, subscriber in subscribers.items():
            ledger = await final_ledger(
                stack, f"subscriber-{name}", partner.code, acknowledged, subscriber.receiver
            )
            expected_events = offers * versions
            received = {r.webhook_id for r in subscriber.receiver.delivered() if r.json()["data"]}
            assert len(received) == expected_events, (name, len(received))
            # The gateway's records show the failed attempts before the success.
            records = await deliveries_of(http, stack, subscriber)
            assert len(records) == expected_events
            want = len(failures[name]) + 1
            for record in records:
                assert record["status"] == "delivered", record
                assert record["attempts"] >= want, record
                log = record["attempt_log"]
                assert [a["status_code"] for a in log][-1] == 200, log
                failed = [a for a in log if a["status_code"] != 200]
                assert len(failed) >= len(failures[name]), log
                if name == "http500":
                    assert all(a["status_code"] == 500 for a in failed), log
                else:
                    assert all(a["status_code"] is None and a["error"] for a in failed), log
                if name == "timeout":
                    assert all("no answer within" in a["error"] for a in failed), log
            assert ledger.delivered == offers
        for subscriber in subscribers.values():
            await unsubscribe(http, stack, subscriber)


# --------------------------------------------------------------------------- 4. partners


class _Collecting(asyncio.Protocol):
    """Keeps every byte the server sends, even when it resets the connection afterwards (a
    StreamReader would drop what it buffered once the reset arrives)."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.answered = asyncio.Event()
        self.closed = asyncio.Event()
        self.writable = asyncio.Event()
        self.writable.set()

    def data_received(self, data: bytes) -> None:
        self.received.extend(data)
        head, found, body = bytes(self.received).partition(b"\r\n\r\n")
        length = [h for h in head.lower().split(b"\r\n") if h.startswith(b"content-length:")]
        if found and length and len(body) >= int(length[0].split(b":")[1]):
            self.answered.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()
        self.writable.set()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()


async def raw_post(
    port: int, path: str, head: dict[str, str], size: int, chunked: bool
) -> tuple[int, dict[str, str], bytes, float]:
    """POST `size` bytes over a raw connection, listening while sending: the answer of a
    server that refuses early must not be hidden by the client's own write error."""
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_connection(_Collecting, "127.0.0.1", port)
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *[f"{k}: {v}" for k, v in head.items()]]
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}")
    transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    piece = b"x" * (256 * 1024)
    sent = 0
    async with asyncio.timeout(30):
        while sent < size and not (peer.answered.is_set() or peer.closed.is_set()):
            data = piece[: size - sent]
            transport.write(f"{len(data):x}\r\n".encode() + data + b"\r\n" if chunked else data)
            sent += len(data)
            await peer.writable.wait()
        if chunked and not (peer.answered.is_set() or peer.closed.is_set()):
            transport.write(b"0\r\n\r\n")
        done = [asyncio.ensure_future(e.wait()) for e in (peer.answered, peer.closed)]
        await asyncio.wait(done, return_when=asyncio.FIRST_COMPLETED)
        for waiter in done:
            waiter.cancel()
    transport.close()
    elapsed = time.monotonic() - started
    head_raw, _, body = bytes(peer.received).partition(b"\r\n\r\n")
    assert head_raw, f"no answer after {sent} bytes sent"
    status_line, *header_lines = head_raw.decode("latin-1").split("\r\n")
    headers = {
        k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines if h)
    }
    return int(status_line.split(" ")[1]), headers, body, elapsed


async def test_partner_malformed_json_huge_body_and_flood(stack: Stack) -> None:
    partner_region = "130102"
    gateway = stack.services["gateway"]
    async with (
        httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as http,
        receiving(Receiver()) as receiver,
    ):
        partner = await register_partner(http, stack, "flood", partner_region)
        subscriber = await subscribe(http, stack, receiver, "石家庄某制造有限公司", partner_region)

        # (a) Malformed JSON, correctly signed: 400 problem+json, recorded as rejected.
        body = b'{"schema": "ipx.catalogue/v1", "offer_id": "flood:BAD-1", '
        bad = await http.post(
            f"{stack.url('gateway')}/v1/inbound/{partner.code}",
            content=body,
            headers=signed_headers(partner.secret, "bad-json-1", body),
        )
        problem = assert_problem(bad, 400)
        assert problem["errors"][0]["rule"] == "json_invalid"
        rejected = await http.get(
            f"{stack.url('gateway')}/v1/partners/{partner.code}/rejected",
            headers=bearer(stack.operator_key),
        )
        assert rejected.status_code == 200, rejected.text
        [event] = [e for e in rejected.json()["items"] if e["event_id"] == "bad-json-1"]
        assert event["errors"][0]["rule"] == "json_invalid"
        assert event["payload_excerpt"].startswith('{"schema"')

        # (b) 50 MB, declared and chunked: 413 problem+json at once, memory stays flat.
        memory = psutil.Process(gateway.process.pid)
        before = memory.memory_info().rss
        port = int(gateway.url.rsplit(":", 1)[1])
        size = 50 * 1024 * 1024
        head = {"Content-Type": "application/json", "webhook-id": "huge-1"}
        for chunked in (False, True):
            status, headers, answer, elapsed = await raw_post(
                port, f"/v1/inbound/{partner.code}", head, size, chunked
            )
            assert status == 413, (chunked, answer[:300])
            assert headers["content-type"].startswith("application/problem+json")
            assert json.loads(answer[: int(headers["content-length"])])["status"] == 413
            assert elapsed < 5.0, elapsed
        grown = memory.memory_info().rss - before
        print(f"gateway RSS {before / 2**20:.0f} MiB -> +{grown / 2**20:.1f} MiB after 2 x 50 MB")
        assert grown < 20 * 2**20, grown
        assert (await http.get(f"{stack.url('gateway')}/healthz")).status_code == 200

        # (c) A flood: 2,000 signed pushes over 16 connections: 250 offers x 4 versions in
        # shuffled order, each event sent twice (a partner's retry storm), the repeat at a
        # random later point.
        offers, versions = FLOOD_OFFERS, 4
        distinct = [(i, v) for i in range(offers) for v in range(1, versions + 1)]
        rng = random.Random(7)
        rng.shuffle(distinct)
        events = list(distinct)
        for item in distinct:  # the same webhook-id again, somewhere after its first sending
            events.insert(rng.randint(events.index(item) + 1, len(events)), item)
        assert len(events) == 2 * offers * versions
        acknowledged: dict[str, int] = {}
        duplicates = 0
        queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
        for item in events:
            queue.put_nowait(item)
        limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
        started = time.monotonic()
        cpu = {n: psutil.Process(p.process.pid).cpu_times() for n, p in stack.services.items()}
        async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT, limits=limits) as flood:

            async def connection() -> None:
                nonlocal duplicates
                while not queue.empty():
                    i, version = queue.get_nowait()
                    ext = f"FL-{i:04d}"
                    answer = await push(
                        flood,
                        stack,
                        partner,
                        offer(partner, ext, 8_300_000 + i, version),
                        f"{ext}-v{version}",
                    )
                    assert answer.status_code == 202, answer.text
                    duplicates += bool(answer.json()["duplicate"])
                    acknowledged[ext] = max(acknowledged.get(ext, 0), version)

            await asyncio.gather(*(connection() for _ in range(16)))
        took = time.monotonic() - started
        print(f"flood: {len(events)} pushes in {took:.1f}s, {duplicates} answered duplicate")
        used = {
            name: round(sum(psutil.Process(s.process.pid).cpu_times()[:2]) - sum(cpu[name][:2]), 1)
            for name, s in stack.services.items()
        }
        print(f"CPU seconds used meanwhile: {used}")
        assert duplicates == len(distinct)
        assert all(v == versions for v in acknowledged.values())
        await final_ledger(stack, "partner-flood", partner.code, acknowledged, receiver)
        assert (await http.get(f"{stack.url('gateway')}/readyz")).status_code == 200
        await unsubscribe(http, stack, subscriber)


# --------------------------------------------------------------------------- the feed's order


async def test_feed_pages_follow_transaction_order_across_a_digit_boundary(stack: Stack) -> None:
    """Found by the ledger (the index status never settled): pages and the head sorted the
    cursor's xid as text, so "100" came before "99" and a page cut by its limit skipped
    events for good. Every cluster crosses 999 -> 1000 early in its life."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from shared.outbox import read_head, read_page

    scratch = await asyncpg.connect(timeout=5, **asyncpg_connect_kwargs(stack.database_url))
    try:
        await scratch.execute(
            "CREATE SCHEMA IF NOT EXISTS faults_scratch; "
            "CREATE TABLE faults_scratch.events (xid xid8, seq bigint, payload text, "
            "occurred_at timestamptz DEFAULT now()); "
            "INSERT INTO faults_scratch.events (xid, seq, payload) VALUES "
            "('98', 1, 'a'), ('99', 2, 'b'), ('100', 3, 'c'), ('101', 4, 'd')"
        )
    finally:
        await scratch.close()
    engine = create_async_engine(stack.database_url)
    try:
        async with engine.connect() as conn:
            first = await read_page(conn, "faults_scratch.events", ["payload"], "0.0", 2)
            rest = await read_page(conn, "faults_scratch.events", ["payload"], "99.2", 10)
            head = await read_head(conn, "faults_scratch.events", "99.2")
    finally:
        await engine.dispose()
    assert [r.payload for r in first] == ["a", "b"]
    assert [r.payload for r in rest] == ["c", "d"]
    assert head is not None and head[0] == "101.4" and head[2] == 2
