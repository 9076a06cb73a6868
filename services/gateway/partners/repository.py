"""Every SQL query of the partner sub-package. Repositories flush; they never commit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.gateway.models import InboundEvent, Partner, RejectedEvent

__all__ = [
    "ClaimedEvent",
    "InboxRepository",
    "PartnerRepository",
    "RejectedEventRepository",
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


_CLAIM = text(
    """
    SELECT e.id, e.offer_key, e.source_version
    FROM gateway.inbound_events AS e
    WHERE e.status = 'pending'
      AND e.next_attempt_at <= :now
      AND (e.lease_until IS NULL OR e.lease_until < :now)
      AND NOT EXISTS (
        SELECT 1 FROM gateway.inbound_events AS o
        WHERE o.offer_key = e.offer_key
          AND o.status = 'pending'
          AND o.id <> e.id
          AND ((o.source_version, o.id) < (e.source_version, e.id) OR o.lease_until >= :now)
      )
    ORDER BY e.next_attempt_at, e.id
    LIMIT :limit
    FOR UPDATE OF e SKIP LOCKED
    """
)


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

    async def claim(
        self, now: datetime, limit: int, lease: timedelta
    ) -> tuple[list[ClaimedEvent], int]:
        """Due events, at most one per offer (the oldest version pending, and none while
        another of the same offer is in flight), leased for `lease`; and how many were marked
        stale on the way (their version is not newer than one already applied for their
        offer, so they are never sent)."""
        rows = list(await self.session.execute(_CLAIM, {"now": now, "limit": limit}))
        if not rows:
            return [], 0
        keys = sorted({row.offer_key for row in rows})
        applied: dict[str, int] = dict(
            (
                await self.session.execute(
                    select(col(InboundEvent.offer_key), func.max(col(InboundEvent.source_version)))
                    .where(
                        col(InboundEvent.status) == "applied",
                        col(InboundEvent.offer_key).in_(keys),
                    )
                    .group_by(col(InboundEvent.offer_key))
                )
            ).all()
        )
        stale = [row for row in rows if row.source_version <= applied.get(row.offer_key, 0)]
        for row in stale:
            await self.finish(
                row.id,
                "stale",
                f"version {row.source_version} is not newer than version "
                f"{applied[row.offer_key]}, already applied",
                now,
            )
        due = [row.id for row in rows if row.source_version > applied.get(row.offer_key, 0)]
        if not due:
            return [], len(stale)
        await self.session.execute(
            update(InboundEvent)
            .where(col(InboundEvent.id).in_(due))
            .values(lease_until=now + lease)
        )
        result = await self.session.execute(
            select(InboundEvent, col(Partner.name), col(Partner.region))
            .join(Partner, col(Partner.code) == col(InboundEvent.partner_code))
            .where(col(InboundEvent.id).in_(due))
            .order_by(col(InboundEvent.id))
        )
        claimed = [
            ClaimedEvent(
                id=event.id or 0,
                partner_code=event.partner_code,
                partner_name=name,
                partner_region=region,
                event_id=event.event_id,
                source=event.source,
                source_version=event.source_version,
                offer_key=event.offer_key,
                document=event.document,
                attempts=event.attempts,
            )
            for event, name, region in result.all()
        ]
        return claimed, len(stale)

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
