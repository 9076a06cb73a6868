"""Real crashes, not clean stops (issue 18): `kill -9` of PostgreSQL (the postmaster and its
backends at once, as a power cut ends them) in the middle of a partner flood, of a CSV import
and of webhook deliveries, and of Meilisearch in the middle of a flood it indexes, on a cluster
with fsync and synchronous commit on, as production runs it. After each kill the server starts
again on the same data and port, the pipeline settles, and crashlab's ledger must hold: every
write that got a 2xx is stored, indexed once at its latest version and delivered to the
subscriber (a webhook-id may arrive twice, two webhook-ids for one event may not).

Clients retry what was not acknowledged (a partner its push with the same webhook-id, the
operator its import file), so every write sent ends acknowledged and the ledger is exact.
The figures of all cycles are written at the end of the module.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import functools
import io
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import asyncpg
import httpx
import pytest
from crashlab import (
    CLIENT_TIMEOUT,
    SETTLE_SECONDS,
    Ledger,
    Outcomes,
    Partner,
    Stack,
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

from services.listing.imports.parsing import CSV_COLUMNS
from services.listing.imports.service import BATCH_ROWS
from shared.contracts.catalogue import OUR_EXCHANGE
from shared.db import asyncpg_connect_kwargs
from support import bearer

pytestmark = pytest.mark.e2e

INDEX = "catalogue_crashes"
# 20 kills in all.
FLOOD_CYCLES, IMPORT_CYCLES, DELIVERY_CYCLES, MEILI_CYCLES = 6, 4, 4, 6
NEW_OFFERS, UPDATED_OFFERS = 80, 40  # a flood cycle's pushes: new offers, and earlier ones again
CONNECTIONS = 8  # the partner's concurrent pushes
# An import file of three batches: the kill comes once the first has committed.
IMPORT_ROWS = 2 * BATCH_ROWS + BATCH_ROWS // 2
SELLER = "上海交通大学"
# One import row in ten is in the subscriber's region (True), the others not: every row is
# indexed, a tenth delivered (a delivery takes longer than indexing).
IMPORT_REGIONS = {True: "310106", False: "310107"}
SUBSCRIBED_EVERY = 10


@dataclass
class Tally:
    """The module's figures: cycles by what was killed, acknowledged writes by kind, the last
    ledger of each scenario, and what clients were answered while a server was down."""

    cycles: Counter[str] = field(default_factory=Counter)
    writes: Counter[str] = field(default_factory=Counter)
    ledgers: dict[str, list[Ledger]] = field(default_factory=dict)
    outcomes: list[Outcomes] = field(default_factory=list)
    webhooks: Counter[str] = field(default_factory=Counter)

    def scenario(self, name: str) -> tuple[Outcomes, list[Ledger]]:
        """What a scenario's clients saw, and where final_ledger keeps its ledgers."""
        self.outcomes.append(Outcomes())
        self.ledgers[name] = []
        return self.outcomes[-1], self.ledgers[name]

    def count_webhooks(self, receiver: Receiver) -> None:
        """Webhooks answered 200, and how many of them came again (the same webhook-id)."""
        delivered = receiver.delivered()
        self.webhooks["received"] += len(delivered)
        self.webhooks["redelivered"] += len(delivered) - len({r.webhook_id for r in delivered})

    def summary(self, seconds: float) -> str:
        last = [kept[-1] for kept in self.ledgers.values() if kept]
        answers: Counter[str] = Counter()
        for seen in self.outcomes:
            answers.update({str(code): n for code, n in seen.statuses.items()})
            answers.update(seen.unexpected)
            answers["hang"] += seen.hangs
        return (
            f"CRASHES: {sum(self.cycles.values())} kill -9 cycles {dict(self.cycles)}; "
            f"acknowledged writes {sum(self.writes.values())} {dict(self.writes)}; "
            f"lost={sum(ledger.acknowledged - ledger.stored for ledger in last)} "
            f"(missing stages {sum(ledger.missing for ledger in last)}) "
            f"duplicated={sum(ledger.duplicated for ledger in last)}; "
            f"webhooks {dict(self.webhooks)}; clients saw {dict(answers)}; "
            f"{seconds:.0f}s"
        )


@pytest.fixture(scope="module")
def tally(pytestconfig: pytest.Config) -> Iterator[Tally]:
    tally = Tally()
    started = time.monotonic()
    yield tally
    line = tally.summary(time.monotonic() - started)
    # In the run's log even when output is captured (as `capsys.disabled()` does).
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        if reporter is not None:
            reporter.write_line(line)
        else:
            print(line)


@pytest.fixture(scope="module")
def stack(test_root: Path, service_key: str, operator_key: str) -> Iterator[Stack]:
    with running_stack(
        test_root / "crashes", service_key, operator_key, durable=True, index=INDEX
    ) as stack:
        yield stack


# --------------------------------------------------------------------------- the crash


async def crash_during(
    work: Awaitable[None],
    when: Callable[[], Awaitable[bool]],
    kill: Callable[[], None],
    start: Callable[[], None],
    rng: random.Random,
) -> float:
    """Runs `work`; the moment `when()` holds while it still runs, kills the server (SIGKILL),
    leaves it down a moment and starts it again on the same data and port, then waits for
    `work` to end. Returns how long the server was gone."""
    task = asyncio.ensure_future(work)
    try:
        while not await when():
            if task.done():
                task.result()
                raise AssertionError("the work ended before the moment to crash")
            await asyncio.sleep(0.01)
        assert not task.done(), "the work ended before the crash"
        down = time.monotonic()
        await asyncio.to_thread(kill)
        await asyncio.sleep(rng.uniform(0.2, 1.0))
        await asyncio.to_thread(start)
        outage = time.monotonic() - down
        await task
    finally:
        task.cancel()
    return outage


def reached(count: Callable[[], int], target: float) -> Callable[[], Awaitable[bool]]:
    """The moment to crash: when `count()` reaches `target`."""

    async def when() -> bool:
        return count() >= target

    return when


# --------------------------------------------------------------------------- partner floods


@dataclass
class Offers:
    """A partner's offers across cycles and the versions it got a 202 for."""

    partner: Partner
    serials: int  # its offers' application numbers start here
    acknowledged: dict[str, int] = field(default_factory=dict)
    created: int = 0
    sent: int = 0  # pushes acknowledged

    def count(self) -> int:
        return self.sent

    def next_pushes(self, rng: random.Random) -> list[tuple[str, int]]:
        """New offers at version 1 and earlier ones at their next version, shuffled."""
        again = rng.sample(sorted(self.acknowledged), min(UPDATED_OFFERS, len(self.acknowledged)))
        fresh = [f"{self.partner.code}-{self.created + i:05d}" for i in range(NEW_OFFERS)]
        self.created += NEW_OFFERS
        pushes = [(ext, self.acknowledged[ext] + 1) for ext in again] + [(e, 1) for e in fresh]
        rng.shuffle(pushes)
        return pushes

    async def flood(
        self,
        http: httpx.AsyncClient,
        stack: Stack,
        pushes: list[tuple[str, int]],
        outcomes: Outcomes,
    ) -> None:
        """Each push sent until acknowledged (the same webhook-id), CONNECTIONS at a time."""
        queue = deque(pushes)

        async def connection() -> None:
            while queue:
                ext, version = queue.popleft()
                serial = self.serials + int(ext.rsplit("-", 1)[1])
                document = offer(self.partner, ext, serial, version)
                send = functools.partial(
                    push, http, stack, self.partner, document, f"{ext}-v{version}"
                )
                await until_acknowledged(send, outcomes)
                self.acknowledged[ext] = max(self.acknowledged.get(ext, 0), version)
                self.sent += 1

        await asyncio.gather(*(connection() for _ in range(CONNECTIONS)))


def received(receiver: Receiver) -> int:
    """The distinct webhook-ids the subscriber answered 200 to."""
    return len({request.webhook_id for request in receiver.delivered()})


async def until_received(receiver: Receiver, work: Awaitable[None], target: int) -> None:
    """`work`, then until the subscriber has received `target` distinct webhooks."""
    await work
    await receiver.wait_for(lambda r: received(r) >= target, SETTLE_SECONDS, f"{target} webhooks")


@dataclass(frozen=True)
class Flood:
    """Cycles of a flood and a kill: of `server`, once a random share of the cycle's pushes
    were acknowledged or, `in_deliveries`, of its webhooks received."""

    name: str  # the partner's code too
    server: Literal["postgres", "meilisearch"]
    cycles: int
    region: str  # the offers' holders', which the subscriber's filter names
    serials: int  # the offers' application numbers start here
    in_deliveries: bool = False


FLOODS = [
    Flood("postgres-flood", "postgres", FLOOD_CYCLES, "310101", 8_500_000),
    Flood("postgres-deliveries", "postgres", DELIVERY_CYCLES, "310104", 8_600_000, True),
    Flood("meilisearch-flood", "meilisearch", MEILI_CYCLES, "310105", 8_700_000),
]


async def orphaned_claims(stack: Stack, subscription_id: str) -> int:
    """Deliveries claimed more often than tried: a crash took the claim's answer (or the read
    right after it) from the worker though the claim had committed, and the delivery waited
    for its lease to run out (LEASE_SECONDS in services/gateway/webhooks/workers.py)."""
    [row] = await fetch_rows(
        stack,
        "SELECT count(*) AS n FROM gateway.deliveries d WHERE d.subscription_id = $1::uuid "
        "AND d.attempts > (SELECT count(*) FROM gateway.delivery_attempts a "
        "                  WHERE a.delivery_id = d.id)",
        subscription_id,
    )
    return int(row["n"])


@pytest.mark.parametrize("flood", FLOODS, ids=[f.name for f in FLOODS])
async def test_kill_during_partner_floods(stack: Stack, tally: Tally, flood: Flood) -> None:
    kill, start = (
        (stack.kill_postgres, stack.start_postgres)
        if flood.server == "postgres"
        else (stack.kill_meilisearch, stack.start_meilisearch)
    )
    # In deliveries: 50 ms per webhook, so that deliveries are in flight when PostgreSQL dies.
    receiver = Receiver(mode="slow", slow_seconds=0.05) if flood.in_deliveries else Receiver()
    rng = random.Random(flood.name)
    outcomes, kept = tally.scenario(flood.name)
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as http, receiving(receiver):
        partner = await register_partner(http, stack, flood.name, flood.region)
        subscriber = await subscribe(
            http, stack, receiver, f"{flood.name} 订阅者有限公司", flood.region
        )
        offers = Offers(partner, flood.serials)
        for cycle in range(1, flood.cycles + 1):
            pushes = offers.next_pushes(rng)
            share = rng.uniform(0.2, 0.6)
            count = functools.partial(received, receiver) if flood.in_deliveries else offers.count
            when = reached(count, count() + share * len(pushes))
            work = offers.flood(http, stack, pushes, outcomes)
            if flood.in_deliveries:
                work = until_received(receiver, work, count() + len(pushes))
            outage = await crash_during(work, when, kill, start, rng)
            tally.cycles[flood.server] += 1
            tally.writes["partner pushes"] += len(pushes)
            print(
                f"{flood.name} #{cycle}: killed after {share:.0%} of {len(pushes)} "
                f"{'webhooks' if flood.in_deliveries else 'pushes'}, down {outage:.1f}s"
            )
            fault = f"{flood.name} #{cycle}"
            await final_ledger(stack, fault, partner.code, offers.acknowledged, receiver, kept=kept)
        tally.webhooks["orphaned claims"] += await orphaned_claims(stack, subscriber.id)
        await unsubscribe(http, stack, subscriber)
    tally.count_webhooks(receiver)
    print(f"{flood.name}: answers {dict(outcomes.statuses)}, unexpected {outcomes.unexpected}")
    assert outcomes.hangs == 0, outcomes


# --------------------------------------------------------------------------- imports


def import_file(serials: range) -> bytes:
    """A seller's CSV: one granted invention patent per serial, offered for a non-exclusive
    licence; one row in SUBSCRIBED_EVERY is in the subscriber's region."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(CSV_COLUMNS), restval="")
    writer.writeheader()
    for serial in serials:
        writer.writerow(
            {
                "kind": "invention_patent",
                "identifier": identifier(serial),
                "title_zh": "一种船舶压载水处理系统",
                "ipc": "C02F 1/46",
                "holders": SELLER,
                "holder_region": IMPORT_REGIONS[serial % SUBSCRIBED_EVERY == 0],
                "filed_on": "2019-03-01",
                "legal_status": "granted",
                "transaction_type": "nonexclusive_license",
                "price_mode": "fixed",
                "amount": f"{200000 + serial % 1000}.00",
            }
        )
    return out.getvalue().encode()


async def answer_or_error(
    send: Callable[[], Awaitable[httpx.Response]], into: list[httpx.Response | Exception]
) -> None:
    """One sending, no retry: its answer, or the error it met."""
    try:
        into.append(await send())
    except httpx.HTTPError as exc:
        into.append(exc)


# The seller's import jobs but those of earlier cycles (a crashed one stays "running").
NEW_JOBS = "FROM listing.imports WHERE organization_id = $1::uuid AND NOT id = ANY($2::uuid[])"


async def first_batch_committed(watch: asyncpg.Connection, seller_id: str, old: object) -> bool:
    """The moment to crash an import: its job records a batch committed."""
    progress = await watch.fetchval(f"SELECT max(total_rows) {NEW_JOBS}", seller_id, old)
    return bool(progress and progress >= BATCH_ROWS)


async def left_whole(stack: Stack, seller_id: str, old: object, numbers: list[str]) -> int:
    """What an interrupted import left: its file up to a batch (the first rows, each batch
    whole), as many rows as its job recorded. Returns how many."""
    rows = await fetch_rows(
        stack,
        "SELECT a.identifier FROM listing.listings l JOIN listing.assets a ON a.id = l.asset_id "
        "WHERE l.seller_id = $1::uuid AND a.identifier = ANY($2::text[])",
        seller_id,
        numbers,
    )
    stored = {r["identifier"] for r in rows}
    [job] = await fetch_rows(
        stack, f"SELECT status, total_rows, created_count {NEW_JOBS}", seller_id, old
    )
    print(f"the interrupted import left {len(stored)} rows; its job: {dict(job)}")
    assert len(rows) == len(stored)
    assert len(stored) % BATCH_ROWS == 0 and 0 < len(stored) < len(numbers), len(stored)
    assert stored == set(numbers[: len(stored)])
    assert job["total_rows"] == job["created_count"] == len(stored), dict(job)
    return len(stored)


async def test_postmaster_killed_during_csv_imports(stack: Stack, tally: Tally) -> None:
    """The operator imports a file for a seller, published at once; PostgreSQL dies once the
    first batch has committed. The import must have left its file up to a batch; sending the
    file again finishes it without a duplicate, and every row is indexed (and delivered, those
    the subscriber's filter selects)."""
    rng = random.Random("imports")
    outcomes, kept = tally.scenario("postgres-import")
    acknowledged: dict[str, int] = {}
    subscribed: set[str] = set()
    operator = bearer(stack.operator_key)
    async with (
        httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as http,
        receiving(Receiver()) as receiver,
    ):
        seller = await http.post(
            f"{stack.url('listing')}/v1/organizations",
            json={"name": SELLER, "kind": "university", "region": IMPORT_REGIONS[True]},
        )
        assert seller.status_code == 201, seller.text
        seller_id = seller.json()["organization"]["id"]
        subscriber = await subscribe(
            http, stack, receiver, "上海某航运科技有限公司", IMPORT_REGIONS[True]
        )
        for cycle in range(1, IMPORT_CYCLES + 1):
            serials = range(8_800_000 + cycle * 10_000, 8_800_000 + cycle * 10_000 + IMPORT_ROWS)
            send = functools.partial(
                http.post,
                f"{stack.url('listing')}/v1/imports",
                params={"mode": "publish", "seller_id": seller_id},
                content=import_file(serials),
                headers={**operator, "Content-Type": "text/csv"},
                timeout=60,
            )
            old = [r["id"] for r in await fetch_rows(stack, f"SELECT id {NEW_JOBS}", seller_id, [])]
            first: list[httpx.Response | Exception] = []
            watch = await asyncpg.connect(timeout=5, **asyncpg_connect_kwargs(stack.database_url))
            try:
                when = functools.partial(first_batch_committed, watch, seller_id, old)
                outage = await crash_during(
                    answer_or_error(send, first),
                    when,
                    stack.kill_postgres,
                    stack.start_postgres,
                    rng,
                )
            finally:
                watch.terminate()
            [interrupted] = first
            if isinstance(interrupted, httpx.Response):
                outcomes.statuses[interrupted.status_code] += 1
            else:
                outcomes.unexpected.append(type(interrupted).__name__)
            print(
                f"postgres-import #{cycle}: first sending answered "
                f"{getattr(interrupted, 'status_code', type(interrupted).__name__)}, "
                f"down {outage:.1f}s"
            )
            assert not (isinstance(interrupted, httpx.Response) and interrupted.is_success)
            numbers = [identifier(serial) for serial in serials]
            left = await left_whole(stack, seller_id, old, numbers)

            report = (await until_acknowledged(send, outcomes)).json()
            assert (report["created"], report["unchanged"], report["rejected"]) == (
                IMPORT_ROWS - left,
                left,
                0,
            ), report
            acknowledged |= dict.fromkeys(numbers, 1)
            subscribed |= {identifier(s) for s in serials if s % SUBSCRIBED_EVERY == 0}
            tally.cycles["postgres"] += 1
            tally.writes["import rows"] += IMPORT_ROWS
            await final_ledger(
                stack,
                f"postgres-import #{cycle}",
                OUR_EXCHANGE,
                acknowledged,
                receiver,
                seller_id=seller_id,
                subscribed=subscribed,
                kept=kept,
            )
        tally.webhooks["orphaned claims"] += await orphaned_claims(stack, subscriber.id)
        await unsubscribe(http, stack, subscriber)
    tally.count_webhooks(receiver)
    assert outcomes.hangs == 0, outcomes
