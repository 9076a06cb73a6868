"""The authorisation matrix (issue 7): every route of the three apps against every caller class.

The routes come from the apps' route tables, the rules from `authz_rules.RULES`: a route without
a rule (or a rule without its route) fails. Each cell is a real request on the in-process apps
(listing's, matching's and the gateway's, which authenticate through listing's introspection),
on real resources of the own organisation, with a valid body, so that the only reason to refuse
is who is calling. The revoked key is revoked before matching or the gateway ever sees it, so
their introspection cache cannot answer for it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

import fastapi.routing
import httpx
import pytest
from fastapi import FastAPI
from receiver import Receiver, receiving

from infra.meili import MeiliHandle
from service.authz_rules import (
    BUYER,
    CALLERS,
    EXCHANGE,
    OPERATORS,
    OTHER,
    OWN,
    PARTNER_CODE,
    RULES,
    Caller,
    Case,
    Service,
    World,
)
from services.matching.demands.matcher import Matcher
from services.matching.meili import MeiliClient
from shared.settings import Settings
from support import allowed_target, assert_problem, bearer, new_organization, terms

REQUEST_DEADLINE = 30.0


# ------------------------------------------------------------------------------ the routes


def route_table(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path template) of every route, included routers flattened. A route without
    methods (a mount) counts as ANY: it needs a rule too. HEAD beside GET is implicit."""
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    routes: Iterable[Any] = iterate(app.routes) if iterate else app.routes
    found: set[tuple[str, str]] = set()
    for route in routes:
        methods: set[str] | None = getattr(route, "methods", None)
        path = str(route.path)
        if not methods:
            found.add(("ANY", path))
            continue
        for method in methods - ({"HEAD"} if "GET" in methods else set()):
            found.add((method, path))
    return found


def every_route(settings: Settings) -> set[tuple[Service, str, str]]:
    from services.gateway.app import create_app as gateway_app
    from services.listing.app import create_app as listing_app
    from services.matching.app import create_app as matching_app

    apps: dict[Service, FastAPI] = {
        "listing": listing_app(settings),
        "matching": matching_app(settings),
        "gateway": gateway_app(settings),
    }
    return {(name, m, p) for name, app in apps.items() for m, p in route_table(app)}


def test_every_route_has_a_rule(settings: Settings) -> None:
    routes = every_route(settings)
    missing = sorted(routes - RULES.keys())
    stale = sorted(RULES.keys() - routes)
    assert not missing, f"routes without an authorisation rule in authz_rules.RULES: {missing}"
    assert not stale, f"rules for routes that no longer exist: {stale}"
    for key, rule in RULES.items():
        assert rule.cases, key
        for case in rule.cases:
            if rule.public is None:
                # A keyed route states every caller class's answer.
                assert set(case.expected) == set(CALLERS), (key, case.name)
            else:
                assert rule.public.strip() and "anonymous" in case.expected, (key, case.name)
    public = sum(1 for r in RULES.values() if r.public is not None)
    print(f"\n{len(routes)} routes: {len(routes) - public} keyed, {public} public")


# ------------------------------------------------------------------------------- the world


async def issue(listing: httpx.AsyncClient, by: str, org: str, *roles: str) -> tuple[str, str]:
    """A new key of `org` issued by `by`: (id, key)."""
    body = {"name": "-".join(roles), "roles": list(roles)}
    issued = await listing.post(f"/v1/organizations/{org}/api-keys", json=body, headers=bearer(by))
    assert issued.status_code == 201, issued.text
    return str(issued.json()["id"]), str(issued.json()["key"])


async def build_world(
    clients: dict[Service, httpx.AsyncClient],
    operator_key: str,
    service_key: str,
    receiver: Receiver,
) -> World:
    listing, gateway = clients["listing"], clients["gateway"]
    own, admin = await new_organization(listing, operator_key, name=OWN)
    member_id, member = await issue(listing, admin, own, "member")
    # The revoked key worked on listing (uncached) before it was revoked, and was never shown
    # to matching or the gateway.
    revoked_id, revoked = await issue(listing, admin, own, "admin")
    assert (await listing.get(f"/v1/organizations/{own}", headers=bearer(revoked))).is_success
    gone = await listing.delete(
        f"/v1/organizations/{own}/api-keys/{revoked_id}", headers=bearer(admin)
    )
    assert gone.status_code == 204, gone.text
    assert_problem(await listing.get(f"/v1/organizations/{own}", headers=bearer(revoked)), 401)
    other_org, other = await new_organization(
        listing, operator_key, name=OTHER, kind="enterprise", region="120000"
    )
    _, buyer = await new_organization(
        listing, operator_key, name=BUYER, kind="enterprise", region="130100"
    )
    exchange, _ = await new_organization(
        listing, operator_key, name=EXCHANGE, kind="exchange", region="120000"
    )
    _, partner = await issue(listing, operator_key, exchange, "partner")
    operators, _ = await new_organization(
        listing, operator_key, name=OPERATORS, kind="exchange", region="110000"
    )
    _, operator = await issue(listing, operator_key, operators, "operator")
    w = World(
        clients=clients,
        keys={
            "revoked": revoked,
            "other": other,
            "member": member,
            "admin": admin,
            "partner": partner,
            "operator": operator,
            "service": service_key,
            "buyer": buyer,
        },
        bootstrap=operator_key,
        receiver=receiver,
        ids={
            "own_org": own,
            "exchange_org": exchange,
            "member_key": member_id,
            "partner_code": PARTNER_CODE,
        },
    )
    op = bearer(operator_key)
    # The receiver is allow-listed for the organisations that subscribe to it.
    for organization_id in (own, other_org, exchange):
        body = allowed_target(receiver.url, organization_id=organization_id)
        await w.ok(gateway.post("/v1/webhook-targets", json=body, headers=op), 201)
    w.ids["target"] = await w.target()
    registered = await w.ok(
        gateway.post(
            "/v1/partners",
            json={
                "code": PARTNER_CODE,
                "name": EXCHANGE,
                "region": "120000",
                "organization_id": exchange,
            },
            headers=op,
        ),
        201,
    )
    w.ids["inbound_secret"] = registered["inbound_secret"]
    w.ids["subscription"] = await w.subscription()
    asset = await w.ok(listing.post("/v1/assets", json=w.asset(), headers=w.admin()), 201)
    w.ids |= {"asset": asset["id"], "asset_identifier": asset["identifier"]}
    w.ids["draft"] = await w.draft()
    w.ids["pending"] = await w.pending()
    w.ids["published"] = await w.published()
    w.ids["negotiating"] = await w.negotiating()
    inquiry = await w.ok(
        listing.post(
            f"/v1/listings/{w.ids['published']}/inquiries",
            json={"message": "请问是否可以独占许可？"},
            headers=bearer(buyer),
        ),
        201,
    )
    w.ids["inquiry"] = inquiry["id"]
    w.ids["import"] = (
        await w.ok(
            listing.post(
                "/v1/imports",
                content=json.dumps(
                    {"asset": w.asset(), "transaction": terms("assignment", "negotiable", None)},
                    ensure_ascii=False,
                ).encode(),
                headers={**w.admin(), "Content-Type": "application/x-ndjson"},
            ),
            201,
        )
    )["id"]
    w.ids["demand"] = await w.demand()
    w.ids["delivery"] = await w.delivery()
    w.ids["declaration"] = await w.open_declaration()
    w.ids["licence"] = await w.licence()
    return w


@pytest.fixture(scope="module")
async def world(
    listing: httpx.AsyncClient,
    matching: httpx.AsyncClient,
    gateway: httpx.AsyncClient,
    operator_key: str,
    service_key: str,
) -> AsyncIterator[World]:
    async with receiving(Receiver()) as receiver:
        clients: dict[Service, httpx.AsyncClient] = {
            "listing": listing,
            "matching": matching,
            "gateway": gateway,
        }
        yield await build_world(clients, operator_key, service_key, receiver)


# ------------------------------------------------------------------------------ the matrix


async def perform(
    w: World, service: Service, method: str, case: Case, caller: Caller
) -> httpx.Response:
    expected = case.expected[caller]
    request = await case.build(w, caller, 200 <= expected < 300)
    headers = dict(request.headers)
    if caller != "anonymous":
        headers["Authorization"] = f"Bearer {w.keys[caller]}"
    return await asyncio.wait_for(
        w.clients[service].request(
            method,
            request.path,
            json=request.json,
            params=request.params,
            content=request.content,
            headers=headers,
        ),
        REQUEST_DEADLINE,
    )


async def test_authorization_matrix(world: World) -> None:
    failures: list[str] = []
    cells = 0
    for (service, method, path), rule in sorted(RULES.items()):
        for case in rule.cases:
            for caller, expected in case.expected.items():
                cells += 1
                response = await perform(world, service, method, case, caller)
                where = f"{service} {method} {path} [{case.name}] as {caller}"
                if response.status_code != expected:
                    failures.append(
                        f"{where}: expected {expected}, got {response.status_code} "
                        f"{response.text[:300]}"
                    )
                elif response.is_error and not response.headers.get("content-type", "").startswith(
                    "application/problem+json"
                ):
                    failures.append(f"{where}: {expected} is not problem+json")
                elif (
                    response.is_success
                    and case.private
                    and caller in case.private_from
                    and world.path(case.private) in response.text
                ):
                    failures.append(f"{where}: the answer shows {case.private}")
    print(f"\n{len(RULES)} routes, {cells} cells checked, {len(failures)} wrong")
    assert not failures, "\n".join(failures)


async def test_a_rotated_key_stops_everywhere(world: World) -> None:
    """Rotation revokes the old key at once: refused by all three services (none of which saw
    it before, so no cache answers for it), while its successor works everywhere."""
    old_id, old = await issue(world.listing, world.keys["admin"], world.ids["own_org"], "member")
    rotated = await world.ok(
        world.listing.post(
            world.path("/v1/organizations/{own_org}/api-keys/") + f"{old_id}/rotate",
            headers=world.admin(),
        ),
        201,
    )
    reads: dict[Service, str] = {
        "listing": world.path("/v1/organizations/{own_org}"),
        "matching": world.path("/v1/demands/{demand}"),
        "gateway": world.path("/v1/subscriptions/{subscription}"),
    }
    for service, path in reads.items():
        client = world.clients[service]
        assert_problem(await client.get(path, headers=bearer(old)), 401)
        assert (await client.get(path, headers=bearer(rotated["key"]))).status_code == 200


# ------------------------------------------------------------- found while building the world


async def test_demand_index_created_once_under_a_race(meili: MeiliHandle, meili_key: str) -> None:
    """The first demand and the indexer's first matching both create the demands index: the
    loser's `index_already_exists` failed the request with a 500 (seen setting up the world)."""
    async with httpx.AsyncClient(headers={"Accept-Encoding": "identity"}) as http:
        client = MeiliClient(http, meili.url, meili_key)
        catalogue = f"race_{uuid.uuid4().hex[:8]}"
        matchers = [Matcher(client, catalogue) for _ in range(4)]
        await asyncio.wait_for(
            asyncio.gather(*(m.ensure_index() for m in matchers)), REQUEST_DEADLINE
        )
        assert await client.index_exists(matchers[0].demands_uid)
        await client.wait_task(
            (await client.request("DELETE", f"/indexes/{matchers[0].demands_uid}"))["taskUid"]
        )
