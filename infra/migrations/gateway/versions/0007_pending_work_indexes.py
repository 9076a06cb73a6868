"""claims read pending work through partial indexes

The webhook delivery claim found "an earlier undelivered delivery on the same ordering key"
through (subscription_id, ordering_key, seq), which holds every delivery ever queued: each claim
walked the delivered history of every key (0.9 s a claim at 13,000 rows, 2.9 s at 23,500), and
after statistics taken while little was pending it picked a nested loop that ran for minutes.
The partner inbox's claim did the same over (offer_key, source_version). Each queue now has an
index of its pending rows only, shaped like the claim's per-key order, which replaces the full
one (nothing else reads it: retention and the deliveries list go by (subscription_id, seq)).
The inbox's "newest applied version of this offer" gets an index of applied rows only.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 19:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = sa.text("status = 'pending'")
APPLIED = sa.text("status = 'applied'")


def upgrade() -> None:
    op.create_index(
        "ix_gateway_deliveries_pending",
        "deliveries",
        ["subscription_id", "ordering_key", "seq"],
        schema="gateway",
        postgresql_where=PENDING,
    )
    op.drop_index("ix_gateway_deliveries_order", table_name="deliveries", schema="gateway")
    op.create_index(
        "ix_gateway_inbound_events_pending",
        "inbound_events",
        ["offer_key", "source_version", "id"],
        schema="gateway",
        postgresql_where=PENDING,
    )
    op.create_index(
        "ix_gateway_inbound_events_applied",
        "inbound_events",
        ["offer_key", "source_version"],
        schema="gateway",
        postgresql_where=APPLIED,
    )
    op.drop_index("ix_gateway_inbound_events_offer", table_name="inbound_events", schema="gateway")


def downgrade() -> None:
    op.create_index(
        "ix_gateway_inbound_events_offer",
        "inbound_events",
        ["offer_key", "source_version"],
        schema="gateway",
    )
    op.drop_index(
        "ix_gateway_inbound_events_applied", table_name="inbound_events", schema="gateway"
    )
    op.drop_index(
        "ix_gateway_inbound_events_pending", table_name="inbound_events", schema="gateway"
    )
    op.create_index(
        "ix_gateway_deliveries_order",
        "deliveries",
        ["subscription_id", "ordering_key", "seq"],
        schema="gateway",
    )
    op.drop_index("ix_gateway_deliveries_pending", table_name="deliveries", schema="gateway")
