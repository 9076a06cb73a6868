"""Listing authenticates keys from its own tables (the other services ask it, see shared.auth)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from services.listing.models import Organization
from shared.auth import Principal, environment_principal, hashes_match, key_prefix
from shared.contracts.auth import Role
from shared.db import statement_connection
from shared.settings import Settings

# The key and its organisation in one statement: the caller's organisation is needed by most
# writes, and a second query per request costs as much as the first.
KEY_WITH_ORGANIZATION = """
SELECT k.id AS key_id, k.key_hash, k.roles, k.revoked_at, o.id, o.name, o.kind, o.uscc,
       o.region, o.code, o.verified, o.version, o.created_at, o.updated_at
FROM listing.api_keys AS k
LEFT JOIN listing.organizations AS o ON o.id = k.organization_id
WHERE k.prefix = $1
"""
ORGANIZATION_COLUMNS = (
    "id",
    "name",
    "kind",
    "uscc",
    "region",
    "code",
    "verified",
    "version",
    "created_at",
    "updated_at",
)


@dataclass(frozen=True)
class KeyHolder(Principal):
    """A principal of an organisation's key, with the organisation as read with the key."""

    organization: Organization | None = field(default=None, compare=False, repr=False)


@dataclass
class DatabaseAuthenticator:
    settings: Settings
    engine: AsyncEngine

    async def authenticate(self, plaintext: str) -> Principal | None:
        """The caller a key stands for, or None when unknown, revoked or malformed."""
        known = environment_principal(self.settings, plaintext)
        if known is not None:
            return known
        prefix = key_prefix(plaintext)
        if prefix is None:
            return None
        # Uncached on purpose: a revoked key stops working at once on the system of record.
        async with statement_connection(self.engine) as connection:
            row = await connection.fetchrow(KEY_WITH_ORGANIZATION, prefix)
        if row is None or row["revoked_at"] is not None:
            return None
        if not hashes_match(row["key_hash"], plaintext):
            return None
        roles: frozenset[Role] = frozenset(row["roles"])
        organization = (
            Organization(**{c: row[c] for c in ORGANIZATION_COLUMNS})
            if row["id"] is not None
            else None
        )
        return KeyHolder(
            roles=roles,
            organization_id=organization.id if organization else None,
            key_id=row["key_id"],
            organization=organization,
        )
