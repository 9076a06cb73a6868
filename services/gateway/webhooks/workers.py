"""The webhook workers: fan-out (feeds -> deliveries) and delivery (deliveries -> subscribers).

Fan-out tails listing's change feed and matching's feed of matches from cursors kept in
`gateway.feed_cursors`. For each page it queues one delivery per (event, fitting subscription)
in the same transaction that moves the cursor, so a crash replays the page and the unique
(subscription, event id) makes the replay harmless. One replica fans out a feed at a time: a
PostgreSQL advisory lock per feed is the lease, and the cursor is compared before it moves.

Delivery claims due deliveries with ``FOR UPDATE SKIP LOCKED`` in a short transaction that sets
a lease and commits before any HTTP call (no row lock is held while a subscriber answers). A
delivery is claimed only when no earlier delivery on the same (subscription, listing) is still
pending, so each subscriber sees a listing's events in order; at most PER_SUBSCRIPTION are in
flight per subscription, and each runs in its own task, so a slow subscriber holds a few slots
and never the others' deliveries. Every attempt is recorded; failures are retried on
RETRY_SCHEDULE (with jitter, more than 24 hours in all), then the delivery is `failed`. The
worker wakes on NOTIFY gateway_deliveries (fired when deliveries are inserted) and polls.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.gateway.webhooks import repository, service
from services.gateway.webhooks.repository import Claimed
from services.gateway.webhooks.schemas import MatchChangePage
from services.gateway.webhooks.service import OutboundEvent
from services.gateway.webhooks.ssrf import (
    AllowList,
    Resolver,
    TargetRefused,
    resolve_public,
    send_pinned,
)
from shared.app import ClientLanes, tls_context
from shared.contracts.events import ChangeFeedPage
from shared.db import record_when_reachable
from shared.encryption import SecretBox, secret_box
from shared.jitter import jittered
from shared.settings import Settings
from shared.webhooks import signed_headers
from shared.workers import Worker

__all__ = [
    "RETRY_JITTER",
    "RETRY_SCHEDULE",
    "DeliveryWorker",
    "delivery_workers",
    "fanout_workers",
    "retry_delay",
    "subscriber_client",
]

logger = logging.getLogger("ipx.gateway.webhooks")

# Seconds to wait after the 1st, 2nd, ... failed attempt; after the last, the delivery fails.
# 13 attempts over 31.9 hours nominal; with the jitter below never less than 25.5 hours.
RETRY_SCHEDULE: tuple[float, ...] = (
    10,
    30,
    2 * 60,
    5 * 60,
    15 * 60,
    30 * 60,
    3600,
    2 * 3600,
    4 * 3600,
    8 * 3600,
    8 * 3600,
    8 * 3600,
)
# Each wait is scaled by a random factor in [1 - RETRY_JITTER, 1 + RETRY_JITTER]: retries of
# many deliveries spread out, and the whole schedule still spans at least 24 hours.
RETRY_JITTER = 0.2
# Tests and operators replace the schedule with IPX_WEBHOOK_RETRY_SCHEDULE.

CONNECT_TIMEOUT_SECONDS = 5.0
TOTAL_TIMEOUT_SECONDS = 10.0  # resolving, connecting, sending and the answer, together
LEASE_SECONDS = 60.0  # a claimed delivery whose worker vanished is retried after this
CONCURRENCY = 32  # deliveries in flight per replica
PER_SUBSCRIPTION = 8  # deliveries in flight per subscription, across replicas
POLL_SECONDS = 1.0
DELIVERY_CHANNEL = "gateway_deliveries"
FEED_WAIT_SECONDS = 10.0
FEED_PAGE_SIZE = 500


def retry_delay(
    attempts: int, schedule: Sequence[float] = RETRY_SCHEDULE, rng: random.Random | None = None
) -> float | None:
    """Seconds before the next try after `attempts` failed ones (jittered); None: give up."""
    if attempts > len(schedule):
        return None
    return jittered(schedule[max(attempts, 1) - 1], RETRY_JITTER, rng)


# ----------------------------------------------------------------------------- fan-out


@dataclass(frozen=True)
class Feed:
    name: str  # the row in gateway.feed_cursors, and the advisory lock
    upstream: Callable[[Settings], str]
    path: str
    parse: Callable[[bytes], tuple[list[OutboundEvent], str]]

    @property
    def lease_key(self) -> int:
        return zlib.crc32(f"ipx-gateway-fanout:{self.name}".encode())


def _parse_listing(body: bytes) -> tuple[list[OutboundEvent], str]:
    page = ChangeFeedPage.model_validate_json(body)
    events = [e for e in map(service.from_listing_feed, page.events) if e is not None]
    return events, page.next_cursor


def _parse_matches(body: bytes) -> tuple[list[OutboundEvent], str]:
    page = MatchChangePage.model_validate_json(body)
    events = [e for e in map(service.from_match_feed, page.events) if e is not None]
    return events, page.next_cursor


LISTING_FEED = Feed("listing", lambda s: s.listing_url, "/v1/changes", _parse_listing)
MATCH_FEED = Feed("matches", lambda s: s.matching_url, "/v1/matches/changes", _parse_matches)


async def fanout_step(app: FastAPI, feed: Feed, wait: float = FEED_WAIT_SECONDS) -> int:
    """Read one page after the stored cursor and queue its deliveries; returns how many."""
    settings: Settings = app.state.settings
    sessionmaker: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    async with sessionmaker() as session:
        cursor = await repository.read_cursor(session, feed.name)
    response = await app.state.http.get(
        f"{feed.upstream(settings)}{feed.path}",
        params={"after": cursor, "limit": FEED_PAGE_SIZE, "wait": wait},
        headers={"Authorization": f"Bearer {settings.service_key.get_secret_value()}"},
        timeout=wait + settings.upstream_timeout_seconds,
    )
    response.raise_for_status()
    events, next_cursor = feed.parse(response.content)
    if next_cursor == cursor:
        return 0
    async with sessionmaker() as session, session.begin():
        if await repository.lock_cursor(session, feed.name) != cursor:
            return 0  # another replica moved it meanwhile: read again from where it is
        rows = (
            service.delivery_rows(events, await repository.active_subscriptions(session))
            if events
            else []
        )
        queued = await repository.insert_deliveries(session, rows) if rows else 0
        await repository.move_cursor(session, feed.name, next_cursor)
    return queued


def fanout_workers(app: FastAPI) -> list[Worker]:
    """One worker per feed, on one replica at a time (the lease; the cursor is compared before
    it moves besides). The step long-polls the feed, so it runs again at once."""
    return [
        Worker(
            f"webhook-fanout-{feed.name}",
            functools.partial(fanout_step, app, feed),
            interval=0.0,
            exclusive=True,
            lease=feed.lease_key,
            interruptible=True,
        )
        for feed in (LISTING_FEED, MATCH_FEED)
    ]


# ----------------------------------------------------------------------------- delivery


def subscriber_client(
    user_agent: str, total_timeout: float = TOTAL_TIMEOUT_SECONDS
) -> httpx.AsyncClient:
    """A client of one connection (a lane: `ClientLanes`) for subscribers' URLs: no redirects,
    no proxies from the environment (the connection must go to the checked address), short
    timeouts; every request carries `user_agent` (IPX_WEBHOOK_USER_AGENT, by default built
    from IPX_PUBLIC_URL)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(total_timeout, connect=min(CONNECT_TIMEOUT_SECONDS, total_timeout)),
        follow_redirects=False,
        trust_env=False,
        verify=tls_context(),
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        headers={"User-Agent": user_agent},
    )


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class DeliveryWorker:
    def __init__(
        self,
        engine: AsyncEngine,
        sessionmaker: async_sessionmaker[AsyncSession],
        lanes: ClientLanes,
        *,
        schedule: Sequence[float] = RETRY_SCHEDULE,
        concurrency: int = CONCURRENCY,
        per_subscription: int = PER_SUBSCRIPTION,
        lease_seconds: float = LEASE_SECONDS,
        total_timeout: float = TOTAL_TIMEOUT_SECONDS,
        resolver: Resolver | None = None,
        box: SecretBox,
    ) -> None:
        self.engine = engine
        self.sessionmaker = sessionmaker
        self.box = box
        self.lanes = lanes  # one client of one connection per delivery in flight
        self.schedule = tuple(schedule)
        self.concurrency = concurrency
        self.per_subscription = per_subscription
        self.lease_seconds = max(lease_seconds, total_timeout + 5)
        self.total_timeout = total_timeout
        self.resolver = resolver
        self._tasks: set[asyncio.Task[None]] = set()
        self.worker = Worker(
            "webhook-delivery",
            self.step,
            interval=POLL_SECONDS,
            channel=DELIVERY_CHANNEL,
            on_stop=self.stop,
        )

    async def claim(self, limit: int) -> list[tuple[Claimed, AllowList]]:
        async with self.sessionmaker() as session, session.begin():
            claimed = await repository.claim(
                session,
                limit=limit,
                per_subscription=self.per_subscription,
                lease_seconds=self.lease_seconds,
            )
            # Each subscriber's allow-list, in the claim's transaction: read after its commit,
            # a connection lost in between left the claimed rows leased to nobody for a lease.
            organizations = [c.organization_id for c in claimed if c.organization_id is not None]
            entries = (
                await repository.allowed_for_organizations(session, organizations)
                if organizations
                else {}
            )
        return [
            (c, AllowList.of(entries.get(c.organization_id, []) if c.organization_id else []))
            for c in claimed
        ]

    async def step(self) -> int:
        """Claim what fits in the free slots and send each in a task of its own; a full batch
        says more may be due (a finished delivery nudges the worker: a slot is free)."""
        free = self.concurrency - len(self._tasks)
        if free <= 0:
            return 0
        claimed = await self.claim(free)
        for item, allow in claimed:
            self._spawn(item, allow)
        return 1 if len(claimed) == free else 0

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, claimed: Claimed, allow: AllowList) -> None:
        task = asyncio.create_task(self.deliver(claimed, allow), name=f"webhook-{claimed.id}")
        self._tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._tasks.discard(finished)
            self.worker.nudge()

        task.add_done_callback(done)

    async def deliver(self, claimed: Claimed, allow: AllowList) -> None:
        """One attempt: resolve and check the URL, POST to the checked address, record."""
        body = json.dumps(claimed.payload, ensure_ascii=False, separators=(",", ":")).encode()
        headers = signed_headers(self.box.open(claimed.secret), claimed.event_id, body)
        loop = asyncio.get_running_loop()
        started = loop.time()
        status_code: int | None = None
        error: str | None = None
        try:
            async with asyncio.timeout(self.total_timeout):
                target = await resolve_public(claimed.url, allow, resolver=self.resolver)
                async with self.lanes.lend() as client:
                    status_code = await send_pinned(client, target, content=body, headers=headers)
        except TargetRefused as exc:
            error = f"{exc.rule}: {exc.message}"
        except TimeoutError:
            error = f"no answer within {self.total_timeout:g}s"
        except (httpx.HTTPError, OSError) as exc:
            error = _describe(exc)
        except Exception as exc:  # never lose the attempt record to a surprise
            logger.exception("webhook delivery %s failed unexpectedly", claimed.id)
            error = _describe(exc)
        latency_ms = round((loop.time() - started) * 1000, 1)
        if status_code is not None and 200 <= status_code < 300:
            outcome, retry_in = "delivered", None
        else:
            if error is None:
                error = f"HTTP {status_code}"
            retry_in = retry_delay(claimed.attempts, self.schedule)
            outcome = "failed" if retry_in is None else "pending"

        async def record() -> None:
            await repository.record_attempt_alone(
                self.engine,
                claimed,
                status_code=status_code,
                latency_ms=latency_ms,
                error=error,
                outcome=outcome,
                retry_in=retry_in,
            )

        try:
            # As soon as PostgreSQL answers again (within the lease), not when the lease ends.
            await record_when_reachable(record, self.lease_seconds / 2)
        except Exception as exc:
            # The lease runs out and the delivery is tried again: at least once still holds.
            logger.warning(
                "recording webhook delivery %s failed (%s: %s); retried after its lease",
                claimed.id,
                type(exc).__name__,
                exc,
            )
        if outcome == "failed":
            logger.warning(
                "webhook delivery %s to subscription %s failed after %d attempts (%s)",
                claimed.id,
                claimed.subscription_id,
                claimed.attempts,
                error,
            )


def delivery_workers(app: FastAPI) -> list[Worker]:
    """The delivery worker, with its own HTTP clients for subscribers. The retry schedule is
    IPX_WEBHOOK_RETRY_SCHEDULE when set, else RETRY_SCHEDULE; the attempt's time limit is
    IPX_WEBHOOK_TIMEOUT_SECONDS; the User-Agent is IPX_WEBHOOK_USER_AGENT."""
    settings: Settings = app.state.settings
    timeout = settings.webhook_timeout_seconds
    lanes = ClientLanes(
        lambda: subscriber_client(settings.webhook_user_agent, timeout), CONCURRENCY
    )
    delivery = DeliveryWorker(
        app.state.engine,
        app.state.sessionmaker,
        lanes,
        schedule=tuple(settings.webhook_retry_schedule) or RETRY_SCHEDULE,
        total_timeout=timeout,
        box=secret_box(settings.secret_keys),
    )

    async def stop() -> None:
        await delivery.stop()
        await lanes.aclose()

    delivery.worker.on_stop = stop
    return [delivery.worker]
