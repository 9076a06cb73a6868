"""the delivery claim walks each subscription's due deliveries, not every pending one

The claim read every pending delivery to find each ordering key's first (0007): flat as the
delivered history grows, but linear in the backlog (59.5 ms a claim at 30,000 pending, and the
worker claims whenever a slot frees, so a backlog drained at ~210 deliveries/s). It now takes,
per active subscription, its oldest due deliveries in order, skipping those with an earlier
pending one on their key (a probe of ix_gateway_deliveries_pending), up to the subscription's
free slots; the slots in use are counted over the leased pending rows only.

(status, next_attempt_at) goes: once autovacuum's statistics say few rows are pending (a long
history, a small backlog) the planner read the claim's every pending row through it, in each
probe too (1.7 s a claim at 1,000,000 delivered rows). Retention, its other reader, finds the
finished rows through an index of those only.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 22:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


DONE = sa.text("status IN ('delivered', 'failed')")


def upgrade() -> None:
    op.create_index(
        "ix_gateway_deliveries_pending_due",
        "deliveries",
        ["subscription_id", "next_attempt_at", "seq"],
        schema="gateway",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_gateway_deliveries_leased",
        "deliveries",
        ["subscription_id", "lease_until"],
        schema="gateway",
        postgresql_where=sa.text("status = 'pending' AND lease_until IS NOT NULL"),
    )
    op.create_index(
        "ix_gateway_deliveries_done",
        "deliveries",
        ["next_attempt_at"],
        schema="gateway",
        postgresql_where=DONE,
    )
    op.drop_index("ix_gateway_deliveries_due", table_name="deliveries", schema="gateway")


def downgrade() -> None:
    op.create_index(
        "ix_gateway_deliveries_due", "deliveries", ["status", "next_attempt_at"], schema="gateway"
    )
    op.drop_index("ix_gateway_deliveries_done", table_name="deliveries", schema="gateway")
    op.drop_index("ix_gateway_deliveries_leased", table_name="deliveries", schema="gateway")
    op.drop_index("ix_gateway_deliveries_pending_due", table_name="deliveries", schema="gateway")
