"""Matching and the gateway authenticate keys through listing (shared/auth.py's
IntrospectingAuthenticator), on listing's real app called through httpx's ASGI transport."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from shared.auth import IntrospectingAuthenticator
from shared.errors import ServiceUnavailable
from shared.settings import Settings
from support import free_port


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
