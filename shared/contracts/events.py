"""The listing change feed, contract v1: what matching and gateway consume."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field

# A listing that ends is `listing.closed` when a deal closed it (here, or on its partner exchange),
# `listing.withdrawn` when its seller withdrew it, `listing.expired` when its right ended; each
# carries the listing's document with that status (its tombstone). Readers that only keep the
# market (the search index) go by the document's status, not by the type.
# `licence.*` events are an open licence taken (`data` is its recordal package), a reminder of
# its recordal deadline (`data` adds `days_left`), and its recordal entered.
# `pledge.*` events are a pledge's registry states (issue 22): filed when the borrower accepts a
# bank's offer, registered, changed, cancelled, and at risk (a correction changed a pledged
# right's legal status or expiry: for the pledgee); `data` names the parties and the rights,
# never the loan's figures.
EventType = Literal[
    "listing.created",
    "listing.updated",
    "listing.submitted",
    "listing.published",
    "listing.rejected",
    "listing.negotiation",
    "listing.reopened",
    "listing.closed",
    "listing.withdrawn",
    "listing.expired",
    "deal.closed",
    "licence.taken",
    "licence.recordal_due",
    "licence.recorded",
    "pledge.filed",
    "pledge.registered",
    "pledge.changed",
    "pledge.cancelled",
    "pledge.at_risk",
]


class ChangeEvent(BaseModel):
    """One change. For a listing, `data` is its catalogue document at `version` (a withdrawn or
    closed listing stays in the feed as a tombstone: its document with that status)."""

    cursor: str = Field(description="pass as `after` to read what follows this event")
    type: EventType
    entity: Literal["listing", "deal", "licence", "pledge"]
    entity_id: UUID
    version: int
    occurred_at: datetime
    asset_id: UUID | None = None
    seller_id: UUID | None = None
    data: dict[str, Any]


class ChangeFeedPage(BaseModel):
    events: list[ChangeEvent]
    next_cursor: str = Field(description="the cursor to continue from (unchanged when empty)")


class FeedHead(BaseModel):
    """The newest event a reader can see, and how many follow the cursor asked about."""

    cursor: str
    occurred_at: datetime | None
    pending: int = 0


class OfferSnapshot(BaseModel):
    """A listing's current catalogue document (any status), for index rebuilds and checks."""

    listing_id: UUID
    asset_id: UUID
    seller_id: UUID
    version: int
    status: str
    document: dict[str, Any]


class OfferSnapshotPage(BaseModel):
    items: list[OfferSnapshot]
    next_page_token: str = ""
