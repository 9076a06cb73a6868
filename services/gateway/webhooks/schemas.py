"""Webhook subscription, delivery and allow-list request/response models."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, get_args
from uuid import UUID

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from shared.contracts.catalogue import EXCHANGE_CODE_PATTERN, TransactionType
from shared.identifiers import AssetKind, normalize_full_width
from shared.schemas import StrictModel

# listing.closed: a listing that was public closed (a deal here, or its partner exchange closed
# it); listing.withdrawn: it was withdrawn (or expired). licence.*: an open licence taken, its
# recordal deadline near (30 and 7 days before), its recordal entered; only its two parties
# receive them. pledge.*: a pledge filed, registered, changed, cancelled (its pledgor and
# pledgee), at risk (a pledged right's legal status or expiry changed: its pledgee).
WebhookEventType = Literal[
    "listing.published",
    "listing.updated",
    "listing.withdrawn",
    "listing.closed",
    "deal.closed",
    "match.created",
    "licence.taken",
    "licence.recordal_due",
    "licence.recorded",
    "pledge.filed",
    "pledge.registered",
    "pledge.changed",
    "pledge.cancelled",
    "pledge.at_risk",
]
WEBHOOK_EVENT_TYPES: tuple[WebhookEventType, ...] = get_args(WebhookEventType)
DeliveryStatus = Literal["pending", "delivered", "failed"]

# Section, class, subclass, main group, subgroup: H, H01, H01M, H01M 10, H01M 10/0525.
IPC_PREFIX = re.compile(r"^([A-H])(?:(\d{2})(?:([A-Z])(?:\s*(\d{1,4})(?:/(\d{2,6}))?)?)?)?$")
REGION = re.compile(r"^\d{2}(?:\d{4})?$")


def normalize_ipc_prefix(raw: str) -> str:
    """`h01m`, `H01M10/0525`, `H01M 010` -> `H01M`, `H01M 10/0525`, `H01M 10`."""
    match = IPC_PREFIX.match(normalize_full_width(raw).strip().upper())
    if match is None or (match.group(4) is not None and int(match.group(4)) == 0):
        raise PydanticCustomError(
            "ipc_prefix",
            "{value!r} is not an IPC prefix (H, H01, H01M, H01M 10, H01M 10/0525)",
            {"value": raw},
        )
    section, klass, subclass, main, sub = match.groups()
    text = section + (klass or "") + (subclass or "")
    if main is not None:
        text += f" {int(main)}" + (f"/{sub}" if sub is not None else "")
    return text


def _as_list(value: Any) -> Any:
    return [value] if value is not None and not isinstance(value, list) else value


class SubscriptionFilter(StrictModel):
    """Which events a subscription receives, with the catalogue search's filters. Each given
    criterion must hold (a list means any of its values); an event that does not carry the
    field a criterion needs does not match it. A single value may be given for a list."""

    kind: list[AssetKind] | None = Field(
        default=None, min_length=1, max_length=9, examples=[["invention_patent"]]
    )
    transaction_type: list[TransactionType] | None = Field(
        default=None, min_length=1, max_length=7, examples=[["exclusive_license"]]
    )
    ipc: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=20,
        description="IPC prefixes: section, class, subclass, main group or subgroup",
        examples=[["H01M", "G06F 3/01"]],
    )
    nice: list[int] | None = Field(
        default=None, min_length=1, max_length=45, description="Nice classes 1-45"
    )
    region: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=20,
        description="a province (2 digits) or a GB/T 2260 code read hierarchically: 110000 is "
        "all of Beijing, 130600 all of Baoding, 110108 Haidian only; of the first holder",
        examples=[["11", "130600"]],
    )
    price_min: Decimal | None = Field(
        default=None, ge=0, max_digits=16, decimal_places=2, examples=["100000.00"]
    )
    price_max: Decimal | None = Field(
        default=None, ge=0, max_digits=16, decimal_places=2, examples=["2000000.00"]
    )

    @field_validator("kind", "transaction_type", "ipc", "nice", "region", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return _as_list(value)

    @field_validator("ipc")
    @classmethod
    def _ipc(cls, value: list[str] | None) -> list[str] | None:
        return (
            None if value is None else list(dict.fromkeys(normalize_ipc_prefix(p) for p in value))
        )

    @field_validator("nice")
    @classmethod
    def _nice(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and any(not 1 <= n <= 45 for n in value):
            raise PydanticCustomError("nice_class_range", "Nice classes are 1-45")
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(not REGION.match(r) for r in value):
            raise PydanticCustomError(
                "region_code", "a region is a province (2 digits) or a GB/T 2260 code (6)"
            )
        return value

    @model_validator(mode="after")
    def _price_range(self) -> SubscriptionFilter:
        if (
            self.price_min is not None
            and self.price_max is not None
            and self.price_min > self.price_max
        ):
            raise PydanticCustomError("price_range", "price_min is above price_max")
        return self


class SubscriptionCreate(StrictModel):
    url: str = Field(
        min_length=1,
        max_length=2000,
        description="http(s) URL that receives the webhooks; it must resolve to public "
        "addresses unless an operator allow-listed it",
        examples=["https://erp.example.com/hooks/ipx"],
    )
    event_types: list[WebhookEventType] = Field(
        min_length=1,
        max_length=len(WEBHOOK_EVENT_TYPES),
        examples=[["listing.published", "listing.withdrawn", "listing.closed"]],
    )
    filter: SubscriptionFilter = Field(default_factory=SubscriptionFilter)

    @field_validator("event_types")
    @classmethod
    def _unique(cls, value: list[WebhookEventType]) -> list[WebhookEventType]:
        return [t for t in WEBHOOK_EVENT_TYPES if t in value]


class SubscriptionPublic(BaseModel):
    id: UUID
    organization_id: UUID | None
    partner_code: str | None
    url: str = Field(examples=["https://erp.example.com/hooks/ipx"])
    event_types: list[str] = Field(examples=[["listing.published", "listing.withdrawn"]])
    filter: dict[str, Any] = Field(examples=[{"kind": ["invention_patent"], "region": ["11"]}])
    status: Literal["active"] = Field(description="deleted subscriptions are not shown")
    created_at: datetime


class SubscriptionCreated(SubscriptionPublic):
    secret: str = Field(
        description="the Standard Webhooks signing secret, shown this once",
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )


class AttemptPublic(BaseModel):
    at: datetime
    status_code: int | None = Field(examples=[200])
    latency_ms: float | None = Field(examples=[41.7])
    error: str | None = Field(default=None, examples=["ConnectError: connection refused"])


class DeliveryPublic(BaseModel):
    id: UUID
    seq: int
    event_id: str = Field(
        description="the webhook-id header: the same on every retry and replay",
        examples=["evt_listing_1234.56"],
    )
    event_type: str = Field(examples=["listing.published"])
    ordering_key: str = Field(description="the listing (or demand) the event is about")
    status: DeliveryStatus
    attempts: int = Field(description="attempts since the delivery was queued (or replayed)")
    next_attempt_at: datetime | None = Field(description="when pending: the next try")
    last_status_code: int | None
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any] = Field(description="the body sent: type, timestamp, data")
    attempt_log: list[AttemptPublic] = Field(description="every attempt, oldest first")


class TargetCreate(StrictModel):
    """A private target one tenant may reach: exactly one of `organization_id` (that
    organisation's webhook subscriptions) and `partner_code` (that partner's pull feed)."""

    pattern: str = Field(
        min_length=1,
        max_length=200,
        description="a host name (or *.domain), an IP address or a CIDR network",
        examples=["10.20.0.0/16"],
    )
    port: int = Field(ge=1, le=65535, description="the one port allowed", examples=[8443])
    organization_id: UUID | None = Field(
        default=None, description="the organisation whose webhook subscriptions may reach it"
    )
    partner_code: str | None = Field(
        default=None,
        pattern=EXCHANGE_CODE_PATTERN,
        description="the partner exchange whose pull feed may be there",
    )


class TargetPublic(BaseModel):
    id: UUID
    pattern: str = Field(examples=["10.20.0.0/16"])
    port: int = Field(examples=[8443])
    organization_id: UUID | None
    partner_code: str | None
    created_at: datetime


class MatchChange(BaseModel):
    """One event of matching's GET /v1/matches/changes (the fields the gateway reads)."""

    cursor: str
    type: str
    demand_id: UUID
    organization_id: UUID
    listing_id: UUID
    occurred_at: datetime
    data: dict[str, Any]


class MatchChangePage(BaseModel):
    events: list[MatchChange]
    next_cursor: str
