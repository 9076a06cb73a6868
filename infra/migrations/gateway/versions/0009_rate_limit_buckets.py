"""rate limits shared by every gateway replica

Token buckets were kept per process, so N replicas behind a balancer gave a client N times its
limit (issue 21: 1,300 anonymous requests over two gateways got no 429 where 700 to one got 23).
A replica now takes tokens from a bucket per client in this table, a share of the limit at a
time (shared/ratelimit.py). UNLOGGED: rate-limit state needs no WAL nor crash safety (a crash
empties it: every client starts with a full bucket), and replicas write it on the primary only.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 22:50:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE UNLOGGED TABLE gateway.rate_limit_buckets (
            client text PRIMARY KEY,
            tokens double precision NOT NULL,
            granted integer NOT NULL,
            updated_at timestamptz NOT NULL
        )
        """
    )
    op.create_index(
        "ix_gateway_rate_limit_buckets_updated",
        "rate_limit_buckets",
        ["updated_at"],
        schema="gateway",
    )


def downgrade() -> None:
    op.drop_table("rate_limit_buckets", schema="gateway")
