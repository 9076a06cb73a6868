"""assets listings feed deals imports

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 23:20:29.182191
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from shared.db import Xid8

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "change_events",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("xid", Xid8(), server_default=sa.text("pg_current_xact_id()"), nullable=False),
        sa.Column("entity", sa.String(length=16), nullable=False),
        sa.Column("entity_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        schema="listing",
    )
    op.create_index(
        "ix_listing_change_events_xid_seq",
        "change_events",
        ["xid", "seq"],
        unique=False,
        schema="listing",
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("organization_id", "scope", "key"),
        schema="listing",
    )
    op.create_table(
        "assets",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("identifier", sa.String(length=200), nullable=False),
        sa.Column("publication_number", sa.String(length=40), nullable=True),
        sa.Column("title_zh", sa.Text(), nullable=True),
        sa.Column("title_en", sa.Text(), nullable=True),
        sa.Column("abstract_zh", sa.Text(), nullable=True),
        sa.Column("abstract_en", sa.Text(), nullable=True),
        sa.Column("classifications", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("holders", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("region", sa.String(length=6), nullable=True),
        sa.Column("filed_on", sa.Date(), nullable=True),
        sa.Column("granted_on", sa.Date(), nullable=True),
        sa.Column("expires_on", sa.Date(), nullable=True),
        sa.Column("legal_status", sa.String(length=16), nullable=False),
        sa.Column("encumbrances", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("registered_by", sa.Uuid(), nullable=True),
        sa.Column("needs_review", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["registered_by"],
            ["listing.organizations.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "identifier"),
        schema="listing",
    )
    op.create_table(
        "imports",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("mode", sa.String(length=8), nullable=False),
        sa.Column("total_rows", sa.Integer(), nullable=False),
        sa.Column("created_count", sa.Integer(), nullable=False),
        sa.Column("updated_count", sa.Integer(), nullable=False),
        sa.Column("unchanged_count", sa.Integer(), nullable=False),
        sa.Column("rejected_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["listing.organizations.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        schema="listing",
    )
    op.create_index(
        op.f("ix_listing_imports_organization_id"),
        "imports",
        ["organization_id"],
        unique=False,
        schema="listing",
    )
    op.create_table(
        "import_rejections",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("import_id", sa.Uuid(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("field", sa.String(length=200), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["import_id"],
            ["listing.imports.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        schema="listing",
    )
    op.create_index(
        op.f("ix_listing_import_rejections_import_id"),
        "import_rejections",
        ["import_id"],
        unique=False,
        schema="listing",
    )
    op.create_table(
        "listings",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("asset_id", sa.Uuid(), nullable=False),
        sa.Column("seller_id", sa.Uuid(), nullable=False),
        sa.Column("exchange", sa.String(length=32), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("source_url", sa.String(length=2000), nullable=True),
        sa.Column("source_version", sa.Integer(), nullable=True),
        sa.Column("source_updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("seller_name", sa.String(length=200), nullable=True),
        sa.Column("transaction_type", sa.String(length=32), nullable=False),
        sa.Column("price_mode", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.Numeric(precision=18, scale=2), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("royalty_rate", sa.Numeric(precision=9, scale=6), nullable=True),
        sa.Column("term_months", sa.Integer(), nullable=True),
        sa.Column("territory", sa.String(length=100), nullable=True),
        sa.Column("field_of_use", sa.String(length=500), nullable=True),
        sa.Column("pledge_disclosed", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("rejection_reason", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["asset_id"],
            ["listing.assets.id"],
        ),
        sa.ForeignKeyConstraint(
            ["seller_id"],
            ["listing.organizations.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("exchange", "external_id"),
        schema="listing",
    )
    op.create_index(
        op.f("ix_listing_listings_asset_id"),
        "listings",
        ["asset_id"],
        unique=False,
        schema="listing",
    )
    op.create_index(
        "ix_listing_listings_seller_status",
        "listings",
        ["seller_id", "status"],
        unique=False,
        schema="listing",
    )
    op.create_index(
        op.f("ix_listing_listings_status"), "listings", ["status"], unique=False, schema="listing"
    )
    op.create_table(
        "inquiries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("listing_id", sa.Uuid(), nullable=False),
        sa.Column("buyer_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["buyer_id"],
            ["listing.organizations.id"],
        ),
        sa.ForeignKeyConstraint(
            ["listing_id"],
            ["listing.listings.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("listing_id", "buyer_id"),
        schema="listing",
    )
    op.create_index(
        op.f("ix_listing_inquiries_listing_id"),
        "inquiries",
        ["listing_id"],
        unique=False,
        schema="listing",
    )
    op.create_table(
        "listing_history",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("listing_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("actor_organization_id", sa.Uuid(), nullable=True),
        sa.Column("actor_key_id", sa.Uuid(), nullable=True),
        sa.Column("actor_roles", sa.ARRAY(sa.String(length=16)), nullable=False),
        sa.Column("changes", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["listing_id"],
            ["listing.listings.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        schema="listing",
    )
    op.create_index(
        op.f("ix_listing_listing_history_listing_id"),
        "listing_history",
        ["listing_id"],
        unique=False,
        schema="listing",
    )
    op.create_table(
        "deals",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("listing_id", sa.Uuid(), nullable=False),
        sa.Column("inquiry_id", sa.Uuid(), nullable=True),
        sa.Column("seller_id", sa.Uuid(), nullable=False),
        sa.Column("buyer_id", sa.Uuid(), nullable=True),
        sa.Column("buyer_name", sa.String(length=200), nullable=False),
        sa.Column("transaction_type", sa.String(length=32), nullable=False),
        sa.Column("asset_kind", sa.String(length=32), nullable=False),
        sa.Column("amount", sa.Numeric(precision=18, scale=2), nullable=True),
        sa.Column("confidential", sa.Boolean(), nullable=False),
        sa.Column("closed_on", sa.Date(), nullable=False),
        sa.Column("region", sa.String(length=6), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["buyer_id"],
            ["listing.organizations.id"],
        ),
        sa.ForeignKeyConstraint(
            ["inquiry_id"],
            ["listing.inquiries.id"],
        ),
        sa.ForeignKeyConstraint(
            ["listing_id"],
            ["listing.listings.id"],
        ),
        sa.ForeignKeyConstraint(
            ["seller_id"],
            ["listing.organizations.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("listing_id"),
        schema="listing",
    )
    op.create_index(
        op.f("ix_listing_deals_closed_on"), "deals", ["closed_on"], unique=False, schema="listing"
    )
    op.create_index(
        op.f("ix_listing_deals_seller_id"), "deals", ["seller_id"], unique=False, schema="listing"
    )
    op.create_table(
        "inquiry_messages",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("inquiry_id", sa.Uuid(), nullable=False),
        sa.Column("author_id", sa.Uuid(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("offer_amount", sa.Numeric(precision=18, scale=2), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["author_id"],
            ["listing.organizations.id"],
        ),
        sa.ForeignKeyConstraint(
            ["inquiry_id"],
            ["listing.inquiries.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        schema="listing",
    )
    op.create_index(
        op.f("ix_listing_inquiry_messages_inquiry_id"),
        "inquiry_messages",
        ["inquiry_id"],
        unique=False,
        schema="listing",
    )
    op.add_column(
        "organizations",
        sa.Column("code", sa.String(length=32), nullable=True),
        schema="listing",
    )
    op.create_unique_constraint(
        "organizations_code_key", "organizations", ["code"], schema="listing"
    )
    # Wake long-polling feed readers when events commit (NOTIFY is delivered at commit).
    op.execute(
        """
        CREATE FUNCTION listing.notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('listing_changes', '');
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER change_events_notify AFTER INSERT ON listing.change_events "
        "FOR EACH STATEMENT EXECUTE FUNCTION listing.notify_change()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER change_events_notify ON listing.change_events")
    op.execute("DROP FUNCTION listing.notify_change()")
    op.drop_constraint("organizations_code_key", "organizations", schema="listing", type_="unique")
    op.drop_column("organizations", "code", schema="listing")
    op.drop_index(
        op.f("ix_listing_inquiry_messages_inquiry_id"),
        table_name="inquiry_messages",
        schema="listing",
    )
    op.drop_table("inquiry_messages", schema="listing")
    op.drop_index(op.f("ix_listing_deals_seller_id"), table_name="deals", schema="listing")
    op.drop_index(op.f("ix_listing_deals_closed_on"), table_name="deals", schema="listing")
    op.drop_table("deals", schema="listing")
    op.drop_index(
        op.f("ix_listing_listing_history_listing_id"),
        table_name="listing_history",
        schema="listing",
    )
    op.drop_table("listing_history", schema="listing")
    op.drop_index(op.f("ix_listing_inquiries_listing_id"), table_name="inquiries", schema="listing")
    op.drop_table("inquiries", schema="listing")
    op.drop_index(op.f("ix_listing_listings_status"), table_name="listings", schema="listing")
    op.drop_index("ix_listing_listings_seller_status", table_name="listings", schema="listing")
    op.drop_index(op.f("ix_listing_listings_asset_id"), table_name="listings", schema="listing")
    op.drop_table("listings", schema="listing")
    op.drop_index(
        op.f("ix_listing_import_rejections_import_id"),
        table_name="import_rejections",
        schema="listing",
    )
    op.drop_table("import_rejections", schema="listing")
    op.drop_index(
        op.f("ix_listing_imports_organization_id"), table_name="imports", schema="listing"
    )
    op.drop_table("imports", schema="listing")
    op.drop_table("assets", schema="listing")
    op.drop_table("idempotency_keys", schema="listing")
    op.drop_index("ix_listing_change_events_xid_seq", table_name="change_events", schema="listing")
    op.drop_table("change_events", schema="listing")
