"""Security, end to end on the in-process apps over the real PostgreSQL and Meilisearch: keys at
rest and their comparison, secrets kept out of logs, body limits on every service, the SSRF
guard at subscription and at delivery time, injection strings in every text parameter (read
from each app's OpenAPI), partners confined to their own offers, and confidential deal
amounts shown only to the parties."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import date
from types import FrameType
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from receiver import Receiver, receiving
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.gateway.webhooks.ssrf import forbidden_reason
from shared.logging import configure_logging
from shared.schemas import encode_page_token
from shared.settings import Settings
from shared.webhooks import signed_headers
from support import (
    allowed_target,
    assert_problem,
    bearer,
    new_exchange,
    new_organization,
    nonexclusive_offer,
    patent,
    real_application_numbers,
    terms,
    wait_indexed,
)

SELLER = "北京理工大学"
SCHEMAS = ("listing", "matching", "gateway")
DEADLINE = 30.0


@pytest.fixture(scope="module")
def numbers() -> Iterator[str]:
    """Real CN invention application numbers, each used once in this module."""
    return iter(list(real_application_numbers("invention_patent")))


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
    listing_id = created.json()["id"]
    submitted = await listing.post(f"/v1/listings/{listing_id}/submit", headers=bearer(key))
    assert submitted.status_code == 200, submitted.text
    approved = await listing.post(
        f"/v1/listings/{listing_id}/approve", headers=bearer(operator_key)
    )
    assert approved.status_code == 200, approved.text
    body: dict[str, Any] = approved.json()
    return body


@pytest.fixture(scope="module")
async def world(listing: httpx.AsyncClient, operator_key: str, numbers: Iterator[str]) -> World:
    seller_id, seller = await new_organization(listing, operator_key, name=SELLER)
    buyer_id, buyer = await new_organization(
        listing, operator_key, name="河北某新能源科技有限公司", kind="enterprise", region="130100"
    )
    third_id, third = await new_organization(
        listing, operator_key, name="天津某贸易有限公司", kind="enterprise", region="120000"
    )
    exchange_id, _, partner_key = await new_exchange(
        listing, operator_key, name="天津知识产权交易中心"
    )
    published = await publish(listing, seller, operator_key, next(numbers))
    return World(
        seller_id=seller_id,
        seller=seller,
        buyer_id=buyer_id,
        buyer=buyer,
        third_id=third_id,
        third=third,
        exchange_id=exchange_id,
        partner_key=partner_key,
        listing_id=published["id"],
        asset_id=published["asset"]["id"],
    )


async def eventually(check: Any, what: str, seconds: float = DEADLINE) -> Any:
    """Until `await check()` returns something truthy (returned), failing after `seconds`."""
    deadline = time.monotonic() + seconds
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {seconds}s: {what} (last: {last!r})")


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


async def allow_local(
    gateway: httpx.AsyncClient, operator_key: str, organization_id: str, url: str
) -> None:
    """The operator allow-lists a test's receiver (its host and port) for one organisation."""
    added = await gateway.post(
        "/v1/webhook-targets",
        json=allowed_target(url, organization_id=organization_id),
        headers=bearer(operator_key),
    )
    assert added.status_code == 201, added.text


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


# ----------------------------------------------------------------------------- keys at rest


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


# ----------------------------------------------------------------------------- logs


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.formatter = logging.Formatter("%(levelname)s %(name)s %(message)s")

    def emit(self, record: logging.LogRecord) -> None:
        # The formatted line with any traceback, and the raw fields, so nothing escapes.
        self.lines.append(self.format(record))
        self.lines.append(repr({k: v for k, v in record.__dict__.items() if k != "exc_info"}))


@pytest.fixture
def debug_logs() -> Iterator[Capture]:
    """The services' own logging set up at DEBUG (as `ipx serve` does), plus a capture."""
    root = logging.getLogger()
    saved = (root.level, root.handlers[:], logging.getLogger("httpx").level)
    configure_logging("DEBUG", "text")
    capture = Capture()
    root.addHandler(capture)
    try:
        yield capture
    finally:
        root.handlers[:] = saved[1]
        root.setLevel(saved[0])
        logging.getLogger("httpx").setLevel(saved[2])


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
    token = ""
    while True:
        response = await listing.get(
            "/v1/offers",
            params={"page_size": 1000, "page_token": token},
            headers=bearer(service_key),
        )
        assert response.status_code == 200, response.text
        for item in response.json()["items"]:
            if item["document"]["offer_id"] == offer_id:
                found: dict[str, Any] = item
                return found
        token = response.json()["next_page_token"]
        if not token:
            return None


async def test_no_secret_reaches_the_logs_at_debug(
    debug_logs: Capture,
    listing_app: FastAPI,
    listing: httpx.AsyncClient,
    matching: httpx.AsyncClient,
    gateway: httpx.AsyncClient,
    world: World,
    operator_key: str,
    service_key: str,
    settings: Settings,
    numbers: Iterator[str],
) -> None:
    secrets: list[str] = [operator_key, service_key, settings.meili_master_key.get_secret_value()]
    # Keys: a sign-up, an issued key, a rotation; used on all three services.
    org_id, admin = await new_organization(listing, operator_key, name="燕山大学", region="130300")
    issued = await listing.post(
        f"/v1/organizations/{org_id}/api-keys",
        json={"name": "m", "roles": ["member"]},
        headers=bearer(admin),
    )
    member = issued.json()["key"]
    rotated = await listing.post(
        f"/v1/organizations/{org_id}/api-keys/{issued.json()['id']}/rotate", headers=bearer(admin)
    )
    member_new = rotated.json()["key"]
    secrets += [admin, member, member_new]
    assert (await matching.get("/v1/demands", headers=bearer(member_new))).status_code == 200
    assert (await gateway.get("/v1/subscriptions", headers=bearer(admin))).status_code == 200
    # Failing requests: a revoked key, a forged one, introspection by a non-service caller.
    assert_problem(await matching.get("/v1/demands", headers=bearer(member)), 401)
    assert_problem(await gateway.get("/v1/subscriptions", headers=bearer(member + "x")), 401)
    assert_problem(
        await listing.post("/v1/auth/introspect", json={"token": admin}, headers=bearer(admin)), 403
    )

    # A partner: its signing secret, a signed push, a push signed with the wrong secret.
    code = "p" + uuid.uuid4().hex[:8]
    inbound_secret = await register_partner(gateway, operator_key, code)
    rotated_partner = await gateway.patch(
        f"/v1/partners/{code}", json={"rotate_secret": True}, headers=bearer(operator_key)
    )
    new_inbound = rotated_partner.json()["inbound_secret"]
    secrets += [inbound_secret, new_inbound]
    document = nonexclusive_offer(code, "L-1", next(numbers))
    accepted, push_headers = await push(gateway, code, new_inbound, document)
    assert accepted.status_code == 202, accepted.text
    refused, bad_headers = await push(gateway, code, inbound_secret, document)
    assert_problem(refused, 401)
    secrets += [push_headers["webhook-signature"], bad_headers["webhook-signature"]]

    # Failing requests with a secret in flight: four registrations of one code at once (each
    # made its own secret; the losers' INSERTs fail on the key) are one 201 and three 409s.
    racing = "p" + uuid.uuid4().hex[:8]
    answers = await asyncio.gather(
        *(
            gateway.post(
                "/v1/partners",
                json={"code": racing, "name": "并发", "region": "120000"},
                headers=bearer(operator_key),
            )
            for _ in range(4)
        )
    )
    assert sorted(a.status_code for a in answers) == [201, 409, 409, 409], answers
    secrets += [a.json()["inbound_secret"] for a in answers if a.status_code == 201]
    # A database error's own text, as the error handler would log it, has no values in it
    # (every service's engine comes from shared.db.create_engine; here listing's).
    engine = listing_app.state.engine
    with pytest.raises(Exception) as failed:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO gateway.partners (code, name, region, status, inbound_secret, "
                    "adapter, pull_interval_seconds, pull_failures, created_at, updated_at) "
                    "VALUES (:code, 'x', '120000', 'active', :secret, 'canonical', 60, 0, "
                    "now(), now())"
                ),
                {"code": racing, "secret": secrets[-1]},
            )
    assert "duplicate key" in str(failed.value)
    assert secrets[-1] not in str(failed.value)

    # A subscription: its secret, and the signature of what it receives.
    async with receiving(Receiver()) as receiver:
        await allow_local(gateway, operator_key, org_id, receiver.url)
        subscription = await gateway.post(
            "/v1/subscriptions",
            json={
                "url": receiver.url,
                "event_types": ["listing.published"],
                "filter": {"region": "130300"},
            },
            headers=bearer(admin),
        )
        assert subscription.status_code == 201, subscription.text
        secrets.append(subscription.json()["secret"])
        await publish(listing, world.seller, operator_key, next(numbers), region="130300")
        await receiver.wait_for(lambda r: len(r.delivered()) >= 1, what="a delivery")
        secrets.append(receiver.received[0].headers["webhook-signature"])
        await gateway.delete(
            f"/v1/subscriptions/{subscription.json()['id']}", headers=bearer(admin)
        )
    await disallow_local(gateway, operator_key, org_id)
    await eventually(
        lambda: offer_of(listing, service_key, f"{code}:L-1"), "the push reached listing"
    )

    logs = "\n".join(debug_logs.lines)
    assert len(debug_logs.lines) > 10  # the capture did see the flow's records
    for value in filter(None, secrets):
        for part in {value, secret_part(value)}:
            assert len(part) >= 16 and part not in logs, f"a secret is in the logs: {part[:8]}…"
        # The signature header's base64 value without its version prefix too.
        for signature in value.split(" "):
            if signature.startswith("v1,"):
                assert signature[3:] not in logs


# ----------------------------------------------------------------------------- body limits


async def chunks(total: int) -> AsyncIterator[bytes]:
    """A body of `total` bytes sent chunked (no Content-Length): a JSON string padded."""
    yield b'{"pad": "'
    sent = 9
    while sent < total:
        piece = min(65536, total - sent)
        yield b"x" * piece
        sent += piece
    yield b'"}'


async def test_bodies_over_the_limit_are_413_on_every_service(
    listing: httpx.AsyncClient,
    matching: httpx.AsyncClient,
    gateway: httpx.AsyncClient,
    settings: Settings,
    world: World,
) -> None:
    limit = settings.max_body_bytes
    big = b'{"pad": "' + b"x" * limit + b'"}'
    json_type = {"Content-Type": "application/json"}
    for client, path, key in (
        (listing, "/v1/listings", world.seller),
        (listing, f"/v1/listings/{world.listing_id}/inquiries", world.buyer),
        (matching, "/v1/demands", world.buyer),
        (gateway, "/v1/subscriptions", world.buyer),
        (gateway, "/v1/inbound/nobody", None),
    ):
        headers = {**json_type, **(bearer(key) if key else {})}
        declared = await client.post(path, content=big, headers=headers)
        assert_problem(declared, 413)
        streamed = await client.post(path, content=chunks(limit + 1), headers=headers)
        assert_problem(streamed, 413)
        # Just under the limit, the body reaches the route (and is refused for what it is).
        under = await client.post(path, content=chunks(limit - 64), headers=headers)
        assert under.status_code != 413, (path, under.status_code)


async def test_imports_have_their_own_larger_limit(
    settings: Settings, world: World, numbers: Iterator[str]
) -> None:
    from services.listing.app import create_app

    # The same app with a smaller import limit, so the test sends megabytes, not 512 MiB.
    limits = settings.model_copy(update={"max_import_bytes": 3 * settings.max_body_bytes})
    async with LifespanManager(create_app(limits)) as manager:
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://listing.test") as client:
            ndjson = {**bearer(world.seller), "Content-Type": "application/x-ndjson"}
            row = json.dumps(
                {
                    "asset": patent(SELLER, next(numbers)),
                    "transaction": terms(),
                },
                ensure_ascii=False,
            ).encode()
            # Twice the general limit: refused elsewhere, taken by the import (JSON whitespace
            # pads the one row).
            padded = row[:-1] + b" " * (2 * settings.max_body_bytes) + b"}"
            assert_problem(
                await client.post(
                    "/v1/listings",
                    content=padded,
                    headers={**bearer(world.seller), "Content-Type": "application/json"},
                ),
                413,
            )
            report = await client.post("/v1/imports", content=padded, headers=ndjson)
            assert report.status_code == 201, report.text
            assert report.json()["created"] == 1, report.text
            over = row[:-1] + b" " * (3 * settings.max_body_bytes) + b"}"
            assert_problem(await client.post("/v1/imports", content=over, headers=ndjson), 413)

            async def streamed() -> AsyncIterator[bytes]:
                yield row[:-1]
                for _ in range(3 * settings.max_body_bytes // 65536 + 1):
                    yield b" " * 65536
                yield b"}"

            assert_problem(
                await client.post("/v1/imports", content=streamed(), headers=ndjson), 413
            )


# ----------------------------------------------------------------------------- SSRF


def own_host_name() -> tuple[str, bool]:
    """This machine's name, and whether it resolves to an address webhooks must not reach
    (names in /etc/hosts resolve to loopback on most machines: a real resolution, no DNS)."""
    name = socket.gethostname()
    try:
        infos = socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)
    except OSError:
        return name, False
    addresses = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}
    return name, any(forbidden_reason(a) is not None for a in addresses)


async def test_names_and_forms_of_private_addresses_are_refused_at_subscription(
    gateway: httpx.AsyncClient, world: World, operator_key: str
) -> None:
    await disallow_local(gateway, operator_key, world.buyer_id)
    refused = [
        "http://0x7f000001/hook",  # hex 127.0.0.1
        "http://017700000001/hook",  # octal 127.0.0.1
        "http://127.1:8080/",
        "http://127.0.0.1./",
        "http://2852039166/latest/meta-data/",  # decimal 169.254.169.254
        "http://0251.0376.0251.0376/",  # octal 169.254.169.254
        "http://0xa9.0xfe.0xa9.0xfe/",  # hex 169.254.169.254
        "http://[::ffff:a9fe:a9fe]/",  # IPv4-mapped 169.254.169.254
        "http://[::ffff:10.0.0.1]/",
        "http://[::ffff:a00:1]/",
        "http://[0:0:0:0:0:ffff:7f00:1]/",
        "http://167772161/",  # decimal 10.0.0.1
        "http://10.1/",
        "http://0/",
        "http://１２７.０.０.１/",  # full-width digits
        "http://LOCALHOST./",
        "http://metadata/",
        "http://instance-data/latest/",
        "http://[fd00:ec2::254]/",
    ]
    name, private = own_host_name()
    if private:
        refused.append(f"http://{name}:9/hook")  # a name that resolves to a private address
    for url in refused:
        body = assert_problem(
            await gateway.post(
                "/v1/subscriptions",
                json={"url": url, "event_types": ["listing.published"]},
                headers=bearer(world.buyer),
            ),
            422,
        )
        assert [(e["field"], e["rule"]) for e in body["errors"]] == [
            ("url", "ssrf_forbidden_target")
        ], url
    # Allowing the loopback address does not let metadata or other private forms in.
    await allow_local(gateway, operator_key, world.buyer_id, "http://127.0.0.1/")
    try:
        for url in ("http://2852039166/", "http://[::ffff:10.0.0.1]/", "http://127.0.0.2/"):
            body = assert_problem(
                await gateway.post(
                    "/v1/subscriptions",
                    json={"url": url, "event_types": ["deal.closed"]},
                    headers=bearer(world.buyer),
                ),
                422,
            )
            assert body["errors"][0]["rule"] == "ssrf_forbidden_target", url
    finally:
        await disallow_local(gateway, operator_key, world.buyer_id)


async def test_a_target_no_longer_allowed_is_refused_at_delivery(
    gateway: httpx.AsyncClient,
    listing: httpx.AsyncClient,
    world: World,
    operator_key: str,
    numbers: Iterator[str],
) -> None:
    """Every attempt resolves and checks the URL again: subscriptions made while their private
    target was allow-listed (the address; and this machine's name, when it resolves to a
    private address) get nothing once the operator removes it."""
    name, private = own_host_name()
    async with receiving(Receiver()) as receiver:
        urls = [receiver.url]
        if private:
            urls.append(f"http://{name}:{receiver.port}/hooks/ipx")
        subscriptions: list[str] = []
        entries: list[str] = []
        try:
            for url in urls:
                added = await gateway.post(
                    "/v1/webhook-targets",
                    json=allowed_target(url, organization_id=world.buyer_id),
                    headers=bearer(operator_key),
                )
                assert added.status_code == 201, added.text
                entries.append(f"/v1/webhook-targets/{added.json()['id']}")
            for url in urls:
                created = await gateway.post(
                    "/v1/subscriptions",
                    json={
                        "url": url,
                        "event_types": ["listing.published"],
                        "filter": {"region": "130600"},
                    },
                    headers=bearer(world.buyer),
                )
                assert created.status_code == 201, created.text
                subscriptions.append(f"/v1/subscriptions/{created.json()['id']}")
            for entry in entries:
                removed = await gateway.delete(entry, headers=bearer(operator_key))
                assert removed.status_code == 204  # it was listed: the subscription was made
            await publish(listing, world.seller, operator_key, next(numbers), region="130600")
            for subscription in subscriptions:

                async def attempted(path: str = subscription) -> list[dict[str, Any]]:
                    found = await gateway.get(f"{path}/deliveries", headers=bearer(world.buyer))
                    return [d for d in found.json()["items"] if d["attempt_log"]]

                (delivery,) = await eventually(attempted, f"a delivery attempt of {subscription}")
                assert delivery["status"] in ("pending", "failed")
                error = delivery["attempt_log"][0]["error"]
                assert error.startswith("ssrf_forbidden_target"), delivery
                assert delivery["last_status_code"] is None
            assert receiver.received == []  # no connection was made
        finally:
            for subscription in subscriptions:
                await gateway.delete(subscription, headers=bearer(world.buyer))


# ----------------------------------------------------------------------------- injection

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


# ----------------------------------------------------------------------------- partners


async def test_a_partner_touches_only_its_own_offers(
    listing: httpx.AsyncClient,
    gateway: httpx.AsyncClient,
    world: World,
    operator_key: str,
    service_key: str,
    numbers: Iterator[str],
) -> None:
    mine, theirs = "pa" + uuid.uuid4().hex[:8], "pb" + uuid.uuid4().hex[:8]
    my_secret = await register_partner(gateway, operator_key, mine, world.exchange_id)
    their_secret = await register_partner(gateway, operator_key, theirs)
    number = next(numbers)
    accepted, _ = await push(
        gateway, theirs, their_secret, nonexclusive_offer(theirs, "T-1", number)
    )
    assert accepted.status_code == 202, accepted.text
    their_offer = await eventually(
        lambda: offer_of(listing, service_key, f"{theirs}:T-1"), "the other partner's offer"
    )
    local_before = (await listing.get(f"/v1/listings/{world.listing_id}")).json()

    # My signature on a push to the other partner's intake: 401, nothing queued.
    withdrawn = {**nonexclusive_offer(theirs, "T-1", number, version=2), "status": "withdrawn"}
    refused, _ = await push(gateway, theirs, my_secret, withdrawn)
    body = assert_problem(refused, 401)
    assert body["errors"][0]["field"] == "webhook-signature"
    # Through my own intake, documents naming the other exchange, or ours, are refused.
    for document in (
        withdrawn,  # source.exchange and offer_id of the other partner
        {**nonexclusive_offer(mine, "T-1", number, version=2), "offer_id": f"{theirs}:T-1"},
        {
            **nonexclusive_offer(mine, "X", number, version=2),
            "source": {**withdrawn["source"], "exchange": "jjj", "listing_id": world.listing_id},
            "offer_id": f"jjj:{world.listing_id}",
        },
    ):
        answer, _ = await push(gateway, mine, my_secret, document)
        problem = assert_problem(answer, 422)
        assert {e["field"] for e in problem["errors"]} & {"source.exchange", "offer_id"}, problem
    # Text PostgreSQL cannot store is refused at intake, not queued to fail at listing forever.
    poisoned = nonexclusive_offer(mine, "N-1", number)
    poisoned["asset"]["title"] = {"zh": "一种\u0000装置"}
    answer, _ = await push(gateway, mine, my_secret, poisoned)
    problem = assert_problem(answer, 422)
    assert [(e["field"], e["rule"]) for e in problem["errors"]] == [
        ("asset.title.zh", "nul_character")
    ], problem
    # An offer of mine whose listing id is the local listing's id is a separate offer of mine.
    own = nonexclusive_offer(mine, world.listing_id, number)
    own["status"] = "withdrawn"
    accepted, _ = await push(gateway, mine, my_secret, own)
    assert accepted.status_code == 202, accepted.text
    await eventually(
        lambda: offer_of(listing, service_key, f"{mine}:{world.listing_id}"), "my own offer"
    )

    # The partner role's key on listing: no offer upserts, no edits of anyone else's listing.
    key = bearer(world.partner_key)
    for exchange, listing_id in ((theirs, "T-1"), (mine, "M-1"), ("jjj", world.listing_id)):
        document = nonexclusive_offer(exchange, listing_id, number, version=9)
        answer = await listing.put(
            f"/v1/offers/{exchange}/{listing_id}", json=document, headers=key
        )
        assert_problem(answer, 403)
    for target in (world.listing_id, their_offer["listing_id"]):
        current = await listing.get(f"/v1/listings/{target}")
        assert current.status_code == 200, current.text
        patched = await listing.patch(
            f"/v1/listings/{target}",
            json={"transaction": terms(amount="1.00")},
            headers={**key, "If-Match": current.headers["etag"]},
        )
        assert_problem(patched, 403)
        assert_problem(await listing.post(f"/v1/listings/{target}/withdraw", headers=key), 403)
        assert_problem(
            await listing.post(
                "/v1/deals",
                json={
                    "listing_id": target,
                    "buyer_name": "某公司",
                    "amount": "1.00",
                    "closed_on": date.today().isoformat(),
                },
                headers=key,
            ),
            403,
        )

    # Wait for the inbox to settle, then: the other partner's offer and the local listing are
    # as they were.
    await asyncio.sleep(2.5)  # more than two inbox rounds: a wrongly queued event would land
    after = await offer_of(listing, service_key, f"{theirs}:T-1")
    assert after is not None
    assert (after["version"], after["status"]) == (their_offer["version"], "published")
    local_after = (await listing.get(f"/v1/listings/{world.listing_id}")).json()
    assert local_after == local_before


# ----------------------------------------------------------------------------- deals


async def all_events(client: httpx.AsyncClient, path: str, key: str | None) -> list[dict[str, Any]]:
    """Every event of a change feed from the start (bounded: at most 50 pages)."""
    events: list[dict[str, Any]] = []
    after = "0.0"
    for _ in range(50):
        response = await client.get(
            path, params={"after": after, "limit": 1000}, headers=bearer(key) if key else {}
        )
        assert response.status_code == 200, response.text
        page = response.json()
        events += page["events"]
        if not page["events"] or page["next_cursor"] == after:
            return events
        after = page["next_cursor"]
    raise AssertionError("the feed did not end within 50 pages")


async def test_a_confidential_amount_is_shown_only_to_the_parties(
    listing: httpx.AsyncClient,
    matching: httpx.AsyncClient,
    gateway: httpx.AsyncClient,
    world: World,
    operator_key: str,
    service_key: str,
    numbers: Iterator[str],
) -> None:
    region, secret_amount = "130700", "987654.32"
    hidden = "987654"
    published = await publish(listing, world.seller, operator_key, next(numbers), region=region)
    lid = published["id"]
    inquiry = await listing.post(
        f"/v1/listings/{lid}/inquiries",
        json={"message": "报价", "offer_amount": secret_amount},
        headers=bearer(world.buyer),
    )
    assert inquiry.status_code == 201, inquiry.text
    async with receiving(Receiver()) as receiver:
        await allow_local(gateway, operator_key, world.third_id, receiver.url)
        subscribed = await gateway.post(
            "/v1/subscriptions",
            json={
                "url": receiver.url,
                "event_types": ["deal.closed"],
                "filter": {"region": region},
            },
            headers=bearer(world.third),
        )
        assert subscribed.status_code == 201, subscribed.text
        try:
            closed = await listing.post(
                "/v1/deals",
                json={
                    "listing_id": lid,
                    "inquiry_id": inquiry.json()["id"],
                    "amount": secret_amount,
                    "confidential": True,
                    "closed_on": date.today().isoformat(),
                },
                headers=bearer(world.seller),
            )
            assert closed.status_code == 201, closed.text
            assert closed.json()["amount"] == secret_amount
            # Two disclosed deals in the region, so its statistics group is shown (3 deals).
            for amount in ("100.00", "300.00"):
                other = await publish(
                    listing, world.seller, operator_key, next(numbers), region=region
                )
                done = await listing.post(
                    "/v1/deals",
                    json={
                        "listing_id": other["id"],
                        "buyer_name": "河北某科技有限公司",
                        "amount": amount,
                        "closed_on": date.today().isoformat(),
                    },
                    headers=bearer(world.seller),
                )
                assert done.status_code == 201, done.text
            await receiver.wait_for(lambda r: len(r.delivered()) >= 3, what="three deal.closed")
            announced = [r.json()["data"] for r in receiver.received]
            (confidential,) = [d for d in announced if d["listing_id"] == lid]
            assert confidential["amount"] is None and confidential["confidential"] is True
            assert all(hidden not in r.body.decode() for r in receiver.received)
        finally:
            await gateway.delete(
                f"/v1/subscriptions/{subscribed.json()['id']}", headers=bearer(world.third)
            )
            await disallow_local(gateway, operator_key, world.third_id)

    # listing's deal list: the amount for the seller, the buyer and operators only.
    async def shown(client: httpx.AsyncClient, path: str, key: str | None) -> dict[str, Any]:
        response = await client.get(
            path, params={"region": region}, headers=bearer(key) if key else {}
        )
        assert response.status_code == 200, response.text
        (deal,) = [d for d in response.json()["items"] if d["listing_id"] == lid]
        return dict(deal)

    for party in (world.seller, world.buyer, operator_key):
        assert (await shown(listing, "/v1/deals", party))["amount"] == secret_amount
    outsiders: tuple[str | None, ...] = (None, world.third, world.partner_key, service_key)
    for outsider in outsiders:
        deal = await shown(listing, "/v1/deals", outsider)
        assert deal["amount"] is None and deal["confidential"] is True
    # The gateway's catalogue is public and cached: no amount, whoever asks.
    askers: tuple[str | None, ...] = (None, world.seller, world.buyer, operator_key)
    for asker in askers:
        deal = await shown(gateway, "/v1/catalogue/deals", asker)
        assert deal["amount"] is None
        response = await gateway.get(
            "/v1/catalogue/deals",
            params={"region": region},
            headers=bearer(asker) if asker else {},
        )
        assert hidden not in response.text
    # Statistics count the deal but not its amount.
    stats = await listing.get("/v1/deals/stats", params={"group_by": "region", "region": "13"})
    group = next(g for g in stats.json()["groups"] if g["group"] == "130000")
    assert group["deal_count"] >= 3 and hidden not in stats.text
    assert group["disclosed_count"] == group["deal_count"] - 1
    # Nor in the feeds: listing's (service key: the gateway republishes it) and the public one.
    feeds: tuple[tuple[httpx.AsyncClient, str, str | None], ...] = (
        (listing, "/v1/changes", service_key),
        (listing, "/v1/changes", operator_key),
        (gateway, "/v1/catalogue/changes", None),
    )
    for client, path, reader in feeds:
        events = await all_events(client, path, reader)
        deals = [e for e in events if e["type"] == "deal.closed" and e["data"]["listing_id"] == lid]
        assert len(deals) == 1 and deals[0]["data"]["amount"] is None, path
        assert hidden not in json.dumps(events), path
    # Nor on the listing, its history, the index; the buyer's offer stays in the thread.
    for viewer in (None, world.third):
        headers = bearer(viewer) if viewer else {}
        for path in (f"/v1/listings/{lid}", f"/v1/listings/{lid}/history"):
            response = await listing.get(path, headers=headers)
            assert hidden not in response.text, (path, response.status_code)
    assert hidden not in (await gateway.get(f"/v1/catalogue/listings/{lid}")).text
    thread = f"/v1/inquiries/{inquiry.json()['id']}"
    assert (await listing.get(thread, headers=bearer(world.buyer))).status_code == 200
    assert (await listing.get(thread, headers=bearer(world.third))).status_code in (403, 404)
    threads = await listing.get(
        "/v1/inquiries", params={"listing_id": lid}, headers=bearer(world.third)
    )
    assert threads.status_code in (200, 403) and hidden not in threads.text
    await wait_indexed(matching, operator_key)
    found = await matching.get("/v1/search", params={"q": published["asset"]["identifier"]})
    assert hidden not in found.text
