"""match queue: listings waiting to be matched against the demands

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 02:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "match_queue",
        sa.Column("listing_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("listing_id"),
        schema="matching",
    )
    # Wakes the match worker when the indexer commits new listings (it sleeps otherwise).
    op.execute(
        """
        CREATE FUNCTION matching.notify_match_queue() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('matching_queue', '');
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER match_queue_notify AFTER INSERT ON matching.match_queue "
        "FOR EACH STATEMENT EXECUTE FUNCTION matching.notify_match_queue()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER match_queue_notify ON matching.match_queue")
    op.execute("DROP FUNCTION matching.notify_match_queue()")
    op.drop_table("match_queue", schema="matching")
