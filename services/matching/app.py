"""The matching service app: create_app() and its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from infra.migrations import head_revision
from services.matching.demands import queue
from services.matching.demands.matcher import Matcher
from services.matching.demands.router import router as demands_router
from services.matching.demands.workers import match_workers
from services.matching.indexer import Indexer
from services.matching.meili import MeiliClient
from services.matching.models import SCHEMA
from services.matching.nodes import NodePool, replica_nodes
from services.matching.search.router import router as search_router
from services.matching.status import router as status_router
from services.matching.workers import indexer_workers
from shared.app import build_app, open_database, open_upstreams
from shared.health import meilisearch_check
from shared.notifier import FeedNotifier
from shared.settings import Settings, get_settings
from shared.workers import run_workers


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    async with (
        open_database(app, settings, schema=SCHEMA, expected_revision=head_revision(SCHEMA)),
        open_upstreams(app, settings, {"listing": settings.listing_url}) as client,
    ):
        app.state.readiness_checks["meilisearch"] = meilisearch_check(client, settings.meili_url)
        app.state.meili = MeiliClient(
            client, settings.meili_url, settings.meili_master_key.get_secret_value()
        )
        app.state.index_uid = settings.meili_index
        app.state.matcher = Matcher(app.state.meili, settings.meili_index)
        app.state.indexer = Indexer(
            settings=settings,
            sessionmaker=app.state.sessionmaker,
            http=client,
            meili=app.state.meili,
            index_uid=settings.meili_index,
            # Queued held as the indexer sends a page, released in its commit; the match
            # worker searches the demands.
            match_queue=queue.IndexerQueue(),
        )
        # Read replicas of the catalogue index, each fed by an indexer of its own.
        app.state.replica_nodes = replica_nodes(settings, app.state.sessionmaker, client)
        for node in app.state.replica_nodes:
            app.state.readiness_checks[f"meilisearch@{node.name}"] = meilisearch_check(
                client, node.url
            )
            app.state.readiness_optional.add(f"meilisearch@{node.name}")  # searches skip it
        app.state.search_nodes = NodePool(
            app.state.sessionmaker,
            app.state.indexer,
            app.state.replica_nodes,
            settings.meili_replica_max_lag_seconds,
        )
        app.state.feed_notifier = FeedNotifier(
            settings.direct_database_url(), channel="matching_changes"
        )
        await app.state.feed_notifier.start()
        app.state.match_worker = queue.MatchWorker(
            sessionmaker=app.state.sessionmaker,
            matcher=app.state.matcher,
            indexer_backlog=app.state.indexer.backlog,
        )
        try:
            async with run_workers(app, [*indexer_workers(app), *match_workers(app)]):
                yield
        finally:
            await app.state.feed_notifier.stop()


def create_app(
    settings: Settings | None = None,
    http_mounts: Mapping[str, httpx.AsyncBaseTransport] | None = None,
) -> FastAPI:
    return build_app(
        name="matching",
        settings=settings or get_settings(),
        lifespan=lifespan,
        routers=[search_router, demands_router, status_router],
        http_mounts=http_mounts,
        description="The catalogue index in Meilisearch, catalogue search, buyer demands and "
        "explained matches.",
    )
