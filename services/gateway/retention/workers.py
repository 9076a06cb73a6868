"""The gateway's retention job: finished partner-inbox rows and old webhook deliveries go, a
batch at a time (what goes: `retention.rules`; the loop, lease and metrics:
`shared.retention`)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.gateway.retention import repository
from services.gateway.retention.rules import TABLES, Cutoffs, GatewayRetention
from shared.retention import retention_workers
from shared.workers import Worker

__all__ = ["GatewayRetentionJob", "gateway_retention"]


class GatewayRetentionJob:
    tables: tuple[str, ...] = TABLES

    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], policy: GatewayRetention
    ) -> None:
        self.sessionmaker = sessionmaker
        self.policy = policy
        self.batch = policy.batch
        self.cutoffs: Cutoffs | None = None
        self.floors: dict[UUID, int] = {}

    async def begin(self, now: datetime) -> None:
        self.cutoffs = self.policy.cutoffs(now)
        async with self.sessionmaker() as session:
            self.floors = await repository.delivery_floors(session, self.policy.keep)

    async def step(self) -> dict[str, int]:
        assert self.cutoffs is not None, "begin() a round first"
        async with self.sessionmaker() as session, session.begin():
            inbox = await repository.delete_inbox(session, self.cutoffs.inbox, self.batch)
        async with self.sessionmaker() as session, session.begin():
            deliveries, attempts = await repository.delete_deliveries(
                session, self.cutoffs.deliveries, self.floors, self.batch
            )
        return {"inbound_events": inbox, "deliveries": deliveries, "delivery_attempts": attempts}


def gateway_retention(app: FastAPI) -> list[Worker]:
    job = GatewayRetentionJob(
        app.state.sessionmaker, GatewayRetention.from_settings(app.state.settings)
    )
    return retention_workers(app, "gateway", job)
