"""Rebuild: snapshot the source into a new index beside the live one, catch it up with the feed,
take the lease, catch up to the head, swap (docs/DECISIONS.md, Matching, "Index rebuild and
check")."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import Any
from uuid import UUID

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.matching.catalogue import SEARCHABLE, search_document
from services.matching.indexer import ensure_index
from services.matching.meili import MeiliClient, MeiliError, MeiliUnavailable
from services.matching.repair import index, records, source
from services.matching.repair.context import Context
from services.matching.repair.lease import hold_lease
from services.matching.repair.records import Known
from services.matching.repair.reports import Progress, RebuildReport
from shared.contracts.events import ChangeEvent
from shared.settings import Settings

__all__ = ["rebuild"]

logger = logging.getLogger("ipx.matching.repair")


async def _snapshot(
    ctx: Context,
    uid: str,
    known: dict[UUID, Known],
    page_size: int,
    progress: Progress | None,
) -> int:
    """Every searchable offer into `uid`, batches sent without waiting; returns how many."""
    tasks: list[int] = []
    sent = 0
    total: int | None = None
    estimate: int | None = None
    with contextlib.suppress(MeiliError, MeiliUnavailable):
        estimate = await ctx.meili.document_count(ctx.index_uid) or None

    async def report() -> None:
        while True:
            await asyncio.sleep(0.5)
            with contextlib.suppress(MeiliError, MeiliUnavailable):
                done = await ctx.meili.document_count(uid)
                guess = total if total is not None else estimate
                assert progress is not None
                progress(done, guess if guess is not None and guess >= done else None)

    reporter = asyncio.create_task(report()) if progress is not None else None
    try:
        async for page in source.offers(ctx, page_size):
            batch = []
            for item in page.items:
                searchable = item.status in SEARCHABLE
                known[item.listing_id] = Known(item.version, searchable, item.asset_id)
                if searchable:
                    batch.append(
                        search_document(
                            str(item.listing_id),
                            str(item.asset_id),
                            item.version,
                            item.document,
                            seller_id=str(item.seller_id),
                        )
                    )
            if batch:
                tasks.append(await ctx.meili.add_documents(uid, batch))
                sent += len(batch)
        total = sent
        await index.wait_all(ctx.meili, tasks)
    finally:
        if reporter is not None:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
    if progress is not None:
        progress(sent, sent)
    return sent


async def _catch_up(
    ctx: Context, uid: str, known: dict[UUID, Known], after: str
) -> tuple[str, int]:
    """Apply the feed after `after` (up to the head now) to `uid`, where `known` says what it
    holds; returns the cursor reached and how many events were read."""
    head = await source.head(ctx)
    cursor, events = after, 0
    tasks: list[int] = []
    async for page in source.changes(ctx, after, head.cursor):
        latest: dict[UUID, ChangeEvent] = {}
        for event in page.events:
            if event.entity == "listing" and event.asset_id is not None:
                seen = latest.get(event.entity_id)
                if seen is None or event.version > seen.version:
                    latest[event.entity_id] = event
        upserts: list[dict[str, Any]] = []
        deletes: list[str] = []
        for listing_id, event in latest.items():
            have = known.get(listing_id)
            if have is not None and event.version <= have.version:
                continue
            assert event.asset_id is not None
            searchable = event.data.get("status") in SEARCHABLE
            if searchable:
                upserts.append(
                    search_document(
                        str(listing_id),
                        str(event.asset_id),
                        event.version,
                        event.data,
                        seller_id=str(event.seller_id) if event.seller_id else None,
                    )
                )
            elif have is None or have.searchable:
                deletes.append(str(listing_id))
            known[listing_id] = Known(event.version, searchable, event.asset_id)
        if upserts:
            tasks.append(await ctx.meili.add_documents(uid, upserts))
        if deletes:
            tasks.append(await ctx.meili.delete_documents(uid, deletes))
        events += len(page.events)
        cursor = page.next_cursor
    await index.wait_all(ctx.meili, tasks)
    return cursor, events


async def rebuild(
    *,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
    meili: MeiliClient,
    index_uid: str,
    progress: Progress | None = None,
    page_size: int = 1000,
    lease_seconds: float = 60.0,
) -> RebuildReport:
    """Build the index anew from the listing service into a new index and swap it in."""
    started = time.monotonic()
    ctx = Context(settings, sessionmaker, http, meili, index_uid)
    temporary = f"{index_uid}_rebuild_{secrets.token_hex(4)}"
    report = RebuildReport(index_uid=index_uid, temporary_uid=temporary)
    head = await source.head(ctx)
    known: dict[UUID, Known] = {}
    try:
        await ensure_index(meili, temporary)
        await _snapshot(ctx, temporary, known, page_size, progress)
        horizon = await source.horizon(ctx)
        cursor, events = await _catch_up(ctx, temporary, known, head.cursor)
        async with hold_lease(settings, ctx.lease_key(), wait_seconds=lease_seconds) as lease:
            report.preempted = lease.preempted
            live_cursor = await records.cursor(ctx)  # does not move while we hold the lease
            cursor, more = await _catch_up(ctx, temporary, known, cursor)
            await source.wait_visible(ctx, horizon)
            pending = await source.pending(ctx, live_cursor)
            await index.ensure_exists(meili, index_uid)
            await lease.verify()
            await meili.wait_task(await meili.swap_indexes(index_uid, temporary))
            upserts, deletes = records.plan(await records.read(ctx), known, pending)
            await lease.verify()
            await records.write(ctx, upserts, deletes)
        report.listings = len(known)
        report.documents = sum(1 for k in known.values() if k.searchable)
        report.caught_up_events = events + more
        report.pending = len(pending)
        report.records_fixed = len(upserts) + len(deletes)
    finally:
        # Before the swap this is the half-built index; after it, the old one.
        with contextlib.suppress(MeiliError, MeiliUnavailable):
            await meili.wait_task(await meili.delete_index(temporary))
    report.seconds = time.monotonic() - started
    logger.info(
        "index %s rebuilt: %d documents of %d listings in %.1fs",
        index_uid,
        report.documents,
        report.listings,
        report.seconds,
    )
    return report
