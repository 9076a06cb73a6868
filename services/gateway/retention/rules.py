"""What of the gateway's tables is past its window. Plain functions: the repository's SQL says
the same thing, and the tests hold one to the other.

Partner inbox (`inbound_events`)
    An ``applied`` or ``stale`` row goes once it was received, last tried and processed more
    than IPX_RETENTION_INBOX_DAYS (7) ago. The inbox dedupes on (partner, webhook-id) only
    while the row is there: Standard Webhooks senders retry for a few days at most (and we
    answered 202 at once), so a redelivery after 7 days is not expected; if one comes, it is
    accepted again and listing answers ``stale`` (listing keeps each offer's source version:
    an older version never wins, with or without the inbox's own check on applied rows).
    ``pending`` rows are work still to do; ``rejected`` ones stay for the audit, with
    `rejected_events`, which is never deleted.

Webhook deliveries (`deliveries`, with their `delivery_attempts`)
    A ``delivered`` or ``failed`` delivery goes once it was created, last tried and delivered
    more than IPX_RETENTION_DELIVERIES_DAYS (30) ago, unless it is among the newest
    IPX_RETENTION_DELIVERIES_KEEP (100) of its subscription, whatever their age (a subscriber
    still sees its last deliveries and can replay them). ``pending`` ones are never deleted
    (a replay makes an old one pending again, with a fresh `next_attempt_at`). Deleting
    finished deliveries cannot hold up or reorder the queue: the claim waits only for
    *pending* earlier deliveries on the same ordering key.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.settings import Settings

__all__ = [
    "DELIVERY_DONE",
    "INBOX_DONE",
    "TABLES",
    "Cutoffs",
    "GatewayRetention",
    "delivery_expired",
    "delivery_floor",
    "inbox_expired",
]

INBOX_DONE = ("applied", "stale")
DELIVERY_DONE = ("delivered", "failed")
TABLES = ("inbound_events", "deliveries", "delivery_attempts")


@dataclass(frozen=True)
class Cutoffs:
    inbox: datetime
    deliveries: datetime


@dataclass(frozen=True)
class GatewayRetention:
    inbox: timedelta
    deliveries: timedelta
    keep: int  # the newest deliveries of each subscription kept whatever their age
    batch: int

    @classmethod
    def from_settings(cls, settings: Settings) -> GatewayRetention:
        return cls(
            inbox=timedelta(days=settings.retention_inbox_days),
            deliveries=timedelta(days=settings.retention_deliveries_days),
            keep=settings.retention_deliveries_keep,
            batch=settings.retention_batch,
        )

    def cutoffs(self, now: datetime) -> Cutoffs:
        return Cutoffs(inbox=now - self.inbox, deliveries=now - self.deliveries)


def inbox_expired(
    status: str,
    received_at: datetime,
    next_attempt_at: datetime,
    processed_at: datetime | None,
    cutoff: datetime,
) -> bool:
    return (
        status in INBOX_DONE
        and processed_at is not None
        and max(received_at, next_attempt_at, processed_at) < cutoff
    )


def delivery_floor(seqs: Iterable[int], keep: int) -> int | None:
    """The highest `seq` of a subscription's deliveries that may go: the one just below its
    newest `keep`; None when it has no more than `keep`."""
    newest = sorted(seqs, reverse=True)
    return newest[keep] if len(newest) > keep else None


def delivery_expired(
    status: str,
    seq: int,
    created_at: datetime,
    next_attempt_at: datetime,
    delivered_at: datetime | None,
    floor: int | None,
    cutoff: datetime,
) -> bool:
    last_activity = max(created_at, next_attempt_at, delivered_at or created_at)
    return status in DELIVERY_DONE and last_activity < cutoff and floor is not None and seq <= floor
