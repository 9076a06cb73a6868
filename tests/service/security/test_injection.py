"""Injection strings in every text parameter (read from each app's OpenAPI) and in body text
fields: refused or inert data, never more rows than without them, on the in-process apps
over the real PostgreSQL and Meilisearch."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import quote

import httpx
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from service.security.helpers import (
    SCHEMAS,
    World,
    disallow_local,
    publish,
    register_partner,
)
from shared.schemas import encode_page_token
from shared.settings import Settings
from support import allow_local, bearer, patent, terms, wait_indexed

INJECTIONS = [
    "' OR 1=1 --",
    "' OR '1'='1",
    '"; DROP TABLE listing.listings; --',
    "1; SELECT pg_sleep(5); --",
    'kind = "x" OR 1 = 1',
    'jjj" OR kind EXISTS OR exchange = "x',
    'x"] OR status EXISTS OR kind IN ["',
    "\\",
    "\u0000",
    "abc\u0000def",
    "x" * 10_000,
    "%",
    "_",
    "*",
    "(",
    "AND",
    "NULL",
    "-1",
    "1e309",
    "../../etc/passwd",
    "<script>alert(1)</script>",
    "专利\u202e🙂",
    "１１００００",
]
# page_token and cursor shapes: our own encoding around hostile values, for every key a
# token carries somewhere.
TOKEN_KEYS = ("created_at", "id", "closed_on", "offset", "seq", "code")
TOKEN_VALUES: list[object] = [
    *("' OR 1=1 --", -1, 10**30, None, [], {"a": 1}, True, "\u0000", "9999"),
    "0001-01-01T00:00:00+14:00",  # a timestamp that leaves the calendar in UTC
]
FORGED_TOKENS = [encode_page_token({key: value for key in TOKEN_KEYS}) for value in TOKEN_VALUES]
CURSORS = ["1.-1", "-1.0", "99999999999999999999999.1", "1.99999999999999999999", "0.0.0", "1e3.0"]
# Parameters that select (a filter): an injected value must be refused or select nothing.
# The others (text, paging, order, and price bounds, where "１１００００" is a lawful number)
# may only narrow: never more results than without them.
NOT_FILTERS = {"q", "page_token", "after", "sort", "group_by", "price_min", "price_max"}


def string_query_parameters(spec: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(method, path, name) of every query parameter of string type (strings, enums, dates,
    uuids, and arrays of them) in an OpenAPI document."""

    def stringy(schema: dict[str, Any]) -> bool:
        if schema.get("type") == "string" or "enum" in schema:
            return True
        if schema.get("type") == "array":
            return stringy(schema.get("items", {}))
        return any(stringy(s) for s in schema.get("anyOf", []))

    found = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "query" and stringy(parameter.get("schema", {})):
                    found.append((method.upper(), path, parameter["name"]))
    return found


def path_operations(spec: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    """(method, path, path parameter names) of every operation with path parameters."""
    found = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]
            if names:
                found.append((method.upper(), path, names))
    return found


def counted(response: httpx.Response) -> int | None:
    """How many results a 2xx answer holds (None: not a result list)."""
    body = response.json() if response.content else None
    if isinstance(body, list):
        return len(body)
    if isinstance(body, dict):
        for name in ("items", "events", "groups"):
            if isinstance(body.get(name), list):
                return len(body[name])
    return None


async def table_counts(settings: Settings) -> dict[str, int]:
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            tables = (
                await conn.execute(
                    text(
                        "SELECT table_schema || '.' || table_name FROM information_schema.tables "
                        "WHERE table_schema = ANY(:schemas) AND table_type = 'BASE TABLE'"
                    ),
                    {"schemas": list(SCHEMAS)},
                )
            ).scalars()
            counts = {}
            for table in tables:
                schema, name = table.split(".")
                counts[table] = int(
                    (
                        await conn.execute(text(f'SELECT count(*) FROM "{schema}"."{name}"'))
                    ).scalar_one()
                )
            return counts
    finally:
        await engine.dispose()


@dataclass
class Target:
    client: httpx.AsyncClient
    spec: dict[str, Any]
    # What a path parameter stands for in this test's data.
    path_values: dict[str, str]


async def test_injection_strings_in_every_text_parameter(
    listing: httpx.AsyncClient,
    matching: httpx.AsyncClient,
    gateway: httpx.AsyncClient,
    listing_app: FastAPI,
    matching_app: FastAPI,
    world: World,
    operator_key: str,
    service_key: str,
    settings: Settings,
    numbers: Iterator[str],
) -> None:
    # Data for every id a path names: an import, a demand, an inquiry, a partner, a subscription.
    await publish(listing, world.seller, operator_key, next(numbers), region="120104")
    imported = await listing.post(
        "/v1/imports",
        content=b"not json\n",
        headers={**bearer(world.seller), "Content-Type": "application/x-ndjson"},
    )
    assert imported.status_code == 201, imported.text
    demand = await matching.post(
        "/v1/demands",
        json={"title": "锂离子电池隔膜", "text": "需要锂离子电池隔膜的制备技术"},
        headers=bearer(world.buyer),
    )
    assert demand.status_code == 201, demand.text
    inquiry = await listing.post(
        f"/v1/listings/{world.listing_id}/inquiries",
        json={"message": "感兴趣"},
        headers=bearer(world.buyer),
    )
    assert inquiry.status_code == 201, inquiry.text
    code = "p" + uuid.uuid4().hex[:8]
    await register_partner(gateway, operator_key, code, world.exchange_id)
    await allow_local(gateway, operator_key, world.buyer_id, "http://127.0.0.1:9/ipx")
    subscription = await gateway.post(
        "/v1/subscriptions",
        json={"url": "http://127.0.0.1:9/ipx", "event_types": ["match.created"]},
        headers=bearer(world.buyer),
    )
    assert subscription.status_code == 201, subscription.text
    subscription_id = subscription.json()["id"]
    await disallow_local(gateway, operator_key, world.buyer_id)
    await wait_indexed(matching, operator_key)
    values = {
        "organization_id": world.buyer_id,
        "key_id": str(uuid.uuid4()),
        "asset_id": world.asset_id,
        "listing_id": world.listing_id,
        "inquiry_id": inquiry.json()["id"],
        "import_id": imported.json()["id"],
        "demand_id": demand.json()["id"],
        "subscription_id": subscription_id,
        "delivery_id": str(uuid.uuid4()),
        "code": code,
        "partner": code,
        "exchange": code,
        "pattern": "127.0.0.9",
    }
    targets = {
        "listing": Target(listing, listing_app.openapi(), values),
        "matching": Target(matching, matching_app.openapi(), values),
        "gateway": Target(gateway, (await gateway.get("/openapi.json")).json(), values),
    }
    # The gateway's catalogue search and deals take matching's and listing's parameters as is.
    forwarded = [
        ("GET", "/v1/catalogue/search", name)
        for method, path, name in string_query_parameters(targets["matching"].spec)
        if path == "/v1/search"
    ] + [
        ("GET", "/v1/catalogue/deals", name)
        for method, path, name in string_query_parameters(targets["listing"].spec)
        if path == "/v1/deals"
    ]
    before = await table_counts(settings)
    documents_before = (await wait_indexed(matching, operator_key))["documents"]
    checked = 0
    problems: list[str] = []

    async def call(
        target: Target, method: str, path: str, params: dict[str, str], key: str
    ) -> httpx.Response:
        url = path
        for name, value in target.path_values.items():
            url = url.replace("{" + name + "}", quote(value, safe=""))
        body: dict[str, Any] | None = None if method in ("GET", "DELETE") else {}
        return await target.client.request(
            method, url, params=params, json=body, headers=bearer(key)
        )

    for service, target in targets.items():
        parameters = string_query_parameters(target.spec)
        if service == "gateway":
            parameters += forwarded
        assert parameters, service
        for method, path, name in parameters:
            # The caller: a member where members may call, else an operator (services too).
            key = world.buyer
            baseline = await call(target, method, path, {}, key)
            if baseline.status_code in (401, 403):
                key = operator_key
                baseline = await call(target, method, path, {}, key)
            if baseline.status_code == 403:
                key = service_key
                baseline = await call(target, method, path, {}, key)
            most = counted(baseline) if baseline.is_success else None
            payloads = list(INJECTIONS)
            if name == "page_token":
                payloads += FORGED_TOKENS
            if name == "after":
                payloads += CURSORS
            for payload in payloads:
                response = await call(target, method, path, {name: payload}, key)
                checked += 1
                where = f"{service} {method} {path} {name}={payload[:30]!r}"
                if response.status_code >= 500:
                    problems.append(f"{where}: {response.status_code} {response.text[:200]}")
                    continue
                if not response.is_success:
                    continue
                found = counted(response)
                if found is None:
                    continue
                if name not in NOT_FILTERS and found:
                    problems.append(f"{where}: a hostile filter selected {found} results")
                elif most is not None and found > most:
                    problems.append(f"{where}: {found} results, more than the {most} of none")
        # Path parameters: each in turn hostile, the others naming real things.
        for method, path, names in path_operations(target.spec):
            for name in names:
                for payload in INJECTIONS:
                    hostile = Target(target.client, target.spec, {**values, name: payload})
                    response = await call(hostile, method, path, {}, operator_key)
                    checked += 1
                    if response.status_code >= 500:
                        problems.append(
                            f"{service} {method} {path} {name}={payload[:30]!r}: "
                            f"{response.status_code} {response.text[:200]}"
                        )
    await gateway.delete(f"/v1/subscriptions/{subscription_id}", headers=bearer(world.buyer))
    assert problems == [], "\n".join(problems)
    assert checked > 1000, checked

    # A text query never acts as a filter: with a region that has no listings, nothing.
    for payload in INJECTIONS:
        for client, path in ((matching, "/v1/search"), (gateway, "/v1/catalogue/search")):
            response = await client.get(
                path, params={"q": payload, "region": "65"}, headers=bearer(operator_key)
            )
            assert response.status_code < 500, response.text
            if response.is_success:
                assert response.json()["items"] == [], payload

    # Nothing was written, dropped or indexed by any of it.
    after = await table_counts(settings)
    assert set(after) == set(before)
    changed = {
        t: (before[t], after[t])
        for t in before
        if t.startswith("listing.") and before[t] != after[t]
    }
    assert changed == {}, changed
    assert (await wait_indexed(matching, operator_key))["documents"] == documents_before


async def test_injection_strings_in_body_text_fields_are_data(
    listing: httpx.AsyncClient,
    matching: httpx.AsyncClient,
    gateway: httpx.AsyncClient,
    world: World,
    operator_key: str,
    settings: Settings,
    numbers: Iterator[str],
) -> None:
    """Every text field of the member endpoints' bodies takes the hostile strings as plain
    data: refused (4xx) or stored exactly, never a 5xx, and no table is harmed."""
    before = await table_counts(settings)
    target = await publish(listing, world.seller, operator_key, next(numbers), region="120104")
    inquiry = await listing.post(
        f"/v1/listings/{target['id']}/inquiries",
        json={"message": "感兴趣"},
        headers=bearer(world.buyer),
    )
    assert inquiry.status_code == 201, inquiry.text
    problems: list[str] = []

    def check(where: str, payload: str, response: httpx.Response, echoed: Any = None) -> None:
        if response.status_code >= 500:
            problems.append(
                f"{where} {payload[:20]!r}: {response.status_code} {response.text[:200]}"
            )
        elif response.is_success and echoed is not None and echoed != payload:
            problems.append(f"{where} {payload[:20]!r}: stored as {str(echoed)[:40]!r}")

    for payload in INJECTIONS:
        demand = await matching.post(
            "/v1/demands",
            json={"title": payload, "text": payload},
            headers=bearer(world.buyer),
        )
        check("demand text", payload, demand, demand.json().get("text"))
        for field in ("ipc_prefixes", "regions"):
            created = await matching.post(
                "/v1/demands",
                json={"title": "电池", "text": "锂离子电池隔膜", field: [payload]},
                headers=bearer(world.buyer),
            )
            check(f"demand {field}", payload, created)
            if field == "ipc_prefixes" and created.is_success:
                # A hard filter that names no class matches nothing.
                matches = await matching.get(
                    f"/v1/demands/{created.json()['id']}/matches", headers=bearer(world.buyer)
                )
                if matches.json()["items"]:
                    problems.append(f"ipc_prefixes {payload[:20]!r} matched listings")
        message = await listing.post(
            f"/v1/inquiries/{inquiry.json()['id']}/messages",
            json={"message": payload},
            headers=bearer(world.buyer),
        )
        check("inquiry message", payload, message)
        if message.is_success:
            thread = await listing.get(
                f"/v1/inquiries/{inquiry.json()['id']}", headers=bearer(world.buyer)
            )
            check("inquiry message", payload, message, thread.json()["messages"][-1]["message"])
        signed_up = await listing.post(
            "/v1/organizations",
            json={"name": payload, "kind": "enterprise", "region": "120000"},
        )
        check(
            "organization name",
            payload,
            signed_up,
            signed_up.json().get("organization", {}).get("name"),
        )
        asset = patent(payload, next(numbers), title={"zh": payload})
        draft = await listing.post(
            "/v1/listings",
            json={"asset": asset, "transaction": terms()},
            headers=bearer(world.seller),
        )
        check("listing holder and title", payload, draft)
        for url in (payload, f"https://hooks.example.com/{payload}"):
            subscribed = await gateway.post(
                "/v1/subscriptions",
                json={"url": url, "event_types": ["deal.closed"]},
                headers=bearer(world.buyer),
            )
            check("subscription url", payload, subscribed)
            if subscribed.is_success:
                await gateway.delete(
                    f"/v1/subscriptions/{subscribed.json()['id']}", headers=bearer(world.buyer)
                )
        allowed = await gateway.post(
            "/v1/webhook-targets",
            json={"pattern": payload, "port": 443, "organization_id": world.buyer_id},
            headers=bearer(operator_key),
        )
        check("allow-list pattern", payload, allowed)
        if allowed.is_success:
            entry = f"/v1/webhook-targets/{allowed.json()['id']}"
            await gateway.delete(entry, headers=bearer(operator_key))
        partner = await gateway.post(
            "/v1/partners",
            json={"code": "p" + uuid.uuid4().hex[:8], "name": payload, "region": "120000"},
            headers=bearer(operator_key),
        )
        check("partner name", payload, partner, partner.json().get("name"))
    closed = await listing.post(
        "/v1/deals",
        json={
            "listing_id": target["id"],
            "buyer_name": INJECTIONS[2],
            "amount": "1.00",
            "closed_on": date.today().isoformat(),
        },
        headers=bearer(world.seller),
    )
    check("deal buyer_name", INJECTIONS[2], closed, closed.json().get("buyer_name"))
    assert problems == [], "\n".join(problems)
    after = await table_counts(settings)
    assert set(after) == set(before)
    assert after["listing.listings"] >= before["listing.listings"] + 1
