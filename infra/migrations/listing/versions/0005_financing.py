"""financing

IP-backed financing (issue 22): financing requests against pledged rights with their
valuation reports, banks' offers (one accepted per request), pledges in the registry's states
with their audit history and the pledgee's consents, and the holds (preservation, suspension)
that bar a pledge.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 22:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "listing"


def _index(table: str, column: str) -> None:
    op.create_index(op.f(f"ix_{S}_{table}_{column}"), table, [column], unique=False, schema=S)


def upgrade() -> None:
    jsonb = postgresql.JSONB(astext_type=sa.Text())
    op.create_table(
        "financing_requests",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("borrower_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.Numeric(18, 2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("term_months", sa.Integer(), nullable=False),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("ends_on", sa.Date(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("pledgors", jsonb, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["borrower_id"], [f"{S}.organizations.id"]),
        sa.PrimaryKeyConstraint("id"),
        schema=S,
    )
    _index("financing_requests", "borrower_id")
    _index("financing_requests", "status")
    op.create_table(
        "financing_request_assets",
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("asset_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("annual_fee_due_on", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(["request_id"], [f"{S}.financing_requests.id"]),
        sa.ForeignKeyConstraint(["asset_id"], [f"{S}.assets.id"]),
        sa.PrimaryKeyConstraint("request_id", "asset_id"),
        schema=S,
    )
    _index("financing_request_assets", "asset_id")
    op.create_table(
        "valuation_reports",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("asset_id", sa.Uuid(), nullable=False),
        sa.Column("agency", sa.String(length=200), nullable=False),
        sa.Column("agency_id", sa.Uuid(), nullable=True),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Numeric(18, 2), nullable=False),
        sa.Column("valued_on", sa.Date(), nullable=False),
        sa.Column("document_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], [f"{S}.financing_requests.id"]),
        sa.ForeignKeyConstraint(["asset_id"], [f"{S}.assets.id"]),
        sa.ForeignKeyConstraint(["agency_id"], [f"{S}.organizations.id"]),
        sa.PrimaryKeyConstraint("id"),
        schema=S,
    )
    _index("valuation_reports", "request_id")
    op.create_table(
        "financing_offers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("bank_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.Numeric(18, 2), nullable=False),
        sa.Column("rate", sa.Numeric(9, 6), nullable=False),
        sa.Column("term_months", sa.Integer(), nullable=False),
        sa.Column("conditions", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], [f"{S}.financing_requests.id"]),
        sa.ForeignKeyConstraint(["bank_id"], [f"{S}.organizations.id"]),
        sa.PrimaryKeyConstraint("id"),
        schema=S,
    )
    _index("financing_offers", "request_id")
    _index("financing_offers", "bank_id")
    op.create_index(
        "ux_listing_financing_offers_accepted",
        "financing_offers",
        ["request_id"],
        unique=True,
        schema=S,
        postgresql_where=sa.text("status = 'accepted'"),
    )
    op.create_table(
        "pledges",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("offer_id", sa.Uuid(), nullable=False),
        sa.Column("pledgor_id", sa.Uuid(), nullable=False),
        sa.Column("pledgee_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.Numeric(18, 2), nullable=False),
        sa.Column("rate", sa.Numeric(9, 6), nullable=False),
        sa.Column("term_months", sa.Integer(), nullable=False),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("ends_on", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("filed_on", sa.Date(), nullable=False),
        sa.Column("registration_number", sa.String(length=100), nullable=True),
        sa.Column("registered_on", sa.Date(), nullable=True),
        sa.Column("cancelled_on", sa.Date(), nullable=True),
        sa.Column("cancellation_reason", sa.String(length=16), nullable=True),
        sa.Column("interest_paid", sa.Numeric(18, 2), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], [f"{S}.financing_requests.id"]),
        sa.ForeignKeyConstraint(["offer_id"], [f"{S}.financing_offers.id"]),
        sa.ForeignKeyConstraint(["pledgor_id"], [f"{S}.organizations.id"]),
        sa.ForeignKeyConstraint(["pledgee_id"], [f"{S}.organizations.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("request_id"),
        sa.UniqueConstraint("offer_id"),
        schema=S,
    )
    _index("pledges", "pledgor_id")
    _index("pledges", "pledgee_id")
    _index("pledges", "status")
    op.create_table(
        "pledge_history",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("pledge_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("actor_organization_id", sa.Uuid(), nullable=True),
        sa.Column("actor_key_id", sa.Uuid(), nullable=True),
        sa.Column("actor_roles", postgresql.ARRAY(sa.String(length=16)), nullable=False),
        sa.Column("changes", jsonb, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["pledge_id"], [f"{S}.pledges.id"]),
        sa.PrimaryKeyConstraint("id"),
        schema=S,
    )
    _index("pledge_history", "pledge_id")
    op.create_table(
        "pledge_consents",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("pledge_id", sa.Uuid(), nullable=False),
        sa.Column("transaction_type", sa.String(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["pledge_id"], [f"{S}.pledges.id"]),
        sa.PrimaryKeyConstraint("id"),
        schema=S,
    )
    _index("pledge_consents", "pledge_id")
    op.create_table(
        "asset_holds",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("asset_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=False),
        sa.Column("since", sa.Date(), nullable=False),
        sa.Column("lifted_on", sa.Date(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["asset_id"], [f"{S}.assets.id"]),
        sa.PrimaryKeyConstraint("id"),
        schema=S,
    )
    _index("asset_holds", "asset_id")


def downgrade() -> None:
    for table in (
        "asset_holds",
        "pledge_consents",
        "pledge_history",
        "pledges",
        "financing_offers",
        "valuation_reports",
        "financing_request_assets",
        "financing_requests",
    ):
        op.drop_table(table, schema=S)
