"""What the security tests share: the seller, the world they run in (built by this folder's
conftest.py), and helpers that publish, wait, scan the database and register partners."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from shared.settings import Settings
from shared.webhooks import signed_headers
from support import bearer, listing_offers, patent, submit_and_approve, terms

SELLER = "北京理工大学"
SCHEMAS = ("listing", "matching", "gateway")


@dataclass
class World:
    seller_id: str
    seller: str  # the seller organisation's admin key
    buyer_id: str
    buyer: str
    third_id: str
    third: str  # an unrelated organisation's key
    exchange_id: str  # a partner exchange's organisation (kind exchange)
    partner_key: str  # its key with the partner role
    listing_id: str  # a published local (jjj) listing of the seller
    asset_id: str


async def publish(
    listing: httpx.AsyncClient,
    key: str,
    operator_key: str,
    number: str,
    *,
    region: str = "110108",
    amount: str = "1200000.00",
) -> dict[str, Any]:
    """A listing of the seller on a real application number, submitted and approved."""
    asset = patent(SELLER, number, holders=[{"name": SELLER, "region": region}])
    created = await listing.post(
        "/v1/listings",
        json={"asset": asset, "transaction": terms(amount=amount)},
        headers=bearer(key),
    )
    assert created.status_code == 201, created.text
    return await submit_and_approve(listing, key, operator_key, created.json()["id"])


async def scan_database(settings: Settings, needles: list[str]) -> list[str]:
    """Every (schema.table, needle) where a row of a table, as text, contains a needle."""
    engine = create_async_engine(settings.database_url)
    found: list[str] = []
    try:
        async with engine.connect() as conn:
            tables = (
                await conn.execute(
                    text(
                        "SELECT table_schema, table_name FROM information_schema.tables "
                        "WHERE table_schema = ANY(:schemas) AND table_type = 'BASE TABLE'"
                    ),
                    {"schemas": list(SCHEMAS)},
                )
            ).all()
            assert len(tables) > 10, tables
            for schema, table in tables:
                # A whole row as text covers every column, JSON and arrays included.
                rows = await conn.execute(text(f'SELECT t::text FROM "{schema}"."{table}" t'))
                for (row,) in rows:
                    found += [f"{schema}.{table}: {n[:12]}…" for n in needles if n in row]
    finally:
        await engine.dispose()
    return found


def secret_part(key: str) -> str:
    """What follows the public `ipx_<prefix>_` of a key (or `whsec_` of a signing secret)."""
    if key.startswith("ipx_"):
        return key.split("_", 2)[-1]
    return key.removeprefix("whsec_")


async def disallow_local(
    gateway: httpx.AsyncClient, operator_key: str, organization_id: str
) -> None:
    """Every allow-list entry of the organisation removed."""
    listed = await gateway.get(
        "/v1/webhook-targets",
        params={"organization_id": organization_id, "page_size": 200},
        headers=bearer(operator_key),
    )
    assert listed.status_code == 200, listed.text
    for entry in listed.json()["items"]:
        removed = await gateway.delete(
            f"/v1/webhook-targets/{entry['id']}", headers=bearer(operator_key)
        )
        assert removed.status_code == 204, removed.text


async def register_partner(
    gateway: httpx.AsyncClient, operator_key: str, code: str, organization_id: str | None = None
) -> str:
    body: dict[str, Any] = {"code": code, "name": f"合作交易所 {code}", "region": "120000"}
    if organization_id:
        body["organization_id"] = organization_id
    response = await gateway.post("/v1/partners", json=body, headers=bearer(operator_key))
    assert response.status_code == 201, response.text
    return str(response.json()["inbound_secret"])


async def push(
    gateway: httpx.AsyncClient, code: str, secret: str, payload: Any, event_id: str | None = None
) -> tuple[httpx.Response, dict[str, str]]:
    body = json.dumps(payload, ensure_ascii=False).encode()
    headers = signed_headers(secret, event_id or f"msg_{uuid.uuid4().hex}", body)
    return await gateway.post(f"/v1/inbound/{code}", content=body, headers=headers), headers


async def offer_of(
    listing: httpx.AsyncClient, service_key: str, offer_id: str
) -> dict[str, Any] | None:
    """listing's current snapshot of one partner offer, by offer id (None: not there)."""
    items = await listing_offers(listing, service_key)
    return next((i for i in items if i["document"]["offer_id"] == offer_id), None)
