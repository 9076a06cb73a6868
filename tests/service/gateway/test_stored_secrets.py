"""The gateway's stored signing secrets are sealed (services/gateway/stored_secrets.py,
shared/encryption.py): a `pg_dump` of the three schemas holds none of them; secrets stored in
clear before are read, then sealed at start-up; `ipx secrets rotate` seals them all again
under a new key."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from typer.testing import CliRunner

from infra.cli import app as ipx
from infra.postgres import PostgresHandle, find_system_bindir
from services.gateway.stored_secrets import seal_stored_in_clear
from shared.encryption import SEALED, SecretBox, new_key, secret_box
from shared.settings import Settings, get_settings
from shared.webhooks import new_secret, signed_headers
from support import (
    allow_local,
    bearer,
    new_organization,
    partner_document,
    real_application_numbers,
)

NUMBERS = real_application_numbers("invention_patent")


def pg_dump(postgres: PostgresHandle, database_url: str) -> str:
    """The three schemas as `pg_dump` writes them (the machine's, or pgserver's)."""
    if postgres.backend == "system":
        bindir = find_system_bindir()
        assert bindir is not None
    else:
        import pgserver

        bindir = Path(pgserver.__file__).parent / "pginstall" / "bin"
    database = database_url.rsplit("/", 1)[1].split("?")[0]
    done = subprocess.run(
        [
            str(bindir / "pg_dump"),
            "--host",
            postgres.host,
            "--port",
            str(postgres.port),
            "--username",
            postgres.user,
            "--schema=listing",
            "--schema=matching",
            "--schema=gateway",
            database,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def push(gateway: httpx.AsyncClient, code: str, secret: str) -> httpx.Response:
    body = json.dumps(partner_document(code, f"P-{uuid.uuid4().hex[:6]}", next(NUMBERS))).encode()
    headers = signed_headers(secret, f"msg_{uuid.uuid4().hex}", body)
    return await gateway.post(f"/v1/inbound/{code}", content=body, headers=headers)


async def stored(settings: Settings, query: str, **params: Any) -> str:
    import asyncpg

    url = settings.database_url.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(url)
    try:
        value: str = await connection.fetchval(query, *params.values())
    finally:
        await connection.close()
    return value


async def test_a_database_dump_holds_no_usable_secret(
    gateway: httpx.AsyncClient,
    listing: httpx.AsyncClient,
    operator_key: str,
    postgres: PostgresHandle,
    settings: Settings,
) -> None:
    code = f"sealed{uuid.uuid4().hex[:6]}"
    registered = await gateway.post(
        "/v1/partners",
        json={"code": code, "name": "天津某交易中心", "region": "120000"},
        headers=bearer(operator_key),
    )
    assert registered.status_code == 201, registered.text
    inbound = registered.json()["inbound_secret"]
    rotated = await gateway.patch(
        f"/v1/partners/{code}", json={"rotate_secret": True}, headers=bearer(operator_key)
    )
    assert rotated.status_code == 200, rotated.text
    current = rotated.json()["inbound_secret"]
    member_org, member = await new_organization(
        listing, operator_key, name="天津某材料有限公司", kind="enterprise", region="120000"
    )
    hook = "http://127.0.0.1:9/hooks"
    await allow_local(gateway, operator_key, member_org, hook)
    subscribed = await gateway.post(
        "/v1/subscriptions",
        json={"url": hook, "event_types": ["match.created"]},
        headers=bearer(member),
    )
    assert subscribed.status_code == 201, subscribed.text
    webhook_secret = subscribed.json()["secret"]

    # The partner signs with the secret it was given: the sealed one verifies it.
    assert (await push(gateway, code, current)).status_code == 202
    assert (await push(gateway, code, inbound)).status_code == 401  # the rotated-out one

    dump = pg_dump(postgres, settings.database_url)
    for secret in (inbound, current, webhook_secret):
        assert secret not in dump
        assert secret.removeprefix("whsec_") not in dump
    assert SEALED in dump
    sealed = await stored(
        settings, "SELECT inbound_secret FROM gateway.partners WHERE code = $1", code=code
    )
    assert sealed.startswith(SEALED) and secret_box(settings.secret_keys).open(sealed) == current


async def test_secrets_stored_in_clear_are_read_then_sealed(
    gateway: httpx.AsyncClient, gateway_app: FastAPI, settings: Settings
) -> None:
    code = f"clear{uuid.uuid4().hex[:6]}"
    secret = new_secret()
    async with gateway_app.state.sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "INSERT INTO gateway.partners (code, name, region, status, inbound_secret, "
                "adapter, pull_interval_seconds, pull_failures, created_at, updated_at) "
                "VALUES (:code, '旧交易所', '120000', 'active', :secret, 'canonical', 60, 0, "
                "now(), now())"
            ),
            {"code": code, "secret": secret},
        )
    assert (await push(gateway, code, secret)).status_code == 202  # read as it is

    box = secret_box(settings.secret_keys)
    await seal_stored_in_clear(gateway_app.state.sessionmaker, box)
    sealed = await stored(
        settings, "SELECT inbound_secret FROM gateway.partners WHERE code = $1", code=code
    )
    assert sealed.startswith(SEALED) and box.open(sealed) == secret
    assert (await push(gateway, code, secret)).status_code == 202


async def test_rotation_seals_every_secret_under_the_new_key(
    gateway: httpx.AsyncClient,
    operator_key: str,
    settings: Settings,
    secret_key: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code = f"rot{uuid.uuid4().hex[:6]}"
    registered = await gateway.post(
        "/v1/partners",
        json={"code": code, "name": "河北某交易中心", "region": "130000"},
        headers=bearer(operator_key),
    )
    secret = registered.json()["inbound_secret"]
    key = new_key()
    monkeypatch.setenv("IPX_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("IPX_SECRET_KEYS", f"{key},{secret_key}")
    get_settings.cache_clear()
    try:
        result = await asyncio.to_thread(CliRunner().invoke, ipx, ["secrets", "rotate"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "stored secrets sealed" in result.output
    sealed = await stored(
        settings, "SELECT inbound_secret FROM gateway.partners WHERE code = $1", code=code
    )
    assert SecretBox([key]).open(sealed) == secret  # the new key alone opens it
    for query in (
        "SELECT string_agg(inbound_secret, ' ') FROM gateway.partners",
        "SELECT string_agg(secret, ' ') FROM gateway.subscriptions",
    ):
        everything = await stored(settings, query)
        assert all(SecretBox([key]).open(value) for value in everything.split()), query
