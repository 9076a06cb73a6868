"""Queries of the webhook tables. Never commits: callers own the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlmodel import col

from services.gateway.models import (
    AllowedTarget,
    Delivery,
    DeliveryAttempt,
    FeedCursor,
    Partner,
    Subscription,
)
from shared.db import (
    CLAIM_TIMEOUT_SECONDS,
    ClaimTimedOut,
    by_creation,
    statement_connection,
    utcnow,
)

INSERT_CHUNK = 1000


# ----------------------------------------------------------------------------- subscriptions


async def get_subscription(session: AsyncSession, subscription_id: UUID) -> Subscription | None:
    return await session.get(Subscription, subscription_id)


async def list_subscriptions(
    session: AsyncSession,
    organization_id: UUID | None,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[Subscription]:
    """Newest first; `organization_id` None lists every organisation's (operators). Deleted
    ones are not listed."""
    query = select(Subscription).where(col(Subscription.status) != "deleted")
    if organization_id is not None:
        query = query.where(col(Subscription.organization_id) == organization_id)
    query = by_creation(query, Subscription, after)
    return list((await session.execute(query.limit(limit))).scalars())


async def partner_code_of(session: AsyncSession, organization_id: UUID) -> str | None:
    found = await session.execute(
        select(col(Partner.code)).where(col(Partner.organization_id) == organization_id).limit(1)
    )
    return found.scalar_one_or_none()


async def delete_subscription(session: AsyncSession, subscription: Subscription) -> None:
    """Deleted: nothing more is queued, and what is still pending is given up (a delivery in
    flight finishes, but its outcome no longer changes the row). The row stays, with its
    deliveries, for the audit; the API no longer shows it."""
    subscription.status = "deleted"
    await session.execute(
        update(Delivery)
        .where(col(Delivery.subscription_id) == subscription.id, col(Delivery.status) == "pending")
        .values(status="failed", lease_until=None)
    )


async def active_subscriptions(session: AsyncSession) -> list[Subscription]:
    query = select(Subscription).where(col(Subscription.status) == "active")
    return list((await session.execute(query)).scalars())


# ----------------------------------------------------------------------------- deliveries


async def deliveries_page(
    session: AsyncSession,
    subscription_id: UUID,
    status: str | None,
    before_seq: int | None,
    limit: int,
) -> list[Delivery]:
    """Newest first."""
    query = select(Delivery).where(col(Delivery.subscription_id) == subscription_id)
    if status is not None:
        query = query.where(col(Delivery.status) == status)
    if before_seq is not None:
        query = query.where(col(Delivery.seq) < before_seq)
    query = query.order_by(col(Delivery.seq).desc()).limit(limit)
    return list((await session.execute(query)).scalars())


async def attempts_of(
    session: AsyncSession, delivery_ids: Sequence[UUID]
) -> dict[UUID, list[DeliveryAttempt]]:
    found: dict[UUID, list[DeliveryAttempt]] = {d: [] for d in delivery_ids}
    if not delivery_ids:
        return found
    query = (
        select(DeliveryAttempt)
        .where(col(DeliveryAttempt.delivery_id).in_(list(delivery_ids)))
        .order_by(col(DeliveryAttempt.at), col(DeliveryAttempt.id))
    )
    for attempt in (await session.execute(query)).scalars():
        found[attempt.delivery_id].append(attempt)
    return found


async def get_delivery(
    session: AsyncSession, subscription_id: UUID, delivery_id: UUID, *, lock: bool = False
) -> Delivery | None:
    query = select(Delivery).where(
        col(Delivery.id) == delivery_id, col(Delivery.subscription_id) == subscription_id
    )
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def insert_deliveries(session: AsyncSession, rows: list[dict[str, Any]]) -> int:
    """Queue deliveries; an event already queued for a subscription is skipped."""
    inserted = 0
    for start in range(0, len(rows), INSERT_CHUNK):
        stmt = (
            insert(Delivery)
            .values(rows[start : start + INSERT_CHUNK])
            .on_conflict_do_nothing(index_elements=["subscription_id", "event_id"])
            .returning(col(Delivery.id))
        )
        inserted += len((await session.execute(stmt)).all())
    return inserted


@dataclass(frozen=True)
class Claimed:
    """A delivery this worker holds the lease of, with what sending it needs."""

    id: UUID
    subscription_id: UUID
    event_id: str
    payload: dict[str, Any]
    attempts: int  # including the one about to be made
    lease_until: datetime
    url: str
    secret: str
    organization_id: UUID | None  # the subscriber: whose allow-list entries apply


# Due, leased by nobody, of an active subscription, with no earlier undelivered delivery on the
# same ordering key (in order per listing; one given up no longer blocks), and at most
# :per_subscription in flight per subscription across every replica (a slow subscriber cannot
# take every slot). Locked with SKIP LOCKED, leased, and the lock released at commit.
#
# Every read of gateway.deliveries is of pending rows only, through partial indexes (issue 21):
# per active subscription, its due rows in order (ix_gateway_deliveries_pending_due), each
# kept only if it is the first pending row of its key (its min(seq): one probe of
# ix_gateway_deliveries_pending), up to the subscription's free slots (its leased rows are
# counted through ix_gateway_deliveries_leased). A claim reads about as many rows as it hands
# out, whatever the delivered history or the backlog (0007 read every pending row: 59.5 ms a
# claim at 30,000 pending). The rows to lock are then fetched by primary key. CLAIM_SETTINGS
# keeps the planner off sequential scans, whatever the statistics say, and bounds the claim's
# time.
CLAIM = text(
    """
    WITH busy AS (
        SELECT subscription_id, count(*) AS n FROM gateway.deliveries
        WHERE status = 'pending' AND lease_until IS NOT NULL AND lease_until > now()
        GROUP BY subscription_id
    ), ready AS (
        SELECT due.id
        FROM gateway.subscriptions s
        LEFT JOIN busy b ON b.subscription_id = s.id
        CROSS JOIN LATERAL (
            SELECT d.id FROM gateway.deliveries d
            WHERE d.subscription_id = s.id
              AND d.status = 'pending'
              AND d.next_attempt_at <= now()
              AND (d.lease_until IS NULL OR d.lease_until <= now())
              AND d.seq = (
                  SELECT min(e.seq) FROM gateway.deliveries e
                  WHERE e.status = 'pending'
                    AND e.subscription_id = d.subscription_id
                    AND e.ordering_key = d.ordering_key
              )
            ORDER BY d.next_attempt_at, d.seq
            LIMIT greatest(:per_subscription - coalesce(b.n, 0), 0)
        ) AS due
        WHERE s.status = 'active'
    ), locked AS (
        SELECT d.id FROM gateway.deliveries d
        WHERE d.id = ANY(ARRAY(SELECT id FROM ready))
          AND d.status = 'pending'
          AND d.next_attempt_at <= now()
          AND (d.lease_until IS NULL OR d.lease_until <= now())
        ORDER BY d.next_attempt_at, d.seq
        LIMIT :limit
        FOR UPDATE OF d SKIP LOCKED
    )
    UPDATE gateway.deliveries AS d
    SET lease_until = now() + make_interval(secs => :lease_seconds),
        attempts = d.attempts + 1
    FROM locked, gateway.subscriptions AS s
    WHERE d.id = locked.id AND s.id = d.subscription_id
    RETURNING d.id, d.subscription_id, d.event_id, d.payload, d.attempts, d.lease_until,
              s.url, s.secret, s.organization_id
    """
)

QUERY_CANCELED = "57014"  # SQLSTATE of a statement cancelled by statement_timeout

# For the rest of the claim's transaction: no sequential scan of the deliveries (the pending
# rows come from the partial index even when statistics taken during a backlog say most rows
# are pending), and the claim cancelled past CLAIM_TIMEOUT_SECONDS.
CLAIM_SETTINGS = text(
    "SELECT set_config('statement_timeout', :timeout, true),"
    " set_config('enable_seqscan', 'off', true)"
)


async def claim(
    session: AsyncSession, *, limit: int, per_subscription: int, lease_seconds: float
) -> list[Claimed]:
    """Due deliveries, leased (see CLAIM); raises ClaimTimedOut when the claim is cancelled
    after CLAIM_TIMEOUT_SECONDS. CLAIM_SETTINGS hold until the caller's transaction ends."""
    await session.execute(CLAIM_SETTINGS, {"timeout": f"{round(CLAIM_TIMEOUT_SECONDS * 1000)}ms"})
    try:
        result = await session.execute(
            CLAIM,
            {"limit": limit, "per_subscription": per_subscription, "lease_seconds": lease_seconds},
        )
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == QUERY_CANCELED:
            raise ClaimTimedOut(
                f"delivery claim cancelled after {CLAIM_TIMEOUT_SECONDS:g}s"
            ) from exc
        raise
    claimed = [
        Claimed(
            id=r.id,
            subscription_id=r.subscription_id,
            event_id=r.event_id,
            payload=r.payload,
            attempts=r.attempts,
            lease_until=r.lease_until,
            url=r.url,
            secret=r.secret,
            organization_id=r.organization_id,
        )
        for r in result
    ]
    return claimed


# The attempt and the delivery's outcome in one statement: the attempt is recorded whatever
# happens to the row, which changes only while this worker still holds its lease.
RECORD_ATTEMPT = """
WITH attempt AS (
    INSERT INTO gateway.delivery_attempts (delivery_id, at, status_code, latency_ms, error)
    VALUES ($1, now(), $5, $6, $7)
)
UPDATE gateway.deliveries
SET status = CAST($4 AS varchar),
    lease_until = NULL,
    last_status_code = $5,
    delivered_at = CASE WHEN CAST($4 AS varchar) = 'delivered' THEN now() ELSE delivered_at END,
    next_attempt_at = CASE WHEN CAST($8 AS double precision) IS NULL THEN next_attempt_at
        ELSE now() + make_interval(secs => CAST($8 AS double precision)) END
WHERE id = $1 AND status = 'pending' AND lease_until = $2 AND attempts = $3
"""


async def record_attempt_alone(
    engine: AsyncEngine,
    claimed: Claimed,
    *,
    status_code: int | None,
    latency_ms: float,
    error: str | None,
    outcome: str,
    retry_in: float | None,
) -> bool:
    """Record an attempt and its outcome (`delivered`, `failed`, or `pending` with `retry_in`
    seconds). One statement straight to the driver with no transaction around it (one round
    trip instead of BEGIN, INSERT, UPDATE, COMMIT: the delivery worker records every attempt).
    The delivery row changes only while this worker still holds its lease; returns whether it
    did."""
    async with statement_connection(engine) as connection:
        status = await connection.execute(
            RECORD_ATTEMPT,
            claimed.id,
            claimed.lease_until,
            claimed.attempts,
            outcome,
            status_code,
            latency_ms,
            error,
            retry_in,
        )
    return bool(status == "UPDATE 1")


# ----------------------------------------------------------------------------- allow-list


@dataclass(frozen=True)
class Tenant:
    """Whose outbound calls an allow-list entry opens: an organisation's or a partner's."""

    organization_id: UUID | None = None
    partner_code: str | None = None

    def where(self) -> Any:
        if self.organization_id is not None:
            return col(AllowedTarget.organization_id) == self.organization_id
        return col(AllowedTarget.partner_code) == self.partner_code


async def list_targets(
    session: AsyncSession,
    tenant: Tenant | None,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[AllowedTarget]:
    """Newest first; `tenant` None lists every tenant's entries."""
    query = select(AllowedTarget)
    if tenant is not None:
        query = query.where(tenant.where())
    query = by_creation(query, AllowedTarget, after)
    return list((await session.execute(query.limit(limit))).scalars())


async def allowed_for(session: AsyncSession, tenant: Tenant) -> list[tuple[str, int]]:
    """The (pattern, port) entries of one tenant."""
    found = await session.execute(
        select(col(AllowedTarget.pattern), col(AllowedTarget.port)).where(tenant.where())
    )
    return [(pattern, port) for pattern, port in found]


async def allowed_for_organizations(
    session: AsyncSession, organization_ids: Sequence[UUID]
) -> dict[UUID, list[tuple[str, int]]]:
    """The (pattern, port) entries of each organisation (one query for a batch of deliveries)."""
    found = await session.execute(
        select(
            col(AllowedTarget.organization_id), col(AllowedTarget.pattern), col(AllowedTarget.port)
        ).where(col(AllowedTarget.organization_id).in_(set(organization_ids)))
    )
    entries: dict[UUID, list[tuple[str, int]]] = {}
    for organization_id, pattern, port in found:
        assert organization_id is not None
        entries.setdefault(organization_id, []).append((pattern, port))
    return entries


async def partner_exists(session: AsyncSession, code: str) -> bool:
    return await session.get(Partner, code) is not None


async def add_target(
    session: AsyncSession, tenant: Tenant, pattern: str, port: int
) -> AllowedTarget:
    """The entry, added unless the tenant has it already (adding twice changes nothing)."""
    scope = "organization_id" if tenant.organization_id is not None else "partner_code"
    await session.execute(
        insert(AllowedTarget)
        .values(
            id=uuid4(),
            organization_id=tenant.organization_id,
            partner_code=tenant.partner_code,
            pattern=pattern,
            port=port,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(
            index_elements=[scope, "pattern", "port"], index_where=text(f"{scope} IS NOT NULL")
        )
    )
    found = await session.execute(
        select(AllowedTarget)
        .where(tenant.where(), col(AllowedTarget.pattern) == pattern)
        .where(col(AllowedTarget.port) == port)
        .execution_options(populate_existing=True)
    )
    return found.scalar_one()


async def get_target(session: AsyncSession, target_id: UUID) -> AllowedTarget | None:
    return await session.get(AllowedTarget, target_id)


async def delete_target(session: AsyncSession, target: AllowedTarget) -> None:
    await session.delete(target)


# ----------------------------------------------------------------------------- feed cursors


async def lock_cursor(session: AsyncSession, name: str) -> str:
    """The feed's cursor, created at the start if new, locked until the transaction ends."""
    await session.execute(
        insert(FeedCursor)
        .values(name=name, cursor="0.0", updated_at=utcnow())
        .on_conflict_do_nothing(index_elements=["name"])
    )
    found = await session.execute(
        select(col(FeedCursor.cursor)).where(col(FeedCursor.name) == name).with_for_update()
    )
    return str(found.scalar_one())


async def read_cursor(session: AsyncSession, name: str) -> str:
    found = await session.execute(
        select(col(FeedCursor.cursor)).where(col(FeedCursor.name) == name)
    )
    return found.scalar_one_or_none() or "0.0"


async def move_cursor(session: AsyncSession, name: str, cursor: str) -> None:
    await session.execute(
        update(FeedCursor)
        .where(col(FeedCursor.name) == name)
        .values(cursor=cursor, updated_at=utcnow())
    )
