"""The indexer: tails the listing change feed and keeps the catalogue index in step.

- One writer at a time: a PostgreSQL advisory lock is the lease (a second replica waits).
- Idempotent by (listing id, version): the version indexed is kept in PostgreSQL and an event
  that is not newer is skipped, so replays and reorders never put an older version back.
- The cursor advances only after Meilisearch confirms the tasks and in the same transaction as
  the versions and the matches of newly published listings: a crash or an outage anywhere
  replays the page, nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
import httpx
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from services.matching.catalogue import SEARCHABLE, SETTINGS, search_document
from services.matching.meili import MeiliClient, MeiliError, MeiliUnavailable
from services.matching.models import IndexedListing, IndexerState
from shared.contracts.events import ChangeFeedPage
from shared.db import asyncpg_connect_kwargs
from shared.errors import is_database_unavailable
from shared.settings import Settings

logger = logging.getLogger("ipx.matching.indexer")

# Called with the search documents that became searchable in a page, inside the transaction
# that records the page (so matches are computed exactly when the cursor moves).
OnPublished = Callable[[AsyncSession, list[dict[str, Any]]], Awaitable[None]]


IN_FLIGHT = 4


@dataclass
class Plan:
    events: int
    cursor: str
    last_at: datetime | None
    upserts: list[dict[str, Any]] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    newly_searchable: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[int] = field(default_factory=list)


@dataclass
class PageResult:
    events: int
    upserted: int
    deleted: int
    cursor: str


async def record_indexed(
    session: AsyncSession, records: list[dict[str, Any]], *, only_newer: bool
) -> None:
    """Upsert the versions the index holds (`only_newer`: never move a listing back)."""
    stmt = insert(IndexedListing).values(records)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["listing_id"],
            set_={
                "version": stmt.excluded.version,
                "searchable": stmt.excluded.searchable,
                "asset_id": stmt.excluded.asset_id,
                "indexed_at": stmt.excluded.indexed_at,
            },
            where=col(IndexedListing.version) < stmt.excluded.version if only_newer else None,
        )
    )


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
        on_published: OnPublished | None = None,
        page_size: int = 1000,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.http = http
        self.meili = meili
        self.index_uid = index_uid
        self.on_published = on_published
        self.page_size = page_size
        self.lease_key = zlib.crc32(f"ipx-indexer:{index_uid}".encode())

    async def cursor(self) -> str:
        async with self.sessionmaker() as session:
            state = await session.get(IndexerState, self.index_uid)
        return state.cursor if state else "0.0"

    async def fetch(self, after: str, wait: float) -> ChangeFeedPage:
        response = await self.http.get(
            f"{self.settings.listing_url}/v1/changes",
            params={"after": after, "limit": self.page_size, "wait": wait},
            headers={"Authorization": f"Bearer {self.settings.service_key.get_secret_value()}"},
            timeout=wait + self.settings.upstream_timeout_seconds,
        )
        response.raise_for_status()
        return ChangeFeedPage.model_validate_json(response.content)

    async def plan(self, page: ChangeFeedPage, overlay: dict[UUID, tuple[int, bool]]) -> Plan:
        """What a page changes, against the versions indexed (PostgreSQL, then `overlay`: pages
        sent but not yet committed)."""
        latest: dict[UUID, Any] = {}
        for event in page.events:
            if event.entity != "listing":
                continue
            seen = latest.get(event.entity_id)
            if seen is None or event.version > seen.version:
                latest[event.entity_id] = event
        async with self.sessionmaker() as session:
            rows = await session.execute(
                select(
                    col(IndexedListing.listing_id),
                    col(IndexedListing.version),
                    col(IndexedListing.searchable),
                ).where(col(IndexedListing.listing_id).in_(list(latest)))
            )
            known = {r[0]: (r[1], r[2]) for r in rows}
        plan = Plan(
            events=len(page.events),
            cursor=page.next_cursor,
            last_at=page.events[-1].occurred_at if page.events else None,
        )
        for listing_id, event in latest.items():
            version, was_searchable = overlay.get(listing_id) or known.get(listing_id, (0, False))
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
                if not was_searchable:
                    plan.newly_searchable.append(document)
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

    async def commit(self, plan: Plan) -> PageResult:
        """Once the page's tasks succeeded: its versions, its matches and the cursor, in one
        transaction."""
        for task in plan.tasks:
            await self.meili.wait_task(task)
        async with self.sessionmaker() as session, session.begin():
            if plan.records:
                await record_indexed(session, plan.records, only_newer=True)
            if plan.newly_searchable and self.on_published is not None:
                await self.on_published(session, plan.newly_searchable)
            state = insert(IndexerState).values(
                index_uid=self.index_uid,
                cursor=plan.cursor,
                last_event_at=plan.last_at,
                updated_at=datetime.now(UTC),
            )
            await session.execute(
                state.on_conflict_do_update(
                    index_elements=["index_uid"],
                    set_={
                        "cursor": state.excluded.cursor,
                        "updated_at": state.excluded.updated_at,
                        "last_event_at": func.coalesce(
                            state.excluded.last_event_at, IndexerState.last_event_at
                        ),
                    },
                )
            )
        return PageResult(plan.events, len(plan.upserts), len(plan.deletes), plan.cursor)

    async def apply(self, page: ChangeFeedPage) -> PageResult:
        """Index one page and record it (cursor, versions, matches) atomically."""
        plan = await self.plan(page, {})
        await self.send(plan)
        return await self.commit(plan)

    async def step(self, wait: float) -> PageResult:
        page = await self.fetch(await self.cursor(), wait)
        return await self.apply(page)

    async def pipeline(self, wait: float) -> None:
        """Index continuously with up to IN_FLIGHT pages sent ahead of the last committed one.

        Pages commit in order, each after its own tasks succeeded; on any failure the loop
        ends and the caller restarts from the committed cursor (nothing is skipped)."""
        cursor = await self.cursor()
        pending: deque[Plan] = deque()
        overlay: dict[UUID, tuple[int, bool]] = {}
        while True:
            if not pending:
                # Nothing in flight: the committed cursor is the truth (an operator's replay or a
                # rebuild's swap may have moved it).
                cursor = await self.cursor()
                overlay.clear()
            page = await self.fetch(cursor, 0 if pending else wait)
            if page.events:
                plan = await self.plan(page, overlay)
                await self.send(plan)
                for record in plan.records:
                    overlay[record["listing_id"]] = (record["version"], record["searchable"])
                pending.append(plan)
                cursor = page.next_cursor
            if pending and (len(pending) >= IN_FLIGHT or not page.events):
                done = pending.popleft()
                await self.commit(done)
                for record in done.records:
                    if overlay.get(record["listing_id"], (0, False))[0] == record["version"]:
                        del overlay[record["listing_id"]]

    async def run_forever(self, wait: float = 10.0) -> None:
        """Hold the lease and index; on any outage, back off (with jitter) and resume."""
        delay = 0.5
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(
                    timeout=5, **asyncpg_connect_kwargs(self.settings.database_url)
                )
                if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", self.lease_key):
                    await asyncio.sleep(2 + random.random())  # another replica indexes
                    continue
                await ensure_index(self.meili, self.index_uid)
                delay = 0.5
                await self.pipeline(wait)
            except asyncio.CancelledError:
                raise
            except (
                MeiliUnavailable,
                MeiliError,
                httpx.HTTPError,
                OSError,
                asyncpg.PostgresError,
            ) as exc:
                logger.warning(
                    "indexer paused (%s: %s); retrying in %.1fs", type(exc).__name__, exc, delay
                )
            except Exception as exc:
                if not is_database_unavailable(exc):
                    logger.exception("indexer error; retrying in %.1fs", delay)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=1)
            await asyncio.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 10.0)
