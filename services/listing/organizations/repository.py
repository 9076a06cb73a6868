"""Queries of organisations and their API keys (the key lookup of every request too).
Repositories flush; they never commit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from sqlalchemy import func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlmodel import col

from services.listing.models import ApiKey, Organization
from shared.auth import AUTH_CHANNEL
from shared.contracts.auth import Role
from shared.db import by_creation, statement_connection


@dataclass(frozen=True)
class OrganizationFilters:
    """What the operators' list of organisations selects; None selects everything.
    `region_prefix`: the leading digits an organisation's region code must start with;
    `name`: a substring of the name, matched case-insensitively."""

    verified: bool | None = None
    kind: str | None = None
    region_prefix: str | None = None
    name: str | None = None


class OrganizationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def page(
        self, filters: OrganizationFilters, *, after: tuple[datetime, UUID] | None, limit: int
    ) -> list[Organization]:
        """Organisations in sign-up order (oldest first: the verification queue's order),
        after the keyset position `after`."""
        query = (
            select(Organization)
            .order_by(col(Organization.created_at), col(Organization.id))
            .limit(limit)
        )
        if filters.verified is not None:
            query = query.where(col(Organization.verified) == filters.verified)
        if filters.kind is not None:
            query = query.where(col(Organization.kind) == filters.kind)
        if filters.region_prefix:
            query = query.where(
                col(Organization.region).startswith(filters.region_prefix, autoescape=True)
            )
        if filters.name:
            query = query.where(col(Organization.name).icontains(filters.name, autoescape=True))
        if after is not None:
            query = query.where(tuple_(col(Organization.created_at), col(Organization.id)) > after)
        return list((await self.session.execute(query)).scalars())

    async def get(self, organization_id: UUID) -> Organization | None:
        return await self.session.get(Organization, organization_id)

    async def by_uscc(self, uscc: str) -> Organization | None:
        result = await self.session.execute(
            select(Organization).where(col(Organization.uscc) == uscc)
        )
        return result.scalar_one_or_none()

    async def add(self, organization: Organization) -> Organization:
        self.session.add(organization)
        await self.session.flush()
        return organization


class ApiKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_prefix(self, prefix: str) -> ApiKey | None:
        result = await self.session.execute(select(ApiKey).where(col(ApiKey.prefix) == prefix))
        return result.scalar_one_or_none()

    async def get(self, key_id: UUID) -> ApiKey | None:
        return await self.session.get(ApiKey, key_id)

    async def of_organization(
        self, organization_id: UUID, after: tuple[datetime, UUID] | None, limit: int
    ) -> list[ApiKey]:
        """Oldest first."""
        query = select(ApiKey).where(col(ApiKey.organization_id) == organization_id)
        query = by_creation(query, ApiKey, after, newest_first=False).limit(limit)
        return list((await self.session.execute(query)).scalars())

    async def add(self, key: ApiKey) -> ApiKey:
        self.session.add(key)
        await self.session.flush()
        return key

    async def revoke(self, key_id: UUID, at: datetime) -> None:
        """Revoke the key, and tell the other services' key caches at the commit."""
        await self.session.execute(
            update(ApiKey)
            .where(col(ApiKey.id) == key_id, col(ApiKey.revoked_at).is_(None))
            .values(revoked_at=at)
        )
        await self.session.execute(select(func.pg_notify(AUTH_CHANNEL, str(key_id))))


@dataclass(frozen=True, slots=True)
class StoredKey:
    """An API key as authentication reads it, with its organisation."""

    id: UUID
    key_hash: str
    roles: frozenset[Role]
    revoked_at: datetime | None
    organization: Organization | None


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


async def stored_key(engine: AsyncEngine, prefix: str) -> StoredKey | None:
    """The key of `prefix`. On every request: one statement straight to the driver, outside any
    transaction (docs/DECISIONS.md, Foundation, "SQL lives in repositories")."""
    async with statement_connection(engine) as connection:
        row = await connection.fetchrow(KEY_WITH_ORGANIZATION, prefix)
    if row is None:
        return None
    organization = (
        Organization(**{c: row[c] for c in ORGANIZATION_COLUMNS}) if row["id"] is not None else None
    )
    return StoredKey(
        row["key_id"], row["key_hash"], frozenset(row["roles"]), row["revoked_at"], organization
    )
