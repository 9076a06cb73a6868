"""sealed secrets

Partners' inbound secrets and subscriptions' secrets are stored sealed (`fernet:<token>`,
shared/encryption.py): about 170 characters for a Standard Webhooks secret, so the columns
widen. The gateway seals the secrets stored in clear at its next start (it needs the key, which
a migration does not have).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 14:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (("partners", "inbound_secret"), ("subscriptions", "secret"))


def upgrade() -> None:
    for table, column in COLUMNS:
        op.alter_column(
            table,
            column,
            type_=sa.String(length=400),
            existing_type=sa.String(length=200),
            existing_nullable=False,
            schema="gateway",
        )


def downgrade() -> None:
    for table, column in COLUMNS:
        op.alter_column(
            table,
            column,
            type_=sa.String(length=200),
            existing_type=sa.String(length=400),
            existing_nullable=False,
            schema="gateway",
        )
