"""PostgreSQL or Meilisearch down: /readyz says which, requests get 503, and the service
recovers by itself when the dependency returns (no restart)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from infra.meili import start_meilisearch
from infra.migrations import upgrade_all
from infra.postgres import PostgresHandle, start_postgres
from shared.settings import Settings
from support import assert_problem, free_port, serve_in_process


@pytest.fixture(scope="module")
def own_postgres(test_root: Path) -> Iterator[PostgresHandle]:
    """A cluster of this module's own, so stopping it disturbs no other test."""
    handle = start_postgres(test_root / "pg-recovery", port=free_port(), durable=False)
    upgrade_all(handle.url("ipx"))
    yield handle
    handle.stop()


async def wait_status(client: httpx.AsyncClient, path: str, status: int) -> httpx.Response:
    for _ in range(100):
        response = await client.get(path)
        if response.status_code == status:
            return response
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path} never answered {status}: {response.text}")


async def test_listing_survives_a_postgres_restart(
    own_postgres: PostgresHandle, settings: Settings, test_root: Path
) -> None:
    from services.listing.app import create_app

    own = settings.model_copy(update={"database_url": own_postgres.url("ipx")})
    org = {"name": "华北电力大学（保定）", "kind": "university", "region": "130600"}
    async with serve_in_process(create_app(own), "http://listing.test") as client:
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.post("/v1/organizations", json=org)).status_code == 201

        own_postgres.stop()
        body = assert_problem(await client.get("/readyz"), 503)
        assert body["checks"]["database"].startswith("PostgreSQL is unreachable")
        down = await client.post("/v1/organizations", json=org)
        assert_problem(down, 503)
        assert "database" in down.json()["detail"]

        restarted = start_postgres(test_root / "pg-recovery", port=own_postgres.port, durable=False)
        try:
            await wait_status(client, "/readyz", 200)
            assert (await client.post("/v1/organizations", json=org)).status_code == 201
        finally:
            own_postgres._stop = restarted._stop


async def test_matching_recovers_when_meilisearch_comes_back(
    settings: Settings, listing_app: FastAPI, test_root: Path, meili_key: str
) -> None:
    from services.matching.app import create_app

    port = free_port()
    moved = settings.model_copy(update={"meili_url": f"http://127.0.0.1:{port}"})
    mounts = {"http://listing.test": httpx.ASGITransport(app=listing_app)}
    async with serve_in_process(create_app(moved, mounts), "http://matching.test") as client:
        body = assert_problem(await client.get("/readyz"), 503)
        assert body["checks"]["meilisearch"].startswith("Meilisearch is unreachable")
        meili = start_meilisearch(test_root / "meili-recovery", port=port, master_key=meili_key)
        try:
            ready = await wait_status(client, "/readyz", 200)
            assert ready.json()["checks"]["meilisearch"] == "ok"
        finally:
            meili.stop()
        await wait_status(client, "/readyz", 503)
