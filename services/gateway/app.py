"""The gateway app: create_app() and its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from infra.migrations import head_revision
from services.gateway.catalogue.engine import CatalogueEngine
from services.gateway.catalogue.router import router as catalogue_router
from services.gateway.models import SCHEMA
from services.gateway.partners.router import router as partners_router
from services.gateway.partners.workers import inbox_workers, pull_workers
from services.gateway.repository import SharedBuckets
from services.gateway.retention.workers import gateway_retention
from services.gateway.stored_secrets import seal_stored_in_clear
from services.gateway.web.router import router as web_router
from services.gateway.webhooks.router import router as webhooks_router
from services.gateway.webhooks.workers import delivery_workers, fanout_workers
from shared.app import build_app, open_database, open_upstreams
from shared.encryption import secret_box
from shared.ratelimit import WINDOW_SECONDS
from shared.settings import Settings, get_settings
from shared.workers import Worker, run_workers

# The gateway's background workers (shared/workers.py runs them).
WORKERS: list[Callable[[FastAPI], list[Worker]]] = [
    inbox_workers,
    pull_workers,
    fanout_workers,
    delivery_workers,
    gateway_retention,
]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    upstreams = {"listing": settings.listing_url, "matching": settings.matching_url}
    async with (
        open_database(app, settings, schema=SCHEMA, expected_revision=head_revision(SCHEMA)),
        open_upstreams(app, settings, upstreams) as client,
        CatalogueEngine(settings, client) as catalogue,
    ):
        app.state.catalogue = catalogue
        # Rate limits shared by every replica (shared/ratelimit.py).
        app.state.rate_buckets = SharedBuckets(app.state.engine, WINDOW_SECONDS)
        # Refuses to start without IPX_SECRET_KEYS: the stored signing secrets are sealed.
        await seal_stored_in_clear(app.state.sessionmaker, secret_box(settings.secret_keys))
        workers = [w for make in WORKERS for w in make(app)] if settings.run_workers else []
        async with run_workers(app, workers):
            yield


def create_app(
    settings: Settings | None = None,
    http_mounts: Mapping[str, httpx.AsyncBaseTransport] | None = None,
) -> FastAPI:
    return build_app(
        name="gateway",
        settings=settings or get_settings(),
        lifespan=lifespan,
        routers=[catalogue_router, partners_router, webhooks_router, web_router],
        http_mounts=http_mounts,
        rate_limited_paths=["/v1/catalogue"],
        description="The public edge: the open catalogue, partner exchanges syncing in, "
        "outbound webhooks.",
    )
