"""deliveries by subscription

An index on (subscription_id, seq): a subscription's newest deliveries, which its deliveries
list shows and retention keeps, were found by reading every delivery (0.47 s at 200,000).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 14:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_gateway_deliveries_subscription_seq",
        "deliveries",
        ["subscription_id", "seq"],
        schema="gateway",
    )


def downgrade() -> None:
    op.drop_index(
        "ix_gateway_deliveries_subscription_seq", table_name="deliveries", schema="gateway"
    )
