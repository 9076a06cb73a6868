"""Fault injection with real processes, each fault followed by a ledger: what was acknowledged
is compared with what listing stored, what the search index holds and what a subscriber
received; nothing may be missing or duplicated.

This module runs its OWN PostgreSQL and Meilisearch (both get killed or restarted here) and the
three services as processes (`ipx serve`), the way the launcher starts them. Partners and
subscribers are real HTTP peers on 127.0.0.1. Waits are shortened through settings
(IPX_WEBHOOK_RETRY_SCHEDULE, IPX_WEBHOOK_TIMEOUT_SECONDS), never by sleeping long.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import random
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import pytest
from receiver import Receiver, receiving

from infra.meili import MeiliHandle, start_meilisearch
from infra.migrations import upgrade_all
from infra.postgres import PostgresHandle, start_postgres
from infra.processes import ServiceProcess, start_service, wait_ready
from shared.db import asyncpg_connect_kwargs
from shared.encryption import new_key
from shared.identifiers import cn_application_check_char
from shared.settings import SERVICE_NAMES
from shared.webhooks import signed_headers
from support import assert_problem, bearer, free_port

pytestmark = pytest.mark.e2e

INDEX = "catalogue_faults"
# Delivery attempts time out after 1.5 s and are retried after about 0.3, 0.6, 1, 1, ... s.
WEBHOOK_TIMEOUT = 1.5
RETRY_SCHEDULE = "0.3,0.6,1,1,1,1,1,1,1,1"
CLIENT_TIMEOUT = 15.0  # a request not answered in this long counts as a hang
# The flood's distinct offers (x 4 versions, each pushed twice: 2,000 pushes at 250).
FLOOD_OFFERS = 250
SETTLE_SECONDS = 120.0  # the most the pipeline may take to catch up after a fault


# --------------------------------------------------------------------------- the stack


@dataclass
class Stack:
    """Our own PostgreSQL and Meilisearch, the three services as processes, and the keys."""

    root: Path
    pg: PostgresHandle
    meili: MeiliHandle
    meili_port: int
    meili_key: str
    operator_key: str
    services: dict[str, ServiceProcess]

    def url(self, name: str) -> str:
        return self.services[name].url

    @property
    def database_url(self) -> str:
        return self.pg.url("ipx")

    def kill_meilisearch(self) -> None:
        self.meili.process.kill()  # SIGKILL: no clean shutdown
        self.meili.process.wait(10)

    def start_meilisearch(self) -> None:
        self.meili = start_meilisearch(
            self.root / "meili", port=self.meili_port, master_key=self.meili_key
        )

    def stop_postgres(self) -> None:
        self.pg.stop()  # fast shutdown: committed data stays (the cluster runs with fsync off)

    def start_postgres(self) -> None:
        self.pg = start_postgres(self.root / "pg", port=self.pg.port, durable=False)

    def log_tail(self, chars: int = 3000) -> str:
        return "\n".join(
            f"--- {name}\n" + (self.root / f"{name}.log").read_text(errors="replace")[-chars:]
            for name in self.services
        )


@pytest.fixture(scope="module")
def stack(test_root: Path, service_key: str, operator_key: str) -> Iterator[Stack]:
    root = test_root / "faults"
    root.mkdir(mode=0o755)
    pg = start_postgres(root / "pg", port=free_port(), durable=False)
    meili_key = secrets.token_urlsafe(24)
    meili_port = free_port()
    meili: MeiliHandle | None = None
    stack: Stack | None = None
    try:
        upgrade_all(pg.url("ipx"))
        meili = start_meilisearch(root / "meili", port=meili_port, master_key=meili_key)
        stack = Stack(root, pg, meili, meili_port, meili_key, operator_key, {})
        ports = {service: free_port() for service in SERVICE_NAMES}
        env = {
            "IPX_DATABASE_URL": pg.url("ipx"),
            "IPX_MEILI_URL": meili.url,
            "IPX_MEILI_MASTER_KEY": meili_key,
            "IPX_MEILI_INDEX": INDEX,
            "IPX_SERVICE_KEY": service_key,
            "IPX_SECRET_KEYS": new_key(),
            "IPX_OPERATOR_KEY": operator_key,
            "IPX_LOG_LEVEL": "WARNING",
            "IPX_ACCESS_LOG": "false",  # 2,000 pushes would be 2,000 lines to format
            "IPX_WEBHOOK_TIMEOUT_SECONDS": str(WEBHOOK_TIMEOUT),
            "IPX_WEBHOOK_RETRY_SCHEDULE": RETRY_SCHEDULE,
            **{f"IPX_{s.upper()}_URL": f"http://127.0.0.1:{p}" for s, p in ports.items()},
        }
        for service, port in ports.items():
            stack.services[service] = start_service(
                service, port=port, env=env, log_path=root / f"{service}.log"
            )
        for process in stack.services.values():
            wait_ready(process)
        allowed = httpx.post(
            f"{stack.url('gateway')}/v1/webhook-targets",
            json={"pattern": "127.0.0.1"},
            headers=bearer(operator_key),
            timeout=10,
        )
        assert allowed.status_code == 201, allowed.text
        yield stack
    finally:
        if stack is not None:
            # Callers first: an open long-poll holds a callee's graceful shutdown for seconds.
            for process in reversed(stack.services.values()):
                process.stop()
            stack.meili.stop()
            stack.pg.stop()
        else:
            if meili is not None:
                meili.stop()
            pg.stop()


# --------------------------------------------------------------------------- partners and offers


@dataclass(frozen=True)
class Partner:
    code: str
    secret: str
    region: str  # the holders' region of its offers: a subscription filter isolates a test


async def register_partner(
    http: httpx.AsyncClient, stack: Stack, code: str, region: str
) -> Partner:
    created = await http.post(
        f"{stack.url('gateway')}/v1/partners",
        headers=bearer(stack.operator_key),
        json={"code": code, "name": f"{code} 交易所", "region": region, "adapter": "canonical"},
    )
    assert created.status_code == 201, created.text
    return Partner(code, created.json()["inbound_secret"], region)


def identifier(serial: int) -> str:
    """A synthesised CN invention application number (valid check digit; serials from
    8,000,000 up are outside the real ones, as NOTES.md allows)."""
    digits = f"20191{serial:07d}"
    return f"{digits}.{cn_application_check_char(digits)}"


def offer(partner: Partner, external_id: str, serial: int, version: int) -> dict[str, Any]:
    """A partner's catalogue document; each version changes the price."""
    now = datetime.now(UTC).isoformat()
    return {
        "schema": "ipx.catalogue/v1",
        "offer_id": f"{partner.code}:{external_id}",
        "source": {
            "exchange": partner.code,
            "listing_id": external_id,
            "url": f"https://{partner.code}.example.cn/listings/{external_id}",
            "updated_at": now,
            "version": version,
        },
        "asset": {
            "kind": "invention_patent",
            "identifier": identifier(serial),
            "title": {"zh": "一种锂离子电池正极材料及其制备方法", "en": None},
            "abstract": {"zh": "本发明公开了一种锂离子电池正极材料，循环性能好。"},
            "classifications": {"ipc": ["H01M 4/36"]},
            "holders": [{"name": "天津大学", "region": partner.region}],
            "filed_on": "2019-03-01",
            "legal_status": "granted",
        },
        "transaction": {
            "type": "nonexclusive_license",
            "price": {"mode": "fixed", "amount": f"{100000 + version * 1000}.00"},
        },
        "status": "published",
        "published_at": now,
        "seller": "天津大学",
    }


async def push(
    http: httpx.AsyncClient, stack: Stack, partner: Partner, document: object, event_id: str
) -> httpx.Response:
    body = json.dumps(document, ensure_ascii=False).encode()
    return await http.post(
        f"{stack.url('gateway')}/v1/inbound/{partner.code}",
        content=body,
        headers=signed_headers(partner.secret, event_id, body),
    )


@dataclass
class Subscriber:
    id: str
    key: str
    receiver: Receiver


async def subscribe(
    http: httpx.AsyncClient, stack: Stack, receiver: Receiver, name: str, region: str
) -> Subscriber:
    """A buyer organisation subscribed to listing events of one region (only this test's)."""
    org = await http.post(
        f"{stack.url('listing')}/v1/organizations",
        json={"name": name, "kind": "enterprise", "region": "110108"},
    )
    assert org.status_code == 201, org.text
    key = org.json()["api_key"]["key"]
    created = await http.post(
        f"{stack.url('gateway')}/v1/subscriptions",
        headers=bearer(key),
        json={
            "url": receiver.url,
            "event_types": ["listing.published", "listing.updated"],
            "filter": {"region": [region]},
        },
    )
    assert created.status_code == 201, created.text
    return Subscriber(created.json()["id"], key, receiver)


async def unsubscribe(http: httpx.AsyncClient, stack: Stack, subscriber: Subscriber) -> None:
    """So later tests' events do not queue for a receiver that is gone."""
    gone = await http.delete(
        f"{stack.url('gateway')}/v1/subscriptions/{subscriber.id}", headers=bearer(subscriber.key)
    )
    assert gone.status_code == 204, gone.text


# --------------------------------------------------------------------------- the ledger


@dataclass(frozen=True)
class Ledger:
    """Acknowledged offers against what each stage holds. `stored`: in listing at the
    acknowledged (highest) version; `indexed`: in Meilisearch exactly once at listing's
    version, and recorded so in matching; `delivered`: the subscriber answered 200 to a webhook
    carrying that version. `missing` counts (offer, stage) pairs absent; `duplicated` counts
    copies beyond one (two listings for one offer, two index documents, two webhook-ids for one
    version) and rows nobody acknowledged; `out_of_order`: a listing's webhooks arriving with a
    version lower than one before. None: the stage does not apply."""

    fault: str
    acknowledged: int
    stored: int
    indexed: int | None
    delivered: int | None
    missing: int
    duplicated: int
    out_of_order: int = 0
    delivered_total: int = 0  # 200 answers, redeliveries of one webhook-id included
    gaps: tuple[str, ...] = ()  # a few of the missing (stage, offer), for the failure message

    def __str__(self) -> str:
        def shown(value: int | None) -> str:
            return "n/a" if value is None else str(value)

        return (
            f"FAULT {self.fault}: acknowledged={self.acknowledged} stored={self.stored} "
            f"indexed={shown(self.indexed)} delivered={shown(self.delivered)} "
            f"missing={self.missing} duplicated={self.duplicated}"
            + (f" out_of_order={self.out_of_order}" if self.out_of_order else "")
            + (f" (webhooks answered 200: {self.delivered_total})" if self.delivered else "")
        )

    @property
    def complete(self) -> bool:
        return self.missing == 0


async def fetch_rows(stack: Stack, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(timeout=5, **asyncpg_connect_kwargs(stack.database_url))
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def index_documents(stack: Stack, exchange: str) -> list[dict[str, Any]]:
    """Straight from Meilisearch with the master key (not through matching)."""
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(
            f"{stack.meili.url}/indexes/{INDEX}/documents/fetch",
            headers=bearer(stack.meili_key),
            json={
                "filter": f'exchange = "{exchange}"',
                "fields": ["listing_id", "offer_id", "version"],
                "limit": 100_000,
            },
        )
    assert answer.status_code == 200, answer.text
    return list(answer.json()["results"])


async def take_ledger(
    stack: Stack,
    fault: str,
    exchange: str,
    acknowledged: Mapping[str, int],
    receiver: Receiver | None,
    *,
    indexed: bool = True,
) -> Ledger:
    """`acknowledged`: the partner's listing id -> the highest version it got a 202 for."""
    rows = await fetch_rows(
        stack,
        "SELECT external_id, id, version, source_version, asset_id FROM listing.listings "
        "WHERE exchange = $1",
        exchange,
    )
    stored = {r["external_id"]: r for r in rows}
    missing = duplicated = 0
    duplicated += sum(1 for ext in stored if ext not in acknowledged)
    duplicated += sum(n - 1 for n in Counter(r["asset_id"] for r in rows).values() if n > 1)
    stored_ok = {
        ext
        for ext, version in acknowledged.items()
        if ext in stored and stored[ext]["source_version"] == version
    }
    missing += len(acknowledged) - len(stored_ok)
    gaps = [f"stored:{ext}" for ext in sorted(set(acknowledged) - stored_ok)]

    indexed_ok: set[str] | None = None
    if indexed:
        documents: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for doc in await index_documents(stack, exchange):
            documents[str(doc["offer_id"]).split(":", 1)[1]].append(doc)
        recorded = {
            r["listing_id"]: r["version"]
            for r in await fetch_rows(
                stack,
                "SELECT listing_id, version FROM matching.indexed_listings "
                "WHERE listing_id = ANY($1::uuid[]) AND searchable",
                [r["id"] for r in rows],
            )
        }
        duplicated += sum(len(docs) - 1 for docs in documents.values() if len(docs) > 1)
        duplicated += sum(len(docs) for ext, docs in documents.items() if ext not in acknowledged)
        indexed_ok = {
            ext
            for ext in stored_ok
            if len(documents.get(ext, [])) == 1
            and documents[ext][0]["version"] == stored[ext]["version"]
            and recorded.get(stored[ext]["id"]) == stored[ext]["version"]
        }
        missing += len(acknowledged) - len(indexed_ok)
        gaps += [f"indexed:{ext}" for ext in sorted(stored_ok - indexed_ok)]

    delivered_ok: set[str] | None = None
    out_of_order = total = 0
    if receiver is not None:
        # Per offer, each distinct webhook-id answered 200, in order of arrival.
        firsts: dict[str, dict[str, int]] = defaultdict(dict)
        for request in receiver.delivered():
            data = request.json()["data"]
            if not str(data.get("offer_id", "")).startswith(f"{exchange}:"):
                continue
            total += 1
            seen = firsts[str(data["source"]["listing_id"])]
            seen.setdefault(request.webhook_id, int(data["source"]["version"]))
        delivered_ok = set()
        for ext, by_id in firsts.items():
            versions = list(by_id.values())  # dicts keep insertion (arrival) order
            duplicated += sum(n - 1 for n in Counter(versions).values() if n > 1)
            out_of_order += sum(1 for a, b in itertools.pairwise(versions) if b <= a)
            if ext not in acknowledged:
                duplicated += len(versions)
            elif acknowledged[ext] in versions:
                delivered_ok.add(ext)
        missing += len(acknowledged) - len(delivered_ok)
        gaps += [f"delivered:{ext}" for ext in sorted(set(acknowledged) - delivered_ok)]

    return Ledger(
        fault=fault,
        acknowledged=len(acknowledged),
        stored=len(stored_ok),
        indexed=None if indexed_ok is None else len(indexed_ok),
        delivered=None if delivered_ok is None else len(delivered_ok),
        missing=missing,
        duplicated=duplicated,
        out_of_order=out_of_order,
        delivered_total=total,
        gaps=tuple(gaps[:10]),
    )


async def unsettled(stack: Stack, exchange: str) -> str:
    """What is still moving ("" when nothing): the partner's inbox not drained, the index
    behind the feed, a webhook pending. Once settled the ledger cannot change but by a bug."""
    pending = await fetch_rows(
        stack,
        "SELECT (SELECT count(*) FROM gateway.inbound_events "
        "        WHERE partner_code = $1 AND status = 'pending') AS inbox, "
        "       (SELECT count(*) FROM gateway.deliveries WHERE status = 'pending') AS outbox",
        exchange,
    )
    if pending[0]["inbox"] or pending[0]["outbox"]:
        return f"pending: {dict(pending[0])}"
    async with httpx.AsyncClient(timeout=10) as http:
        status = await http.get(
            f"{stack.url('matching')}/v1/index/status", headers=bearer(stack.operator_key)
        )
    if status.status_code != 200:
        return f"index status {status.status_code}"
    body = status.json()
    caught_up = body["lag_events"] == 0 and body["cursor"] == body["feed_head"]
    return "" if caught_up else f"index behind: {body}"


async def final_ledger(
    stack: Stack,
    fault: str,
    exchange: str,
    acknowledged: Mapping[str, int],
    receiver: Receiver | None,
    *,
    indexed: bool = True,
) -> Ledger:
    """Waits (bounded) until the ledger is complete and the pipeline idle, then takes it once
    more (late duplicates show there), prints it and checks it."""
    began = time.monotonic()
    deadline = began + SETTLE_SECONDS
    while True:
        ledger = await take_ledger(stack, fault, exchange, acknowledged, receiver, indexed=indexed)
        moving = (
            f"ledger incomplete: {ledger} {ledger.gaps}"
            if not ledger.complete
            else await unsettled(stack, exchange)
        )
        if not moving:
            break
        if time.monotonic() > deadline:
            print(stack.log_tail())
            if not ledger.complete:
                moving += f" / {await unsettled(stack, exchange) or 'pipeline idle'}"
            raise AssertionError(f"{fault}: not settled after {SETTLE_SECONDS:g}s: {moving}")
        await asyncio.sleep(0.25)
    print(f"{fault}: settled in {time.monotonic() - began:.1f}s")
    await asyncio.sleep(0.5)
    ledger = await take_ledger(stack, fault, exchange, acknowledged, receiver, indexed=indexed)
    print(ledger)
    assert ledger.missing == 0, ledger
    assert ledger.duplicated == 0, ledger
    assert ledger.out_of_order == 0, ledger
    assert ledger.stored == ledger.acknowledged, ledger
    return ledger


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


@dataclass
class Outcomes:
    """What clients saw while PostgreSQL went away and came back."""

    statuses: Counter[int] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    hangs: int = 0
    slowest: float = 0.0
    replayed: int = 0


async def until_acknowledged(
    send: Callable[[], Awaitable[httpx.Response]], outcomes: Outcomes, seconds: float = 60.0
) -> httpx.Response:
    """A client's retry loop: the same request (same Idempotency-Key or webhook-id) until it
    is acknowledged; 503 is expected during the outage, anything else is noted."""
    deadline = time.monotonic() + seconds
    while True:
        started = time.monotonic()
        try:
            answer = await send()
        except httpx.TimeoutException:
            outcomes.hangs += 1
            answer = None
        except httpx.TransportError as exc:
            outcomes.unexpected.append(f"transport error {type(exc).__name__}")
            answer = None
        outcomes.slowest = max(outcomes.slowest, time.monotonic() - started)
        if answer is not None:
            outcomes.statuses[answer.status_code] += 1
            if answer.is_success:
                if answer.headers.get("Idempotent-Replayed") == "true":
                    outcomes.replayed += 1
                return answer
            if answer.status_code == 503:
                assert_problem(answer, 503)
                assert "retry-after" in answer.headers, answer.headers
            else:
                outcomes.unexpected.append(f"{answer.status_code} {answer.text[:300]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"never acknowledged; saw {outcomes}")
        await asyncio.sleep(0.2)


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
