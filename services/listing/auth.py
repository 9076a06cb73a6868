"""Listing authenticates keys from its own tables (the other services ask it, see shared.auth)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from services.listing.models import Organization
from services.listing.organizations.repository import stored_key
from shared.auth import Principal, environment_principal, hashes_match, key_prefix
from shared.settings import Settings


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
        key = await stored_key(self.engine, prefix)
        if key is None or key.revoked_at is not None:
            return None
        if not hashes_match(key.key_hash, plaintext):
            return None
        return KeyHolder(
            roles=key.roles,
            organization_id=key.organization.id if key.organization else None,
            key_id=key.id,
            organization=key.organization,
        )
