"""Matching and gateway in process, calling listing's real app through httpx's ASGI transport."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from shared.auth import IntrospectingAuthenticator
from shared.errors import ServiceUnavailable
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


async def test_other_services_authenticate_keys_through_listing(
    settings: Settings, listing_app: FastAPI, listing: httpx.AsyncClient
) -> None:
    signed_up = await listing.post(
        "/v1/organizations", json={"name": "燕山大学", "kind": "university", "region": "130300"}
    )
    key = signed_up.json()["api_key"]
    transport = httpx.ASGITransport(app=listing_app)
    async with httpx.AsyncClient(mounts={"http://listing.test": transport}) as client:
        authenticator = IntrospectingAuthenticator(settings, client, ttl=60)
        principal = await authenticator.authenticate(key["key"])
        assert principal is not None and principal.has("admin")
        assert str(principal.organization_id) == signed_up.json()["organization"]["id"]
        assert await authenticator.authenticate("ipx_abcdefabcdef_nothing") is None
        assert await authenticator.authenticate("not-a-key") is None

    down = IntrospectingAuthenticator(
        settings.model_copy(update={"listing_url": f"http://127.0.0.1:{free_port()}"}),
        httpx.AsyncClient(),
    )
    try:
        await down.authenticate(key["key"])
        raise AssertionError("expected ServiceUnavailable")
    except ServiceUnavailable:
        pass
    finally:
        await down.client.aclose()
