"""Recordal deadline reminders: `licence.recordal_due` events (webhooks to both parties) at the
configured days before a licence's recordal is due (30 and 7 by default); and declarations
whose declared term has ended, expired.

Safe with several replicas: a round locks the licences it reminds of (rows another replica
holds are skipped) and marks the reminders sent in the same transaction as their events.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import date

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.listing.dependencies import today_in_china
from services.listing.listings import service as listings
from services.listing.listings.workers import SYSTEM
from services.listing.open_licences import repository
from services.listing.open_licences.service import Policy, send_reminders
from shared.errors import Conflict
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


async def expire_ended(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    today: date,
    catalogue_url: str,
    batch: int = 500,
) -> int:
    """Declarations whose declared term has ended leave the market (`listing.expired`, as a
    listing whose right ended); licences taken on them keep their own dates. Each in its own
    short transaction; one another replica expired first is skipped."""
    expired = 0
    while True:
        async with sessionmaker() as session:
            ids = await repository.ended_declarations(session, today, batch)
        for listing_id in ids:
            async with sessionmaker() as session, session.begin():
                ctx = listings.Context(
                    session=session,
                    principal=SYSTEM,
                    organization=None,
                    today=today,
                    catalogue_url=catalogue_url,
                )
                with contextlib.suppress(Conflict):
                    await listings.transition(
                        ctx,
                        listing_id,
                        "expire",
                        on_behalf=True,
                        reason="the declared licence term has ended",
                    )
                    expired += 1
        if len(ids) < batch:
            return expired


def reminder_workers(app: FastAPI) -> list[Worker]:
    """Every IPX_OPEN_LICENCE_REMINDER_INTERVAL_SECONDS: the recordal reminders due, and the
    declarations whose term has ended expired."""
    settings: Settings = app.state.settings
    policy = Policy.of(settings)

    async def step() -> int:
        today = today_in_china()
        count = await remind(app.state.sessionmaker, today=today, policy=policy)
        if count:
            logger.info("reminded the parties of %d recordal deadlines", count)
        ended = await expire_ended(
            app.state.sessionmaker, today=today, catalogue_url=settings.gateway_url
        )
        if ended:
            logger.info("expired %d open licence declarations whose term ended", ended)
        return 0

    return [
        Worker(
            "open-licence-reminders",
            step,
            interval=settings.open_licence_reminder_interval_seconds,
        )
    ]
