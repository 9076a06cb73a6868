"""deleted subscriptions

A deleted subscription used to stay listed as `disabled`; it is `deleted` now and hidden from
the API. Every `disabled` row was one a user deleted (nothing else disabled them).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 13:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("UPDATE gateway.subscriptions SET status = 'deleted' WHERE status = 'disabled'")


def downgrade() -> None:
    op.execute("UPDATE gateway.subscriptions SET status = 'disabled' WHERE status = 'deleted'")
