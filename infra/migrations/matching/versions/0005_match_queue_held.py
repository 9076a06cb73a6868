"""match queue: rows held by the indexer page that queued them until that page commits

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 19:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The indexer page that queued the row and has not committed yet; NULL: claimable.
    op.add_column("match_queue", sa.Column("held_by", sa.Text(), nullable=True), schema="matching")
    # The claim reads claimable rows only, oldest first; the release finds a page's rows.
    op.create_index(
        "ix_matching_match_queue_claimable",
        "match_queue",
        ["enqueued_at"],
        schema="matching",
        postgresql_where=sa.text("held_by IS NULL"),
    )
    op.create_index(
        "ix_matching_match_queue_held_by",
        "match_queue",
        ["held_by"],
        schema="matching",
        postgresql_where=sa.text("held_by IS NOT NULL"),
    )
    # The statements that make rows claimable notify the worker themselves (the repository's
    # enqueue and release): a statement-level insert trigger cannot tell a held insert (nothing
    # to claim) from a claimable one.
    op.execute("DROP TRIGGER match_queue_notify ON matching.match_queue")
    op.execute("DROP FUNCTION matching.notify_match_queue()")


def downgrade() -> None:
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
    op.execute("DELETE FROM matching.match_queue WHERE held_by IS NOT NULL")
    op.drop_index("ix_matching_match_queue_held_by", table_name="match_queue", schema="matching")
    op.drop_index("ix_matching_match_queue_claimable", table_name="match_queue", schema="matching")
    op.drop_column("match_queue", "held_by", schema="matching")
