"""The gateway app: create_app() and its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from infra.migrations import head_revision
from services.gateway.models import SCHEMA
from shared.app import build_app, open_database, open_upstreams
from shared.settings import Settings, get_settings


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    upstreams = {"listing": settings.listing_url, "matching": settings.matching_url}
    async with (
        open_database(app, settings, schema=SCHEMA, expected_revision=head_revision(SCHEMA)),
        open_upstreams(app, settings, upstreams),
    ):
        yield


def create_app(
    settings: Settings | None = None,
    http_mounts: Mapping[str, httpx.AsyncBaseTransport] | None = None,
) -> FastAPI:
    return build_app(
        name="gateway",
        settings=settings or get_settings(),
        lifespan=lifespan,
        routers=[],
        http_mounts=http_mounts,
        description="The public edge: the open catalogue, partner exchanges syncing in, "
        "outbound webhooks.",
    )
