"""open licences

A declaration of open licence is a listing of type `open_license` with its typed terms
(`listings.open_license`) and a declaration row (the co-holders' consent, the terms flagged to
the reviewer); licences taken on it are `open_licences`, with their recordal deadline.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 22:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "listings",
        sa.Column("open_license", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        schema="listing",
    )
    op.create_table(
        "open_licence_declarations",
        sa.Column("listing_id", sa.Uuid(), nullable=False),
        sa.Column("asset_id", sa.Uuid(), nullable=False),
        sa.Column("consents", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("flags", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["listing_id"], ["listing.listings.id"]),
        sa.ForeignKeyConstraint(["asset_id"], ["listing.assets.id"]),
        sa.PrimaryKeyConstraint("listing_id"),
        schema="listing",
    )
    op.create_index(
        op.f("ix_listing_open_licence_declarations_asset_id"),
        "open_licence_declarations",
        ["asset_id"],
        unique=False,
        schema="listing",
    )
    op.create_table(
        "open_licences",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("declaration_id", sa.Uuid(), nullable=False),
        sa.Column("asset_id", sa.Uuid(), nullable=False),
        sa.Column("licensor_id", sa.Uuid(), nullable=False),
        sa.Column("licensee_id", sa.Uuid(), nullable=False),
        sa.Column("notice", sa.Text(), nullable=False),
        sa.Column("noticed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("terms", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("ends_on", sa.Date(), nullable=False),
        sa.Column("recordal_due_on", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("recordal_number", sa.String(length=100), nullable=True),
        sa.Column("recorded_on", sa.Date(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reminders_sent", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["declaration_id"], ["listing.listings.id"]),
        sa.ForeignKeyConstraint(["asset_id"], ["listing.assets.id"]),
        sa.ForeignKeyConstraint(["licensor_id"], ["listing.organizations.id"]),
        sa.ForeignKeyConstraint(["licensee_id"], ["listing.organizations.id"]),
        sa.PrimaryKeyConstraint("id"),
        schema="listing",
    )
    for column in ("declaration_id", "licensor_id", "licensee_id"):
        op.create_index(
            op.f(f"ix_listing_open_licences_{column}"),
            "open_licences",
            [column],
            unique=False,
            schema="listing",
        )
    op.create_index(
        "ix_listing_open_licences_awaiting",
        "open_licences",
        ["recordal_due_on"],
        unique=False,
        schema="listing",
        postgresql_where=sa.text("status = 'awaiting_recordal'"),
    )


def downgrade() -> None:
    op.drop_table("open_licences", schema="listing")
    op.drop_table("open_licence_declarations", schema="listing")
    op.drop_column("listings", "open_license", schema="listing")
