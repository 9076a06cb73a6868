"""The retention job's SQL on the gateway's tables (the rules: `retention.rules`). Each delete
takes one batch of rows with ``FOR UPDATE SKIP LOCKED``: a row a writer holds (a delivery being
replayed, an inbox row being finished) is skipped until a later round, never waited for. Never
commits: the caller runs each batch in its own short transaction."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.gateway.retention.rules import DELIVERY_DONE, INBOX_DONE

__all__ = ["delete_deliveries", "delete_inbox", "delivery_floors"]

# The range scan runs on ix_gateway_inbound_events_due (status, next_attempt_at): a finished
# row's next_attempt_at is when it was last tried, never before it was received.
DELETE_INBOX = text(
    """
    DELETE FROM gateway.inbound_events
    WHERE id IN (
        SELECT id FROM gateway.inbound_events
        WHERE status = ANY(CAST(:statuses AS varchar[]))
          AND next_attempt_at < :cutoff
          AND received_at < :cutoff
          AND processed_at < :cutoff
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    )
    """
)


async def delete_inbox(session: AsyncSession, cutoff: datetime, batch: int) -> int:
    result = await session.execute(
        DELETE_INBOX, {"statuses": list(INBOX_DONE), "cutoff": cutoff, "batch": batch}
    )
    return int(getattr(result, "rowcount", 0))


# Per subscription, the (keep + 1)-th newest seq: what is at or below it may go. Read once per
# round: a delivery that arrives later only adds to a subscription's newest, so a floor read
# earlier keeps as much or more than one read now. Reads the newest keep + 1 of each
# subscription from ix_gateway_deliveries_subscription_seq (subscription_id, seq).
FLOORS = text(
    """
    SELECT s.id, f.seq
    FROM gateway.subscriptions AS s
    CROSS JOIN LATERAL (
        SELECT d.seq FROM gateway.deliveries AS d
        WHERE d.subscription_id = s.id
        ORDER BY d.seq DESC
        OFFSET :keep LIMIT 1
    ) AS f
    """
)


async def delivery_floors(session: AsyncSession, keep: int) -> dict[UUID, int]:
    """Subscription -> the highest seq that may go (absent: it has no more than `keep`)."""
    rows = await session.execute(FLOORS, {"keep": keep})
    return {row.id: row.seq for row in rows}


# Attempts go with their delivery, in the same statement (the foreign key is checked at its
# end). The candidates come from ix_gateway_deliveries_done (next_attempt_at of finished rows):
# the statuses are written out, so the planner sees they are that partial index's.
_DONE = ", ".join(f"'{status}'" for status in DELIVERY_DONE)
DELETE_DELIVERIES = text(
    f"""
    WITH floors AS (
        SELECT * FROM unnest(CAST(:subscriptions AS uuid[]), CAST(:floors AS bigint[]))
            AS f(subscription_id, seq)
    ), doomed AS (
        SELECT d.id FROM gateway.deliveries AS d
        JOIN floors AS f ON f.subscription_id = d.subscription_id
        WHERE d.status IN ({_DONE})
          AND d.next_attempt_at < :cutoff
          AND d.created_at < :cutoff
          AND (d.delivered_at IS NULL OR d.delivered_at < :cutoff)
          AND d.seq <= f.seq
        LIMIT :batch
        FOR UPDATE OF d SKIP LOCKED
    ), attempts AS (
        DELETE FROM gateway.delivery_attempts AS a USING doomed
        WHERE a.delivery_id = doomed.id
        RETURNING a.id
    ), deliveries AS (
        DELETE FROM gateway.deliveries AS d USING doomed
        WHERE d.id = doomed.id
        RETURNING d.id
    )
    SELECT (SELECT count(*) FROM deliveries) AS deliveries,
           (SELECT count(*) FROM attempts) AS attempts
    """
)


async def delete_deliveries(
    session: AsyncSession, cutoff: datetime, floors: dict[UUID, int], batch: int
) -> tuple[int, int]:
    """(deliveries, attempts) deleted."""
    if not floors:
        return 0, 0
    row = (
        await session.execute(
            DELETE_DELIVERIES,
            {
                "subscriptions": list(floors),
                "floors": list(floors.values()),
                "cutoff": cutoff,
                "batch": batch,
            },
        )
    ).one()
    return int(row.deliveries), int(row.attempts)
