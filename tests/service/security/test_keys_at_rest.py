"""Keys at rest: stored only as SHA-256, found by prefix, and compared in constant time,
on the in-process apps over the real PostgreSQL."""

from __future__ import annotations

import hashlib
import hmac
import sys
from types import FrameType

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from service.security.helpers import scan_database, secret_part
from shared.settings import Settings
from support import assert_problem, bearer, new_organization


async def test_keys_are_stored_only_as_sha256_and_compared_in_constant_time(
    listing: httpx.AsyncClient,
    matching: httpx.AsyncClient,
    gateway: httpx.AsyncClient,
    operator_key: str,
    settings: Settings,
) -> None:
    org_id, admin = await new_organization(
        listing, operator_key, name="河北工业大学", region="130000"
    )
    path = f"/v1/organizations/{org_id}/api-keys"
    issued = await listing.post(
        path, json={"name": "ci", "roles": ["member"]}, headers=bearer(admin)
    )
    assert issued.status_code == 201, issued.text
    keys = (await listing.get(path, headers=bearer(admin))).json()["items"]
    admin_id = next(k["id"] for k in keys if k["roles"] == ["admin"])
    rotated = await listing.post(f"{path}/{admin_id}/rotate", headers=bearer(admin))
    assert rotated.status_code == 201, rotated.text
    plaintexts = [admin, issued.json()["key"], rotated.json()["key"]]

    # No column of any table, in any schema, holds a key or its secret part.
    needles = plaintexts + [secret_part(k) for k in plaintexts]
    assert await scan_database(settings, needles) == []

    # What is stored is the SHA-256 of the whole key, found by its prefix.
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            for key in plaintexts:
                prefix = key.split("_")[1]
                stored = (
                    await conn.execute(
                        text("SELECT key_hash FROM listing.api_keys WHERE prefix = :p"),
                        {"p": prefix},
                    )
                ).scalar_one()
                assert stored == hashlib.sha256(key.encode()).hexdigest()
    finally:
        await engine.dispose()

    # The right prefix with a wrong secret (same length) is refused by every service.
    live = plaintexts[2]
    forged = live[:-4] + ("AAAA" if not live.endswith("AAAA") else "BBBB")
    org_path = f"/v1/organizations/{org_id}"
    assert (await listing.get(org_path, headers=bearer(live))).status_code == 200
    assert_problem(await listing.get(org_path, headers=bearer(forged)), 401)
    assert_problem(await listing.get(org_path, headers=bearer(admin)), 401)  # rotated away
    assert (await matching.get("/v1/demands", headers=bearer(live))).status_code == 200
    assert_problem(await matching.get("/v1/demands", headers=bearer(forged)), 401)
    assert_problem(await gateway.get("/v1/subscriptions", headers=bearer(forged)), 401)

    # The comparison of a request's key with the stored hash is hmac.compare_digest: recorded
    # from the interpreter's own call events during a real request (no patching).
    callers: list[str] = []

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event == "c_call" and arg is hmac.compare_digest:
            callers.append(frame.f_code.co_name)

    sys.setprofile(profile)
    try:
        refused = await listing.get(org_path, headers=bearer(forged))
    finally:
        sys.setprofile(None)
    assert_problem(refused, 401)
    assert "hashes_match" in callers, callers
