"""Table models of the `listing` schema. They never leave this service."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Date,
    DateTime,
    Identity,
    Index,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Column, Field, SQLModel

from shared.db import Xid8, created_now

SCHEMA = "listing"


class Organization(SQLModel, table=True):
    __tablename__ = "organizations"
    __table_args__ = {"schema": SCHEMA}

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    name: str = Field(max_length=200)
    kind: str = Field(max_length=32)
    uscc: str | None = Field(default=None, max_length=18, unique=True)
    region: str = Field(max_length=6)
    # Partner exchanges only: their short code (`tipei`), the prefix of their offer ids.
    code: str | None = Field(default=None, max_length=32, unique=True)
    verified: bool = False
    version: int = 1
    created_at: datetime = created_now()
    updated_at: datetime = created_now()


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"
    __table_args__ = {"schema": SCHEMA}

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    organization_id: UUID | None = Field(
        default=None, foreign_key=f"{SCHEMA}.organizations.id", index=True
    )
    name: str = Field(max_length=100)
    prefix: str = Field(max_length=16, unique=True)
    key_hash: str = Field(max_length=64)
    roles: list[str] = Field(sa_column=Column(ARRAY(String(16)), nullable=False))
    created_at: datetime = created_now()
    revoked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class Asset(SQLModel, table=True):
    """One IP right, unique by (kind, normalised identifier)."""

    __tablename__ = "assets"
    __table_args__ = (UniqueConstraint("kind", "identifier"), {"schema": SCHEMA})

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    kind: str = Field(max_length=32)
    identifier: str = Field(max_length=200)
    publication_number: str | None = Field(default=None, max_length=40)
    title_zh: str | None = Field(default=None, sa_type=Text)
    title_en: str | None = Field(default=None, sa_type=Text)
    abstract_zh: str | None = Field(default=None, sa_type=Text)
    abstract_en: str | None = Field(default=None, sa_type=Text)
    classifications: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONB, nullable=False)
    )
    holders: list[dict[str, Any]] = Field(sa_column=Column(JSONB, nullable=False))
    region: str | None = Field(default=None, max_length=6)
    filed_on: date | None = Field(default=None, sa_type=Date)
    granted_on: date | None = Field(default=None, sa_type=Date)
    expires_on: date | None = Field(default=None, sa_type=Date)
    legal_status: str = Field(max_length=16)
    encumbrances: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSONB, nullable=False)
    )
    registered_by: UUID | None = Field(default=None, foreign_key=f"{SCHEMA}.organizations.id")
    # Set when a partner's holder names differ from ours: an operator should look.
    needs_review: bool = False
    version: int = 1
    created_at: datetime = created_now()
    updated_at: datetime = created_now()


class Listing(SQLModel, table=True):
    """An offer to transact one asset, by one seller, on one exchange (ours is `jjj`)."""

    __tablename__ = "listings"
    __table_args__ = (
        UniqueConstraint("exchange", "external_id"),
        Index("ix_listing_listings_seller_status", "seller_id", "status"),
        {"schema": SCHEMA},
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    asset_id: UUID = Field(foreign_key=f"{SCHEMA}.assets.id", index=True)
    seller_id: UUID = Field(foreign_key=f"{SCHEMA}.organizations.id")
    exchange: str = Field(max_length=32)
    external_id: str = Field(max_length=200)
    source_url: str | None = Field(default=None, max_length=2000)
    source_version: int | None = None
    source_updated_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    seller_name: str | None = Field(default=None, max_length=200)
    transaction_type: str = Field(max_length=32)
    price_mode: str = Field(max_length=16)
    amount: Decimal | None = Field(default=None, sa_type=Numeric(18, 2))
    currency: str = Field(default="CNY", max_length=3)
    royalty_rate: Decimal | None = Field(default=None, sa_type=Numeric(9, 6))
    term_months: int | None = None
    territory: str | None = Field(default=None, max_length=100)
    field_of_use: str | None = Field(default=None, max_length=500)
    pledge_disclosed: bool = False
    # `open_license` declarations: their typed terms (OpenLicenseTerms as JSON).
    open_license: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    status: str = Field(max_length=24, index=True)
    rejection_reason: str | None = Field(default=None, sa_type=Text)
    version: int = 1
    published_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    created_at: datetime = created_now()
    updated_at: datetime = created_now()


class ListingHistory(SQLModel, table=True):
    """The audit trail: who changed a listing, when, and what."""

    __tablename__ = "listing_history"
    __table_args__ = {"schema": SCHEMA}

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    listing_id: UUID = Field(foreign_key=f"{SCHEMA}.listings.id", index=True)
    version: int
    action: str = Field(max_length=32)
    actor_organization_id: UUID | None = None
    actor_key_id: UUID | None = None
    actor_roles: list[str] = Field(sa_column=Column(ARRAY(String(16)), nullable=False))
    changes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    reason: str | None = Field(default=None, sa_type=Text)
    at: datetime = created_now()


class ChangeEvent(SQLModel, table=True):
    """The outbox: written in the same transaction as the change it describes.

    The feed's cursor is (xid, seq); only events of transactions older than every transaction
    still in flight are handed out, so a late commit of an earlier sequence is never skipped.
    """

    __tablename__ = "change_events"
    __table_args__ = (
        Index("ix_listing_change_events_xid_seq", "xid", "seq"),
        {"schema": SCHEMA},
    )

    seq: int | None = Field(
        default=None, sa_column=Column(BigInteger, Identity(), primary_key=True)
    )
    xid: int | None = Field(
        default=None,
        sa_column=Column(Xid8(), nullable=False, server_default=text("pg_current_xact_id()")),
    )
    entity: str = Field(max_length=16)
    entity_id: UUID
    type: str = Field(max_length=40)
    version: int
    payload: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    occurred_at: datetime = created_now()


class IdempotencyRecord(SQLModel, table=True):
    """The first response to a create with an `Idempotency-Key`, replayed for repeats."""

    __tablename__ = "idempotency_keys"
    __table_args__ = {"schema": SCHEMA}

    organization_id: UUID = Field(primary_key=True)
    scope: str = Field(primary_key=True, max_length=64)
    key: str = Field(primary_key=True, max_length=200)
    request_hash: str = Field(max_length=64)
    status_code: int
    response: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    created_at: datetime = created_now()


class Inquiry(SQLModel, table=True):
    """One buyer's thread on one listing."""

    __tablename__ = "inquiries"
    __table_args__ = (UniqueConstraint("listing_id", "buyer_id"), {"schema": SCHEMA})

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    listing_id: UUID = Field(foreign_key=f"{SCHEMA}.listings.id", index=True)
    buyer_id: UUID = Field(foreign_key=f"{SCHEMA}.organizations.id")
    status: str = Field(default="open", max_length=16)
    created_at: datetime = created_now()
    updated_at: datetime = created_now()


class InquiryMessage(SQLModel, table=True):
    __tablename__ = "inquiry_messages"
    __table_args__ = {"schema": SCHEMA}

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    inquiry_id: UUID = Field(foreign_key=f"{SCHEMA}.inquiries.id", index=True)
    author_id: UUID = Field(foreign_key=f"{SCHEMA}.organizations.id")
    body: str = Field(sa_type=Text)
    offer_amount: Decimal | None = Field(default=None, sa_type=Numeric(18, 2))
    created_at: datetime = created_now()


class Deal(SQLModel, table=True):
    """A closed deal; announced publicly, its amount unless the seller keeps it confidential."""

    __tablename__ = "deals"
    __table_args__ = {"schema": SCHEMA}

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    listing_id: UUID = Field(foreign_key=f"{SCHEMA}.listings.id", unique=True)
    inquiry_id: UUID | None = Field(default=None, foreign_key=f"{SCHEMA}.inquiries.id")
    seller_id: UUID = Field(foreign_key=f"{SCHEMA}.organizations.id", index=True)
    buyer_id: UUID | None = Field(default=None, foreign_key=f"{SCHEMA}.organizations.id")
    buyer_name: str = Field(max_length=200)
    transaction_type: str = Field(max_length=32)
    asset_kind: str = Field(max_length=32)
    amount: Decimal | None = Field(default=None, sa_type=Numeric(18, 2))
    confidential: bool = False
    closed_on: date = Field(sa_type=Date, index=True)
    region: str = Field(max_length=6)
    created_at: datetime = created_now()


class ImportJob(SQLModel, table=True):
    __tablename__ = "imports"
    __table_args__ = {"schema": SCHEMA}

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    organization_id: UUID = Field(foreign_key=f"{SCHEMA}.organizations.id", index=True)
    format: str = Field(max_length=8)
    status: str = Field(max_length=16)
    mode: str = Field(default="draft", max_length=8)
    # The text encoding the file was read in: utf-8 (with or without a BOM) or gb18030.
    encoding: str | None = Field(default=None, max_length=16)
    total_rows: int = 0
    created_count: int = 0
    updated_count: int = 0
    unchanged_count: int = 0
    rejected_count: int = 0
    created_at: datetime = created_now()
    finished_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class ImportRejection(SQLModel, table=True):
    __tablename__ = "import_rejections"
    __table_args__ = {"schema": SCHEMA}

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    import_id: UUID = Field(foreign_key=f"{SCHEMA}.imports.id", index=True)
    line: int
    field: str = Field(max_length=200)
    rule: str = Field(max_length=64)
    message: str = Field(sa_type=Text)


class ImportRowResult(SQLModel, table=True):
    """What an import did with each row it applied: created, updated (and which fields) or
    unchanged. Rejected rows are ImportRejection's."""

    __tablename__ = "import_rows"
    __table_args__ = {"schema": SCHEMA}

    import_id: UUID = Field(foreign_key=f"{SCHEMA}.imports.id", primary_key=True)
    line: int = Field(primary_key=True)
    outcome: str = Field(max_length=16)
    changed: list[str] = Field(sa_column=Column(ARRAY(Text), nullable=False))


class OpenLicenceDeclaration(SQLModel, table=True):
    """What a declaration of open licence adds to its listing (type `open_license`): the
    co-holders' consent, and the terms outside CNIPA's guidance, flagged to the reviewer."""

    __tablename__ = "open_licence_declarations"
    __table_args__ = {"schema": SCHEMA}

    listing_id: UUID = Field(foreign_key=f"{SCHEMA}.listings.id", primary_key=True)
    asset_id: UUID = Field(foreign_key=f"{SCHEMA}.assets.id", index=True)
    consents: list[dict[str, Any]] = Field(sa_column=Column(JSONB, nullable=False))
    flags: list[dict[str, Any]] = Field(sa_column=Column(JSONB, nullable=False))
    created_at: datetime = created_now()


class OpenLicence(SQLModel, table=True):
    """A licence taken on an open licence declaration by the licensee's written notice; it
    exists from the notice and must be filed for recordal by `recordal_due_on`."""

    __tablename__ = "open_licences"
    __table_args__ = (
        Index(
            "ix_listing_open_licences_awaiting",
            "recordal_due_on",
            postgresql_where=text("status = 'awaiting_recordal'"),
        ),
        {"schema": SCHEMA},
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    declaration_id: UUID = Field(foreign_key=f"{SCHEMA}.listings.id", index=True)
    asset_id: UUID = Field(foreign_key=f"{SCHEMA}.assets.id")
    licensor_id: UUID = Field(foreign_key=f"{SCHEMA}.organizations.id", index=True)
    licensee_id: UUID = Field(foreign_key=f"{SCHEMA}.organizations.id", index=True)
    notice: str = Field(sa_type=Text)
    noticed_at: datetime = Field(sa_type=DateTime(timezone=True))
    # The declared terms as they stood when the licence was taken (OpenLicenseTerms).
    terms: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    starts_on: date = Field(sa_type=Date)
    ends_on: date = Field(sa_type=Date)
    recordal_due_on: date = Field(sa_type=Date)
    status: str = Field(default="awaiting_recordal", max_length=24)
    recordal_number: str | None = Field(default=None, max_length=100)
    recorded_on: date | None = Field(default=None, sa_type=Date)
    recorded_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    # The reminder days already sent (of open_licence_reminder_days).
    reminders_sent: list[int] = Field(default_factory=list, sa_column=Column(JSONB, nullable=False))
    version: int = 1
    created_at: datetime = created_now()
    updated_at: datetime = created_now()


# ----------------------------------------------------------------------------- financing


class FinancingRequest(SQLModel, table=True):
    """A holder asks for a loan against one right or a portfolio (issue 22). Its figures are
    the parties' and the operators' only."""

    __tablename__ = "financing_requests"
    __table_args__ = {"schema": SCHEMA}

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    borrower_id: UUID = Field(foreign_key=f"{SCHEMA}.organizations.id", index=True)
    amount: Decimal = Field(sa_type=Numeric(18, 2))
    currency: str = Field(default="CNY", max_length=3)
    term_months: int
    starts_on: date = Field(sa_type=Date)
    ends_on: date = Field(sa_type=Date)
    purpose: str = Field(sa_type=Text)
    # The co-holders who join the borrower as pledgors ({name, uscc}).
    pledgors: list[dict[str, Any]] = Field(sa_column=Column(JSONB, nullable=False))
    status: str = Field(default="open", max_length=16, index=True)
    version: int = 1
    created_at: datetime = created_now()
    updated_at: datetime = created_now()


class FinancingRequestAsset(SQLModel, table=True):
    """A right pledged by a request, with the annual fee's next due day the holder states."""

    __tablename__ = "financing_request_assets"
    __table_args__ = {"schema": SCHEMA}

    request_id: UUID = Field(foreign_key=f"{SCHEMA}.financing_requests.id", primary_key=True)
    asset_id: UUID = Field(foreign_key=f"{SCHEMA}.assets.id", primary_key=True, index=True)
    position: int
    annual_fee_due_on: date | None = Field(default=None, sa_type=Date)


class ValuationReport(SQLModel, table=True):
    """A valuation of a right, attached to a request as a record (the document by its hash)."""

    __tablename__ = "valuation_reports"
    __table_args__ = {"schema": SCHEMA}

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    request_id: UUID = Field(foreign_key=f"{SCHEMA}.financing_requests.id", index=True)
    asset_id: UUID = Field(foreign_key=f"{SCHEMA}.assets.id")
    agency: str = Field(max_length=200)
    agency_id: UUID | None = Field(default=None, foreign_key=f"{SCHEMA}.organizations.id")
    method: str = Field(max_length=16)
    value: Decimal = Field(sa_type=Numeric(18, 2))
    valued_on: date = Field(sa_type=Date)
    document_sha256: str = Field(max_length=64)
    created_at: datetime = created_now()


class FinancingOffer(SQLModel, table=True):
    """A verified bank's offer on a request; at most one offer of a request is accepted (the
    partial unique index is the last word when two accepts race)."""

    __tablename__ = "financing_offers"
    __table_args__ = (
        Index(
            "ux_listing_financing_offers_accepted",
            "request_id",
            unique=True,
            postgresql_where=text("status = 'accepted'"),
        ),
        {"schema": SCHEMA},
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    request_id: UUID = Field(foreign_key=f"{SCHEMA}.financing_requests.id", index=True)
    bank_id: UUID = Field(foreign_key=f"{SCHEMA}.organizations.id", index=True)
    amount: Decimal = Field(sa_type=Numeric(18, 2))
    rate: Decimal = Field(sa_type=Numeric(9, 6))
    term_months: int
    conditions: str = Field(sa_type=Text)
    status: str = Field(default="open", max_length=16)
    version: int = 1
    created_at: datetime = created_now()
    updated_at: datetime = created_now()


class Pledge(SQLModel, table=True):
    """The pledge of an accepted offer, in the registry's states: filed -> registered ->
    changed -> cancelled (repaid, enforced, released, void)."""

    __tablename__ = "pledges"
    __table_args__ = {"schema": SCHEMA}

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    request_id: UUID = Field(foreign_key=f"{SCHEMA}.financing_requests.id", unique=True)
    offer_id: UUID = Field(foreign_key=f"{SCHEMA}.financing_offers.id", unique=True)
    pledgor_id: UUID = Field(foreign_key=f"{SCHEMA}.organizations.id", index=True)
    pledgee_id: UUID = Field(foreign_key=f"{SCHEMA}.organizations.id", index=True)
    amount: Decimal = Field(sa_type=Numeric(18, 2))
    rate: Decimal = Field(sa_type=Numeric(9, 6))
    term_months: int
    starts_on: date = Field(sa_type=Date)
    ends_on: date = Field(sa_type=Date)
    status: str = Field(default="filed", max_length=16, index=True)
    filed_on: date = Field(sa_type=Date)
    registration_number: str | None = Field(default=None, max_length=100)
    registered_on: date | None = Field(default=None, sa_type=Date)
    cancelled_on: date | None = Field(default=None, sa_type=Date)
    cancellation_reason: str | None = Field(default=None, max_length=16)
    interest_paid: Decimal | None = Field(default=None, sa_type=Numeric(18, 2))
    version: int = 1
    created_at: datetime = created_now()
    updated_at: datetime = created_now()


class PledgeHistory(SQLModel, table=True):
    """The audit trail of a pledge: every transition, who made it, what changed."""

    __tablename__ = "pledge_history"
    __table_args__ = {"schema": SCHEMA}

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    pledge_id: UUID = Field(foreign_key=f"{SCHEMA}.pledges.id", index=True)
    version: int
    action: str = Field(max_length=32)
    actor_organization_id: UUID | None = None
    actor_key_id: UUID | None = None
    actor_roles: list[str] = Field(sa_column=Column(ARRAY(String(16)), nullable=False))
    changes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    at: datetime = created_now()


class PledgeConsent(SQLModel, table=True):
    """The pledgee's recorded consent to an assignment or exclusive licence of a pledged right
    (Civil Code Art. 444)."""

    __tablename__ = "pledge_consents"
    __table_args__ = {"schema": SCHEMA}

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    pledge_id: UUID = Field(foreign_key=f"{SCHEMA}.pledges.id", index=True)
    transaction_type: str = Field(max_length=32)
    note: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = created_now()


class AssetHold(SQLModel, table=True):
    """A court's preservation of a right, or the suspension of its procedures (an ownership
    dispute), as an operator records it from the registry: no pledge meanwhile."""

    __tablename__ = "asset_holds"
    __table_args__ = {"schema": SCHEMA}

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    asset_id: UUID = Field(foreign_key=f"{SCHEMA}.assets.id", index=True)
    type: str = Field(max_length=16)
    reference: str = Field(max_length=200)
    since: date = Field(sa_type=Date)
    lifted_on: date | None = Field(default=None, sa_type=Date)
    created_at: datetime = created_now()
