"""Outbound webhooks end to end: listing's and matching's real apps in process, the gateway's
webhook router and workers on the test database, and real HTTP subscribers on 127.0.0.1 that
can be told to fail, close the connection, hang or answer slowly."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from receiver import Received, Receiver, receiving
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from infra.migrations import head_revision
from services.gateway.models import SCHEMA
from services.gateway.webhooks.router import router
from services.gateway.webhooks.workers import (
    RETRY_JITTER,
    RETRY_SCHEDULE,
    delivery_workers,
    fanout_workers,
    retry_delay,
)
from shared.app import build_app, open_database, open_upstreams
from shared.settings import Settings
from shared.webhooks import new_secret
from shared.workers import run_workers
from support import (
    allow_local,
    allowed_target,
    assert_problem,
    bearer,
    new_organization,
    patent,
    publish_listing,
    real_application_numbers,
    serve_in_process,
    terms,
)

SELLER = "北京理工大学"
HEBEI_SELLER = "河北大学"
INVENTIONS = real_application_numbers("invention_patent")
UTILITY_MODELS = real_application_numbers("utility_model")
# Shrunk for the tests: 6 attempts over about 6 s (production: RETRY_SCHEDULE, over 24 h).
TEST_SCHEDULE = (0.2, 0.4, 0.8, 1.6, 3.2)


# ----------------------------------------------------------------------------- a subscriber


# ----------------------------------------------------------------------------- the gateway


def gateway_app(settings: Settings, listing_app: FastAPI, matching_app: FastAPI) -> FastAPI:
    """What the gateway's create_app does for webhooks: database, upstreams, the router, and
    both workers as tasks of the lifespan (retry schedule shrunk)."""
    settings = settings.model_copy(update={"webhook_retry_schedule": list(TEST_SCHEDULE)})

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        upstreams = {"listing": settings.listing_url, "matching": settings.matching_url}
        async with (
            open_database(app, settings, schema=SCHEMA, expected_revision=head_revision(SCHEMA)),
            open_upstreams(app, settings, upstreams),
            run_workers(app, [*fanout_workers(app), *delivery_workers(app)]),
        ):
            yield

    return build_app(
        name="gateway",
        settings=settings,
        lifespan=lifespan,
        routers=[router],
        http_mounts={
            "http://listing.test": httpx.ASGITransport(app=listing_app),
            "http://matching.test": httpx.ASGITransport(app=matching_app),
        },
        description="gateway webhooks under test",
    )


@pytest.fixture(scope="module")
async def gateway(
    settings: Settings,
    listing_app: FastAPI,
    matching_app: FastAPI,
) -> AsyncIterator[httpx.AsyncClient]:
    """This module's gateway: the webhook router and workers (shadows conftest's)."""
    app = gateway_app(settings, listing_app, matching_app)
    async with serve_in_process(app, "http://gateway.test") as client:
        yield client


@dataclass
class Market:
    seller: str  # Beijing seller's key
    hebei: str  # Hebei seller's key
    buyer: str
    buyer_org: str
    other: str  # an unrelated organisation's key
    organization_of: dict[str, str]  # key -> its organisation's id


AllowLocal = Callable[[str, str], Awaitable[None]]


@pytest.fixture
async def local_allowed(
    gateway: httpx.AsyncClient, operator_key: str, market: Market
) -> AllowLocal:
    """The operator allow-lists a test's own receiver (127.0.0.1 and its port) for the
    organisation of the key that subscribes it."""

    async def allow(key: str, url: str) -> None:
        await allow_local(gateway, operator_key, market.organization_of[key], url)

    return allow


@pytest.fixture(scope="module")
async def market(listing: httpx.AsyncClient, operator_key: str) -> Market:
    seller_org, seller = await new_organization(listing, operator_key, name=SELLER, region="110108")
    hebei_org, hebei = await new_organization(
        listing, operator_key, name=HEBEI_SELLER, region="130600"
    )
    buyer_org, buyer = await new_organization(
        listing, operator_key, name="河北某新能源科技有限公司", kind="enterprise", region="130100"
    )
    other_org, other = await new_organization(
        listing, operator_key, name="天津某贸易有限公司", kind="enterprise", region="120000"
    )
    organizations = {seller: seller_org, hebei: hebei_org, buyer: buyer_org, other: other_org}
    return Market(seller, hebei, buyer, buyer_org, other, organizations)


@pytest.fixture
async def subscriptions(gateway: httpx.AsyncClient) -> AsyncIterator[list[tuple[str, str]]]:
    """(id, key) of what a test subscribes; disabled afterwards so later tests see no noise."""
    created: list[tuple[str, str]] = []
    yield created
    for subscription_id, key in created:
        await gateway.delete(f"/v1/subscriptions/{subscription_id}", headers=bearer(key))


async def subscribe(
    gateway: httpx.AsyncClient,
    created: list[tuple[str, str]],
    key: str,
    url: str,
    event_types: list[str],
    filter: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url, "event_types": event_types}
    if filter is not None:
        body["filter"] = filter
    response = await gateway.post("/v1/subscriptions", json=body, headers=bearer(key))
    assert response.status_code == 201, response.text
    subscription: dict[str, Any] = response.json()
    created.append((subscription["id"], key))
    return subscription


async def publish(
    listing: httpx.AsyncClient,
    key: str,
    operator_key: str,
    *,
    holder: str = SELLER,
    region: str = "110108",
    kind: str = "invention_patent",
    deal: dict[str, Any] | None = None,
) -> str:
    """A listing on a real CN application number, submitted and approved: its id."""
    number = next(UTILITY_MODELS if kind == "utility_model" else INVENTIONS)
    asset = patent(
        holder,
        number,
        kind=kind,
        holders=[{"name": holder, "region": region}],
    )
    body = {"asset": asset, "transaction": deal or terms()}
    return await publish_listing(listing, key, operator_key, body)


async def update_price(listing: httpx.AsyncClient, key: str, listing_id: str, amount: str) -> None:
    current = await listing.get(f"/v1/listings/{listing_id}", headers=bearer(key))
    updated = await listing.patch(
        f"/v1/listings/{listing_id}",
        json={"transaction": terms(amount=amount)},
        headers={**bearer(key), "If-Match": current.headers["etag"]},
    )
    assert updated.status_code == 200, updated.text


async def withdraw(listing: httpx.AsyncClient, key: str, listing_id: str) -> None:
    response = await listing.post(f"/v1/listings/{listing_id}/withdraw", headers=bearer(key))
    assert response.status_code == 200, response.text


async def deliveries(
    gateway: httpx.AsyncClient, key: str, subscription_id: str, **params: Any
) -> list[dict[str, Any]]:
    response = await gateway.get(
        f"/v1/subscriptions/{subscription_id}/deliveries",
        params={"page_size": 200, **params},
        headers=bearer(key),
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def wait_deliveries(
    gateway: httpx.AsyncClient,
    key: str,
    subscription_id: str,
    done: Callable[[list[dict[str, Any]]], bool],
    seconds: float = 20.0,
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + seconds
    while True:
        items = await deliveries(gateway, key, subscription_id)
        if done(items):
            return items
        if time.monotonic() > deadline:
            states = [(d["event_type"], d["status"], d["attempts"]) for d in items]
            raise AssertionError(f"deliveries did not settle: {states}")
        await asyncio.sleep(0.1)


def verified(secret: str, request: Received) -> dict[str, Any]:
    """The body, after Standard Webhooks verification of its signature."""
    Webhook(secret).verify(request.body, request.headers)
    return request.json()


# ----------------------------------------------------------------------------- the tests


def test_the_retry_schedule_spans_more_than_a_day_then_gives_up() -> None:
    shortest = sum(RETRY_SCHEDULE) * (1 - RETRY_JITTER)
    assert shortest >= 24 * 3600, shortest / 3600
    assert list(RETRY_SCHEDULE) == sorted(RETRY_SCHEDULE)  # exponential-ish, never shrinking
    for attempts in range(1, len(RETRY_SCHEDULE) + 1):
        delay = retry_delay(attempts)
        base = RETRY_SCHEDULE[attempts - 1]
        assert delay is not None and base * 0.8 <= delay <= base * 1.2
    assert retry_delay(len(RETRY_SCHEDULE) + 1) is None


async def test_ssrf_targets_and_bad_subscriptions_are_refused(
    gateway: httpx.AsyncClient,
    market: Market,
    operator_key: str,
    subscriptions: list[tuple[str, str]],
) -> None:
    # Without the operator's allow-list, nothing local is a target.
    seller_org = market.organization_of[market.seller]
    entries = await gateway.get(
        "/v1/webhook-targets", params={"organization_id": seller_org}, headers=bearer(operator_key)
    )
    for entry in entries.json()["items"]:
        await gateway.delete(f"/v1/webhook-targets/{entry['id']}", headers=bearer(operator_key))
    for url in (
        "http://127.0.0.1:9/hook",
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/",
        "http://localhost/hook",
        "http://2130706433/",
        "http://0177.0.0.1/",
        "http://[::ffff:127.0.0.1]/",
        "http://metadata.google.internal/",
    ):
        response = await gateway.post(
            "/v1/subscriptions",
            json={"url": url, "event_types": ["listing.published"]},
            headers=bearer(market.seller),
        )
        body = assert_problem(response, 422)
        assert body["errors"][0]["field"] == "url", url
        assert body["errors"][0]["rule"] == "ssrf_forbidden_target", url
    for url, rule in (
        ("ftp://example.com/x", "url_scheme"),
        ("https://user:pw@example.com/x", "url_credentials"),
    ):
        body = assert_problem(
            await gateway.post(
                "/v1/subscriptions",
                json={"url": url, "event_types": ["listing.published"]},
                headers=bearer(market.seller),
            ),
            422,
        )
        assert body["errors"][0]["rule"] == rule
    # Only operators keep the allow-list.
    hook = "http://127.0.0.1:9/hook"
    assert_problem(
        await gateway.post(
            "/v1/webhook-targets",
            json=allowed_target(hook, organization_id=seller_org),
            headers=bearer(market.seller),
        ),
        403,
    )
    op = bearer(operator_key)
    invalid: list[tuple[dict[str, Any], str, str | None]] = [
        (
            {"pattern": "not a host!", "port": 9, "organization_id": seller_org},
            "pattern",
            "target_pattern",
        ),
        ({"pattern": "127.0.0.1", "organization_id": seller_org}, "port", None),
        ({"pattern": "127.0.0.1", "port": 70000, "organization_id": seller_org}, "port", None),
        ({"pattern": "127.0.0.1", "port": 9}, "organization_id", "target_tenant"),
        (
            {
                "pattern": "127.0.0.1",
                "port": 9,
                "organization_id": seller_org,
                "partner_code": "tjipe",
            },
            "organization_id",
            "target_tenant",
        ),
        (
            {"pattern": "127.0.0.1", "port": 9, "partner_code": "nobody"},
            "partner_code",
            "partner_unknown",
        ),
    ]
    for body, field_name, expected_rule in invalid:
        problem = assert_problem(
            await gateway.post("/v1/webhook-targets", json=body, headers=op), 422
        )
        assert problem["errors"][0]["field"] == field_name, body
        assert expected_rule in (None, problem["errors"][0]["rule"]), body
    added = await gateway.post(
        "/v1/webhook-targets", json=allowed_target(hook, organization_id=seller_org), headers=op
    )
    assert added.status_code == 201
    assert added.json() | {"id": None, "created_at": None} == {
        "id": None,
        "pattern": "127.0.0.1",
        "port": 9,
        "organization_id": seller_org,
        "partner_code": None,
        "created_at": None,
    }
    again = await gateway.post(
        "/v1/webhook-targets", json=allowed_target(hook, organization_id=seller_org), headers=op
    )
    assert again.json()["id"] == added.json()["id"]  # adding twice changes nothing
    network = await gateway.post(
        "/v1/webhook-targets",
        json={"pattern": "10.20.3.4/16", "port": 443, "organization_id": seller_org},
        headers=op,
    )
    assert network.json()["pattern"] == "10.20.0.0/16"
    listed = await gateway.get(
        "/v1/webhook-targets", params={"organization_id": seller_org}, headers=op
    )
    assert {("127.0.0.1", 9), ("10.20.0.0/16", 443)} == {
        (t["pattern"], t["port"]) for t in listed.json()["items"]
    }
    others = await gateway.get(
        "/v1/webhook-targets",
        params={"organization_id": market.organization_of[market.other]},
        headers=op,
    )
    assert ("127.0.0.1", 9) not in {(t["pattern"], t["port"]) for t in others.json()["items"]}
    drop = f"/v1/webhook-targets/{network.json()['id']}"
    assert (await gateway.delete(drop, headers=op)).status_code == 204
    assert_problem(await gateway.delete(drop, headers=op), 404)
    await subscribe(gateway, subscriptions, market.seller, hook, ["listing.published"])
    # The entry opens that port to that organisation only: not another port, not another tenant.
    for key, url in (
        (market.seller, "http://127.0.0.1:10/hook"),
        (market.seller, "http://127.0.0.1:5432/"),
        (market.other, hook),
    ):
        refused = assert_problem(
            await gateway.post(
                "/v1/subscriptions",
                json={"url": url, "event_types": ["listing.published"]},
                headers=bearer(key),
            ),
            422,
        )
        assert refused["errors"][0]["rule"] == "ssrf_forbidden_target", (key, url)
    # The loopback name and other loopback addresses stay refused: only 127.0.0.1 is listed.
    body = assert_problem(
        await gateway.post(
            "/v1/subscriptions",
            json={"url": "http://[::1]:8080/", "event_types": ["deal.closed"]},
            headers=bearer(market.seller),
        ),
        422,
    )
    assert body["errors"][0]["rule"] == "ssrf_forbidden_target"

    # The body is validated: event types, filter keys and values, by name.
    for payload, field_name in (
        ({"url": "http://127.0.0.1:9/", "event_types": []}, "event_types"),
        ({"url": "http://127.0.0.1:9/", "event_types": ["listing.created"]}, "event_types[0]"),
        (
            {"url": "http://127.0.0.1:9/", "event_types": ["deal.closed"], "filter": {"colour": 1}},
            "filter.colour",
        ),
        (
            {
                "url": "http://127.0.0.1:9/",
                "event_types": ["deal.closed"],
                "filter": {"region": "1"},
            },
            "filter.region",
        ),
        (
            {
                "url": "http://127.0.0.1:9/",
                "event_types": ["deal.closed"],
                "filter": {"ipc": "Z99"},
            },
            "filter.ipc",
        ),
        (
            {
                "url": "http://127.0.0.1:9/",
                "event_types": ["deal.closed"],
                "filter": {"price_min": "10", "price_max": "5"},
            },
            "filter",
        ),
    ):
        body = assert_problem(
            await gateway.post("/v1/subscriptions", json=payload, headers=bearer(market.seller)),
            422,
        )
        assert field_name in [e["field"] for e in body["errors"]], body
    # Who may subscribe: an organisation's key, not anonymous callers or operators without one.
    assert_problem(
        await gateway.post(
            "/v1/subscriptions",
            json={"url": "http://127.0.0.1:9/", "event_types": ["deal.closed"]},
        ),
        401,
    )


async def test_signed_webhooks_carry_the_catalogue_document(
    gateway: httpx.AsyncClient,
    listing: httpx.AsyncClient,
    market: Market,
    operator_key: str,
    local_allowed: AllowLocal,
    subscriptions: list[tuple[str, str]],
) -> None:
    async with receiving(Receiver()) as receiver:
        await local_allowed(market.seller, receiver.url)
        subscription = await subscribe(
            gateway,
            subscriptions,
            market.seller,
            receiver.url,
            ["listing.published", "listing.withdrawn"],
        )
        secret = subscription["secret"]
        assert secret.startswith("whsec_")
        # A draft is never announced; publishing and withdrawing are.
        draft = await listing.post(
            "/v1/listings",
            json={
                "asset": patent(SELLER, next(INVENTIONS)),
                "transaction": terms(),
            },
            headers=bearer(market.seller),
        )
        assert draft.status_code == 201, draft.text
        listing_id = await publish(listing, market.seller, operator_key)
        await withdraw(listing, market.seller, listing_id)
        await receiver.wait_for(lambda r: len(r.delivered()) >= 2, what="published+withdrawn")
        await asyncio.sleep(0.3)  # nothing else is coming

        published, withdrawn = receiver.received
        assert [verified(secret, r)["type"] for r in receiver.received] == [
            "listing.published",
            "listing.withdrawn",
        ]
        document = published.json()["data"]
        assert document["schema"] == "ipx.catalogue/v1"
        assert document["offer_id"] == f"jjj:{listing_id}" and document["status"] == "published"
        assert document["asset"]["kind"] == "invention_patent"
        assert withdrawn.json()["data"]["status"] == "withdrawn"
        assert published.json()["timestamp"] and published.path == "/hooks/ipx"
        assert published.headers["content-type"] == "application/json"
        assert published.webhook_id != withdrawn.webhook_id
        with pytest.raises(WebhookVerificationError):
            Webhook(new_secret()).verify(published.body, published.headers)

        # The secret is shown once; the subscription is its organisation's (and operators').
        url = f"/v1/subscriptions/{subscription['id']}"
        read = await gateway.get(url, headers=bearer(market.seller))
        assert read.status_code == 200 and "secret" not in read.json()
        assert read.json()["event_types"] == ["listing.published", "listing.withdrawn"]
        mine = await gateway.get("/v1/subscriptions", headers=bearer(market.seller))
        assert subscription["id"] in [s["id"] for s in mine.json()["items"]]
        assert all("secret" not in s for s in mine.json()["items"])
        theirs = await gateway.get("/v1/subscriptions", headers=bearer(market.other))
        assert subscription["id"] not in [s["id"] for s in theirs.json()["items"]]
        assert_problem(await gateway.get(url, headers=bearer(market.other)), 404)
        assert_problem(await gateway.get(f"{url}/deliveries", headers=bearer(market.other)), 404)
        assert_problem(await gateway.delete(url, headers=bearer(market.other)), 404)
        assert (await gateway.get(url, headers=bearer(operator_key))).status_code == 200

        # Each delivery: its webhook-id, status, attempts, last code and each attempt's latency.
        items = await deliveries(gateway, market.seller, subscription["id"])
        assert [d["event_type"] for d in items] == ["listing.withdrawn", "listing.published"]
        assert {d["event_id"] for d in items} == {published.webhook_id, withdrawn.webhook_id}
        for item in items:
            assert item["status"] == "delivered" and item["attempts"] == 1
            assert item["last_status_code"] == 200 and item["delivered_at"]
            (attempt,) = item["attempt_log"]
            assert attempt["status_code"] == 200 and attempt["latency_ms"] > 0
            assert attempt["error"] is None
        only_failed = await deliveries(gateway, market.seller, subscription["id"], status="failed")
        assert only_failed == []
        first = await gateway.get(
            f"{url}/deliveries", params={"page_size": 1}, headers=bearer(market.seller)
        )
        token = first.json()["next_page_token"]
        assert token and first.json()["items"][0]["event_type"] == "listing.withdrawn"
        second = await gateway.get(
            f"{url}/deliveries",
            params={"page_size": 1, "page_token": token},
            headers=bearer(market.seller),
        )
        assert second.json()["items"][0]["event_type"] == "listing.published"
        assert second.json()["next_page_token"] == ""

        # Deleted: nothing more is queued, and it is gone from reads and lists.
        assert (await gateway.delete(url, headers=bearer(market.seller))).status_code == 204
        assert_problem(await gateway.get(url, headers=bearer(market.seller)), 404)
        assert_problem(await gateway.get(f"{url}/deliveries", headers=bearer(market.seller)), 404)
        assert_problem(await gateway.delete(url, headers=bearer(market.seller)), 404)
        listed = await gateway.get("/v1/subscriptions", headers=bearer(market.seller))
        assert subscription["id"] not in [s["id"] for s in listed.json()["items"]]
        await withdraw(listing, market.seller, await publish(listing, market.seller, operator_key))
        await asyncio.sleep(1.0)
        assert len(receiver.received) == 2


async def test_a_deal_closes_the_listing_then_is_announced(
    gateway: httpx.AsyncClient,
    listing: httpx.AsyncClient,
    market: Market,
    operator_key: str,
    local_allowed: AllowLocal,
    subscriptions: list[tuple[str, str]],
) -> None:
    async with receiving(Receiver()) as receiver:
        await local_allowed(market.other, receiver.url)
        subscription = await subscribe(
            gateway,
            subscriptions,
            market.other,
            receiver.url,
            ["listing.closed", "deal.closed"],
            {"region": "110000"},
        )
        listing_id = await publish(listing, market.seller, operator_key)
        closed = await listing.post(
            "/v1/deals",
            json={
                "listing_id": listing_id,
                "buyer_name": "天津中环半导体股份有限公司",
                "amount": "1150000.00",
                "confidential": True,
                "closed_on": datetime.now(UTC).date().isoformat(),
            },
            headers=bearer(market.seller),
        )
        assert closed.status_code == 201, closed.text
        await receiver.wait_for(lambda r: len(r.delivered()) >= 2, what="closed and deal")
        ended, deal = (verified(subscription["secret"], r) for r in receiver.received)
        assert ended["type"] == "listing.closed" and ended["data"]["status"] == "closed"
        assert deal["type"] == "deal.closed"
        assert deal["data"]["listing_id"] == listing_id and deal["data"]["amount"] is None
        items = await deliveries(gateway, market.other, subscription["id"])
        assert {d["ordering_key"] for d in items} == {listing_id}  # one order: the listing's


async def test_filters_select_by_kind_region_price_and_type(
    gateway: httpx.AsyncClient,
    listing: httpx.AsyncClient,
    market: Market,
    operator_key: str,
    local_allowed: AllowLocal,
    subscriptions: list[tuple[str, str]],
) -> None:
    async with receiving(Receiver()) as receiver:
        key, url, published = market.seller, receiver.url, ["listing.published"]
        await local_allowed(key, url)
        everything = await subscribe(gateway, subscriptions, key, url, published)
        utility = await subscribe(
            gateway, subscriptions, key, url, published, {"kind": "utility_model"}
        )
        hebei = await subscribe(gateway, subscriptions, key, url, published, {"region": ["13"]})
        baoding = await subscribe(gateway, subscriptions, key, url, published, {"region": "130600"})
        priced = await subscribe(
            gateway,
            subscriptions,
            key,
            url,
            published,
            {"price_min": "1000000", "price_max": "2000000.00"},
        )
        assignment = await subscribe(
            gateway,
            subscriptions,
            key,
            url,
            published,
            {"transaction_type": ["assignment"], "ipc": ["H01M"]},
        )
        no_match = await subscribe(
            gateway, subscriptions, key, url, published, {"nice": [9], "kind": ["trademark"]}
        )
        beijing_patent = await publish(listing, market.seller, operator_key)  # 1.2M, licence
        beijing_utility = await publish(
            listing,
            market.seller,
            operator_key,
            kind="utility_model",
            deal=terms(amount="500000.00"),
        )
        hebei_patent = await publish(
            listing,
            market.hebei,
            operator_key,
            holder=HEBEI_SELLER,
            region="130600",
            deal=terms("assignment", amount="3000000.00"),
        )
        everyone = {beijing_patent, beijing_utility, hebei_patent}

        def listing_ids(items: list[dict[str, Any]]) -> set[str]:
            return {d["ordering_key"] for d in items}

        # The unfiltered subscription got all three: their page has been fanned out.
        await wait_deliveries(
            gateway,
            key,
            everything["id"],
            lambda items: (
                everyone <= listing_ids(items) and all(d["status"] == "delivered" for d in items)
            ),
        )
        expected = {
            utility["id"]: {beijing_utility},
            hebei["id"]: {hebei_patent},
            baoding["id"]: {hebei_patent},
            priced["id"]: {beijing_patent},
            assignment["id"]: {hebei_patent},
            no_match["id"]: set(),
        }
        for subscription_id, wanted in expected.items():
            got = listing_ids(await deliveries(gateway, key, subscription_id)) & everyone
            assert got == wanted, subscription_id
        stored = (
            await gateway.get(f"/v1/subscriptions/{priced['id']}", headers=bearer(key))
        ).json()
        assert stored["filter"] == {"price_min": "1000000", "price_max": "2000000.00"}
        assert assignment["filter"] == {"transaction_type": ["assignment"], "ipc": ["H01M"]}


async def test_a_subscriber_that_was_down_gets_every_event_in_order(
    gateway: httpx.AsyncClient,
    listing: httpx.AsyncClient,
    market: Market,
    operator_key: str,
    local_allowed: AllowLocal,
    subscriptions: list[tuple[str, str]],
) -> None:
    receiver = Receiver()  # not listening yet: connections are refused
    await local_allowed(market.seller, receiver.url)
    subscription = await subscribe(
        gateway,
        subscriptions,
        market.seller,
        receiver.url,
        ["listing.published", "listing.updated", "listing.withdrawn"],
    )
    listing_ids = [await publish(listing, market.seller, operator_key) for _ in range(3)]
    for n, listing_id in enumerate(listing_ids):
        await update_price(listing, market.seller, listing_id, f"{900000 + n}.00")
        await withdraw(listing, market.seller, listing_id)

    def refused(items: list[dict[str, Any]]) -> bool:
        return any("ConnectError" in (a["error"] or "") for d in items for a in d["attempt_log"])

    await wait_deliveries(gateway, market.seller, subscription["id"], refused)
    # Back up, but it first drops connections and answers 500, then recovers.
    receiver.script = ["close", "fail", "close", "fail"]
    await receiver.start()
    try:
        await receiver.wait_for(
            lambda r: len({x.webhook_id for x in r.delivered()}) >= 9, seconds=25, what="9 events"
        )
    finally:
        await receiver.stop()

    assert any(r.answer is None for r in receiver.received)  # dropped connections were tried
    assert any(r.answer == 500 for r in receiver.received)
    secret = subscription["secret"]
    for listing_id in listing_ids:
        requests = receiver.about(listing_id)
        for request in requests:
            verified(secret, request)
        # First sight of each event, in order; an event is only sent once the one before it
        # was acknowledged; repeats carry the same webhook-id.
        order: list[str] = []
        for request in requests:
            if request.webhook_id not in order:
                order.append(request.webhook_id)
        types = [next(r.json()["type"] for r in requests if r.webhook_id == i) for i in order]
        assert types == ["listing.published", "listing.updated", "listing.withdrawn"]
        for earlier, later in itertools.pairwise(order):
            acknowledged = min(
                r.at for r in requests if r.webhook_id == earlier and r.answer == 200
            )
            first_seen = min(r.at for r in requests if r.webhook_id == later)
            assert first_seen >= acknowledged
    # The receiver's 200 reaches the gateway's records a moment after the receiver counts it.
    items = await wait_deliveries(
        gateway,
        market.seller,
        subscription["id"],
        lambda items: len(items) == 9 and all(d["status"] == "delivered" for d in items),
    )
    retried = [d for d in items if d["attempts"] > 1]
    assert retried, "the outage should have cost retries"
    for item in retried:
        codes = [a["status_code"] for a in item["attempt_log"]]
        assert codes[-1] == 200 and all(c != 200 for c in codes[:-1])
        assert all(a["error"] for a in item["attempt_log"][:-1])


async def test_a_slow_subscriber_does_not_delay_the_others(
    gateway: httpx.AsyncClient,
    listing: httpx.AsyncClient,
    market: Market,
    operator_key: str,
    local_allowed: AllowLocal,
    subscriptions: list[tuple[str, str]],
) -> None:
    async with (
        receiving(Receiver(mode="slow", slow_seconds=5.0)) as slow,
        receiving(Receiver()) as fast,
    ):
        for receiver in (slow, fast):
            await local_allowed(market.seller, receiver.url)
            await subscribe(
                gateway, subscriptions, market.seller, receiver.url, ["listing.published"]
            )
        listing_ids = [await publish(listing, market.seller, operator_key) for _ in range(3)]
        started = time.monotonic()
        await fast.wait_for(lambda r: len(r.delivered()) >= 3, seconds=10, what="fast")
        fast_done = time.monotonic() - started
        assert slow.delivered() == []  # every slow answer is still 5 s away
        assert fast_done < 4.0, fast_done
        assert {r.json()["data"]["offer_id"] for r in fast.delivered()} == {
            f"jjj:{i}" for i in listing_ids
        }
        await slow.wait_for(lambda r: len(r.delivered()) >= 3, seconds=15, what="slow")


async def test_two_gateway_replicas_deliver_each_delivery_once(
    settings: Settings,
    listing_app: FastAPI,
    matching_app: FastAPI,
    gateway: httpx.AsyncClient,
    listing: httpx.AsyncClient,
    market: Market,
    operator_key: str,
    local_allowed: AllowLocal,
    subscriptions: list[tuple[str, str]],
) -> None:
    second = gateway_app(settings, listing_app, matching_app)
    async with (
        serve_in_process(second, "http://gateway-2.test"),
        receiving(Receiver()) as receiver,
    ):
        await local_allowed(market.seller, receiver.url)
        subscription = await subscribe(
            gateway,
            subscriptions,
            market.seller,
            receiver.url,
            ["listing.published", "listing.withdrawn"],
        )
        listing_ids = [await publish(listing, market.seller, operator_key) for _ in range(6)]
        for listing_id in listing_ids:
            await withdraw(listing, market.seller, listing_id)
        await receiver.wait_for(lambda r: len(r.received) >= 12, seconds=20, what="12 events")
        await asyncio.sleep(0.5)  # a second delivery of anything would show up now
    ids = [r.webhook_id for r in receiver.received]
    assert len(ids) == 12 and len(set(ids)) == 12, ids
    items = await deliveries(gateway, market.seller, subscription["id"])
    assert len(items) == 12
    for item in items:
        assert item["status"] == "delivered"
        assert item["attempts"] == 1 and len(item["attempt_log"]) == 1, item


async def test_replay_resends_with_the_same_webhook_id(
    gateway: httpx.AsyncClient,
    listing: httpx.AsyncClient,
    market: Market,
    operator_key: str,
    local_allowed: AllowLocal,
    subscriptions: list[tuple[str, str]],
) -> None:
    async with receiving(Receiver()) as receiver:
        await local_allowed(market.seller, receiver.url)
        subscription = await subscribe(
            gateway, subscriptions, market.seller, receiver.url, ["listing.published"]
        )
        await publish(listing, market.seller, operator_key)
        await receiver.wait_for(lambda r: len(r.delivered()) == 1)
        (delivery,) = await deliveries(gateway, market.seller, subscription["id"])
        replay = f"/v1/subscriptions/{subscription['id']}/deliveries/{delivery['id']}/replay"
        assert_problem(await gateway.post(replay, headers=bearer(market.other)), 404)
        queued = await gateway.post(replay, headers=bearer(market.seller))
        assert queued.status_code == 202, queued.text
        assert queued.json()["status"] == "pending" and queued.json()["attempts"] == 0
        await receiver.wait_for(lambda r: len(r.delivered()) == 2, what="the replay")
        first, again = receiver.received
        assert first.webhook_id == again.webhook_id == delivery["event_id"]
        assert first.body == again.body
        verified(subscription["secret"], again)
        (after,) = await wait_deliveries(
            gateway,
            market.seller,
            subscription["id"],
            lambda items: items[0]["status"] == "delivered",
        )
        assert len(after["attempt_log"]) == 2


async def test_failing_deliveries_are_retried_recorded_and_given_up(
    gateway: httpx.AsyncClient,
    listing: httpx.AsyncClient,
    market: Market,
    operator_key: str,
    local_allowed: AllowLocal,
    subscriptions: list[tuple[str, str]],
) -> None:
    # The first attempt hangs past the 10 s limit, every other one is answered with a 500.
    async with receiving(Receiver(mode="fail", script=["hang"])) as receiver:
        await local_allowed(market.seller, receiver.url)
        subscription = await subscribe(
            gateway, subscriptions, market.seller, receiver.url, ["listing.published"]
        )
        await publish(listing, market.seller, operator_key)
        await receiver.wait_for(lambda r: len(r.received) >= 2, seconds=20, what="a retry")
        (pending,) = await deliveries(gateway, market.seller, subscription["id"])
        replay = f"/v1/subscriptions/{subscription['id']}/deliveries/{pending['id']}/replay"
        assert pending["status"] == "pending"
        body = assert_problem(await gateway.post(replay, headers=bearer(market.seller)), 409)
        assert body["current_status"] == "pending"
        (failed,) = await wait_deliveries(
            gateway,
            market.seller,
            subscription["id"],
            lambda items: items[0]["status"] == "failed",
            seconds=20,
        )
        attempts = len(TEST_SCHEDULE) + 1
        assert failed["attempts"] == attempts and len(failed["attempt_log"]) == attempts
        assert failed["last_status_code"] == 500 and failed["next_attempt_at"] is None
        timed_out, *rest = failed["attempt_log"]
        assert timed_out["status_code"] is None and "10s" in timed_out["error"]
        assert timed_out["latency_ms"] >= 9000
        assert [a["status_code"] for a in rest] == [500] * (attempts - 1)
        assert len(receiver.received) == attempts
        assert len({r.webhook_id for r in receiver.received}) == 1
        gaps = [b.at - a.at for a, b in itertools.pairwise(receiver.received[1:])]
        assert gaps[-1] > 2 * gaps[0]  # backing off

        # The subscriber fixed its endpoint and replays the failed delivery.
        receiver.mode = "ok"
        assert (await gateway.post(replay, headers=bearer(market.seller))).status_code == 202
        await receiver.wait_for(lambda r: len(r.delivered()) == 1, what="the replay")
        assert receiver.delivered()[0].webhook_id == failed["event_id"]


async def test_a_match_reaches_only_the_demand_owner(
    gateway: httpx.AsyncClient,
    listing: httpx.AsyncClient,
    matching: httpx.AsyncClient,
    market: Market,
    operator_key: str,
    local_allowed: AllowLocal,
    subscriptions: list[tuple[str, str]],
) -> None:
    async with receiving(Receiver()) as owner, receiving(Receiver()) as bystander:
        await local_allowed(market.buyer, owner.url)
        mine = await subscribe(gateway, subscriptions, market.buyer, owner.url, ["match.created"])
        await local_allowed(market.other, bystander.url)
        theirs = await subscribe(
            gateway, subscriptions, market.other, bystander.url, ["match.created"]
        )
        demand = await matching.post(
            "/v1/demands",
            json={
                "title": "锂离子电池隔膜技术",
                "text": "我公司需要锂离子电池隔膜及其制备方法的专利技术，独占许可",
            },
            headers=bearer(market.buyer),
        )
        assert demand.status_code == 201, demand.text
        demand_id = demand.json()["id"]
        listing_id = await publish(listing, market.seller, operator_key)

        def matched(r: Receiver) -> bool:
            return any(x.json()["data"].get("listing_id") == listing_id for x in r.delivered())

        await owner.wait_for(matched, seconds=30, what="the match of the new listing")
        events = [verified(mine["secret"], r) for r in owner.delivered()]
        assert {e["type"] for e in events} == {"match.created"}
        assert {e["data"]["demand_id"] for e in events} == {demand_id}
        new = next(e for e in events if e["data"]["listing_id"] == listing_id)
        assert new["data"]["reasons"] and new["data"]["listing"]["offer_id"] == f"jjj:{listing_id}"
        assert bystander.received == []
        assert await deliveries(gateway, market.other, theirs["id"]) == []


async def test_deliveries_carry_the_deployments_user_agent(
    settings: Settings,
    gateway: httpx.AsyncClient,
    listing: httpx.AsyncClient,
    market: Market,
    operator_key: str,
    local_allowed: AllowLocal,
    subscriptions: list[tuple[str, str]],
) -> None:
    """The User-Agent names the sender and links to the deployment's own API docs
    (IPX_WEBHOOK_USER_AGENT; unset, built from IPX_PUBLIC_URL), not a placeholder domain."""
    key = market.seller
    expected = f"ipx-webhooks/1.0 (+{settings.public_url.rstrip('/')}/docs)"
    assert settings.webhook_user_agent == expected
    async with receiving(Receiver()) as receiver:
        await local_allowed(market.seller, receiver.url)
        await subscribe(gateway, subscriptions, market.seller, receiver.url, ["listing.published"])
        # A right still in force, filed in its application number's year.
        number = next(n for n in INVENTIONS if n[:4] >= "2012")
        asset = patent(SELLER, number, filed_on=f"{number[:4]}-01-02")
        created = await listing.post(
            "/v1/listings", json={"asset": asset, "transaction": terms()}, headers=bearer(key)
        )
        assert created.status_code == 201, created.text
        path = f"/v1/listings/{created.json()['id']}"
        submitted = await listing.post(f"{path}/submit", headers=bearer(key))
        assert submitted.status_code == 200, submitted.text
        approved = await listing.post(f"{path}/approve", headers=bearer(operator_key))
        assert approved.status_code == 200, approved.text
        await receiver.wait_for(lambda r: len(r.delivered()) >= 1, what="listing.published")
    assert {r.headers["user-agent"] for r in receiver.received} == {expected}
    assert "example" not in expected
