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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
import httpx
from sqlalchemy import select
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


@dataclass
class PageResult:
    events: int
    upserted: int
    deleted: int
    cursor: str


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

    async def apply(self, page: ChangeFeedPage) -> PageResult:
        """Index one page of events and record it (cursor, versions, matches) atomically."""
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
        upserts: list[dict[str, Any]] = []
        deletes: list[str] = []
        records: list[dict[str, Any]] = []
        newly_searchable: list[dict[str, Any]] = []
        for listing_id, event in latest.items():
            version, was_searchable = known.get(listing_id, (0, False))
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
                upserts.append(document)
                if not was_searchable:
                    newly_searchable.append(document)
            elif was_searchable:
                deletes.append(str(listing_id))
            records.append(
                {
                    "listing_id": listing_id,
                    "asset_id": event.asset_id,
                    "version": event.version,
                    "searchable": searchable,
                    "indexed_at": datetime.now(UTC),
                }
            )
        tasks = []
        if upserts:
            tasks.append(await self.meili.add_documents(self.index_uid, upserts))
        if deletes:
            tasks.append(await self.meili.delete_documents(self.index_uid, deletes))
        for task in tasks:
            await self.meili.wait_task(task)
        last_at = page.events[-1].occurred_at if page.events else None
        async with self.sessionmaker() as session, session.begin():
            if records:
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
                        where=col(IndexedListing.version) < stmt.excluded.version,
                    )
                )
            if newly_searchable and self.on_published is not None:
                await self.on_published(session, newly_searchable)
            state = insert(IndexerState).values(
                index_uid=self.index_uid,
                cursor=page.next_cursor,
                last_event_at=last_at,
                updated_at=datetime.now(UTC),
            )
            await session.execute(
                state.on_conflict_do_update(
                    index_elements=["index_uid"],
                    set_={
                        "cursor": state.excluded.cursor,
                        "updated_at": state.excluded.updated_at,
                        "last_event_at": state.excluded.last_event_at,
                    },
                )
            )
        return PageResult(len(page.events), len(upserts), len(deletes), page.next_cursor)

    async def step(self, wait: float) -> PageResult:
        page = await self.fetch(await self.cursor(), wait)
        return await self.apply(page)

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
                while True:
                    await self.step(wait)
                    delay = 0.5
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
