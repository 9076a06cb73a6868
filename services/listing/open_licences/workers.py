"""Recordal deadline reminders: `licence.recordal_due` events (webhooks to both parties) at the
configured days before a licence's recordal is due (30 and 7 by default).

Safe with several replicas: a round locks the licences it reminds of (rows another replica
holds are skipped) and marks the reminders sent in the same transaction as their events.
"""

from __future__ import annotations

import logging
from datetime import date

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.listing.dependencies import today_in_china
from services.listing.open_licences.service import Policy, send_reminders
from shared.settings import Settings
from shared.workers import Worker

logger = logging.getLogger("ipx.listing.open_licences")


async def remind(
    sessionmaker: async_sessionmaker[AsyncSession], *, today: date, policy: Policy
) -> int:
    """Every reminder due `today`, in batches of one transaction each; returns how many."""
    total = 0
    while True:
        async with sessionmaker() as session, session.begin():
            sent = await send_reminders(session, today, policy)
        total += sent
        if sent == 0:
            return total


def reminder_workers(app: FastAPI) -> list[Worker]:
    """Every IPX_OPEN_LICENCE_REMINDER_INTERVAL_SECONDS."""
    settings: Settings = app.state.settings
    policy = Policy.of(settings)

    async def step() -> int:
        count = await remind(app.state.sessionmaker, today=today_in_china(), policy=policy)
        if count:
            logger.info("reminded the parties of %d recordal deadlines", count)
        return 0

    return [
        Worker(
            "open-licence-reminders",
            step,
            interval=settings.open_licence_reminder_interval_seconds,
        )
    ]
