"""The listing service app: create_app() and its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from infra.migrations import head_revision
from services.listing.assets.router import router as assets_router
from services.listing.auth import DatabaseAuthenticator
from services.listing.deals.router import router as deals_router
from services.listing.feed.router import router as feed_router
from services.listing.financing.router import pledges_router
from services.listing.financing.router import router as financing_router
from services.listing.imports.router import router as imports_router
from services.listing.incentives.router import router as incentives_router
from services.listing.listings.router import router as listings_router
from services.listing.listings.workers import expiry_workers
from services.listing.models import SCHEMA
from services.listing.offers.router import asset_offers_router
from services.listing.offers.router import router as offers_router
from services.listing.open_licences.router import licences_router
from services.listing.open_licences.router import router as open_licences_router
from services.listing.open_licences.workers import reminder_workers
from services.listing.organizations.router import router as organizations_router
from services.listing.retention.workers import listing_retention
from shared.app import build_app, open_database
from shared.notifier import FeedNotifier
from shared.settings import Settings, get_settings
from shared.workers import run_workers


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    async with open_database(app, settings, schema=SCHEMA, expected_revision=head_revision(SCHEMA)):
        app.state.authenticator = DatabaseAuthenticator(settings, app.state.engine)
        app.state.feed_notifier = FeedNotifier(
            settings.direct_database_url(), channel="listing_changes"
        )
        await app.state.feed_notifier.start()
        try:
            workers = [*expiry_workers(app), *listing_retention(app), *reminder_workers(app)]
            async with run_workers(app, workers):
                yield
        finally:
            await app.state.feed_notifier.stop()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    return build_app(
        name="listing",
        settings=settings,
        lifespan=lifespan,
        routers=[
            organizations_router,
            assets_router,
            listings_router,
            deals_router,
            feed_router,
            imports_router,
            offers_router,
            asset_offers_router,
            incentives_router,
            open_licences_router,
            licences_router,
            financing_router,
            pledges_router,
        ],
        description="System of record: organisations, API keys, IP assets, listings, deals, "
        "and the change feed.",
        body_limits=[
            ("/v1/imports", settings.max_import_bytes),
            ("/v1/open-licences/gazette", settings.max_import_bytes),
        ],
    )
