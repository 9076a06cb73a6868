"""Table models of the `matching` schema. They never leave this service."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import (
    ARRAY,
    BigInteger,
    DateTime,
    Identity,
    Index,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy import text as sa_text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Column, Field, SQLModel

from shared.db import Xid8, created_now

SCHEMA = "matching"


class IndexerState(SQLModel, table=True):
    """Where the indexer is in the listing feed (one row per index)."""

    __tablename__ = "indexer_state"
    __table_args__ = {"schema": SCHEMA}

    index_uid: str = Field(primary_key=True, max_length=64)
    cursor: str = Field(default="0.0", max_length=48)
    last_event_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    updated_at: datetime = created_now()


class IndexedListing(SQLModel, table=True):
    """The version of each listing the index holds: replays and reorders never go back."""

    __tablename__ = "indexed_listings"
    __table_args__ = {"schema": SCHEMA}

    listing_id: UUID = Field(primary_key=True)
    asset_id: UUID
    version: int
    searchable: bool
    indexed_at: datetime = created_now()


class Demand(SQLModel, table=True):
    """A buyer's stated need."""

    __tablename__ = "demands"
    __table_args__ = {"schema": SCHEMA}

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    organization_id: UUID = Field(index=True)
    title: str = Field(max_length=300)
    text: str = Field(sa_type=Text)
    kinds: list[str] = Field(
        default_factory=list, sa_column=Column(ARRAY(String(32)), nullable=False)
    )
    ipc_prefixes: list[str] = Field(
        default_factory=list, sa_column=Column(ARRAY(String(32)), nullable=False)
    )
    transaction_types: list[str] = Field(
        default_factory=list, sa_column=Column(ARRAY(String(32)), nullable=False)
    )
    regions: list[str] = Field(
        default_factory=list, sa_column=Column(ARRAY(String(6)), nullable=False)
    )
    budget_max: Decimal | None = Field(default=None, sa_type=Numeric(18, 2))
    # What was read from title and text (demands/reading.py: terms, constraints); {} for a
    # demand stored before demands were read, read again when used.
    reading: dict[str, Any] = Field(
        default_factory=dict,
        sa_column=Column(JSONB, nullable=False, server_default=sa_text("'{}'::jsonb")),
    )
    status: str = Field(default="active", max_length=16)
    version: int = 1
    created_at: datetime = created_now()
    updated_at: datetime = created_now()


class Match(SQLModel, table=True):
    """A demand and an asset (one match however many exchanges offer it): the best offer for
    the demand, its score, and why they matched."""

    __tablename__ = "matches"
    __table_args__ = (UniqueConstraint("demand_id", "asset_id"), {"schema": SCHEMA})

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    demand_id: UUID = Field(foreign_key=f"{SCHEMA}.demands.id", index=True)
    listing_id: UUID = Field(index=True)
    asset_id: UUID
    listing_version: int
    score: float
    reasons: list[dict[str, Any]] = Field(sa_column=Column(JSONB, nullable=False))
    created_at: datetime = created_now()
    updated_at: datetime = created_now()


class MatchEvent(SQLModel, table=True):
    """The outbox of new matches (the gateway turns them into webhooks)."""

    __tablename__ = "match_events"
    __table_args__ = (
        Index("ix_matching_match_events_xid_seq", "xid", "seq"),
        Index("ix_matching_match_events_org_xid_seq", "organization_id", "xid", "seq"),
        {"schema": SCHEMA},
    )

    seq: int | None = Field(
        default=None, sa_column=Column(BigInteger, Identity(), primary_key=True)
    )
    xid: int | None = Field(
        default=None,
        sa_column=Column(Xid8(), nullable=False, server_default=text("pg_current_xact_id()")),
    )
    demand_id: UUID
    organization_id: UUID
    listing_id: UUID
    type: str = Field(default="match.created", max_length=40)
    payload: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    occurred_at: datetime = created_now()


class MatchQueueItem(SQLModel, table=True):
    """A listing that became searchable and still has to be matched against the demands.

    The indexer inserts it held by the page that made it searchable (`held_by`) when it plans
    that page, and releases it in the transaction that moves its cursor past the page (so none
    is lost or queued twice, and the pages in flight keep no documents in memory); the match
    worker claims released rows with a lease and deletes them in the transaction that stores
    their matches."""

    __tablename__ = "match_queue"
    __table_args__ = (
        # The claim reads claimable rows only, oldest first.
        Index(
            "ix_matching_match_queue_claimable",
            "enqueued_at",
            postgresql_where=text("held_by IS NULL"),
        ),
        # The rows of the pages a commit releases (a few pages' worth at any time).
        Index(
            "ix_matching_match_queue_held_by",
            "held_by",
            postgresql_where=text("held_by IS NOT NULL"),
        ),
        {"schema": SCHEMA},
    )

    listing_id: UUID = Field(primary_key=True)
    version: int
    # The fields of the listing's search document that matching reads (the query, the scoring
    # and the summary in the match event).
    document: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    enqueued_at: datetime = created_now()
    lease_until: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    attempts: int = 0
    # The indexer page that queued the row and has not committed yet (NULL: claimable).
    held_by: str | None = Field(default=None, sa_type=Text)
