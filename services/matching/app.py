"""The matching service app: create_app() and its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from infra.migrations import head_revision
from services.matching.models import SCHEMA
from shared.app import build_app, open_database, open_upstreams
from shared.health import meilisearch_check
from shared.settings import Settings, get_settings


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    async with (
        open_database(app, settings, schema=SCHEMA, expected_revision=head_revision(SCHEMA)),
        open_upstreams(app, settings, {"listing": settings.listing_url}) as client,
    ):
        app.state.readiness_checks["meilisearch"] = meilisearch_check(client, settings.meili_url)
        yield


def create_app(
    settings: Settings | None = None,
    http_mounts: Mapping[str, httpx.AsyncBaseTransport] | None = None,
) -> FastAPI:
    return build_app(
        name="matching",
        settings=settings or get_settings(),
        lifespan=lifespan,
        routers=[],
        http_mounts=http_mounts,
        description="The catalogue index in Meilisearch, catalogue search, buyer demands and "
        "explained matches.",
    )
