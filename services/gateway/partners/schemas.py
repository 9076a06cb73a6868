"""Request and response models of the partner registry and the inbound webhook intake."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.gateway.partners.adapters import EVENT_TYPES, AdapterName, TjipeListingV1
from shared.contracts.catalogue import OUR_EXCHANGE, CatalogueDocument
from shared.errors import FieldError
from shared.identifiers import IdentifierError, validate_region_code
from shared.openapi import schema_ref
from shared.schemas import StrictModel

__all__ = [
    "INBOUND_MODELS",
    "InboundAccepted",
    "InboundEvent",
    "PartnerCreate",
    "PartnerCreated",
    "PartnerPublic",
    "PartnerStatus",
    "PartnerUpdate",
    "PartnerUpdated",
    "RejectedEventPublic",
    "inbound_openapi",
]

PartnerStatus = Literal["active", "suspended"]
CODE_PATTERN = r"^[a-z][a-z0-9_-]{1,31}$"


def _pull_url(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("pull_url must be an absolute http or https URL")
    if parts.username or parts.password:
        raise ValueError("pull_url must not carry credentials")
    if parts.fragment:
        raise ValueError("pull_url must not have a fragment")
    return value


class _PartnerFields(StrictModel):
    @field_validator("region", check_fields=False)
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return validate_region_code(value)
        except IdentifierError as exc:
            raise ValueError(exc.message) from exc

    @field_validator("pull_url", check_fields=False)
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _pull_url(value)


class PartnerCreate(_PartnerFields):
    code: str = Field(
        pattern=CODE_PATTERN,
        description="the exchange's short code: the prefix of its offer ids "
        "(`<code>:<listing id>`) and the path of its inbound URL",
        examples=["tjipe"],
    )
    name: str = Field(min_length=1, max_length=200, examples=["天津知识产权交易中心"])
    region: str = Field(
        min_length=6, max_length=6, description="GB/T 2260 code of its seat", examples=["120000"]
    )
    adapter: AdapterName = Field(
        default="canonical",
        description="the format it sends: `canonical` (the catalogue document) or `tjipe_v1`",
    )
    organization_id: UUID | None = Field(
        default=None,
        description="its organisation in listing (kind `exchange`): keys of that organisation "
        "may read the partner's rejected events",
    )
    pull_url: str | None = Field(
        default=None,
        max_length=2000,
        description="its feed, pulled on a schedule (GET ?cursor=…, answer "
        '{"items": [...], "next_cursor": "..."}); none = push only',
        examples=["https://exchange.example/api/listings/feed"],
    )
    pull_interval_seconds: int = Field(default=60, ge=10, le=86_400)

    @field_validator("code")
    @classmethod
    def _not_ours(cls, value: str) -> str:
        if value == OUR_EXCHANGE:
            raise ValueError(f"{OUR_EXCHANGE!r} is this exchange's own code")
        return value


class PartnerUpdate(_PartnerFields):
    """Only the fields sent change. `pull_url: null` stops pulling."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    region: str | None = Field(default=None, min_length=6, max_length=6)
    status: PartnerStatus | None = Field(
        default=None, description="suspended: its pushes are refused (403) and it is not pulled"
    )
    adapter: AdapterName | None = None
    organization_id: UUID | None = None
    pull_url: str | None = Field(default=None, max_length=2000)
    pull_interval_seconds: int | None = Field(default=None, ge=10, le=86_400)
    reset_cursor: bool = Field(
        default=False, description="pull the feed again from its beginning (a new pull_url does)"
    )
    rotate_secret: bool = Field(
        default=False,
        description="a new inbound secret, shown once in the answer; the old one "
        "stops verifying at once",
    )


class PartnerPublic(BaseModel):
    code: str
    name: str
    region: str
    status: PartnerStatus
    adapter: AdapterName
    organization_id: UUID | None
    pull_url: str | None
    pull_interval_seconds: int
    pull_cursor: str | None = Field(description="where the next pull resumes")
    pull_next_at: datetime | None
    pull_failures: int = Field(description="consecutive failed pulls (0 after a good one)")
    pull_last_error: str | None
    inbound_url: str = Field(description="where it pushes its signed webhooks")
    created_at: datetime
    updated_at: datetime


class PartnerCreated(PartnerPublic):
    inbound_secret: str = Field(
        description="the Standard Webhooks signing secret (whsec_…): shown this once",
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )


class PartnerUpdated(PartnerPublic):
    inbound_secret: str | None = Field(
        default=None, description="the new signing secret, only when rotate_secret was asked"
    )


class InboundAccepted(BaseModel):
    """The event is in the inbox (or was already): it is applied to the catalogue shortly."""

    event_id: str = Field(description="the webhook-id")
    duplicate: bool = Field(description="this webhook-id was accepted before: nothing new")
    offer_id: str = Field(examples=["tjipe:TJ-2026-0017"])
    source_version: int
    event_type: str | None = Field(description="the envelope's type; null for a bare document")


class RejectedEventPublic(BaseModel):
    id: int
    event_id: str | None = Field(description="the webhook-id (push) or pull:<offer>:<version>")
    source: Literal["push", "pull"]
    received_at: datetime
    errors: list[FieldError]
    payload_excerpt: str = Field(description="the start of what was received")


class InboundEvent(BaseModel):
    """A partner's document wrapped in an event envelope (documentation of the push body)."""

    model_config = ConfigDict(title="InboundEvent", extra="forbid")

    type: str = Field(json_schema_extra={"enum": list(EVENT_TYPES)}, examples=["listing.updated"])
    timestamp: datetime | None = None
    data: CatalogueDocument | TjipeListingV1 = Field(
        description="the document in the partner's format"
    )


INBOUND_MODELS = (CatalogueDocument, InboundEvent, TjipeListingV1)


def inbound_openapi() -> dict[str, Any]:
    """The request body of POST /v1/inbound/{partner} in the OpenAPI spec (the route reads
    the body raw to check its signature)."""
    example = {
        "schema": "ipx.catalogue/v1",
        "offer_id": "tipei:L-2024-00017",
        "source": {
            "exchange": "tipei",
            "listing_id": "L-2024-00017",
            "url": "https://exchange.example/listings/L-2024-00017",
            "updated_at": "2026-11-20T08:00:00Z",
            "version": 7,
        },
        "asset": {
            "kind": "invention_patent",
            "identifier": "202111476668.X",
            "title": {"zh": "基于增强现实辅助的手术导航方法及系统"},
            "classifications": {"ipc": ["A61B 34/20"]},
            "holders": [{"name": "北京理工大学", "region": "110000"}],
            "filed_on": "2021-12-06",
            "legal_status": "pending",
        },
        "transaction": {
            "type": "exclusive_license",
            "price": {"mode": "fixed", "amount": "1200000.00", "currency": "CNY"},
            "term_months": 60,
        },
        "status": "published",
    }
    return {
        "parameters": [
            {
                "name": header,
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
                "description": description,
            }
            for header, description in (
                ("webhook-id", "unique per event: the same id twice is accepted once"),
                ("webhook-timestamp", "Unix seconds; refused when more than 5 minutes off"),
                ("webhook-signature", "v1,<base64 HMAC-SHA256 of id.timestamp.body>"),
            )
        ],
        "requestBody": {
            "required": True,
            "description": "A catalogue document (adapter `canonical`) or the partner's own "
            "format (e.g. `tjipe_v1`), bare or wrapped in an event envelope "
            f"({', '.join(EVENT_TYPES)}). The partner's adapter is set in the registry.",
            "content": {
                "application/json": {
                    "schema": {"anyOf": [schema_ref(model) for model in INBOUND_MODELS]},
                    "examples": {
                        "canonical": {"summary": "a bare catalogue document", "value": example},
                        "event": {
                            "summary": "the same in an event envelope",
                            "value": {
                                "type": "listing.updated",
                                "timestamp": "2026-11-20T08:00:05Z",
                                "data": example,
                            },
                        },
                    },
                }
            },
        },
    }
