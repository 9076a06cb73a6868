"""The fault and crash tests' laboratory: a stack of our own (PostgreSQL, Meilisearch and the
three services as processes, all of which a test may stop, kill and start again), partners
and subscribers as real HTTP peers on 127.0.0.1, and the ledger that compares what was
acknowledged with what listing stored, what the search index holds and what a subscriber
received: nothing may be missing or duplicated.

Waits are shortened through settings (IPX_WEBHOOK_RETRY_SCHEDULE, IPX_WEBHOOK_TIMEOUT_SECONDS),
never by sleeping long.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Container, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from receiver import Receiver

from infra.meili import MeiliHandle, start_meilisearch
from infra.migrations import upgrade_all
from infra.postgres import PostgresHandle, start_postgres
from infra.processes import ServiceProcess, start_service, wait_ready
from shared.db import asyncpg_connect_kwargs
from shared.encryption import new_key
from shared.identifiers import cn_application_check_char
from shared.settings import SERVICE_NAMES
from shared.webhooks import signed_headers
from support import allowed_target, assert_problem, bearer, free_port

# Delivery attempts time out after 1.5 s and are retried after about 0.3, 0.6, 1, 1, ... s.
WEBHOOK_TIMEOUT = 1.5
RETRY_SCHEDULE = "0.3,0.6,1,1,1,1,1,1,1,1"
CLIENT_TIMEOUT = 15.0  # a request not answered in this long counts as a hang
SETTLE_SECONDS = 120.0  # the most the pipeline may take to catch up after a fault


# --------------------------------------------------------------------------- the stack


@dataclass
class Stack:
    """Our own PostgreSQL and Meilisearch, the three services as processes, and the keys.
    `durable`: the cluster runs with fsync and synchronous commit on, as production does."""

    root: Path
    pg: PostgresHandle
    durable: bool
    meili: MeiliHandle
    meili_port: int
    meili_key: str
    index: str
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
        self.pg.stop()  # fast shutdown: a checkpoint, then the end

    def kill_postgres(self) -> None:
        self.pg.kill()  # the postmaster and its backends at once: recovery from the WAL

    def start_postgres(self) -> None:
        self.pg = start_postgres(self.root / "pg", port=self.pg.port, durable=self.durable)

    def log_tail(self, chars: int = 3000) -> str:
        return "\n".join(
            f"--- {name}\n" + (self.root / f"{name}.log").read_text(errors="replace")[-chars:]
            for name in self.services
        )


@contextlib.contextmanager
def running_stack(
    root: Path, service_key: str, operator_key: str, *, durable: bool, index: str
) -> Iterator[Stack]:
    """Starts the stack under `root` and stops it (callers first) at the end."""
    root.mkdir(mode=0o755)
    pg = start_postgres(root / "pg", port=free_port(), durable=durable)
    meili_key = secrets.token_urlsafe(24)
    meili_port = free_port()
    meili: MeiliHandle | None = None
    stack: Stack | None = None
    try:
        upgrade_all(pg.url("ipx"))
        meili = start_meilisearch(root / "meili", port=meili_port, master_key=meili_key)
        stack = Stack(root, pg, durable, meili, meili_port, meili_key, index, operator_key, {})
        ports = {service: free_port() for service in SERVICE_NAMES}
        env = {
            "IPX_DATABASE_URL": pg.url("ipx"),
            "IPX_MEILI_URL": meili.url,
            "IPX_MEILI_MASTER_KEY": meili_key,
            "IPX_MEILI_INDEX": index,
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
            # 1 s for requests in flight at the end, as the launcher gives: open long-polls
            # would otherwise hold each stop for seconds.
            stack.services[service] = start_service(
                service, port=port, env=env, log_path=root / f"{service}.log", shutdown_grace=1
            )
        for process in stack.services.values():
            wait_ready(process)
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
    """A buyer organisation subscribed to listing events of one region (only this test's);
    the operator lets this organisation's webhooks reach the receiver's port on 127.0.0.1."""
    org = await http.post(
        f"{stack.url('listing')}/v1/organizations",
        json={"name": name, "kind": "enterprise", "region": "110108"},
    )
    assert org.status_code == 201, org.text
    org_id, key = org.json()["organization"]["id"], org.json()["api_key"]["key"]
    allowed = await http.post(
        f"{stack.url('gateway')}/v1/webhook-targets",
        json=allowed_target(receiver.url, organization_id=org_id),
        headers=bearer(stack.operator_key),
    )
    assert allowed.status_code == 201, allowed.text
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


async def index_documents(
    stack: Stack, exchange: str, seller_id: str | None = None
) -> list[dict[str, Any]]:
    """Straight from Meilisearch with the master key (not through matching)."""
    seller = f' AND seller_id = "{seller_id}"' if seller_id else ""
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(
            f"{stack.meili.url}/indexes/{stack.index}/documents/fetch",
            headers=bearer(stack.meili_key),
            json={
                "filter": f'exchange = "{exchange}"{seller}',
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
    seller_id: str | None = None,
    subscribed: Container[str] | None = None,
) -> Ledger:
    """`acknowledged`: the partner's listing id -> the highest version it got a 202 for; with
    `seller_id`, the seller's own listings instead: asset identifier -> the listing's version.
    `subscribed`: those the receiver's subscription selects, when not all of them."""
    rows = await fetch_rows(
        stack,
        "SELECT CASE WHEN $2::uuid IS NULL THEN l.external_id ELSE a.identifier END AS key, "
        "l.external_id, l.id, l.version, coalesce(l.source_version, l.version) AS acked, "
        "l.asset_id FROM listing.listings l JOIN listing.assets a ON a.id = l.asset_id "
        "WHERE l.exchange = $1 AND ($2::uuid IS NULL OR l.seller_id = $2::uuid)",
        exchange,
        seller_id,
    )
    stored = {r["key"]: r for r in rows}
    key_of = {r["external_id"]: r["key"] for r in rows}  # the ids documents and webhooks carry
    missing = duplicated = 0
    duplicated += sum(1 for ext in stored if ext not in acknowledged)
    duplicated += sum(n - 1 for n in Counter(r["asset_id"] for r in rows).values() if n > 1)
    stored_ok = {
        ext
        for ext, version in acknowledged.items()
        if ext in stored and stored[ext]["acked"] == version
    }
    missing += len(acknowledged) - len(stored_ok)
    gaps = [f"stored:{ext}" for ext in sorted(set(acknowledged) - stored_ok)]

    documents: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for doc in await index_documents(stack, exchange, seller_id):
        ext = str(doc["offer_id"]).split(":", 1)[1]
        documents[key_of.get(ext, ext)].append(doc)
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
        owed = {k: v for k, v in acknowledged.items() if subscribed is None or k in subscribed}
        # Per offer, each distinct webhook-id answered 200, in order of arrival.
        firsts: dict[str, dict[str, int]] = defaultdict(dict)
        for request in receiver.delivered():
            data = request.json()["data"]
            if not str(data.get("offer_id", "")).startswith(f"{exchange}:"):
                continue
            total += 1
            ext = str(data["source"]["listing_id"])
            seen = firsts[key_of.get(ext, ext)]
            seen.setdefault(request.webhook_id, int(data["source"]["version"]))
        delivered_ok = set()
        for ext, by_id in firsts.items():
            versions = list(by_id.values())  # dicts keep insertion (arrival) order
            duplicated += sum(n - 1 for n in Counter(versions).values() if n > 1)
            out_of_order += sum(1 for a, b in itertools.pairwise(versions) if b <= a)
            if ext not in owed:  # for nothing acknowledged, or not subscribed to
                duplicated += len(versions)
            elif owed[ext] in versions:
                delivered_ok.add(ext)
        missing += len(owed) - len(delivered_ok)
        gaps += [f"delivered:{ext}" for ext in sorted(set(owed) - delivered_ok)]

    return Ledger(
        fault=fault,
        acknowledged=len(acknowledged),
        stored=len(stored_ok),
        indexed=len(indexed_ok),
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
    seller_id: str | None = None,
    subscribed: Container[str] | None = None,
    kept: list[Ledger] | None = None,
) -> Ledger:
    """Waits (bounded) until the ledger is complete and the pipeline idle, then takes it once
    more (late duplicates show there), prints it and checks it; appends it to `kept` first."""

    async def take() -> Ledger:
        return await take_ledger(
            stack,
            fault,
            exchange,
            acknowledged,
            receiver,
            seller_id=seller_id,
            subscribed=subscribed,
        )

    began = time.monotonic()
    deadline = began + SETTLE_SECONDS
    while True:
        ledger = await take()
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
            if kept is not None:
                kept.append(ledger)
            raise AssertionError(f"{fault}: not settled after {SETTLE_SECONDS:g}s: {moving}")
        await asyncio.sleep(0.25)
    print(f"{fault}: settled in {time.monotonic() - began:.1f}s")
    await asyncio.sleep(0.5)
    ledger = await take()
    print(ledger)
    if kept is not None:
        kept.append(ledger)
    assert ledger.missing == 0, ledger
    assert ledger.duplicated == 0, ledger
    assert ledger.out_of_order == 0, ledger
    assert ledger.stored == ledger.acknowledged, ledger
    return ledger


# --------------------------------------------------------------------------- clients


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
