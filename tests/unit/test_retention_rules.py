"""What is past its retention window (services/*/retention/rules.py) and the settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from services.gateway.retention.rules import (
    GatewayRetention,
    delivery_expired,
    delivery_floor,
    inbox_expired,
)
from services.listing.retention.rules import ListingRetention, idempotency_expired
from shared.settings import Settings

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def test_defaults_and_cutoffs() -> None:
    settings = Settings()
    gateway = GatewayRetention.from_settings(settings)
    assert gateway == GatewayRetention(inbox=7 * DAY, deliveries=30 * DAY, keep=100, batch=1000)
    cutoffs = gateway.cutoffs(NOW)
    assert cutoffs.inbox == NOW - 7 * DAY and cutoffs.deliveries == NOW - 30 * DAY
    listing = ListingRetention.from_settings(settings)
    assert listing.idempotency == timedelta(hours=24) and listing.cutoff(NOW) == NOW - DAY
    assert settings.retention_interval_seconds == 600


def test_settings_come_from_the_environment_and_are_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IPX_RETENTION_INBOX_DAYS", "3")
    monkeypatch.setenv("IPX_RETENTION_DELIVERIES_KEEP", "0")
    monkeypatch.setenv("IPX_RETENTION_INTERVAL_SECONDS", "0")  # off
    settings = Settings()
    assert settings.retention_inbox_days == 3
    assert settings.retention_deliveries_keep == 0
    assert settings.retention_interval_seconds == 0
    for field, bad in [
        ("retention_batch", 0),
        ("retention_inbox_days", 0),
        ("retention_deliveries_days", -1),
        ("retention_idempotency_hours", 0),
        ("retention_deliveries_keep", -1),
        ("retention_interval_seconds", -1),
    ]:
        with pytest.raises(ValidationError):
            Settings.model_validate({field: bad})


CUTOFF = NOW - 7 * DAY
LONG_AGO = NOW - 10 * DAY
LATELY = NOW - DAY


@pytest.mark.parametrize(
    ("status", "received", "tried", "processed", "expired"),
    [
        ("applied", LONG_AGO, LONG_AGO, LONG_AGO, True),
        ("stale", LONG_AGO, LONG_AGO, LONG_AGO, True),
        ("rejected", LONG_AGO, LONG_AGO, LONG_AGO, False),  # the audit keeps it
        ("pending", LONG_AGO, LONG_AGO, None, False),  # work still to do
        ("applied", LONG_AGO, LATELY, LATELY, False),  # retried until lately
        ("applied", LONG_AGO, LONG_AGO, LATELY, False),  # processed lately
        ("applied", LATELY, LATELY, LATELY, False),
        ("applied", CUTOFF, CUTOFF, CUTOFF, False),  # exactly at the cutoff: not yet
    ],
)
def test_inbox_rows_go_once_finished_and_past_the_window(
    status: str,
    received: datetime,
    tried: datetime,
    processed: datetime | None,
    expired: bool,
) -> None:
    assert inbox_expired(status, received, tried, processed, CUTOFF) is expired


def test_the_floor_keeps_the_newest_of_a_subscription() -> None:
    seqs = [7, 3, 11, 5, 9]
    assert delivery_floor(seqs, 2) == 7  # 11 and 9 stay; 7 and below may go
    assert delivery_floor(seqs, 0) == 11  # nothing is kept for its rank
    assert delivery_floor(seqs, 4) == 3
    assert delivery_floor(seqs, 5) is None  # no more than the kept: nothing goes
    assert delivery_floor([], 0) is None


DELIVERY_CUTOFF = NOW - 30 * DAY
OLD = NOW - 40 * DAY


@pytest.mark.parametrize(
    ("status", "seq", "created", "tried", "delivered", "floor", "expired"),
    [
        ("delivered", 5, OLD, OLD, OLD, 7, True),
        ("failed", 5, OLD, OLD, None, 7, True),
        ("delivered", 7, OLD, OLD, OLD, 7, True),  # the floor itself may go
        ("delivered", 8, OLD, OLD, OLD, 7, False),  # among the newest of its subscription
        ("delivered", 5, OLD, OLD, OLD, None, False),  # a subscription with few deliveries
        ("pending", 5, OLD, OLD, None, 7, False),  # queued: never deleted
        ("delivered", 5, OLD, LATELY, LATELY, 7, False),  # replayed lately
        ("delivered", 5, LATELY, LATELY, LATELY, 7, False),
        ("delivered", 5, OLD, OLD, LATELY, 7, False),  # delivered lately
    ],
)
def test_deliveries_go_when_finished_old_and_not_among_the_newest(
    status: str,
    seq: int,
    created: datetime,
    tried: datetime,
    delivered: datetime | None,
    floor: int | None,
    expired: bool,
) -> None:
    assert (
        delivery_expired(status, seq, created, tried, delivered, floor, DELIVERY_CUTOFF) is expired
    )


def test_idempotency_records_go_after_their_window() -> None:
    cutoff = ListingRetention(idempotency=timedelta(hours=24), batch=10).cutoff(NOW)
    assert idempotency_expired(NOW - timedelta(hours=25), cutoff)
    assert not idempotency_expired(NOW - timedelta(hours=23), cutoff)
    assert not idempotency_expired(cutoff, cutoff)
