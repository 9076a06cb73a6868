"""indexer demands matches

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 23:45:01.297139
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
        "demands",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("kinds", sa.ARRAY(sa.String(length=32)), nullable=False),
        sa.Column("ipc_prefixes", sa.ARRAY(sa.String(length=32)), nullable=False),
        sa.Column("transaction_types", sa.ARRAY(sa.String(length=32)), nullable=False),
        sa.Column("regions", sa.ARRAY(sa.String(length=6)), nullable=False),
        sa.Column("budget_max", sa.Numeric(precision=18, scale=2), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        schema="matching",
    )
    op.create_index(
        op.f("ix_matching_demands_organization_id"),
        "demands",
        ["organization_id"],
        unique=False,
        schema="matching",
    )
    op.create_table(
        "indexed_listings",
        sa.Column("listing_id", sa.Uuid(), nullable=False),
        sa.Column("asset_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("searchable", sa.Boolean(), nullable=False),
        sa.Column("indexed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("listing_id"),
        schema="matching",
    )
    op.create_table(
        "indexer_state",
        sa.Column("index_uid", sa.String(length=64), nullable=False),
        sa.Column("cursor", sa.String(length=48), nullable=False),
        sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("index_uid"),
        schema="matching",
    )
    op.create_table(
        "match_events",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("xid", Xid8(), server_default=sa.text("pg_current_xact_id()"), nullable=False),
        sa.Column("demand_id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("listing_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        schema="matching",
    )
    op.create_index(
        "ix_matching_match_events_xid_seq",
        "match_events",
        ["xid", "seq"],
        unique=False,
        schema="matching",
    )
    op.create_table(
        "matches",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("demand_id", sa.Uuid(), nullable=False),
        sa.Column("listing_id", sa.Uuid(), nullable=False),
        sa.Column("asset_id", sa.Uuid(), nullable=False),
        sa.Column("listing_version", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("reasons", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["demand_id"],
            ["matching.demands.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("demand_id", "listing_id"),
        schema="matching",
    )
    op.create_index(
        op.f("ix_matching_matches_demand_id"),
        "matches",
        ["demand_id"],
        unique=False,
        schema="matching",
    )
    op.create_index(
        op.f("ix_matching_matches_listing_id"),
        "matches",
        ["listing_id"],
        unique=False,
        schema="matching",
    )
    op.execute(
        """
        CREATE FUNCTION matching.notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('matching_changes', '');
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER match_events_notify AFTER INSERT ON matching.match_events "
        "FOR EACH STATEMENT EXECUTE FUNCTION matching.notify_change()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER match_events_notify ON matching.match_events")
    op.execute("DROP FUNCTION matching.notify_change()")
    op.drop_index(op.f("ix_matching_matches_listing_id"), table_name="matches", schema="matching")
    op.drop_index(op.f("ix_matching_matches_demand_id"), table_name="matches", schema="matching")
    op.drop_table("matches", schema="matching")
    op.drop_index("ix_matching_match_events_xid_seq", table_name="match_events", schema="matching")
    op.drop_table("match_events", schema="matching")
    op.drop_table("indexer_state", schema="matching")
    op.drop_table("indexed_listings", schema="matching")
    op.drop_index(
        op.f("ix_matching_demands_organization_id"), table_name="demands", schema="matching"
    )
    op.drop_table("demands", schema="matching")
