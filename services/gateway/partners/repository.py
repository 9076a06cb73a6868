"""Every SQL query of the partner sub-package. Repositories flush; they never commit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlmodel import col

from services.gateway.models import InboundEvent, Partner, RejectedEvent
from shared.db import CLAIM_TIMEOUT_SECONDS, ClaimTimedOut, statement_connection

__all__ = [
    "ClaimedEvent",
    "InboxRepository",
    "PartnerRepository",
    "RejectedEventRepository",
    "claim_alone",
    "finish_alone",
]


class PartnerRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, code: str) -> Partner | None:
        return await self.session.get(Partner, code)

    async def add(self, partner: Partner) -> bool:
        """False when the code is taken (a concurrent registration committed it first)."""
        try:
            async with self.session.begin_nested():
                self.session.add(partner)
                await self.session.flush()
        except IntegrityError:
            return False
        return True

    async def page(self, after: str | None, limit: int) -> list[Partner]:
        query = select(Partner).order_by(col(Partner.code)).limit(limit)
        if after is not None:
            query = query.where(col(Partner.code) > after)
        return list((await self.session.execute(query)).scalars())

    async def claim_due_pulls(
        self, now: datetime, limit: int, lease: timedelta, exclude: set[str]
    ) -> list[Partner]:
        """Active partners with a feed whose next pull is due and that no one holds, leased
        for `lease` (FOR UPDATE SKIP LOCKED: two replicas never pull the same partner)."""
        query = (
            select(Partner)
            .where(
                col(Partner.status) == "active",
                col(Partner.pull_url).is_not(None),
                (col(Partner.pull_next_at).is_(None)) | (col(Partner.pull_next_at) <= now),
                (col(Partner.pull_lease_until).is_(None)) | (col(Partner.pull_lease_until) < now),
            )
            .order_by(col(Partner.pull_next_at).asc().nulls_first(), col(Partner.code))
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        if exclude:
            query = query.where(col(Partner.code).not_in(exclude))
        partners = list((await self.session.execute(query)).scalars())
        for partner in partners:
            partner.pull_lease_until = now + lease
        await self.session.flush()
        return partners

    async def save_pull_position(
        self, code: str, cursor: str | None, etag: str | None, now: datetime
    ) -> None:
        await self.session.execute(
            update(Partner)
            .where(col(Partner.code) == code)
            .values(pull_cursor=cursor, pull_etag=etag, updated_at=now)
        )

    async def release_pull(self, code: str) -> None:
        """Give a partner back (shutting down mid-pull): the next run resumes at its cursor."""
        await self.session.execute(
            update(Partner).where(col(Partner.code) == code).values(pull_lease_until=None)
        )

    async def finish_pull(
        self,
        code: str,
        *,
        next_at: datetime,
        error: str | None,
    ) -> None:
        """Release the lease; a failure counts up `pull_failures`, a success resets it."""
        values: dict[str, Any] = {"pull_next_at": next_at, "pull_lease_until": None}
        if error is None:
            values.update(pull_failures=0, pull_last_error=None)
        else:
            values.update(pull_failures=col(Partner.pull_failures) + 1, pull_last_error=error)
        await self.session.execute(update(Partner).where(col(Partner.code) == code).values(values))


@dataclass(frozen=True)
class ClaimedEvent:
    id: int
    partner_code: str
    partner_name: str
    partner_region: str
    event_id: str
    source: str
    source_version: int
    offer_key: str
    document: dict[str, Any]
    attempts: int


# Due events, at most one per offer (the oldest version pending, and none while another of
# the same offer is in flight), row-locked (SKIP LOCKED: replicas never claim one event twice);
# those whose version is not newer than one already applied for their offer are marked stale
# (never sent); the others leased. The leased rows come back with their partner's name and
# region, and every row carries how many were marked stale. One statement, on its own: the
# claim loop runs it whenever an inbox slot frees, and it is the loop's only step.
#
# The inbox's history is never read: the pending rows are read once (through
# ix_gateway_inbound_events_pending, WHERE status = 'pending'), each offer's first one is its
# only candidate (no subquery looks for "an earlier one" per row, which a stale-statistics plan
# can turn into a nested loop over every row of the offer, issue 21), the candidates are locked
# by primary key, and "newest applied version" is one probe of ix_gateway_inbound_events_applied.
CLAIM = """
WITH pending AS MATERIALIZED (
    SELECT id, offer_key, source_version, next_attempt_at, lease_until
    FROM gateway.inbound_events
    WHERE status = 'pending'
    ORDER BY offer_key, source_version, id  -- the partial index's order: no sort
),
heads AS (
    SELECT DISTINCT ON (offer_key) id, next_attempt_at, lease_until,
           count(*) FILTER (WHERE lease_until >= $1) OVER (PARTITION BY offer_key) AS in_flight
    FROM pending
    ORDER BY offer_key, source_version, id
),
candidates AS (
    SELECT e.id, e.offer_key, e.source_version
    FROM gateway.inbound_events AS e
    WHERE e.id = ANY(ARRAY(
        SELECT h.id FROM heads AS h
        WHERE h.in_flight = 0 AND h.next_attempt_at <= $1
    ))
      AND e.status = 'pending'
      AND e.next_attempt_at <= $1
      AND (e.lease_until IS NULL OR e.lease_until < $1)
    ORDER BY e.next_attempt_at, e.id
    LIMIT $2
    FOR UPDATE OF e SKIP LOCKED
),
checked AS (
    SELECT c.id, c.source_version, (
        SELECT max(a.source_version) FROM gateway.inbound_events AS a
        WHERE a.status = 'applied' AND a.offer_key = c.offer_key
    ) AS applied
    FROM candidates AS c
),
staled AS (
    UPDATE gateway.inbound_events AS e
    SET status = 'stale', processed_at = $1, lease_until = NULL,
        error = 'version ' || k.source_version || ' is not newer than version '
            || k.applied || ', already applied'
    FROM checked AS k
    WHERE e.id = k.id AND k.source_version <= k.applied
    RETURNING e.id
),
leased AS (
    UPDATE gateway.inbound_events AS e
    SET lease_until = $3
    FROM checked AS k
    WHERE e.id = k.id AND (k.applied IS NULL OR k.source_version > k.applied)
    RETURNING e.id, e.partner_code, e.event_id, e.source, e.source_version, e.offer_key,
              e.document, e.attempts
)
SELECT l.id, l.partner_code, p.name AS partner_name, p.region AS partner_region, l.event_id,
       l.source, l.source_version, l.offer_key, l.document, l.attempts, s.n AS stale
FROM (SELECT count(*) AS n FROM staled) AS s
LEFT JOIN (leased AS l JOIN gateway.partners AS p ON p.code = l.partner_code) ON true
ORDER BY l.id
"""


async def claim_alone(
    engine: AsyncEngine, now: datetime, limit: int, lease: timedelta
) -> tuple[list[ClaimedEvent], int]:
    """Due events (see CLAIM), leased for `lease`, and how many were marked stale on the way
    (their version is not newer than one already applied for their offer, so they are never
    sent). One statement straight to the driver, with no transaction around it, cancelled
    after CLAIM_TIMEOUT_SECONDS (the driver sends PostgreSQL a cancel request): then raises
    ClaimTimedOut, which the inbox worker logs and retries after its back-off."""
    try:
        async with statement_connection(engine) as connection:
            rows = await connection.fetch(
                CLAIM, now, limit, now + lease, timeout=CLAIM_TIMEOUT_SECONDS
            )
    except TimeoutError as exc:
        raise ClaimTimedOut(f"inbox claim cancelled after {CLAIM_TIMEOUT_SECONDS:g}s") from exc
    stale = int(rows[0]["stale"]) if rows else 0
    claimed = [
        ClaimedEvent(
            id=row["id"],
            partner_code=row["partner_code"],
            partner_name=row["partner_name"],
            partner_region=row["partner_region"],
            event_id=row["event_id"],
            source=row["source"],
            source_version=row["source_version"],
            offer_key=row["offer_key"],
            document=row["document"],
            attempts=row["attempts"],
        )
        for row in rows
        if row["id"] is not None
    ]
    return claimed, stale


class InboxRepository:
    """gateway.inbound_events: the inbox of partner events (unique per partner and event id)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert(
        self,
        *,
        partner_code: str,
        event_id: str,
        source: str,
        source_version: int,
        offer_key: str,
        document: dict[str, Any],
        now: datetime,
    ) -> bool:
        """True when the event is new; False when (partner, event id) was already there."""
        statement = (
            insert(InboundEvent)
            .values(
                partner_code=partner_code,
                event_id=event_id,
                source=source,
                received_at=now,
                source_version=source_version,
                offer_key=offer_key,
                document=document,
                status="pending",
                attempts=0,
                next_attempt_at=now,
            )
            .on_conflict_do_nothing(index_elements=["partner_code", "event_id"])
            .returning(col(InboundEvent.id))
        )
        return (await self.session.execute(statement)).scalar_one_or_none() is not None

    async def finish(self, event_id: int, status: str, error: str | None, now: datetime) -> None:
        await self.session.execute(
            update(InboundEvent)
            .where(col(InboundEvent.id) == event_id)
            .values(status=status, error=error, processed_at=now, lease_until=None)
        )

    async def release(self, event_id: int) -> None:
        """Give an event back untouched (shutting down mid-call): it is tried again at once."""
        await self.session.execute(
            update(InboundEvent)
            .where(col(InboundEvent.id) == event_id, col(InboundEvent.status) == "pending")
            .values(lease_until=None)
        )

    async def retry_later(
        self, event_id: int, attempts: int, next_attempt_at: datetime, error: str
    ) -> None:
        await self.session.execute(
            update(InboundEvent)
            .where(col(InboundEvent.id) == event_id)
            .values(
                attempts=attempts, next_attempt_at=next_attempt_at, error=error, lease_until=None
            )
        )

    async def by_partner(self, partner_code: str) -> list[InboundEvent]:
        result = await self.session.execute(
            select(InboundEvent)
            .where(col(InboundEvent.partner_code) == partner_code)
            .order_by(col(InboundEvent.id))
        )
        return list(result.scalars())


FINISH = (
    "UPDATE gateway.inbound_events"
    " SET status = $2, error = $3, processed_at = $4, lease_until = NULL WHERE id = $1"
)


async def finish_alone(
    engine: AsyncEngine, event_id: int, status: str, error: str | None, now: datetime
) -> None:
    """`InboxRepository.finish` as one statement on its own, straight to the driver: it needs no
    transaction around it (one round trip instead of BEGIN, UPDATE, COMMIT), and the inbox
    worker records one outcome per push."""
    async with statement_connection(engine) as connection:
        await connection.execute(FINISH, event_id, status, error, now)


class RejectedEventRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, rejected: RejectedEvent) -> RejectedEvent:
        self.session.add(rejected)
        await self.session.flush()
        return rejected

    async def page(self, partner_code: str, before: int | None, limit: int) -> list[RejectedEvent]:
        """Newest first."""
        query = (
            select(RejectedEvent)
            .where(col(RejectedEvent.partner_code) == partner_code)
            .order_by(col(RejectedEvent.id).desc())
            .limit(limit)
        )
        if before is not None:
            query = query.where(col(RejectedEvent.id) < before)
        return list((await self.session.execute(query)).scalars())
