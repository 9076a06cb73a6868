"""Matching and the gateway authenticate keys through listing (shared/auth.py's
IntrospectingAuthenticator), on listing's real app called through httpx's ASGI transport."""

from __future__ import annotations

import functools
import time

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from shared.auth import IntrospectingAuthenticator
from shared.errors import ServiceUnavailable
from shared.settings import Settings
from support import bearer, eventually, free_port


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


async def test_a_revoked_key_stops_working_on_every_replica_at_once(
    matching_settings: Settings,
    listing: httpx.AsyncClient,
    gateway_app: FastAPI,
    gateway: httpx.AsyncClient,
) -> None:
    """Two gateway replicas (the suite's and a second app on the same database) have the key
    cached; revoked on listing, it is refused by both well before the cache time runs out."""
    from services.gateway.app import create_app

    settings = matching_settings.model_copy(update={"run_workers": False})
    assert settings.auth_cache_seconds >= 10  # what the NOTIFY saves
    signed_up = await listing.post(
        "/v1/organizations", json={"name": "河北工业大学", "kind": "university", "region": "120102"}
    )
    organization = signed_up.json()["organization"]["id"]
    admin = signed_up.json()["api_key"]["key"]
    member = await listing.post(
        f"/v1/organizations/{organization}/api-keys",
        json={"name": "erp", "roles": ["admin"]},
        headers=bearer(admin),
    )
    key, key_id = member.json()["key"], member.json()["id"]
    second_app = create_app(settings, gateway_app.state.http_mounts)
    async with LifespanManager(second_app):
        transport = httpx.ASGITransport(app=second_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw2.test") as second:
            for replica in (gateway, second):  # cached on both
                answer = await replica.get("/v1/subscriptions", headers=bearer(key))
                assert answer.status_code == 200, answer.text
            revoked = await listing.delete(
                f"/v1/organizations/{organization}/api-keys/{key_id}", headers=bearer(admin)
            )
            assert revoked.status_code == 204
            began = time.monotonic()
            for replica in (gateway, second):
                await eventually(
                    functools.partial(_refused, replica, key), "the revoked key refused", seconds=5
                )
            assert time.monotonic() - began < settings.auth_cache_seconds / 2
            # The admin key, revoked by nobody, still works (only the cache was emptied).
            assert (await second.get("/v1/subscriptions", headers=bearer(admin))).status_code == 200


async def _refused(replica: httpx.AsyncClient, key: str) -> bool:
    answer = await replica.get("/v1/subscriptions", headers=bearer(key))
    return answer.status_code == 401
