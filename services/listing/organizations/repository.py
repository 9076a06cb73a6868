"""Every SQL query of the listing service. Repositories flush; they never commit."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.listing.models import ApiKey, Organization


class OrganizationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

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

    async def of_organization(self, organization_id: UUID) -> list[ApiKey]:
        result = await self.session.execute(
            select(ApiKey)
            .where(col(ApiKey.organization_id) == organization_id)
            .order_by(col(ApiKey.created_at), col(ApiKey.id))
        )
        return list(result.scalars())

    async def add(self, key: ApiKey) -> ApiKey:
        self.session.add(key)
        await self.session.flush()
        return key

    async def revoke(self, key_id: UUID, at: datetime) -> None:
        await self.session.execute(
            update(ApiKey)
            .where(col(ApiKey.id) == key_id, col(ApiKey.revoked_at).is_(None))
            .values(revoked_at=at)
        )
