"""Table models of the `gateway` schema. They never leave this service."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import (
    ARRAY,
    BigInteger,
    CheckConstraint,
    Identity,
    Index,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Column, Field, SQLModel

from shared.db import created_now, optional_timestamp

SCHEMA = "gateway"


class Partner(SQLModel, table=True):
    """A partner exchange: pushes signed webhooks, or is pulled on a schedule."""

    __tablename__ = "partners"
    __table_args__ = {"schema": SCHEMA}

    code: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=200)
    region: str = Field(max_length=6)
    status: str = Field(default="active", max_length=16)  # active | suspended
    # Standard Webhooks secret (whsec_...): the partner signs with it, we verify with it.
    # Stored sealed (shared/encryption.py).
    inbound_secret: str = Field(max_length=400)
    adapter: str = Field(default="canonical", max_length=32)
    organization_id: UUID | None = None
    pull_url: str | None = Field(default=None, max_length=2000)
    pull_interval_seconds: int = 60
    pull_cursor: str | None = Field(default=None, max_length=500)
    pull_etag: str | None = Field(default=None, max_length=500)
    pull_next_at: datetime | None = optional_timestamp()
    pull_failures: int = 0
    pull_lease_until: datetime | None = optional_timestamp()
    pull_last_error: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = created_now()
    updated_at: datetime = created_now()


class InboundEvent(SQLModel, table=True):
    """The inbox: every accepted partner event, once per (partner, event id), processed after
    the 202 (applied to listing's offers)."""

    __tablename__ = "inbound_events"
    __table_args__ = (
        UniqueConstraint("partner_code", "event_id"),
        Index("ix_gateway_inbound_events_due", "status", "next_attempt_at"),
        # The claim's pending rows, in each offer's order: pending rows only, so a claim never
        # reads the inbox's history, whatever the statistics say (migration 0007).
        Index(
            "ix_gateway_inbound_events_pending",
            "offer_key",
            "source_version",
            "id",
            postgresql_where=text("status = 'pending'"),
        ),
        # "Is a newer version of this offer applied already?" on every claim.
        Index(
            "ix_gateway_inbound_events_applied",
            "offer_key",
            "source_version",
            postgresql_where=text("status = 'applied'"),
        ),
        {"schema": SCHEMA},
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    partner_code: str = Field(max_length=32)
    event_id: str = Field(max_length=200)
    source: str = Field(max_length=8)  # push | pull
    received_at: datetime = created_now()
    # The partner listing's version, for "an older version never wins" before listing sees it.
    source_version: int
    offer_key: str = Field(max_length=250)  # <exchange>:<listing id>
    document: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    status: str = Field(default="pending", max_length=16)  # pending|applied|stale|rejected
    attempts: int = 0
    next_attempt_at: datetime = created_now()
    lease_until: datetime | None = optional_timestamp()
    error: str | None = Field(default=None, sa_type=Text)
    processed_at: datetime | None = optional_timestamp()


class RejectedEvent(SQLModel, table=True):
    """A partner event refused at intake or by listing, with every reason (the partner sees)."""

    __tablename__ = "rejected_events"
    __table_args__ = {"schema": SCHEMA}

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    partner_code: str = Field(max_length=32, index=True)
    event_id: str | None = Field(default=None, max_length=200)
    source: str = Field(max_length=8)
    received_at: datetime = created_now()
    errors: list[dict[str, Any]] = Field(sa_column=Column(JSONB, nullable=False))
    payload_excerpt: str = Field(sa_type=Text)


class RateLimitBucket(SQLModel, table=True):
    """A client's token bucket, shared by every replica (shared/ratelimit.py takes tokens
    from it a share at a time). Unlogged: migration 0009."""

    __tablename__ = "rate_limit_buckets"
    __table_args__ = (
        Index("ix_gateway_rate_limit_buckets_updated", "updated_at"),
        {"schema": SCHEMA, "prefixes": ["UNLOGGED"]},
    )

    client: str = Field(primary_key=True, sa_type=Text)
    tokens: float
    granted: int
    updated_at: datetime = created_now()


class FeedCursor(SQLModel, table=True):
    """Where the gateway is in the feeds it fans out (listing changes, matches)."""

    __tablename__ = "feed_cursors"
    __table_args__ = {"schema": SCHEMA}

    name: str = Field(primary_key=True, max_length=32)
    cursor: str = Field(default="0.0", max_length=48)
    updated_at: datetime = created_now()


class Subscription(SQLModel, table=True):
    """Where and what to deliver: a URL, event types and a filter; signed with its secret."""

    __tablename__ = "subscriptions"
    __table_args__ = {"schema": SCHEMA}

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    organization_id: UUID | None = Field(default=None, index=True)
    partner_code: str | None = Field(default=None, max_length=32)
    url: str = Field(max_length=2000)
    event_types: list[str] = Field(sa_column=Column(ARRAY(String(40)), nullable=False))
    filter: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    secret: str = Field(max_length=400)  # sealed (shared/encryption.py)
    status: str = Field(default="active", max_length=16)  # active | deleted
    created_at: datetime = created_now()


class Delivery(SQLModel, table=True):
    """One event for one subscription, delivered at least once, in order per ordering key."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("subscription_id", "event_id"),
        # Finished deliveries by age, for retention (migration 0008: no index leads with
        # status, so the claim's reads of pending rows only ever take the partial ones below).
        Index(
            "ix_gateway_deliveries_done",
            "next_attempt_at",
            postgresql_where=text("status IN ('delivered', 'failed')"),
        ),
        # The claim's pending deliveries, in each ordering key's order: pending rows only, so
        # a claim never walks the delivered history (migration 0007).
        Index(
            "ix_gateway_deliveries_pending",
            "subscription_id",
            "ordering_key",
            "seq",
            postgresql_where=text("status = 'pending'"),
        ),
        # Each subscription's pending deliveries in the order they are due, and the leased
        # ones (its slots in use): the claim reads these (migration 0008).
        Index(
            "ix_gateway_deliveries_pending_due",
            "subscription_id",
            "next_attempt_at",
            "seq",
            postgresql_where=text("status = 'pending'"),
        ),
        Index(
            "ix_gateway_deliveries_leased",
            "subscription_id",
            "lease_until",
            postgresql_where=text("status = 'pending' AND lease_until IS NOT NULL"),
        ),
        # A subscription's newest deliveries: its list, and what retention keeps.
        Index("ix_gateway_deliveries_subscription_seq", "subscription_id", "seq"),
        {"schema": SCHEMA},
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    seq: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), nullable=False))
    subscription_id: UUID = Field(foreign_key=f"{SCHEMA}.subscriptions.id")
    event_id: str = Field(max_length=200)  # the webhook-id: the same on every retry
    event_type: str = Field(max_length=40)
    ordering_key: str = Field(max_length=100)  # the listing (or demand) it is about
    payload: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    status: str = Field(default="pending", max_length=16)  # pending | delivered | failed
    attempts: int = 0
    next_attempt_at: datetime = created_now()
    lease_until: datetime | None = optional_timestamp()
    last_status_code: int | None = None
    created_at: datetime = created_now()
    delivered_at: datetime | None = optional_timestamp()


class DeliveryAttempt(SQLModel, table=True):
    __tablename__ = "delivery_attempts"
    __table_args__ = {"schema": SCHEMA}

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    delivery_id: UUID = Field(foreign_key=f"{SCHEMA}.deliveries.id", index=True)
    at: datetime = created_now()
    status_code: int | None = None
    latency_ms: float | None = None
    error: str | None = Field(default=None, sa_type=Text)


class AllowedTarget(SQLModel, table=True):
    """A private host (or network) and port that one tenant's outbound calls may reach despite
    the SSRF guard: one organisation's webhook subscriptions, or one partner's pull feed."""

    __tablename__ = "allowed_targets"
    __table_args__ = (
        CheckConstraint(
            "(organization_id IS NULL) <> (partner_code IS NULL)", name="allowed_targets_one_tenant"
        ),
        Index(
            "ux_gateway_allowed_targets_organization",
            "organization_id",
            "pattern",
            "port",
            unique=True,
            postgresql_where=text("organization_id IS NOT NULL"),
        ),
        Index(
            "ux_gateway_allowed_targets_partner",
            "partner_code",
            "pattern",
            "port",
            unique=True,
            postgresql_where=text("partner_code IS NOT NULL"),
        ),
        {"schema": SCHEMA},
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    organization_id: UUID | None = None
    partner_code: str | None = Field(default=None, max_length=32)
    pattern: str = Field(max_length=200)  # host name, *.domain, IP or CIDR
    port: int
    created_at: datetime = created_now()
