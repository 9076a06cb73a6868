"""Queries of demands, their matches and match events, and the match queue. Never commits:
callers own the transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    DateTime,
    Float,
    Integer,
    Row,
    Text,
    Uuid,
    bindparam,
    cast,
    delete,
    func,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlmodel import col

from services.matching.models import SCHEMA, Demand, Match, MatchQueueItem
from shared.db import by_creation
from shared.outbox import read_page

__all__ = [
    "CHANNEL",
    "ActiveDemand",
    "Claimed",
    "active_demands",
    "claim",
    "complete",
    "demand",
    "demands_of",
    "drop_held",
    "enqueue",
    "insert_match_events",
    "match_events_after",
    "matches_of",
    "queued",
    "release",
    "release_held",
    "upsert_matches",
]

# Demands read per round trip while scoring a batch of listings.
DEMANDS_PER_FETCH = 200
# (id, organization_id, title, text, kinds, transaction_types, regions, budget_max, reading as
# JSON text)
ActiveDemand = Row[UUID, UUID, str, str, list[str], list[str], list[str], Decimal | None, str]


# Demands ---------------------------------------------------------------------------------


async def demand(session: AsyncSession, demand_id: UUID, *, lock: bool = False) -> Demand | None:
    query = select(Demand).where(col(Demand.id) == demand_id)
    return (await session.execute(query.with_for_update() if lock else query)).scalar_one_or_none()


async def demands_of(
    session: AsyncSession,
    organization_id: UUID | None,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[Demand]:
    """An organisation's demands, newest first, after the keyset position `after`."""
    query = select(Demand).where(col(Demand.organization_id) == organization_id)
    query = by_creation(query, Demand, after)
    return list((await session.execute(query.limit(limit))).scalars())


async def active_demands(
    session: AsyncSession, demand_ids: Sequence[UUID]
) -> AsyncIterator[ActiveDemand]:
    """Those of `demand_ids` still active, streamed (ActiveDemand rows)."""
    rows = await session.stream(
        select(
            col(Demand.id),
            col(Demand.organization_id),
            col(Demand.title),
            col(Demand.text),
            col(Demand.kinds),
            col(Demand.transaction_types),
            col(Demand.regions),
            col(Demand.budget_max),
            # As text, decoded by pydantic-core, faster than the json module
            # (docs/DECISIONS.md, Matching, "Matching's speed").
            cast(col(Demand.reading), Text),
        )
        .where(col(Demand.id).in_(list(demand_ids)), col(Demand.status) == "active")
        .execution_options(yield_per=DEMANDS_PER_FETCH)
    )
    async for row in rows:
        yield row


# Matches and their events ----------------------------------------------------------------

# Matches and their events are written with one statement each whatever the rows: the columns
# as arrays, unnested. A batch can find tens of thousands of matches, more bind parameters than
# PostgreSQL's protocol allows (32,767) as a multi-row VALUES (docs/DECISIONS.md, Matching,
# "Matches").
UPSERT_MATCHES = text(
    """
    INSERT INTO matching.matches AS m
        (id, demand_id, listing_id, asset_id, listing_version, score, reasons,
         created_at, updated_at)
    SELECT gen_random_uuid(), d, l, a, v, s, r::jsonb, :now, :now
    FROM unnest(
        CAST(:demand_ids AS uuid[]), CAST(:listing_ids AS uuid[]), CAST(:asset_ids AS uuid[]),
        CAST(:versions AS integer[]), CAST(:scores AS float8[]), CAST(:reasons AS text[])
    ) AS t(d, l, a, v, s, r)
    ON CONFLICT (demand_id, asset_id) DO UPDATE SET
        listing_id = excluded.listing_id,
        score = excluded.score,
        reasons = excluded.reasons,
        listing_version = excluded.listing_version,
        updated_at = excluded.updated_at
    -- Each write chose the best of every offer on the asset, so it replaces the row; but two
    -- workers may match two versions of one listing at once (it was re-published while
    -- queued): the older never overwrites the newer.
    WHERE m.listing_id <> excluded.listing_id OR m.listing_version <= excluded.listing_version
    RETURNING m.demand_id, m.asset_id, (m.xmax = 0) AS inserted
    """
).bindparams(
    bindparam("demand_ids", type_=ARRAY(Uuid())),
    bindparam("listing_ids", type_=ARRAY(Uuid())),
    bindparam("asset_ids", type_=ARRAY(Uuid())),
    bindparam("versions", type_=ARRAY(Integer())),
    bindparam("scores", type_=ARRAY(Float())),
    # JSON as text: a list of lists would bind as a two-dimensional array.
    bindparam("reasons", type_=ARRAY(Text())),
    bindparam("now", type_=DateTime(timezone=True)),
)
INSERT_EVENTS = text(
    """
    INSERT INTO matching.match_events
        (demand_id, organization_id, listing_id, type, occurred_at, payload)
    SELECT d, o, l, 'match.created', :now, p::jsonb
    FROM unnest(
        CAST(:demand_ids AS uuid[]), CAST(:organization_ids AS uuid[]),
        CAST(:listing_ids AS uuid[]), CAST(:payloads AS text[])
    ) AS t(d, o, l, p)
    """
).bindparams(
    bindparam("demand_ids", type_=ARRAY(Uuid())),
    bindparam("organization_ids", type_=ARRAY(Uuid())),
    bindparam("listing_ids", type_=ARRAY(Uuid())),
    bindparam("payloads", type_=ARRAY(Text())),
    bindparam("now", type_=DateTime(timezone=True)),
)


async def upsert_matches(
    session: AsyncSession,
    *,
    demand_ids: list[UUID],
    listing_ids: list[UUID],
    asset_ids: list[UUID],
    versions: list[int],
    scores: list[float],
    reasons: list[str],
    now: datetime,
) -> set[tuple[UUID, UUID]]:
    """Upsert one match per (demand, asset), the columns as parallel lists (`reasons` as JSON
    text); returns the (demand id, asset id) of those inserted, not updated."""
    rows = await session.execute(
        UPSERT_MATCHES,
        {
            "demand_ids": demand_ids,
            "listing_ids": listing_ids,
            "asset_ids": asset_ids,
            "versions": versions,
            "scores": scores,
            "reasons": reasons,
            "now": now,
        },
    )
    return {(r[0], r[1]) for r in rows if r[2]}


async def insert_match_events(
    session: AsyncSession,
    *,
    demand_ids: list[UUID],
    organization_ids: list[UUID],
    listing_ids: list[UUID],
    payloads: list[str],
    now: datetime,
) -> None:
    """`match.created` events, the columns as parallel lists (`payloads` as JSON text)."""
    await session.execute(
        INSERT_EVENTS,
        {
            "demand_ids": demand_ids,
            "organization_ids": organization_ids,
            "listing_ids": listing_ids,
            "payloads": payloads,
            "now": now,
        },
    )


MATCH_EVENT_COLUMNS = (
    "demand_id",
    "organization_id",
    "listing_id",
    "type",
    "payload",
    "occurred_at",
)


async def match_events_after(
    conn: AsyncConnection, after: str, limit: int, organization_id: UUID | None
) -> list[Any]:
    """The match feed after `after` (shared.outbox's order); with `organization_id`, that
    organisation's events only."""
    return await read_page(
        conn,
        f"{SCHEMA}.match_events",
        MATCH_EVENT_COLUMNS,
        after,
        limit,
        organization_id=organization_id,
    )


async def matches_of(
    session: AsyncSession, demand_id: UUID, limit: int, offset: int
) -> list[Match]:
    """A demand's matches, best first."""
    rows = await session.execute(
        select(Match)
        .where(col(Match.demand_id) == demand_id)
        .order_by(col(Match.score).desc(), col(Match.listing_id))
        .offset(offset)
        .limit(limit)
    )
    return list(rows.scalars())


# The match queue -------------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    listing_id: UUID
    version: int
    document: dict[str, Any]
    attempts: int = 1  # this one included


# The channel the worker listens on: the statements that make rows claimable notify it (an
# insert of released rows, a release), delivered when their transaction commits.
CHANNEL = "matching_queue"
_NOTIFY = f"SELECT pg_notify('{CHANNEL}', '') WHERE EXISTS (SELECT 1 FROM changed)"

# Arrays through unnest, as the indexer records its versions: a multi-row VALUES is dear to
# build inside the indexer's commit (docs/DECISIONS.md, Matching, "Match queue"). A newer
# version takes the row, held or not (its hold, and the end of any lease on the older one).
_ENQUEUE = text(
    f"WITH changed AS (INSERT INTO {SCHEMA}.match_queue AS q "
    "(listing_id, version, document, enqueued_at, lease_until, attempts, held_by) "
    "SELECT page.id, page.version, doc.document, :at, NULL, 0, CAST(:held_by AS text) "
    "FROM unnest(CAST(:ids AS uuid[]), CAST(:versions AS integer[])) "
    "WITH ORDINALITY AS page(id, version, n) "
    "JOIN jsonb_array_elements(CAST(:documents AS jsonb)) WITH ORDINALITY AS doc(document, n) "
    "USING (n) "
    "ON CONFLICT (listing_id) DO UPDATE SET version = excluded.version, "
    "document = excluded.document, enqueued_at = excluded.enqueued_at, lease_until = NULL, "
    "attempts = 0, held_by = excluded.held_by "
    # A row still held at the same version by a page of the same index ("{index}/{run}/...")
    # is taken over by the replay's page, so a hold whose page never committed cannot strand
    # it; another index's indexer (tests, a rebuild) leaves it to its holder.
    "WHERE q.version < excluded.version "
    "OR (q.version = excluded.version "
    "AND split_part(q.held_by, '/', 1) = split_part(excluded.held_by, '/', 1)) "
    "RETURNING 1) "
    f"{_NOTIFY} AND CAST(:held_by AS text) IS NULL"
).bindparams(bindparam("held_by", type_=Text()))
_RELEASE = text(
    f"WITH changed AS (UPDATE {SCHEMA}.match_queue SET held_by = NULL "
    "WHERE held_by = ANY(CAST(:pages AS text[])) RETURNING 1) "
    f"{_NOTIFY}"
).bindparams(bindparam("pages", type_=ARRAY(Text())))


async def enqueue(
    session: AsyncSession,
    listing_ids: list[UUID],
    versions: list[int],
    documents: str,
    held_by: str | None = None,
) -> None:
    """Queue listings (`documents`: their documents as one JSON array, in the same order),
    claimable at the commit or, `held_by` a page, once `release_held` releases it. A listing
    already queued takes the newer version (and any lease on the older one ends)."""
    await session.execute(
        _ENQUEUE,
        {
            "ids": listing_ids,
            "versions": versions,
            "documents": documents,
            "at": datetime.now(UTC),
            "held_by": held_by,
        },
    )


async def release_held(session: AsyncSession, pages: list[str]) -> None:
    """Make the rows held by `pages` claimable (the worker is woken at the commit)."""
    await session.execute(_RELEASE, {"pages": pages})


async def drop_held(session: AsyncSession, prefix: str) -> int:
    """Delete the rows held by pages named `prefix`... (an indexer's, none of them in flight:
    its replay queues them again); how many."""
    held_by = col(MatchQueueItem.held_by)
    result = await session.execute(
        # IS NOT NULL: the partial index of held rows.
        delete(MatchQueueItem).where(
            held_by.is_not(None), held_by.startswith(prefix, autoescape=True)
        )
    )
    return int(getattr(result, "rowcount", 0))


async def claim(session: AsyncSession, limit: int, lease_seconds: float) -> list[Claimed]:
    """Lease up to `limit` released listings nobody holds (oldest first)."""
    now = datetime.now(UTC)
    free = (
        select(col(MatchQueueItem.listing_id))
        .where(
            col(MatchQueueItem.held_by).is_(None),  # the partial index of claimable rows
            (col(MatchQueueItem.lease_until).is_(None)) | (col(MatchQueueItem.lease_until) < now),
        )
        .order_by(col(MatchQueueItem.enqueued_at))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = await session.execute(
        update(MatchQueueItem)
        .where(col(MatchQueueItem.listing_id).in_(free.scalar_subquery()))
        .values(
            lease_until=now + timedelta(seconds=lease_seconds),
            attempts=col(MatchQueueItem.attempts) + 1,
        )
        .returning(
            col(MatchQueueItem.listing_id),
            col(MatchQueueItem.version),
            col(MatchQueueItem.document),
            col(MatchQueueItem.attempts),
        )
    )
    return [Claimed(r[0], r[1], r[2], r[3]) for r in rows]


def _items(items: Sequence[Claimed]) -> ColumnElement[bool]:
    """The queue rows of `items`: this version of each listing (a newer one queued meanwhile
    is another row's business)."""
    return tuple_(col(MatchQueueItem.listing_id), col(MatchQueueItem.version)).in_(
        [(item.listing_id, item.version) for item in items]
    )


async def complete(session: AsyncSession, items: Sequence[Claimed]) -> None:
    """Remove matched listings, in the transaction that stores their matches (a listing queued
    again meanwhile has a newer version and stays)."""
    await session.execute(delete(MatchQueueItem).where(_items(items)))


async def release(
    session: AsyncSession, items: Sequence[Claimed], until: datetime | None = None
) -> None:
    """Give up leases: free at once (`until` None: a batch an outage interrupted is retried as
    soon as the worker resumes) or from `until` on (a back-off)."""
    await session.execute(update(MatchQueueItem).where(_items(items)).values(lease_until=until))


async def queued(session: AsyncSession) -> int:
    """Listings queued and not matched yet (not those held by pages in flight: they are not
    searchable yet)."""
    count = await session.execute(
        select(func.count())
        .select_from(MatchQueueItem)
        .where(col(MatchQueueItem.held_by).is_(None))
    )
    return int(count.scalar_one())
