"""What of listing's tables is past its window. Plain functions: the repository's SQL says the
same thing, and the tests hold one to the other.

Idempotency keys (`idempotency_keys`)
    A record goes IPX_RETENTION_IDEMPOTENCY_HOURS (24) after it was created: a create repeated
    with the same `Idempotency-Key` within that window gets the first response back; after it,
    the key is new again (Stripe keeps keys for 24 hours too). A client retries within minutes;
    one that retries a day later has to look first. A record is written in the same
    transaction as its create, so no half-finished one is ever visible to the delete.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.settings import Settings

__all__ = ["TABLES", "ListingRetention", "idempotency_expired"]

TABLES = ("idempotency_keys",)


@dataclass(frozen=True)
class ListingRetention:
    idempotency: timedelta
    batch: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ListingRetention:
        return cls(
            idempotency=timedelta(hours=settings.retention_idempotency_hours),
            batch=settings.retention_batch,
        )

    def cutoff(self, now: datetime) -> datetime:
        return now - self.idempotency


def idempotency_expired(created_at: datetime, cutoff: datetime) -> bool:
    return created_at < cutoff
