"""Check: compare the index and the indexer's records with the source, judging only listings the
indexer has caught up with; with `repair`, make them agree under the lease (docs/DECISIONS.md,
Matching, "Index rebuild and check")."""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.matching.catalogue import SEARCHABLE, search_document
from services.matching.indexer import ensure_index
from services.matching.meili import MeiliClient
from services.matching.repair import index, records, source
from services.matching.repair.context import Context, chunks
from services.matching.repair.lease import Lease, hold_lease
from services.matching.repair.records import Known
from services.matching.repair.reports import CheckReport
from shared.settings import Settings

__all__ = ["check"]


def _uuid(value: str) -> UUID | None:
    try:
        return UUID(value)
    except ValueError:
        return None


async def _check(ctx: Context, report: CheckReport, *, page_size: int, lease: Lease | None) -> None:
    cursor = await records.cursor(ctx)
    found = await index.index_versions(ctx.meili, ctx.index_uid)
    indexed = found or {}
    stored = await records.read(ctx)
    wanted: dict[UUID, Known] = {}
    documents: dict[str, dict[str, Any]] = {}  # source documents of what may need an upsert
    async for page in source.offers(ctx, page_size):
        for item in page.items:
            searchable = item.status in SEARCHABLE
            wanted[item.listing_id] = Known(item.version, searchable, item.asset_id)
            key = str(item.listing_id)
            if searchable and indexed.get(key) != item.version:
                documents[key] = search_document(
                    key,
                    str(item.asset_id),
                    item.version,
                    item.document,
                    seller_id=str(item.seller_id),
                )
    await source.wait_visible(ctx, await source.horizon(ctx))
    pending = await source.pending(ctx, cursor)

    report.listings = len(wanted)
    report.searchable = sum(1 for k in wanted.values() if k.searchable)
    report.documents = len(indexed)
    report.pending = sum(1 for uuid in wanted if uuid in pending)
    for listing_id, want in wanted.items():
        if listing_id in pending:
            continue
        key = str(listing_id)
        if want.searchable and key not in indexed:
            report.missing.append(key)
        elif want.searchable and indexed[key] != want.version:
            report.stale.append(key)
        elif not want.searchable and key in indexed:
            report.extra.append(key)
    for document_id in indexed:
        parsed = _uuid(document_id)
        if parsed is None or (parsed not in wanted and parsed not in pending):
            report.extra.append(document_id)
    # Without the lease the indexer moves on while we read: pending listings are not judged.
    upserts, deletes = records.plan(stored, wanted, pending)
    if lease is None:
        upserts = {k: v for k, v in upserts.items() if k not in pending}
    report.records = sorted({str(k) for k in upserts} | {str(k) for k in deletes})
    report.missing.sort()
    report.stale.sort()
    report.extra.sort()
    if lease is None or report.consistent:
        return

    if found is None:
        await ensure_index(ctx.meili, ctx.index_uid)
    await lease.verify()
    tasks: list[int] = []
    fresh = [documents[key] for key in report.missing + report.stale]
    for chunk in chunks(fresh, index.MEILI_BATCH):
        tasks.append(await ctx.meili.add_documents(ctx.index_uid, chunk))
    for ids in chunks(report.extra, index.MEILI_BATCH):
        tasks.append(await ctx.meili.delete_documents(ctx.index_uid, ids))
    await index.wait_all(ctx.meili, tasks)
    await lease.verify()
    await records.write(ctx, upserts, deletes)
    report.repaired = True


async def check(
    *,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
    meili: MeiliClient,
    index_uid: str,
    repair: bool,
    page_size: int = 1000,
    lease_seconds: float = 60.0,
) -> CheckReport:
    """Compare the index (ids, versions) and the indexer's records with the listing service;
    with `repair`, make them agree (under the indexer's lease)."""
    started = time.monotonic()
    ctx = Context(settings, sessionmaker, http, meili, index_uid)
    report = CheckReport(index_uid=index_uid)
    if repair:
        async with hold_lease(settings, ctx.lease_key(), wait_seconds=lease_seconds) as lease:
            report.preempted = lease.preempted
            await _check(ctx, report, page_size=page_size, lease=lease)
    else:
        await _check(ctx, report, page_size=page_size, lease=None)
    report.seconds = time.monotonic() - started
    return report
