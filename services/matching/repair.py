"""Rebuilding the catalogue index from the listing service, and checking it against the source.

Both run next to a live indexer (``Indexer.run_forever`` in every matching process). The index
has one writer at a time; what follows is how these two tools stay that writer's equals without
racing it.

The lease, and taking it from a running indexer
    A running indexer holds its lease (a session advisory lock) for as long as its process runs,
    so waiting for it would wait forever. We take it in three moves: ``pg_try_advisory_lock``;
    if another session holds it, lock the indexer's tables (``indexed_listings`` in EXCLUSIVE
    mode: search goes on reading it; ``indexer_state`` in ACCESS EXCLUSIVE mode) so the
    indexer's next statement waits — the commit of its oldest page in flight, or, when idle,
    the read of its cursor after a long-poll — and cancel exactly the statements waiting on
    those locks (``pg_cancel_backend``). The cancelled page rolls back (the cursor did not
    move, so the indexer replays it later: pages are idempotent), the indexer's error path
    closes its lease connection, and our ``pg_try_advisory_lock`` loop wins before its back-off
    ends. From then on no indexer writes to Meilisearch or to the records until we release
    the lease; the indexer then takes it back and carries on from its cursor. Pages it sent
    ahead but had not committed are after that cursor: they are "pending" below. The table
    locks assign no transaction id, so the listing feed (which waits for old transactions) is
    not held back. Costs: waiting for the indexer takes up to its long-poll (10 s), and a
    ``GET /v1/index/status`` caught in that window is cancelled too (it fails once). Another
    rebuild or repair holding the lease is never preempted: we stop instead.

Rebuild: snapshot, catch up, swap
    Read the feed head H, create ``<uid>_rebuild_<random>``, send every searchable offer of
    ``GET /v1/offers`` in batches (Meilisearch batches them; we wait once, at the end, and check
    every task succeeded), and apply the feed from H into the new index — all without the lease,
    while the live index keeps serving and the live indexer keeps updating it. Then take the
    lease: the live index stops moving, and every page the indexer committed holds events at
    or before the current feed head. Catch the new index up to that head (now it holds, for
    every listing, its newest version: at least what the live index holds), swap (atomic:
    search never sees an empty or half-built index), and drop the old index afterwards.

    Why not catch up and swap without the lease: the indexer may write a page into the live
    index between our last catch-up and the swap; the swap then throws that page away while
    the indexer's cursor and records say it is indexed, and nothing would ever bring it back.
    Running ``check`` after the swap instead would race the indexer the same way (Meilisearch
    has no conditional writes: the later task wins, whatever its version).

The records and the cursor after a rebuild
    The cursor stays the indexer's own, and a listing's record is set to what the new index
    holds only when the indexer has already passed every event of that listing (no event after
    its cursor). Listings with events after the cursor ("pending") keep their records: the
    indexer replays those events onto the new index (briefly, an intermediate version may come
    back until the page with the newest one is applied) and still sees a listing become
    searchable, which is where the matches of new listings are computed. Moving the cursor to
    the rebuild's head instead would skip those matches.

Check
    Reads the indexer's cursor C, the index (ids and versions), the records and every offer of
    the source, then the feed after C. Only listings without events after C are compared: for
    them the source's current state is the state the indexer has applied, so any difference is
    damage, not lag. Before reading the feed it waits until every transaction older than the
    end of the source read has ended (matching and listing share one PostgreSQL server), so a
    change the source showed is always in the feed it then reads. ``repair`` takes the lease,
    compares again, upserts the missing and stale documents from the source, deletes the extra
    ones, and corrects the records so the indexer's idempotency record agrees with the index.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

import asyncpg
import httpx
from sqlalchemy import delete, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from services.matching.catalogue import SEARCHABLE, search_document
from services.matching.indexer import Indexer, ensure_index, record_indexed
from services.matching.meili import MeiliClient, MeiliError, MeiliTaskFailed, MeiliUnavailable
from services.matching.models import SCHEMA, IndexedListing, IndexerState
from shared.contracts.events import ChangeEvent, ChangeFeedPage, FeedHead, OfferSnapshotPage
from shared.db import asyncpg_connect_kwargs
from shared.outbox import START, parse_cursor
from shared.settings import Settings

__all__ = [
    "CheckReport",
    "LeaseBusy",
    "LeaseTimeout",
    "Progress",
    "RebuildReport",
    "RepairError",
    "check",
    "hold_lease",
    "rebuild",
]

logger = logging.getLogger("ipx.matching.repair")

Progress = Callable[[int, int | None], None]
T = TypeVar("T")

APPLICATION_NAME = "ipx-index-maintenance"  # our lease sessions: never preempted by another
FEED_PAGE = 1000
MEILI_BATCH = 1000
TASK_WAIT_SECONDS = 1800.0  # the last task of a large rebuild waits for the whole batch queue
VISIBILITY_WAIT_SECONDS = 30.0


class RepairError(RuntimeError):
    """A rebuild or a check could not be carried out (nothing was swapped or repaired)."""


class LeaseBusy(RepairError):
    """Another rebuild or repair of this index holds the lease."""


class LeaseTimeout(RepairError):
    """The running indexer could not be made to release the lease in time."""


@dataclass(frozen=True, slots=True)
class Known:
    """A listing as an index holds it (or should): its version, whether it is searchable."""

    version: int
    searchable: bool
    asset_id: UUID


@dataclass
class RebuildReport:
    index_uid: str
    temporary_uid: str
    listings: int = 0  # listings read from the source (every status)
    documents: int = 0  # searchable documents in the index that was swapped in
    caught_up_events: int = 0  # feed events applied after the snapshot
    pending: int = 0  # listings the live indexer still has events of (it replays them)
    records_fixed: int = 0
    preempted: bool = False  # a running indexer was made to hand over its lease
    seconds: float = 0.0


@dataclass
class CheckReport:
    index_uid: str
    listings: int = 0  # listings in the source (every status)
    searchable: int = 0  # of which searchable
    documents: int = 0  # documents in the index
    pending: int = 0  # listings with changes the indexer has not applied yet (not compared)
    missing: list[str] = field(default_factory=list)  # searchable, absent from the index
    stale: list[str] = field(default_factory=list)  # indexed with another version
    extra: list[str] = field(default_factory=list)  # indexed, not searchable (or unknown)
    records: list[str] = field(default_factory=list)  # idempotency records that disagree
    repaired: bool = False
    preempted: bool = False
    seconds: float = 0.0

    @property
    def consistent(self) -> bool:
        return not (self.missing or self.stale or self.extra or self.records)


@dataclass
class _Context:
    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    http: httpx.AsyncClient
    meili: MeiliClient
    index_uid: str

    def lease_key(self) -> int:
        # The indexer's own key, so a change there cannot leave us holding another lock.
        return Indexer(
            settings=self.settings,
            sessionmaker=self.sessionmaker,
            http=self.http,
            meili=self.meili,
            index_uid=self.index_uid,
        ).lease_key


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _position(cursor: str) -> tuple[int, int]:
    return parse_cursor(cursor)


def _uuid(value: str) -> UUID | None:
    try:
        return UUID(value)
    except ValueError:
        return None


# The listing service ---------------------------------------------------------------------


async def _listing_get(ctx: _Context, path: str, params: dict[str, Any]) -> bytes:
    response = await ctx.http.get(
        f"{ctx.settings.listing_url}{path}",
        params=params,
        headers={"Authorization": f"Bearer {ctx.settings.service_key.get_secret_value()}"},
        timeout=max(60.0, ctx.settings.upstream_timeout_seconds),
    )
    response.raise_for_status()
    return response.content


async def _head(ctx: _Context) -> FeedHead:
    return FeedHead.model_validate_json(await _listing_get(ctx, "/v1/changes/head", {}))


async def _offers(ctx: _Context, page_size: int) -> AsyncIterator[OfferSnapshotPage]:
    token = ""
    while True:
        page = OfferSnapshotPage.model_validate_json(
            await _listing_get(ctx, "/v1/offers", {"page_size": page_size, "page_token": token})
        )
        yield page
        if not page.next_page_token:
            return
        token = page.next_page_token


async def _changes(ctx: _Context, after: str, until: str) -> AsyncIterator[ChangeFeedPage]:
    """Feed pages after `after`, up to `until` (a head read before: a busy feed cannot keep
    us reading for ever) or the end."""
    cursor = after
    while _position(cursor) < _position(until):
        page = ChangeFeedPage.model_validate_json(
            await _listing_get(ctx, "/v1/changes", {"after": cursor, "limit": FEED_PAGE})
        )
        if not page.events:
            return
        yield page
        cursor = page.next_cursor


async def _pending(ctx: _Context, after: str) -> dict[UUID, int]:
    """Listings with events after `after`: the first such version of each."""
    head = await _head(ctx)
    first: dict[UUID, int] = {}
    async for page in _changes(ctx, after, head.cursor):
        for event in page.events:
            if event.entity == "listing":
                seen = first.get(event.entity_id)
                first[event.entity_id] = event.version if seen is None else min(seen, event.version)
    return first


# Meilisearch ------------------------------------------------------------------------------


async def _index_versions(meili: MeiliClient, uid: str) -> dict[str, int] | None:
    """Every document of the index: id -> version (None when there is no such index). Large
    pages: one request reads one consistent state of the index."""
    found: dict[str, int] = {}
    offset, limit = 0, 100_000
    while True:
        try:
            page = await meili.fetch_documents(uid, ["id", "version"], offset, limit)
        except MeiliError as exc:
            if exc.code == "index_not_found":
                return None
            raise
        for document in page:
            version = document.get("version")
            found[str(document["id"])] = version if isinstance(version, int) else 0
        if len(page) < limit:
            return found
        offset += limit


async def _wait_all(meili: MeiliClient, tasks: list[int]) -> None:
    """Wait for the last task (an index processes its tasks in order), then make sure none of
    them failed."""
    if not tasks:
        return
    await meili.wait_task(tasks[-1], seconds=TASK_WAIT_SECONDS)
    for chunk in _chunks(tasks, 200):
        failed = await meili.request(
            "GET",
            "/tasks",
            params={
                "uids": ",".join(str(t) for t in chunk),
                "statuses": "failed,canceled",
                "limit": len(chunk),
            },
        )
        if failed and failed.get("results"):
            task = failed["results"][0]
            error = task.get("error") or {}
            raise MeiliTaskFailed(
                400,
                error.get("code", task.get("status", "failed")),
                error.get("message", f"task {task.get('uid')} {task.get('status')}"),
            )


async def _ensure_exists(meili: MeiliClient, uid: str) -> None:
    """The live index must exist to be swapped (a new Meilisearch may have none yet)."""
    if await meili.index_exists(uid):
        return
    try:
        await meili.wait_task(await meili.create_index(uid, "id"))
    except MeiliTaskFailed as exc:
        if exc.code != "index_already_exists":  # the indexer created it meanwhile
            raise


# PostgreSQL -------------------------------------------------------------------------------


async def _cursor(ctx: _Context) -> str:
    async with ctx.sessionmaker() as session:
        state = await session.get(IndexerState, ctx.index_uid)
    return state.cursor if state else START


async def _records(ctx: _Context) -> dict[UUID, Known]:
    async with ctx.sessionmaker() as session:
        rows = await session.execute(
            select(
                col(IndexedListing.listing_id),
                col(IndexedListing.version),
                col(IndexedListing.searchable),
                col(IndexedListing.asset_id),
            )
        )
        return {r[0]: Known(r[1], r[2], r[3]) for r in rows}


async def _write_records(
    ctx: _Context, upserts: dict[UUID, Known], deletes: Sequence[UUID]
) -> None:
    if not upserts and not deletes:
        return
    now = datetime.now(UTC)
    rows = [
        {
            "listing_id": listing_id,
            "asset_id": known.asset_id,
            "version": known.version,
            "searchable": known.searchable,
            "indexed_at": now,
        }
        for listing_id, known in upserts.items()
    ]
    async with ctx.sessionmaker() as session, session.begin():
        for chunk in _chunks(rows, 1000):
            await record_indexed(session, list(chunk), only_newer=False)
        for ids in _chunks(list(deletes), 1000):
            await session.execute(
                delete(IndexedListing).where(col(IndexedListing.listing_id).in_(list(ids)))
            )


async def _snapshot_horizon(ctx: _Context) -> str:
    """Every transaction that committed before now has an id below this."""
    async with ctx.sessionmaker() as session:
        return str(
            await session.scalar(text("SELECT pg_snapshot_xmax(pg_current_snapshot())::text"))
        )


async def _wait_visible(ctx: _Context, horizon: str) -> None:
    """Until every transaction below `horizon` has ended: the feed (which hands out only
    events older than every running transaction) then shows everything they wrote."""
    deadline = time.monotonic() + VISIBILITY_WAIT_SECONDS
    query = text(
        "SELECT pg_snapshot_xmin(pg_current_snapshot()) >= CAST(CAST(:horizon AS text) AS xid8)"
    )
    while True:
        async with ctx.sessionmaker() as session:
            if await session.scalar(query, {"horizon": horizon}):
                return
        if time.monotonic() > deadline:
            raise RepairError(
                "a write transaction has been open for over "
                f"{VISIBILITY_WAIT_SECONDS:.0f}s and holds the change feed back; retry later"
            )
        await asyncio.sleep(0.05)


def _record_plan(
    records: dict[UUID, Known], desired: dict[UUID, Known], pending: dict[UUID, int]
) -> tuple[dict[UUID, Known], list[UUID]]:
    """The records to write and to delete so the indexer's idempotency record agrees with the
    index. `desired`: what the index holds (or must hold) for listings without pending events.
    Pending listings keep their records (the indexer applies their events, and sees a listing
    become searchable), except one at or past its first pending version, which would make the
    indexer skip events it has not applied."""
    upserts: dict[UUID, Known] = {}
    for listing_id, want in desired.items():
        have = records.get(listing_id)
        first = pending.get(listing_id)
        if first is None:
            if have != want:
                upserts[listing_id] = want
        elif have is not None and have.version >= first:
            upserts[listing_id] = Known(first - 1, have.searchable, have.asset_id)
    deletes = [
        listing_id
        for listing_id in records
        if listing_id not in desired and listing_id not in pending
    ]
    return upserts, deletes


# The lease --------------------------------------------------------------------------------


@dataclass
class Lease:
    conn: Any
    key: int
    preempted: bool

    async def verify(self) -> None:
        """Still ours (the connection that holds it is alive)."""
        try:
            held = await self.conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND pid = pg_backend_pid() AND classid::bigint = $1::bigint >> 32 "
                "AND objid::bigint = $1::bigint & 4294967295 AND objsubid = 1)",
                self.key,
            )
        except (asyncpg.PostgresError, OSError) as exc:
            raise RepairError(f"lost the indexer's lease ({type(exc).__name__})") from exc
        if not held:
            raise RepairError("lost the indexer's lease")


async def _lease_holder(conn: Any, key: int) -> str | None:
    """The application name of the session holding the lease (None when free)."""
    row = await conn.fetchrow(
        "SELECT coalesce(a.application_name, '') AS app FROM pg_locks l "
        "LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND l.classid::bigint = $1::bigint >> 32 "
        "AND l.objid::bigint = $1::bigint & 4294967295 "
        "AND l.objsubid = 1",
        key,
    )
    return None if row is None else str(row["app"])


async def _preempt(conn: Any, key: int, wait_seconds: float) -> bool:
    """Take the lease from a running indexer (see the module docstring); True when a page of
    the indexer's had to be cancelled."""
    if await _lease_holder(conn, key) == APPLICATION_NAME:
        raise LeaseBusy("another rebuild or repair of this index is running")
    deadline = time.monotonic() + wait_seconds
    tables = [f"{SCHEMA}.indexed_listings", f"{SCHEMA}.indexer_state"]
    relations = ", ".join(f"'{table}'::regclass" for table in tables)
    cancelled = False
    try:
        async with conn.transaction():
            await conn.execute(f"SET LOCAL lock_timeout = '{max(1, int(wait_seconds))}s'")
            # Writes to the records wait (search reads them and goes on); every use of the cursor
            # waits, reads too: an idle indexer only reads it, between two long-polls.
            await conn.execute(f"LOCK TABLE {tables[0]} IN EXCLUSIVE MODE")
            await conn.execute(f"LOCK TABLE {tables[1]} IN ACCESS EXCLUSIVE MODE")
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
                parked = await conn.fetch(
                    "SELECT DISTINCT pid FROM pg_locks WHERE NOT granted "
                    f"AND locktype = 'relation' AND relation IN ({relations}) "
                    "AND pid <> pg_backend_pid()"
                )
                for row in parked:
                    logger.warning(
                        "taking the indexer's lease: cancelling the statement of pid %s, "
                        "which waits on the indexer's tables",
                        row[0],
                    )
                    cancelled = (
                        await conn.fetchval("SELECT pg_cancel_backend($1)", row[0]) or cancelled
                    )
                if await _lease_holder(conn, key) == APPLICATION_NAME:
                    raise LeaseBusy("another rebuild or repair of this index is running")
                if time.monotonic() > deadline:
                    raise LeaseTimeout(
                        "the running indexer did not hand over its lease "
                        f"within {wait_seconds:.0f}s"
                    )
                await asyncio.sleep(0.05)
    except asyncpg.LockNotAvailableError as exc:
        raise LeaseTimeout(
            f"the indexer's tables stayed locked for over {wait_seconds:.0f}s"
        ) from exc
    return cancelled


@asynccontextmanager
async def hold_lease(
    settings: Settings, key: int, *, wait_seconds: float = 60.0
) -> AsyncIterator[Lease]:
    """The indexer's lease for the duration of the block (taken from a running indexer if
    need be; it resumes from its cursor when the block ends)."""
    conn = await asyncpg.connect(
        timeout=5,
        server_settings={"application_name": APPLICATION_NAME},
        **asyncpg_connect_kwargs(settings.database_url),
    )
    try:
        preempted = False
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
            preempted = await _preempt(conn, key, wait_seconds)
        yield Lease(conn, key, preempted)
    finally:
        with contextlib.suppress(Exception):
            await conn.close(timeout=5)  # releases the lease


# Rebuild ----------------------------------------------------------------------------------


async def _snapshot(
    ctx: _Context,
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
        async for page in _offers(ctx, page_size):
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
        await _wait_all(ctx.meili, tasks)
    finally:
        if reporter is not None:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
    if progress is not None:
        progress(sent, sent)
    return sent


async def _catch_up(
    ctx: _Context, uid: str, known: dict[UUID, Known], after: str
) -> tuple[str, int]:
    """Apply the feed after `after` (up to the head now) to `uid`, where `known` says what it
    holds; returns the cursor reached and how many events were read."""
    head = await _head(ctx)
    cursor, events = after, 0
    tasks: list[int] = []
    async for page in _changes(ctx, after, head.cursor):
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
    await _wait_all(ctx.meili, tasks)
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
    ctx = _Context(settings, sessionmaker, http, meili, index_uid)
    temporary = f"{index_uid}_rebuild_{secrets.token_hex(4)}"
    report = RebuildReport(index_uid=index_uid, temporary_uid=temporary)
    head = await _head(ctx)
    known: dict[UUID, Known] = {}
    try:
        await ensure_index(meili, temporary)
        await _snapshot(ctx, temporary, known, page_size, progress)
        horizon = await _snapshot_horizon(ctx)
        cursor, events = await _catch_up(ctx, temporary, known, head.cursor)
        async with hold_lease(settings, ctx.lease_key(), wait_seconds=lease_seconds) as lease:
            report.preempted = lease.preempted
            live_cursor = await _cursor(ctx)  # does not move while we hold the lease
            cursor, more = await _catch_up(ctx, temporary, known, cursor)
            await _wait_visible(ctx, horizon)
            pending = await _pending(ctx, live_cursor)
            await _ensure_exists(meili, index_uid)
            await lease.verify()
            await meili.wait_task(await meili.swap_indexes(index_uid, temporary))
            upserts, deletes = _record_plan(await _records(ctx), known, pending)
            await lease.verify()
            await _write_records(ctx, upserts, deletes)
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


# Check ------------------------------------------------------------------------------------


async def _check(
    ctx: _Context, report: CheckReport, *, page_size: int, lease: Lease | None
) -> None:
    cursor = await _cursor(ctx)
    found = await _index_versions(ctx.meili, ctx.index_uid)
    index = found or {}
    records = await _records(ctx)
    source: dict[UUID, Known] = {}
    documents: dict[str, dict[str, Any]] = {}  # source documents of what may need an upsert
    async for page in _offers(ctx, page_size):
        for item in page.items:
            searchable = item.status in SEARCHABLE
            source[item.listing_id] = Known(item.version, searchable, item.asset_id)
            key = str(item.listing_id)
            if searchable and index.get(key) != item.version:
                documents[key] = search_document(
                    key,
                    str(item.asset_id),
                    item.version,
                    item.document,
                    seller_id=str(item.seller_id),
                )
    await _wait_visible(ctx, await _snapshot_horizon(ctx))
    pending = await _pending(ctx, cursor)

    report.listings = len(source)
    report.searchable = sum(1 for k in source.values() if k.searchable)
    report.documents = len(index)
    report.pending = sum(1 for uuid in source if uuid in pending)
    for listing_id, want in source.items():
        if listing_id in pending:
            continue
        key = str(listing_id)
        if want.searchable and key not in index:
            report.missing.append(key)
        elif want.searchable and index[key] != want.version:
            report.stale.append(key)
        elif not want.searchable and key in index:
            report.extra.append(key)
    for document_id in index:
        parsed = _uuid(document_id)
        if parsed is None or (parsed not in source and parsed not in pending):
            report.extra.append(document_id)
    # Without the lease the indexer moves on while we read: pending listings are not judged.
    upserts, deletes = _record_plan(records, source, pending)
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
    for chunk in _chunks(fresh, MEILI_BATCH):
        tasks.append(await ctx.meili.add_documents(ctx.index_uid, chunk))
    for ids in _chunks(report.extra, MEILI_BATCH):
        tasks.append(await ctx.meili.delete_documents(ctx.index_uid, ids))
    await _wait_all(ctx.meili, tasks)
    await lease.verify()
    await _write_records(ctx, upserts, deletes)
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
    ctx = _Context(settings, sessionmaker, http, meili, index_uid)
    report = CheckReport(index_uid=index_uid)
    if repair:
        async with hold_lease(settings, ctx.lease_key(), wait_seconds=lease_seconds) as lease:
            report.preempted = lease.preempted
            await _check(ctx, report, page_size=page_size, lease=lease)
    else:
        await _check(ctx, report, page_size=page_size, lease=None)
    report.seconds = time.monotonic() - started
    return report
