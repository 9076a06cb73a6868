"""partners inbox subscriptions deliveries

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 23:56:26.325716
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "allowed_targets",
        sa.Column("pattern", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pattern"),
        schema="gateway",
    )
    op.create_table(
        "feed_cursors",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("cursor", sa.String(length=48), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
        schema="gateway",
    )
    op.create_table(
        "inbound_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("partner_code", sa.String(length=32), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source_version", sa.Integer(), nullable=False),
        sa.Column("offer_key", sa.String(length=250), nullable=False),
        sa.Column("document", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("partner_code", "event_id"),
        schema="gateway",
    )
    op.create_index(
        "ix_gateway_inbound_events_due",
        "inbound_events",
        ["status", "next_attempt_at"],
        unique=False,
        schema="gateway",
    )
    op.create_index(
        "ix_gateway_inbound_events_offer",
        "inbound_events",
        ["offer_key", "source_version"],
        unique=False,
        schema="gateway",
    )
    op.create_table(
        "partners",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("region", sa.String(length=6), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("inbound_secret", sa.String(length=200), nullable=False),
        sa.Column("adapter", sa.String(length=32), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=True),
        sa.Column("pull_url", sa.String(length=2000), nullable=True),
        sa.Column("pull_interval_seconds", sa.Integer(), nullable=False),
        sa.Column("pull_cursor", sa.String(length=500), nullable=True),
        sa.Column("pull_etag", sa.String(length=500), nullable=True),
        sa.Column("pull_next_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pull_failures", sa.Integer(), nullable=False),
        sa.Column("pull_lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pull_last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("code"),
        schema="gateway",
    )
    op.create_table(
        "rejected_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("partner_code", sa.String(length=32), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=True),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("errors", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("payload_excerpt", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        schema="gateway",
    )
    op.create_index(
        op.f("ix_gateway_rejected_events_partner_code"),
        "rejected_events",
        ["partner_code"],
        unique=False,
        schema="gateway",
    )
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=True),
        sa.Column("partner_code", sa.String(length=32), nullable=True),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("event_types", sa.ARRAY(sa.String(length=40)), nullable=False),
        sa.Column("filter", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("secret", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        schema="gateway",
    )
    op.create_index(
        op.f("ix_gateway_subscriptions_organization_id"),
        "subscriptions",
        ["organization_id"],
        unique=False,
        schema="gateway",
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("subscription_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column("ordering_key", sa.String(length=100), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["gateway.subscriptions.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("subscription_id", "event_id"),
        schema="gateway",
    )
    op.create_index(
        "ix_gateway_deliveries_due",
        "deliveries",
        ["status", "next_attempt_at"],
        unique=False,
        schema="gateway",
    )
    op.create_index(
        "ix_gateway_deliveries_order",
        "deliveries",
        ["subscription_id", "ordering_key", "seq"],
        unique=False,
        schema="gateway",
    )
    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("delivery_id", sa.Uuid(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["gateway.deliveries.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        schema="gateway",
    )
    op.create_index(
        op.f("ix_gateway_delivery_attempts_delivery_id"),
        "delivery_attempts",
        ["delivery_id"],
        unique=False,
        schema="gateway",
    )
    # Wake the workers of every replica when work commits (NOTIFY is delivered at commit).
    for table, channel in (
        ("inbound_events", "gateway_inbox"),
        ("deliveries", "gateway_deliveries"),
    ):
        op.execute(
            f"""
            CREATE FUNCTION gateway.notify_{table}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_notify('{channel}', '');
                RETURN NULL;
            END $$
            """
        )
        op.execute(
            f"CREATE TRIGGER {table}_notify AFTER INSERT ON gateway.{table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION gateway.notify_{table}()"
        )


def downgrade() -> None:
    for table in ("inbound_events", "deliveries"):
        op.execute(f"DROP TRIGGER {table}_notify ON gateway.{table}")
        op.execute(f"DROP FUNCTION gateway.notify_{table}()")
    op.drop_index(
        op.f("ix_gateway_delivery_attempts_delivery_id"),
        table_name="delivery_attempts",
        schema="gateway",
    )
    op.drop_table("delivery_attempts", schema="gateway")
    op.drop_index("ix_gateway_deliveries_order", table_name="deliveries", schema="gateway")
    op.drop_index("ix_gateway_deliveries_due", table_name="deliveries", schema="gateway")
    op.drop_table("deliveries", schema="gateway")
    op.drop_index(
        op.f("ix_gateway_subscriptions_organization_id"),
        table_name="subscriptions",
        schema="gateway",
    )
    op.drop_table("subscriptions", schema="gateway")
    op.drop_index(
        op.f("ix_gateway_rejected_events_partner_code"),
        table_name="rejected_events",
        schema="gateway",
    )
    op.drop_table("rejected_events", schema="gateway")
    op.drop_table("partners", schema="gateway")
    op.drop_index("ix_gateway_inbound_events_offer", table_name="inbound_events", schema="gateway")
    op.drop_index("ix_gateway_inbound_events_due", table_name="inbound_events", schema="gateway")
    op.drop_table("inbound_events", schema="gateway")
    op.drop_table("feed_cursors", schema="gateway")
    op.drop_table("allowed_targets", schema="gateway")
