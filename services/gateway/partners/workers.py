"""The two partner workers the gateway runs in its lifespan.

``inbox_workers``
    Applies inbox events to listing (``PUT /v1/offers/{exchange}/{listing_id}``). Rows are
    claimed with ``FOR UPDATE SKIP LOCKED`` and a lease in a short transaction that commits
    before any HTTP call; one offer's events go in version order, one at a time, while
    different offers go concurrently. An event not newer than one already applied for its
    offer is marked ``stale`` without a call (listing guards versions too). 422/409 (and
    400/413) from listing: ``rejected``, recorded for the partner with listing's reasons. Any
    other failure: retried with exponential backoff and jitter, never dropped. Wakes on
    ``NOTIFY gateway_inbox`` and polls besides.

``pull_workers``
    Pulls partners that have a feed: ``GET pull_url?cursor=<stored>`` with
    ``If-None-Match: <stored etag>``, expecting ``{"items": [...], "next_cursor": "..."}``
    (304: nothing new). Items go through the same intake as a push (adapter, validation,
    inbox; ``pull:<offer id>:<version>`` is the event id). The cursor and ETag are stored
    after every page, so a restart resumes where it stopped. Each partner is pulled in its own
    task under a time limit, claimed with a lease (``FOR UPDATE SKIP LOCKED``): a slow, broken
    or garbage-serving partner backs off (capped, with jitter) and never holds up another.

Tuning lives in :class:`PartnerSyncConfig` (``app.state.partner_sync`` when set).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import httpx
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.gateway.models import Partner, RejectedEvent
from services.gateway.partners import service
from services.gateway.partners.repository import (
    ClaimedEvent,
    InboxRepository,
    PartnerRepository,
    RejectedEventRepository,
    claim_alone,
    finish_alone,
)
from services.gateway.webhooks.repository import Tenant, allowed_for
from services.gateway.webhooks.ssrf import AllowList, TargetRefused, open_pinned, resolve_public
from shared.app import ClientLanes, http_client
from shared.contracts.offers import OfferUpsertResult
from shared.db import record_when_reachable, utcnow
from shared.errors import FieldError
from shared.jitter import backoff_seconds
from shared.settings import Settings
from shared.workers import Worker

__all__ = ["INBOX_CHANNEL", "PartnerSyncConfig", "inbox_workers", "pull_workers"]

logger = logging.getLogger("ipx.gateway.partners")
INBOX_CHANNEL = "gateway_inbox"
REJECTED_BY_LISTING = frozenset({400, 409, 413, 422})
RELEASE_SECONDS = 2.0


@dataclass(frozen=True)
class PartnerSyncConfig:
    """How the partner workers pace themselves (set ``app.state.partner_sync`` to change)."""

    inbox_batch: int = 32
    inbox_lease_seconds: float = 60.0
    inbox_poll_seconds: float = 1.0
    retry_base_seconds: float = 2.0
    retry_cap_seconds: float = 600.0
    pull_poll_seconds: float = 1.0
    pull_concurrency: int = 16
    pull_request_timeout_seconds: float = 15.0
    pull_run_timeout_seconds: float = 120.0
    pull_max_pages: int = 100
    pull_max_page_bytes: int = 8 * 1024 * 1024
    pull_backoff_cap_seconds: float = 3600.0


def _config(app: FastAPI) -> PartnerSyncConfig:
    config = getattr(app.state, "partner_sync", None)
    return config if isinstance(config, PartnerSyncConfig) else PartnerSyncConfig()


# --------------------------------------------------------------------------------------------
# The inbox worker
# --------------------------------------------------------------------------------------------


def inbox_workers(app: FastAPI) -> list[Worker]:
    """Apply inbox events to listing: up to `inbox_batch` at once, a free slot refilled as
    soon as an event is done (not when the slowest of a batch is)."""
    config = _config(app)
    settings: Settings = app.state.settings
    mounts = getattr(app.state, "http_mounts", None)
    lanes = ClientLanes(lambda: http_client(settings, mounts, connections=1), config.inbox_batch)
    in_flight: set[asyncio.Task[None]] = set()

    async def step() -> int:
        room = config.inbox_batch - len(in_flight)
        if room <= 0:
            return 0
        claimed, stale = await _claim(app, config, room)
        for event in claimed:
            task = asyncio.create_task(_apply(app, config, lanes, event))
            in_flight.add(task)
            task.add_done_callback(done)
        # More may be due while there is room.
        return 1 if (claimed or stale) and len(in_flight) < config.inbox_batch else 0

    def done(task: asyncio.Task[None]) -> None:
        in_flight.discard(task)
        worker.nudge()  # a slot is free

    async def stop() -> None:
        for task in in_flight:
            task.cancel()  # _apply gives its lease back
        await asyncio.gather(*in_flight, return_exceptions=True)
        await lanes.aclose()

    worker = Worker(
        "partner-inbox",
        step,
        interval=config.inbox_poll_seconds,
        channel=INBOX_CHANNEL,
        on_stop=stop,
    )
    return [worker]


async def _claim(
    app: FastAPI, config: PartnerSyncConfig, limit: int
) -> tuple[list[ClaimedEvent], int]:
    """Due events, leased in a statement that commits before any HTTP call: the leases hold
    the rows, no row lock is kept across the calls."""
    return await claim_alone(
        app.state.engine, utcnow(), limit, timedelta(seconds=config.inbox_lease_seconds)
    )


def _problem_errors(response: httpx.Response) -> tuple[str, list[FieldError]]:
    """listing's problem+json as (detail, field errors)."""
    try:
        problem = response.json()
    except ValueError:
        problem = {}
    if not isinstance(problem, dict):
        problem = {}
    detail = str(problem.get("detail") or problem.get("title") or f"HTTP {response.status_code}")
    errors: list[FieldError] = []
    for item in problem.get("errors") or []:
        with contextlib.suppress(ValidationError):
            errors.append(FieldError.model_validate(item))
    if not errors:
        slug = str(problem.get("type") or "").rsplit("/", 1)[-1] or f"http_{response.status_code}"
        errors = [FieldError(field="body", rule=slug, message=detail)]
    return detail, errors


async def _apply(
    app: FastAPI, config: PartnerSyncConfig, lanes: ClientLanes, event: ClaimedEvent
) -> None:
    """One inbox event to listing; its outcome recorded. Never raises (a failure to record
    leaves the lease to expire, and the event is tried again)."""
    maker: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    try:
        async with lanes.lend() as http:
            outcome = await _put_offer(app, http, event)
        # The outcome is known: record it as soon as PostgreSQL answers (within the lease).
        await record_when_reachable(
            lambda: _record(maker, app.state.engine, config, event, outcome),
            config.inbox_lease_seconds / 2,
        )
    except asyncio.CancelledError:
        await _released(maker, lambda session: InboxRepository(session).release(event.id))
        raise
    except Exception as exc:
        logger.warning("inbox event %s not recorded (%s)", event.id, type(exc).__name__)


async def _record(
    maker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    config: PartnerSyncConfig,
    event: ClaimedEvent,
    outcome: OfferUpsertResult | tuple[str, list[FieldError]] | str,
) -> None:
    """One inbox event's outcome, in one transaction (an applied or stale one: one statement)."""
    now = utcnow()
    if isinstance(outcome, OfferUpsertResult):
        if outcome.applied:
            await finish_alone(engine, event.id, "applied", None, now)
        else:
            await finish_alone(
                engine,
                event.id,
                "stale",
                f"listing already holds version {outcome.source_version}",
                now,
            )
        return
    async with maker() as session, session.begin():
        inbox = InboxRepository(session)
        if isinstance(outcome, tuple):
            detail, errors = outcome
            await inbox.finish(event.id, "rejected", detail, now)
            await RejectedEventRepository(session).add(
                RejectedEvent(
                    partner_code=event.partner_code,
                    event_id=event.event_id,
                    source=event.source,
                    received_at=now,
                    errors=[e.model_dump() for e in errors],
                    payload_excerpt=service.excerpt(json.dumps(event.document, ensure_ascii=False)),
                )
            )
        else:
            attempts = event.attempts + 1
            delay = backoff_seconds(attempts, config.retry_base_seconds, config.retry_cap_seconds)
            await inbox.retry_later(
                event.id, attempts, now + timedelta(seconds=delay), outcome[:2000]
            )
            logger.info(
                "inbox event %s of %s: %s; retry %d in %.1fs",
                event.id,
                event.partner_code,
                outcome,
                attempts,
                delay,
            )


async def _released(
    maker: async_sessionmaker[AsyncSession],
    release: Callable[[AsyncSession], Awaitable[None]],
) -> None:
    """Best effort on shutdown: give a lease back so another replica (or the next start) need
    not wait for it to expire."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(RELEASE_SECONDS), maker() as session, session.begin():
            await release(session)


async def _put_offer(
    app: FastAPI, http: httpx.AsyncClient, event: ClaimedEvent
) -> OfferUpsertResult | tuple[str, list[FieldError]] | str:
    """The upsert's result; (detail, errors) when listing refuses the offer; a reason string
    when it should be tried again."""
    settings: Settings = app.state.settings
    source: dict[str, Any] = event.document["source"]
    url = (
        f"{settings.listing_url}/v1/offers/{quote(str(source['exchange']), safe='')}"
        f"/{quote(str(source['listing_id']), safe='')}"
    )
    try:
        response = await http.put(
            url,
            params={"exchange_name": event.partner_name, "exchange_region": event.partner_region},
            json=event.document,
            headers={"Authorization": f"Bearer {settings.service_key.get_secret_value()}"},
        )
    except httpx.HTTPError as exc:
        return f"listing unreachable: {type(exc).__name__}"
    if response.status_code == 200:
        try:
            return OfferUpsertResult.model_validate_json(response.content)
        except ValidationError:
            return "listing answered 200 with an unexpected body"
    if response.status_code in REJECTED_BY_LISTING:
        return _problem_errors(response)
    return f"listing answered HTTP {response.status_code}"


# --------------------------------------------------------------------------------------------
# The pull worker
# --------------------------------------------------------------------------------------------


class PullFailed(Exception):
    """Why a pull stopped (shown to operators as pull_last_error; no secrets)."""


class FeedPage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    items: list[Any] = Field(max_length=10_000)
    next_cursor: str | None = Field(default=None, max_length=500)


def pull_workers(app: FastAPI) -> list[Worker]:
    """Pull the feeds of partners that have one, each on its schedule, each in its own task."""
    config = _config(app)
    running: dict[str, asyncio.Task[None]] = {}
    client = httpx.AsyncClient(
        timeout=config.pull_request_timeout_seconds,
        follow_redirects=False,
        headers={"Accept": "application/json", "User-Agent": "ipx-gateway partner-sync/1"},
    )

    async def step() -> int:
        for code in [code for code, task in running.items() if task.done()]:
            del running[code]
        free = config.pull_concurrency - len(running)
        if free <= 0:
            return 0
        for partner in await _claim_pulls(app, config, free, set(running)):
            running[partner.code] = asyncio.create_task(
                _pull_partner(app, client, config, partner), name=f"pull-{partner.code}"
            )
        return 0  # due partners are looked for every pull_poll_seconds

    async def stop() -> None:
        for task in running.values():
            task.cancel()
        await asyncio.gather(*running.values(), return_exceptions=True)
        await client.aclose()

    return [Worker("partner-pull", step, interval=config.pull_poll_seconds, on_stop=stop)]


async def _claim_pulls(
    app: FastAPI, config: PartnerSyncConfig, limit: int, exclude: set[str]
) -> list[Partner]:
    maker: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    lease = timedelta(seconds=config.pull_run_timeout_seconds + 30)
    async with maker() as session, session.begin():
        return await PartnerRepository(session).claim_due_pulls(utcnow(), limit, lease, exclude)


async def _pull_partner(
    app: FastAPI, client: httpx.AsyncClient, config: PartnerSyncConfig, partner: Partner
) -> None:
    """One partner's pull, under its own time limit; its outcome and next time recorded."""
    error: str | None = None
    try:
        async with asyncio.timeout(config.pull_run_timeout_seconds):
            await _pull_pages(app, client, config, partner)
    except TimeoutError:
        error = f"the pull took longer than {config.pull_run_timeout_seconds:g}s"
    except PullFailed as exc:
        error = str(exc)
    except httpx.TimeoutException:
        error = f"the feed did not answer within {config.pull_request_timeout_seconds:g}s"
    except httpx.HTTPError as exc:
        error = f"the feed is unreachable ({type(exc).__name__})"
    except asyncio.CancelledError:
        # Shutting down: the next run (here or on another replica) resumes from the cursor.
        await _released(
            app.state.sessionmaker,
            lambda session: PartnerRepository(session).release_pull(partner.code),
        )
        raise
    except Exception as exc:
        logger.exception("pull of %s failed", partner.code)
        error = f"internal error ({type(exc).__name__})"
    now = utcnow()
    if error is None:
        next_at = now + timedelta(seconds=partner.pull_interval_seconds)
    else:
        delay = backoff_seconds(
            partner.pull_failures + 1,
            float(partner.pull_interval_seconds),
            max(config.pull_backoff_cap_seconds, float(partner.pull_interval_seconds)),
        )
        next_at = now + timedelta(seconds=delay)
        logger.info("pull of %s failed: %s; next in %.0fs", partner.code, error, delay)
    maker: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    try:
        async with maker() as session, session.begin():
            await PartnerRepository(session).finish_pull(partner.code, next_at=next_at, error=error)
    except asyncio.CancelledError:
        await _released(
            maker, lambda session: PartnerRepository(session).release_pull(partner.code)
        )
        raise
    except Exception as exc:
        logger.warning("pull of %s not recorded (%s)", partner.code, type(exc).__name__)


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise PullFailed(f"a feed page is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _page(body: bytes) -> FeedPage:
    try:
        payload = service.parse_json(body)
    except ValueError as exc:
        raise PullFailed("the feed answered something that is not JSON") from exc
    try:
        return FeedPage.model_validate(payload)
    except ValidationError as exc:
        raise PullFailed(
            'the feed answered JSON that is not {"items": [...], "next_cursor": "..."}'
        ) from exc


async def _pull_pages(
    app: FastAPI, client: httpx.AsyncClient, config: PartnerSyncConfig, partner: Partner
) -> None:
    maker: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    assert partner.pull_url is not None
    async with maker() as session:
        allow = AllowList.of(await allowed_for(session, Tenant(partner_code=partner.code)))
    cursor, etag = partner.pull_cursor, partner.pull_etag
    for _ in range(config.pull_max_pages):
        params = {"cursor": cursor} if cursor else {}
        headers = {"If-None-Match": etag} if etag else {}
        # The feed's address is checked like a webhook subscriber's, and the connection goes
        # to the address checked: an operator-set URL cannot reach the gateway's own network.
        url = str(httpx.URL(partner.pull_url).copy_merge_params(params))
        try:
            target = await resolve_public(url, allow)
        except TargetRefused as exc:
            raise PullFailed(f"{exc.rule}: {exc.message}") from exc
        async with open_pinned(client, target, method="GET", headers=headers) as answer:
            if answer.status_code == 304:
                return
            if answer.status_code != 200:
                raise PullFailed(f"the feed answered HTTP {answer.status_code}")
            body = await _read_capped(answer, config.pull_max_page_bytes)
            page_etag = answer.headers.get("etag")
        page = _page(body)
        next_cursor = page.next_cursor or cursor
        async with maker() as session, session.begin():
            for item in page.items:
                # A rejected item is recorded for the partner; the rest of the page goes on.
                with contextlib.suppress(service.EventRejected):
                    await service.accept(
                        session,
                        partner,
                        item,
                        event_id=None,
                        source="pull",
                        raw=json.dumps(item, ensure_ascii=False, default=str),
                    )
            # The ETag belongs to the page asked for: keep it only while the cursor stays.
            stored_etag = page_etag[:500] if page_etag and next_cursor == cursor else None
            await PartnerRepository(session).save_pull_position(
                partner.code, next_cursor, stored_etag, utcnow()
            )
        if not page.items or next_cursor == cursor:
            return
        cursor, etag = next_cursor, None
