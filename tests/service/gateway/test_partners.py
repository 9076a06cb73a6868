"""Partner exchanges syncing in: the registry, signed pushes (Standard Webhooks), the inbox
worker applying offers to listing, and the pull worker paging through real partner feeds.

The gateway runs in process with its workers; listing's real app is mounted behind it; partner
feeds are a real HTTP server on the loopback interface; PostgreSQL is real."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import update
from sqlmodel import col
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from infra.migrations import head_revision
from services.gateway.models import SCHEMA, InboundEvent, Partner
from services.gateway.partners.repository import InboxRepository
from services.gateway.partners.router import router as partners_router
from services.gateway.partners.workers import (
    PartnerSyncConfig,
    inbox_workers,
    pull_workers,
)
from services.gateway.webhooks.router import router as webhooks_router
from shared.app import build_app, open_database, open_upstreams
from shared.settings import Settings
from shared.webhooks import signed_headers
from shared.workers import run_workers
from support import (
    allowed_target,
    assert_problem,
    bearer,
    eventually,
    free_port,
    listing_offers,
    new_exchange,
    new_organization,
    partner_document,
    real_application_numbers,
)

FAST = PartnerSyncConfig(
    inbox_poll_seconds=0.2,
    retry_base_seconds=0.2,
    retry_cap_seconds=2.0,
    pull_poll_seconds=0.1,
    pull_request_timeout_seconds=2.0,
    pull_run_timeout_seconds=5.0,
)


# ------------------------------------------------------------------------------ the gateway


@dataclass
class Gateway:
    app: FastAPI
    client: httpx.AsyncClient
    listing: FlakyListing


class FlakyListing(httpx.AsyncBaseTransport):
    """listing's real app, in front of which the next `failures` PUTs fail (alternately a 503
    and a refused connection), as when listing is restarting."""

    def __init__(self, listing_app: FastAPI) -> None:
        self.inner = httpx.ASGITransport(listing_app, raise_app_exceptions=False)
        self.failures = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT" and self.failures > 0:
            self.failures -= 1
            if self.failures % 2:
                raise httpx.ConnectError("listing is restarting", request=request)
            return httpx.Response(503, json={"title": "restarting"}, request=request)
        return await self.inner.handle_async_request(request)


def gateway_app(settings: Settings, listing: FlakyListing, *, pull: bool) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            open_database(app, settings, schema=SCHEMA, expected_revision=head_revision(SCHEMA)),
            open_upstreams(app, settings, {"listing": settings.listing_url}),
        ):
            workers = [*inbox_workers(app), *(pull_workers(app) if pull else [])]
            async with run_workers(app, workers):
                yield

    app = build_app(
        name="gateway",
        settings=settings,
        lifespan=lifespan,
        routers=[partners_router, webhooks_router],
        description="gateway under test",
        http_mounts={"http://listing.test": listing},
    )
    app.state.partner_sync = FAST
    return app


@asynccontextmanager
async def running_gateway(
    settings: Settings, listing_app: FastAPI, *, pull: bool
) -> AsyncIterator[Gateway]:
    listing = FlakyListing(listing_app)
    app = gateway_app(settings, listing, pull=pull)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as c:
            yield Gateway(app, c, listing)


@pytest.fixture(scope="module")
async def gateway(settings: Settings, listing_app: FastAPI) -> AsyncIterator[Gateway]:
    """The gateway with its inbox worker (pull tests start their own, with the pull worker)."""
    async with running_gateway(settings, listing_app, pull=False) as running:
        yield running


@pytest.fixture(scope="module")
def numbers() -> Iterator[str]:
    """Real CN invention application numbers, each used once in this module."""
    return iter(list(real_application_numbers("invention_patent")))


# ------------------------------------------------------------------------------ a partner site


@dataclass
class Feed:
    items: list[dict[str, Any]] = field(default_factory=list)
    mode: str = "ok"  # ok | sleepy | garbage
    page_size: int = 10
    log: list[tuple[str | None, str | None, int]] = field(default_factory=list)
    in_flight: int = 0


@dataclass
class PartnerSite:
    base_url: str
    feeds: dict[str, Feed]

    def url(self, name: str) -> str:
        return f"{self.base_url}/feeds/{name}"


@pytest.fixture(scope="module")
async def partner_site() -> AsyncIterator[PartnerSite]:
    """Partner exchanges' feeds served over real HTTP on 127.0.0.1."""
    feeds: dict[str, Feed] = {}
    release = asyncio.Event()

    async def feed(request: Request) -> Response:
        found = feeds[request.path_params["name"]]
        cursor = request.query_params.get("cursor")
        tag = request.headers.get("if-none-match")
        if found.mode == "sleepy":
            found.in_flight += 1
            found.log.append((cursor, tag, 0))
            try:
                await asyncio.wait_for(release.wait(), 30)
            except TimeoutError:
                pass
            finally:
                found.in_flight -= 1
            return JSONResponse({"items": [], "next_cursor": cursor})
        if found.mode == "garbage":
            found.log.append((cursor, tag, 200))
            return Response("<html><body>502 Bad Gateway</body></html>", media_type="text/html")
        start = int(cursor or 0)
        page = found.items[start : start + found.page_size]
        etag = f'"{start}-{len(found.items)}"'
        if tag == etag:
            found.log.append((cursor, tag, 304))
            return Response(status_code=304, headers={"ETag": etag})
        found.log.append((cursor, tag, 200))
        return JSONResponse(
            {"items": page, "next_cursor": str(start + len(page))}, headers={"ETag": etag}
        )

    app = Starlette(routes=[Route("/feeds/{name}", feed)])
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=1,
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the partner site did not start"
        await asyncio.sleep(0.02)
    try:
        yield PartnerSite(f"http://127.0.0.1:{port}", feeds)
    finally:
        release.set()
        server.should_exit = True
        await task


# ------------------------------------------------------------------------------ helpers


def code() -> str:
    return "p" + uuid.uuid4().hex[:10]


async def register(
    gateway: Gateway, operator_key: str, partner: str, **fields: Any
) -> dict[str, Any]:
    body = {"code": partner, "name": f"合作交易所 {partner}", "region": "120000", **fields}
    response = await gateway.client.post("/v1/partners", json=body, headers=bearer(operator_key))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def new_partner(gateway: Gateway, operator_key: str, **fields: Any) -> tuple[str, str]:
    """A newly registered partner that pushes: its code and inbound secret."""
    partner = code()
    created = await register(gateway, operator_key, partner, **fields)
    return partner, str(created["inbound_secret"])


def tjipe(listing_id: str, number: str, version: int = 1, **extra: object) -> dict[str, Any]:
    return {
        "编号": listing_id,
        "链接": f"https://tjipe.example/l/{listing_id}",
        "版本": str(version),
        "更新时间": f"2026-11-20 {8 + version % 10:02d}:00:00",
        "状态": "挂牌中",
        "交易方式": "普通许可",
        "价格(万元)": "120.5",
        "专利号": f"ZL {number[:4]} {number[4]} {number[5:]}",
        "专利类型": "发明",
        "名称": "一种神经网络处理器",
        "申请日": f"{number[:4]}年6月1日",
        "权利人": "天津大学；天津某科技有限公司",
        "地区": "天津市",
        "分类号": "G06N 3/063",
        **extra,
    }


async def push(
    gateway: Gateway,
    partner: str,
    secret: str,
    payload: Any,
    *,
    event_id: str | None = None,
    at: datetime | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    body = (
        payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode()
    )
    signed = signed_headers(secret, event_id or f"msg_{uuid.uuid4().hex}", body, at=at)
    return await gateway.client.post(
        f"/v1/inbound/{partner}", content=body, headers={**signed, **(headers or {})}
    )


async def offers_of(
    listing: httpx.AsyncClient, service_key: str, exchange: str
) -> dict[str, dict[str, Any]]:
    """listing's current offers of one exchange, by offer id (every status)."""
    return {
        item["document"]["offer_id"]: item
        for item in await listing_offers(listing, service_key)
        if item["document"]["source"]["exchange"] == exchange
    }


async def inbox(gateway: Gateway, partner: str) -> list[InboundEvent]:
    async with gateway.app.state.sessionmaker() as session:
        return await InboxRepository(session).by_partner(partner)


async def settled(gateway: Gateway, partner: str, count: int) -> list[InboundEvent]:
    """Until the partner has `count` inbox rows, none pending."""

    async def check() -> list[InboundEvent] | None:
        rows = await inbox(gateway, partner)
        done = len(rows) == count and all(r.status != "pending" for r in rows)
        return rows if done else None

    rows: list[InboundEvent] = await eventually(check, f"{count} events of {partner} processed")
    return rows


async def rejected(gateway: Gateway, partner: str, key: str) -> list[dict[str, Any]]:
    response = await gateway.client.get(f"/v1/partners/{partner}/rejected", headers=bearer(key))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


# ------------------------------------------------------------------------------ registry


async def test_operators_register_partners_and_the_secret_is_shown_once(
    gateway: Gateway, operator_key: str, listing: httpx.AsyncClient
) -> None:
    partner = code()
    created = await register(
        gateway, operator_key, partner, adapter="tjipe_v1", pull_url="https://feed.example/x"
    )
    assert created["inbound_secret"].startswith("whsec_")
    assert created["status"] == "active" and created["adapter"] == "tjipe_v1"
    assert created["inbound_url"].endswith(f"/v1/inbound/{partner}")
    listed = await gateway.client.get("/v1/partners", headers=bearer(operator_key))
    assert listed.status_code == 200
    mine = [p for p in listed.json()["items"] if p["code"] == partner]
    assert mine and "inbound_secret" not in mine[0]
    read = await gateway.client.get(f"/v1/partners/{partner}", headers=bearer(operator_key))
    assert "inbound_secret" not in read.json()

    updated = await gateway.client.patch(
        f"/v1/partners/{partner}",
        json={"name": "天津知识产权交易中心", "pull_url": None, "pull_interval_seconds": 30},
        headers=bearer(operator_key),
    )
    assert updated.status_code == 200, updated.text
    body = updated.json()
    assert body["name"] == "天津知识产权交易中心" and body["pull_url"] is None
    assert body["inbound_secret"] is None

    duplicate = await gateway.client.post(
        "/v1/partners",
        json={"code": partner, "name": "again", "region": "120000"},
        headers=bearer(operator_key),
    )
    assert_problem(duplicate, 409)

    _, member_key = await new_organization(listing, operator_key, name="某大学")
    assert_problem(
        await gateway.client.post(
            "/v1/partners",
            json={"code": code(), "name": "x", "region": "120000"},
            headers=bearer(member_key),
        ),
        403,
    )
    assert_problem(await gateway.client.get("/v1/partners"), 401)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"code": "jjj"}, "code"),
        ({"code": "A!"}, "code"),
        ({"region": "999999"}, "region"),
        ({"region": "12"}, "region"),
        ({"adapter": "xml"}, "adapter"),
        ({"pull_url": "ftp://feed.example/x"}, "pull_url"),
        ({"pull_url": "https://user:pw@feed.example/x"}, "pull_url"),
        ({"pull_interval_seconds": 5}, "pull_interval_seconds"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_invalid_registrations_are_422(
    gateway: Gateway, operator_key: str, body: dict[str, Any], field: str
) -> None:
    payload = {"code": code(), "name": "某交易所", "region": "120000", **body}
    problem = assert_problem(
        await gateway.client.post("/v1/partners", json=payload, headers=bearer(operator_key)), 422
    )
    assert field in {e["field"] for e in problem["errors"]}, problem


# ------------------------------------------------------------------------------ push


async def test_a_canonical_push_becomes_a_published_listing(
    gateway: Gateway,
    operator_key: str,
    service_key: str,
    listing: httpx.AsyncClient,
    numbers: Iterator[str],
) -> None:
    partner, secret = await new_partner(gateway, operator_key)
    number = next(numbers)
    response = await push(gateway, partner, secret, partner_document(partner, "L-1", number))
    assert response.status_code == 202, response.text
    assert response.json() == {
        "event_id": response.json()["event_id"],
        "duplicate": False,
        "offer_id": f"{partner}:L-1",
        "source_version": 1,
        "event_type": None,
    }
    await settled(gateway, partner, 1)
    offers = await offers_of(listing, service_key, partner)
    offer = offers[f"{partner}:L-1"]
    assert offer["status"] == "published"
    shown = await listing.get(f"/v1/listings/{offer['listing_id']}")  # public: published
    assert shown.status_code == 200, shown.text
    assert shown.json()["exchange"] == partner
    assert shown.json()["source_url"] == f"https://{partner}.example/listings/L-1"
    assert shown.json()["asset"]["identifier"] == number


async def test_a_tjipe_push_in_an_envelope_is_converted_from_wan(
    gateway: Gateway,
    operator_key: str,
    service_key: str,
    listing: httpx.AsyncClient,
    numbers: Iterator[str],
) -> None:
    partner, secret = await new_partner(gateway, operator_key, adapter="tjipe_v1")
    number = next(numbers)
    event = {
        "type": "listing.published",
        "timestamp": "2026-11-20T00:00:05Z",
        "data": tjipe("TJ-1", number),
    }
    response = await push(gateway, partner, secret, event)
    assert response.status_code == 202, response.text
    assert response.json()["event_type"] == "listing.published"
    await settled(gateway, partner, 1)
    found = (await offers_of(listing, service_key, partner))[f"{partner}:TJ-1"]["document"]
    assert found["transaction"]["price"]["amount"] == "1205000.00"
    assert found["transaction"]["type"] == "nonexclusive_license"
    assert found["asset"]["identifier"] == number
    assert found["source"]["url"] == "https://tjipe.example/l/TJ-1"
    assert found["source"]["updated_at"].startswith("2026-11-20T01:00:00")  # 09:00 Beijing


async def test_refused_pushes_store_nothing(
    gateway: Gateway, operator_key: str, numbers: Iterator[str]
) -> None:
    partner, secret = await new_partner(gateway, operator_key)
    body = json.dumps(partner_document(partner, "L-1", next(numbers))).encode()
    now = datetime.now(UTC)
    good = signed_headers(secret, "msg_1", body)

    async def send(headers: dict[str, str], target: str = partner) -> httpx.Response:
        return await gateway.client.post(f"/v1/inbound/{target}", content=body, headers=headers)

    def header_at_fault(response: httpx.Response, status: int) -> str:
        problem = assert_problem(response, status)
        return ",".join(sorted(e["field"] for e in problem.get("errors", [])))

    wrong_secret = signed_headers("whsec_" + "A" * 43, "msg_1", body)
    assert header_at_fault(await send(wrong_secret), 401) == "webhook-signature"
    tampered = await gateway.client.post(
        f"/v1/inbound/{partner}", content=body.replace(b"L-1", b"L-2"), headers=good
    )
    assert header_at_fault(tampered, 401) == "webhook-signature"
    stale = signed_headers(secret, "msg_1", body, at=now - timedelta(minutes=6))
    assert header_at_fault(await send(stale), 401) == "webhook-timestamp"
    future = signed_headers(secret, "msg_1", body, at=now + timedelta(minutes=6))
    assert header_at_fault(await send(future), 401) == "webhook-timestamp"
    for garbage in ("v1,%%%", "nonsense", "v1,", "v2,abc", " ", "v1,dGVzdA== v1"):
        assert header_at_fault(await send({**good, "webhook-signature": garbage}), 401) in (
            "webhook-signature"
        ), garbage
    for timestamp in ("soon", "1e20", "-5", "9" * 40):
        response = await send({**good, "webhook-timestamp": timestamp})
        assert header_at_fault(response, 401) == "webhook-timestamp", timestamp
    missing = {k: v for k, v in good.items() if k not in ("webhook-id", "webhook-signature")}
    assert header_at_fault(await send(missing), 401) == "webhook-id,webhook-signature"
    assert_problem(await send(good, target="nobody"), 404)

    suspended = await gateway.client.patch(
        f"/v1/partners/{partner}", json={"status": "suspended"}, headers=bearer(operator_key)
    )
    assert suspended.status_code == 200
    assert_problem(await send(good), 403)
    assert await inbox(gateway, partner) == []
    assert await rejected(gateway, partner, operator_key) == []

    await gateway.client.patch(
        f"/v1/partners/{partner}", json={"status": "active"}, headers=bearer(operator_key)
    )
    assert (await send(good)).status_code == 202


async def test_a_rotated_secret_replaces_the_old_one(
    gateway: Gateway, operator_key: str, numbers: Iterator[str]
) -> None:
    partner, old = await new_partner(gateway, operator_key)
    rotated = await gateway.client.patch(
        f"/v1/partners/{partner}", json={"rotate_secret": True}, headers=bearer(operator_key)
    )
    new = rotated.json()["inbound_secret"]
    assert new.startswith("whsec_") and new != old
    payload = partner_document(partner, "L-1", next(numbers))
    assert_problem(await push(gateway, partner, old, payload), 401)
    assert (await push(gateway, partner, new, payload)).status_code == 202


async def test_the_same_webhook_id_twice_is_accepted_once(
    gateway: Gateway, operator_key: str, numbers: Iterator[str]
) -> None:
    partner, secret = await new_partner(gateway, operator_key)
    payload = partner_document(partner, "L-1", next(numbers))
    first = await push(gateway, partner, secret, payload, event_id="msg_same")
    again = await push(gateway, partner, secret, payload, event_id="msg_same")
    assert (first.status_code, again.status_code) == (202, 202)
    assert (first.json()["duplicate"], again.json()["duplicate"]) == (False, True)
    rows = await settled(gateway, partner, 1)
    assert [r.status for r in rows] == ["applied"]


async def test_invalid_payloads_are_422_with_every_error_and_visible_to_the_partner(
    gateway: Gateway,
    operator_key: str,
    listing: httpx.AsyncClient,
    numbers: Iterator[str],
) -> None:
    org_id, admin_key, partner_key = await new_exchange(
        listing, operator_key, name="天津知识产权交易中心"
    )
    partner, secret = await new_partner(
        gateway, operator_key, adapter="tjipe_v1", organization_id=org_id
    )
    number = next(numbers)
    bad = {**tjipe("TJ-9", number, 版本="v2", 状态="上架"), "价格(万元)": "-3"}
    bad["专利号"] = bad["专利号"][:-1] + ("0" if bad["专利号"][-1] != "0" else "1")
    response = await push(gateway, partner, secret, bad, event_id="msg_bad")
    problem = assert_problem(response, 422)
    assert {e["field"]: e["rule"] for e in problem["errors"]} == {
        "版本": "int_format",
        "状态": "enum",
        "价格(万元)": "amount_negative",
        "专利号": "cn_patent_check_digit",
    }
    malformed = await push(
        gateway, partner, secret, '{"编号": "TJ-9",'.encode(), event_id="msg_cut"
    )
    problem = assert_problem(malformed, 400)  # not JSON at all: 400, as on every route
    assert problem["errors"][0]["field"] == "body"
    assert problem["errors"][0]["rule"] == "json_invalid"
    wrapped = await push(
        gateway, partner, secret, {"type": "listing.updated", "data": {"编号": "TJ-9"}}
    )
    assert "data.专利号" in {e["field"] for e in assert_problem(wrapped, 422)["errors"]}
    assert await inbox(gateway, partner) == []

    for key in (partner_key, operator_key):
        seen = await rejected(gateway, partner, key)
        assert [r["event_id"] for r in seen][1:] == ["msg_cut", "msg_bad"]
        assert seen[-1]["source"] == "push"
        assert {e["field"] for e in seen[-1]["errors"]} == {"版本", "状态", "价格(万元)", "专利号"}
        assert "TJ-9" in seen[-1]["payload_excerpt"]
    paged = await gateway.client.get(
        f"/v1/partners/{partner}/rejected", params={"page_size": 2}, headers=bearer(partner_key)
    )
    assert len(paged.json()["items"]) == 2 and paged.json()["next_page_token"]
    rest = await gateway.client.get(
        f"/v1/partners/{partner}/rejected",
        params={"page_size": 2, "page_token": paged.json()["next_page_token"]},
        headers=bearer(partner_key),
    )
    assert [r["event_id"] for r in rest.json()["items"]] == ["msg_bad"]
    assert len(await rejected(gateway, partner, admin_key)) == 3  # the exchange's own staff
    _, stranger = await new_organization(listing, operator_key, name="河北某公司", region="130100")
    assert_problem(
        await gateway.client.get(f"/v1/partners/{partner}/rejected", headers=bearer(stranger)),
        403,
    )
    assert_problem(await gateway.client.get(f"/v1/partners/{partner}/rejected"), 401)


async def test_offers_listing_refuses_are_rejected_events_too(
    gateway: Gateway, operator_key: str, numbers: Iterator[str]
) -> None:
    partner, secret = await new_partner(gateway, operator_key)
    negotiable_open = partner_document(
        partner, "L-open", next(numbers), transaction_type="open_license", price_mode="negotiable"
    )
    response = await push(gateway, partner, secret, negotiable_open, event_id="msg_open")
    assert response.status_code == 202, response.text
    rows = await settled(gateway, partner, 1)
    assert rows[0].status == "rejected"
    seen = await rejected(gateway, partner, operator_key)
    assert seen[0]["event_id"] == "msg_open"
    assert "open_license_not_negotiable" in {e["rule"] for e in seen[0]["errors"]}


async def test_listing_down_is_retried_with_backoff_until_applied(
    gateway: Gateway,
    operator_key: str,
    service_key: str,
    listing: httpx.AsyncClient,
    numbers: Iterator[str],
) -> None:
    partner, secret = await new_partner(gateway, operator_key)
    gateway.listing.failures = 3
    response = await push(gateway, partner, secret, partner_document(partner, "L-r", next(numbers)))
    assert response.status_code == 202, response.text
    rows = await settled(gateway, partner, 1)
    assert gateway.listing.failures == 0
    assert (rows[0].status, rows[0].attempts, rows[0].error) == ("applied", 3, None)
    assert f"{partner}:L-r" in await offers_of(listing, service_key, partner)


async def test_the_inbound_format_is_documented_as_json_schema(gateway: Gateway) -> None:
    spec = (await gateway.client.get("/openapi.json")).json()
    operation = spec["paths"]["/v1/inbound/{partner}"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    # By reference to components, each a model a generated client can build.
    refs = [alternative["$ref"] for alternative in schema["anyOf"]]
    assert refs == [
        "#/components/schemas/CatalogueDocument",
        "#/components/schemas/InboundEvent",
        "#/components/schemas/TjipeListingV1",
    ]
    components = spec["components"]["schemas"]
    canonical = components["CatalogueDocument"]
    assert {"offer_id", "source", "asset", "transaction"} <= set(canonical["properties"])
    envelope = components["InboundEvent"]
    assert envelope["properties"]["type"]["enum"] == [
        "listing.published",
        "listing.updated",
        "listing.withdrawn",
    ]
    assert {"TjipeListingV1", "AssetDocument", "TransactionTerms"} <= set(components)
    assert {p["name"] for p in operation["parameters"]} >= {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }


async def test_a_flood_out_of_order_with_duplicates_ends_in_the_final_state(
    gateway: Gateway,
    operator_key: str,
    service_key: str,
    listing: httpx.AsyncClient,
    numbers: Iterator[str],
) -> None:
    partner, secret = await new_partner(gateway, operator_key)
    offers = {f"F-{i:02d}": next(numbers) for i in range(20)}
    final_status = {
        listing_id: (
            "withdrawn" if i % 4 == 0 else "under_negotiation" if i % 4 == 1 else "published"
        )
        for i, listing_id in enumerate(offers)
    }

    def amount(i: int, version: int) -> str:
        return f"{100000 + version * 1000 + i}.00"

    events: list[tuple[str, dict[str, Any]]] = []
    for version in range(1, 11):
        for i, (listing_id, number) in enumerate(offers.items()):
            status = final_status[listing_id] if version == 10 else "published"
            payload = partner_document(
                partner, listing_id, number, version, status=status, amount=amount(i, version)
            )
            events.append((f"msg_{listing_id}_{version}", payload))
    rng = random.Random(20261120)
    order = list(events)
    for _ in range(len(order) // 10):  # 10% of the events moved out of order
        a, b = rng.randrange(len(order)), rng.randrange(len(order))
        order[a], order[b] = order[b], order[a]
    for duplicate in rng.sample(events, len(events) // 10):  # 10% sent twice
        order.insert(rng.randrange(len(order) + 1), duplicate)
    assert len(order) == 220

    limit = asyncio.Semaphore(8)

    async def send(event_id: str, payload: dict[str, Any]) -> int:
        async with limit:
            return (await push(gateway, partner, secret, payload, event_id=event_id)).status_code

    statuses = await asyncio.gather(*(send(event_id, payload) for event_id, payload in order))
    assert set(statuses) == {202}

    rows = await settled(gateway, partner, 200)
    assert len({r.event_id for r in rows}) == 200
    applied = sorted(
        (r for r in rows if r.status == "applied"), key=lambda r: (r.processed_at, r.id)
    )
    for listing_id in offers:  # applied in version order: no offer ever went back
        versions = [r.source_version for r in applied if r.offer_key == f"{partner}:{listing_id}"]
        assert versions == sorted(set(versions)) and versions[-1] == 10
    found = await offers_of(listing, service_key, partner)
    assert set(found) == {f"{partner}:{listing_id}" for listing_id in offers}
    for i, listing_id in enumerate(offers):
        offer = found[f"{partner}:{listing_id}"]
        assert offer["document"]["source"]["version"] == 10
        assert offer["status"] == final_status[listing_id]
        assert offer["document"]["transaction"]["price"]["amount"] == amount(i, 10)


async def test_one_asset_on_three_exchanges_is_one_asset_with_three_offers(
    gateway: Gateway,
    operator_key: str,
    service_key: str,
    listing: httpx.AsyncClient,
    numbers: Iterator[str],
) -> None:
    number = next(numbers)
    exchanges = []
    for typed, adapter in (
        (number, "canonical"),
        (number, "tjipe_v1"),
        ("ZL" + number, "canonical"),
    ):
        partner, secret = await new_partner(gateway, operator_key, adapter=adapter)
        payload = (
            tjipe("X-1", number)
            if adapter == "tjipe_v1"
            else partner_document(partner, "X-1", number, typed=typed)
        )
        response = await push(gateway, partner, secret, payload)
        assert response.status_code == 202, response.text
        exchanges.append(partner)
    offers = []
    for partner in exchanges:
        await settled(gateway, partner, 1)
        offers.append((await offers_of(listing, service_key, partner))[f"{partner}:X-1"])
    assert len({o["asset_id"] for o in offers}) == 1
    assert {o["document"]["source"]["exchange"] for o in offers} == set(exchanges)
    assert all(o["document"]["source"]["listing_id"] == "X-1" for o in offers)
    assert all(o["document"]["source"]["url"] for o in offers)
    assert all(o["document"]["asset"]["identifier"] == number for o in offers)


# ------------------------------------------------------------------------------ pull


async def set_due(gateway: Gateway, partner: str) -> None:
    """Time passes: the partner's next pull is due now."""
    async with gateway.app.state.sessionmaker() as session, session.begin():
        await session.execute(
            update(Partner)
            .where(col(Partner.code) == partner)
            .values(pull_next_at=datetime.now(UTC))
        )


async def partner_state(gateway: Gateway, partner: str, key: str) -> dict[str, Any]:
    response = await gateway.client.get(f"/v1/partners/{partner}", headers=bearer(key))
    assert response.status_code == 200, response.text
    state: dict[str, Any] = response.json()
    return state


async def allow_local_feed(gateway: Gateway, operator_key: str, partner: str, url: str) -> None:
    """The operator allow-lists the test's partner site (127.0.0.1 and its port) for one
    partner: a pull goes through the SSRF guard the webhooks use."""
    added = await gateway.client.post(
        "/v1/webhook-targets",
        json=allowed_target(url, partner_code=partner),
        headers=bearer(operator_key),
    )
    assert added.status_code == 201, added.text


async def test_a_pull_url_to_a_private_address_is_refused_before_connecting(
    gateway: Gateway,
    settings: Settings,
    listing_app: FastAPI,
    partner_site: PartnerSite,
    operator_key: str,
) -> None:
    # Cloud metadata, a loopback address nobody allow-listed, and a feed allow-listed for
    # another partner only (an entry opens a target to its own tenant).
    allowed, borrower = code(), code()
    partners = {
        code(): "http://169.254.169.254/latest/meta-data/",
        code(): "http://127.0.0.2:9/f",
        borrower: partner_site.url(borrower),
    }
    for partner, pull_url in partners.items():
        await register(gateway, operator_key, partner, pull_url=pull_url)
    await register(gateway, operator_key, allowed)
    await allow_local_feed(gateway, operator_key, allowed, partner_site.url(borrower))
    partner_site.feeds[borrower] = Feed(items=[])

    def failed(partner: str) -> Callable[[], Awaitable[dict[str, Any] | None]]:
        async def check() -> dict[str, Any] | None:
            state = await partner_state(gateway, partner, operator_key)
            return state if state["pull_failures"] >= 1 else None

        return check

    async with running_gateway(settings, listing_app, pull=True):
        for partner in partners:
            state = await eventually(failed(partner), "the refused pull")
            assert state["pull_last_error"].startswith("ssrf_forbidden_target"), state
            assert state["pull_cursor"] is None
    assert partner_site.feeds[borrower].log == []  # refused before connecting


async def test_pull_pages_through_a_feed_resumes_after_a_restart_and_honours_304(
    gateway: Gateway,
    settings: Settings,
    listing_app: FastAPI,
    partner_site: PartnerSite,
    operator_key: str,
    service_key: str,
    listing: httpx.AsyncClient,
    numbers: Iterator[str],
) -> None:
    partner = code()
    owned = list(itertools.islice(numbers, 25))
    feed = partner_site.feeds[partner] = Feed(
        items=[tjipe(f"P-{i:02d}", number) for i, number in enumerate(owned)]
    )
    await register(
        gateway,
        operator_key,
        partner,
        adapter="tjipe_v1",
        pull_url=partner_site.url(partner),
        pull_interval_seconds=10,
    )
    await allow_local_feed(gateway, operator_key, partner, partner_site.url(partner))

    async def cursor_is(value: str) -> bool:
        state = await partner_state(gateway, partner, operator_key)
        return bool(state["pull_cursor"] == value)

    async with running_gateway(settings, listing_app, pull=True) as first:
        await eventually(lambda: cursor_is("25"), "the first sync")
        await eventually(lambda: first_pass_done(feed), "the caught-up page with its ETag")
        await eventually(lambda: pull_finished(gateway, partner, operator_key), "the pull's end")
        await set_due(first, partner)
        await eventually(lambda: saw(feed, 304), "a 304 for the stored ETag")
        await eventually(lambda: pull_finished(gateway, partner, operator_key), "the 304's end")
    assert [c for c, _, _ in feed.log[:4]] == [None, "10", "20", "25"]
    assert feed.log[-1] == ("25", '"25-25"', 304)

    # While no gateway runs, the partner lists updates of five offers and two new ones.
    feed.items += [tjipe(f"P-{i:02d}", owned[i], 2, 状态="已撤回") for i in range(5)]
    fresh = list(itertools.islice(numbers, 2))
    feed.items += [tjipe(f"P-N{i}", number) for i, number in enumerate(fresh)]
    requests_before = len(feed.log)
    async with running_gateway(settings, listing_app, pull=True) as second:
        await set_due(second, partner)
        await eventually(lambda: cursor_is("32"), "the sync after the restart")
        await settled(second, partner, 32)
    after = feed.log[requests_before:]
    assert after[0][0] == "25", after  # resumed from the stored cursor, not from the start
    assert all(c is not None for c, _, _ in after)
    found = await offers_of(listing, service_key, partner)
    assert len(found) == 27
    assert all(found[f"{partner}:P-{i:02d}"]["status"] == "withdrawn" for i in range(5))
    assert found[f"{partner}:P-05"]["status"] == "published"
    state = await partner_state(gateway, partner, operator_key)
    assert state["pull_failures"] == 0 and state["pull_last_error"] is None


async def pull_finished(gateway: Gateway, partner: str, key: str) -> bool:
    """The pull ended and scheduled the next one an interval ahead."""
    state = await partner_state(gateway, partner, key)
    next_at = state["pull_next_at"]
    return next_at is not None and datetime.fromisoformat(next_at) > datetime.now(UTC) + timedelta(
        seconds=5
    )


async def first_pass_done(feed: Feed) -> bool:
    return any(cursor == "25" and status == 200 for cursor, _, status in feed.log)


async def asked(feed: Feed) -> bool:
    return feed.in_flight > 0


async def saw(feed: Feed, status: int) -> bool:
    return any(s == status for _, _, s in feed.log)


async def test_slow_and_broken_partners_do_not_hold_up_a_healthy_one(
    gateway: Gateway,
    settings: Settings,
    listing_app: FastAPI,
    partner_site: PartnerSite,
    operator_key: str,
    numbers: Iterator[str],
) -> None:
    sleepy, broken, healthy = code(), code(), code()
    partner_site.feeds[sleepy] = Feed(mode="sleepy")
    partner_site.feeds[broken] = Feed(mode="garbage")
    partner_site.feeds[healthy] = Feed(
        items=[
            partner_document(healthy, f"H-{i}", number)
            for i, number in enumerate(itertools.islice(numbers, 3))
        ]
    )
    # The slow and the broken are registered (and due) first.
    for partner in (sleepy, broken, healthy):
        await register(gateway, operator_key, partner, pull_url=partner_site.url(partner))
        await allow_local_feed(gateway, operator_key, partner, partner_site.url(partner))

    async with running_gateway(settings, listing_app, pull=True) as running:
        await eventually(lambda: asked(partner_site.feeds[sleepy]), "the slow partner asked")
        rows = await settled(running, healthy, 3)
        assert partner_site.feeds[sleepy].in_flight == 1  # still waiting on the slow partner
        assert {r.status for r in rows} == {"applied"}

        async def failed(partner: str) -> dict[str, Any] | None:
            state = await partner_state(gateway, partner, operator_key)
            return state if state["pull_failures"] >= 1 else None

        broken_state = await eventually(lambda: failed(broken), "the garbage partner's failure")
        assert "not JSON" in broken_state["pull_last_error"]
        assert broken_state["pull_cursor"] is None
        sleepy_state = await eventually(lambda: failed(sleepy), "the slow partner's timeout", 10)
        assert "did not answer" in sleepy_state["pull_last_error"]
        for state in (broken_state, sleepy_state):  # backed off, not retried at once
            next_at = datetime.fromisoformat(state["pull_next_at"])
            assert next_at > datetime.now(UTC) + timedelta(seconds=2)
    healthy_state = await partner_state(gateway, healthy, operator_key)
    assert healthy_state["pull_cursor"] == "3" and healthy_state["pull_failures"] == 0


async def test_a_nul_in_a_refused_push_is_stored_as_a_replacement_character(
    gateway: Gateway, operator_key: str
) -> None:
    # Found by the fuzzer: PostgreSQL refuses NUL in text and jsonb, so recording the refusal
    # of a body "\x00" (or of a key holding one) was a 500.
    partner, secret = await new_partner(gateway, operator_key)
    not_json, nul_key = b"\x00", json.dumps({"\x00": 1}).encode()
    assert_problem(await push(gateway, partner, secret, not_json), 400)
    assert_problem(await push(gateway, partner, secret, nul_key), 422)
    stored = await rejected(gateway, partner, operator_key)
    assert [item["payload_excerpt"] for item in stored] == ['{"\\u0000": 1}', "\ufffd"]
