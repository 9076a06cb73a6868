"""Listing authenticates keys from its own tables (the other services ask it, see shared.auth)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.listing.organizations import service
from shared.auth import Principal
from shared.settings import Settings


@dataclass
class DatabaseAuthenticator:
    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]

    async def authenticate(self, plaintext: str) -> Principal | None:
        # Uncached on purpose: a revoked key stops working at once on the system of record.
        async with self.sessionmaker() as session:
            return await service.authenticate(session, self.settings, plaintext)
