"""demands keep what was read from their text; buyers read their own match feed

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 10:00:00.000000
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
    # Demands stored before this revision are read again when they are next matched ({}).
    op.add_column(
        "demands",
        sa.Column(
            "reading",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=False,
            server_default=sa.text("'{}'::jsonb"),
        ),
        schema="matching",
    )
    # A buyer's match feed: its organisation's events in cursor order.
    op.create_index(
        "ix_matching_match_events_org_xid_seq",
        "match_events",
        ["organization_id", "xid", "seq"],
        schema="matching",
    )


def downgrade() -> None:
    op.drop_index("ix_matching_match_events_org_xid_seq", "match_events", schema="matching")
    op.drop_column("demands", "reading", schema="matching")
