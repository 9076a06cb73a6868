"""allow-list entries scoped to one tenant and one port

An entry used to name a host for every tenant on every port (allowing 127.0.0.1 opened all of
its ports to every organisation's webhooks). An entry now belongs to one organisation (its
webhook subscriptions) or one partner (its pull feed) and names a port. The old entries are
carried over for the URLs that use them today: each active subscription's and each partner
pull URL's host and port that an old pattern matched literally (a name that only resolved to an
allowed address is not carried: its operator allows it again). Old entries are then dropped.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 16:10:00
"""

import ipaddress
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import urlsplit

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _matches(pattern: str, host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if "/" in pattern:
        return address is not None and address in ipaddress.ip_network(pattern, strict=False)
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    try:
        return address is not None and address == ipaddress.ip_address(pattern)
    except ValueError:
        return host == pattern


def _host_and_port(url: str) -> tuple[str, int] | None:
    try:
        parts = urlsplit(url)
        host, port = (parts.hostname or "").rstrip("."), parts.port
    except ValueError:
        return None
    if not host:
        return None
    return host, port or (443 if parts.scheme == "https" else 80)


def upgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT pattern FROM gateway.allowed_targets"))
    patterns = [row[0] for row in rows]
    users: list[tuple[str, str | None, object]] = [
        ("organization", str(org), url)
        for org, url in bind.execute(
            sa.text(
                "SELECT organization_id, url FROM gateway.subscriptions "
                "WHERE status = 'active' AND organization_id IS NOT NULL"
            )
        )
    ]
    users += [
        ("partner", code, url)
        for code, url in bind.execute(
            sa.text("SELECT code, pull_url FROM gateway.partners WHERE pull_url IS NOT NULL")
        )
    ]
    op.drop_table("allowed_targets", schema="gateway")
    table = op.create_table(
        "allowed_targets",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("organization_id", UUID(as_uuid=True), nullable=True),
        sa.Column("partner_code", sa.String(32), nullable=True),
        sa.Column("pattern", sa.String(200), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(organization_id IS NULL) <> (partner_code IS NULL)", name="allowed_targets_one_tenant"
        ),
        schema="gateway",
    )
    op.create_index(
        "ux_gateway_allowed_targets_organization",
        "allowed_targets",
        ["organization_id", "pattern", "port"],
        unique=True,
        schema="gateway",
        postgresql_where=sa.text("organization_id IS NOT NULL"),
    )
    op.create_index(
        "ux_gateway_allowed_targets_partner",
        "allowed_targets",
        ["partner_code", "pattern", "port"],
        unique=True,
        schema="gateway",
        postgresql_where=sa.text("partner_code IS NOT NULL"),
    )
    carried: set[tuple[str, str, str, int]] = set()
    for tenant, owner, url in users:
        found = _host_and_port(str(url))
        if found is None:
            continue
        host, port = found
        for pattern in patterns:
            if _matches(pattern, host.lower()):
                carried.add((tenant, str(owner), pattern, port))
    now = datetime.now(UTC)
    if carried:
        op.bulk_insert(
            table,
            [
                {
                    "id": uuid.uuid4(),
                    "organization_id": uuid.UUID(owner) if tenant == "organization" else None,
                    "partner_code": owner if tenant == "partner" else None,
                    "pattern": pattern,
                    "port": port,
                    "created_at": now,
                }
                for tenant, owner, pattern, port in sorted(carried)
            ],
        )


def downgrade() -> None:
    # Back to one unscoped entry per pattern: wider than what was allowed, as before 0006.
    rows = op.get_bind().execute(sa.text("SELECT DISTINCT pattern FROM gateway.allowed_targets"))
    patterns = [row[0] for row in rows]
    op.drop_table("allowed_targets", schema="gateway")
    table = op.create_table(
        "allowed_targets",
        sa.Column("pattern", sa.String(200), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        schema="gateway",
    )
    if patterns:
        op.bulk_insert(table, [{"pattern": p, "created_at": datetime.now(UTC)} for p in patterns])
