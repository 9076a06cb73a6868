"""Readiness of matching and the gateway (shared/health.py) in process, calling listing's real
app through httpx's ASGI transport."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from shared.settings import Settings
from support import assert_problem, free_port, serve_in_process


async def test_matching_is_ready_with_database_meilisearch_and_listing(
    settings: Settings, listing_app: FastAPI
) -> None:
    from services.matching.app import create_app

    mounts = {"http://listing.test": httpx.ASGITransport(app=listing_app)}
    async with serve_in_process(create_app(settings, mounts), "http://matching.test") as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "listing": "ok", "meilisearch": "ok"}
        # And what this replica does of the background work (every worker is named).
        workers = ready.json()["workers"]
        assert {"indexer", "matching"} <= set(workers), workers
        assert set(workers.values()) <= {"leader", "standby", "running", "backing off"}
        assert (await client.get("/metrics")).status_code == 200


async def test_gateway_readiness_names_the_service_it_cannot_reach(
    settings: Settings, listing_app: FastAPI
) -> None:
    from services.gateway.app import create_app

    unreachable = settings.model_copy(update={"matching_url": f"http://127.0.0.1:{free_port()}"})
    mounts = {"http://listing.test": httpx.ASGITransport(app=listing_app)}
    async with serve_in_process(create_app(unreachable, mounts), "http://gateway.test") as client:
        body = assert_problem(await client.get("/readyz"), 503)
        assert body["checks"] == {
            "database": "ok",
            "listing": "ok",
            "matching": "the matching service is unreachable (ConnectError)",
        }
        assert "matching" in str(body["detail"])
