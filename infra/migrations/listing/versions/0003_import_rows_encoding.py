"""import rows and encoding

An import records what it did with each row it applied (created, updated with the fields it
changed, unchanged) and the text encoding it read the file in.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08 10:00:00
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
    op.add_column(
        "imports",
        sa.Column("encoding", sa.String(length=16), nullable=True),
        schema="listing",
    )
    op.create_table(
        "import_rows",
        sa.Column("import_id", sa.Uuid(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("changed", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.ForeignKeyConstraint(["import_id"], ["listing.imports.id"]),
        sa.PrimaryKeyConstraint("import_id", "line"),
        schema="listing",
    )


def downgrade() -> None:
    op.drop_table("import_rows", schema="listing")
    op.drop_column("imports", "encoding", schema="listing")
