"""Listing's retention job: Idempotency-Key records past their window go, a batch at a time
(what goes: `retention.rules`; the loop, lease and metrics: `shared.retention`)."""

from __future__ import annotations

from datetime import datetime

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.listing.retention import repository
from services.listing.retention.rules import TABLES, ListingRetention
from shared.retention import retention_workers
from shared.workers import Worker

__all__ = ["ListingRetentionJob", "listing_retention"]


class ListingRetentionJob:
    tables: tuple[str, ...] = TABLES

    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], policy: ListingRetention
    ) -> None:
        self.sessionmaker = sessionmaker
        self.policy = policy
        self.batch = policy.batch
        self.cutoff: datetime | None = None

    async def begin(self, now: datetime) -> None:
        self.cutoff = self.policy.cutoff(now)

    async def step(self) -> dict[str, int]:
        assert self.cutoff is not None, "begin() a round first"
        async with self.sessionmaker() as session, session.begin():
            keys = await repository.delete_idempotency_keys(session, self.cutoff, self.batch)
        return {"idempotency_keys": keys}


def listing_retention(app: FastAPI) -> list[Worker]:
    job = ListingRetentionJob(
        app.state.sessionmaker, ListingRetention.from_settings(app.state.settings)
    )
    return retention_workers(app, "listing", job)
