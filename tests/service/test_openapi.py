"""The published contract (shared/openapi.py and every route): the three services' specs
validate as OpenAPI 3.1, read as one API (short operation ids, one paging shape, typed answers,
examples on every query parameter), and generate Python clients with `openapi-python-client`
without a warning that then run a real flow against the services."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from openapi_spec_validator import validate
from receiver import Receiver, receiving

from shared.webhooks import signed_headers, verify
from support import allowed_target, partner_document, patent, real_application_numbers, terms

SERVICES = ("listing", "matching", "gateway")
# Feeds keep their cursor (`after`/`limit`/`next_cursor`); search pages by `page` within its
# bound (issue #20 revisits it). Every other list is a Page: `items` + `next_page_token`.
CURSOR_FEEDS = {"/v1/changes", "/v1/catalogue/changes", "/v1/matches/changes"}
SEARCHES = {"/v1/search", "/v1/catalogue/search"}
# A lookup by identifier answers a Page of at most one asset: nothing to page through.
LOOKUPS = {"/v1/assets"}
NUMBERS = real_application_numbers("invention_patent")
CLIENT_CONFIG = """\
content_type_overrides:
  text/csv: application/octet-stream
  application/x-ndjson: application/octet-stream
  image/svg+xml: application/octet-stream
post_hooks: []
"""


@pytest.fixture(scope="module")
async def specs(
    listing: httpx.AsyncClient, matching: httpx.AsyncClient, gateway: httpx.AsyncClient
) -> dict[str, dict[str, Any]]:
    clients = {"listing": listing, "matching": matching, "gateway": gateway}
    return {name: (await client.get("/openapi.json")).json() for name, client in clients.items()}


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def success_schema(operation: dict[str, Any]) -> dict[str, Any] | None:
    for status, response in operation["responses"].items():
        if status.startswith("2") and "application/json" in response.get("content", {}):
            schema: dict[str, Any] = response["content"]["application/json"].get("schema", {})
            return schema
    return None


@pytest.mark.parametrize("service", SERVICES)
async def test_specs_validate_as_openapi_3_1(
    specs: dict[str, dict[str, Any]], service: str
) -> None:
    assert specs[service]["openapi"].startswith("3.1")
    validate(specs[service])


@pytest.mark.parametrize("service", SERVICES)
async def test_operation_ids_are_short_and_unique(
    specs: dict[str, dict[str, Any]], service: str
) -> None:
    ids = [operation["operationId"] for _, _, operation in operations(specs[service])]
    assert len(ids) == len(set(ids))
    too_long = [i for i in ids if not re.fullmatch(r"[a-z][a-z_]{2,31}", i)]
    assert too_long == []
    assert all(not re.search(r"_(get|post|put|patch|delete)$", i) for i in ids)


@pytest.mark.parametrize("service", SERVICES)
async def test_every_list_pages_one_way(specs: dict[str, dict[str, Any]], service: str) -> None:
    spec = specs[service]
    for path, method, operation in operations(spec):
        schema = success_schema(operation)
        if method != "get" or schema is None:
            continue
        assert schema.get("type") != "array", f"{path} answers a bare array"
        body = resolve(spec, schema)
        items = body.get("properties", {}).get("items")
        if items is None or items.get("type") != "array" or path in SEARCHES:
            continue
        where = f"GET {path}"
        assert set(body["properties"]) == {"items", "next_page_token"}, where
        if path in LOOKUPS:
            continue
        query = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        assert {"page_size", "page_token"} <= query, where
        assert not query & {"page", "limit", "after", "offset"}, where
    for path in CURSOR_FEEDS & set(spec["paths"]):
        feed = resolve(spec, success_schema(spec["paths"][path]["get"]) or {})
        assert "next_cursor" in feed["properties"], path


@pytest.mark.parametrize("service", SERVICES)
async def test_answers_are_typed_and_parameters_carry_examples(
    specs: dict[str, dict[str, Any]], service: str
) -> None:
    spec = specs[service]
    untyped, no_example = [], []
    for path, method, operation in operations(spec):
        schema = success_schema(operation)
        if schema is not None and not (schema.get("$ref") or schema.get("type")):
            untyped.append(f"{method.upper()} {path}")
        for parameter in operation.get("parameters", []):
            if parameter["in"] != "query":
                continue
            carries = (
                "example" in parameter
                or "examples" in parameter
                or "examples" in parameter.get("schema", {})
            )
            if not carries:
                no_example.append(f"{method.upper()} {path} {parameter['name']}")
    assert untyped == []
    assert no_example == []
    # No property of any model is an untyped object: clients get a class for each.
    for name, component in spec["components"]["schemas"].items():
        for field, prop in component.get("properties", {}).items():
            assert prop != {} and prop != {"type": "object"}, f"{name}.{field}"


# -------------------------------------------------------------------------- generated clients


def generate_client(spec: dict[str, Any], service: str, root: Path) -> ModuleType:
    """A client generated from the published spec, imported; a warning fails the test."""
    source = root / f"{service}.json"
    source.write_text(json.dumps(spec), encoding="utf-8")
    config = root / "client.yml"
    config.write_text(CLIENT_CONFIG, encoding="utf-8")
    package = f"ipx_{service}_client"
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("openapi-python-client")),
            "generate",
            "--path",
            str(source),
            "--output-path",
            str(root / package),
            "--meta",
            "none",
            "--config",
            str(config),
            "--overwrite",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "warning" not in output.lower(), output
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return importlib.import_module(package)


@pytest.fixture(scope="module")
def clients(
    specs: dict[str, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ModuleType]]:
    root = tmp_path_factory.mktemp("clients")
    yield {service: generate_client(specs[service], service, root) for service in SERVICES}
    sys.path.remove(str(root))
    for name in list(sys.modules):
        if name.split(".")[0] in {f"ipx_{s}_client" for s in SERVICES}:
            del sys.modules[name]


def api(package: ModuleType, module: str) -> Any:
    return importlib.import_module(f"{package.__name__}.api.{module}")


def model(package: ModuleType, name: str) -> Any:
    return getattr(importlib.import_module(f"{package.__name__}.models"), name)


class Apps:
    def __init__(self, listing: FastAPI, matching: FastAPI, gateway: FastAPI) -> None:
        self.transports: dict[str, httpx.AsyncBaseTransport] = {
            name: httpx.ASGITransport(app)
            for name, app in (("listing", listing), ("matching", matching), ("gateway", gateway))
        }

    def client(
        self, package: ModuleType, service: str, key: str | None = None, **httpx_args: Any
    ) -> Any:
        """The generated package's client on the service's real app."""
        args = {"transport": self.transports[service], **httpx_args}
        base_url = f"http://{service}.test"
        if key is None:
            return package.Client(base_url=base_url, httpx_args=args)
        return package.AuthenticatedClient(base_url=base_url, token=key, httpx_args=args)


async def test_generated_clients_run_a_real_flow(
    clients: dict[str, ModuleType],
    listing_app: FastAPI,
    matching_app: FastAPI,
    gateway_app: FastAPI,
    operator_key: str,
) -> None:
    apps = Apps(listing_app, matching_app, gateway_app)
    listing_client, matching_client, gateway_client = (clients[s] for s in SERVICES)
    operator = apps.client(listing_client, "listing", operator_key)

    # Sign up: a seller and a buyer, verified by the operator.
    keys, organizations = {}, {}
    for role, name, kind, region in (
        ("seller", "北京理工大学", "university", "110108"),
        ("buyer", "河北某电池材料有限公司", "enterprise", "130100"),
    ):
        signed = await api(listing_client, "organizations.sign_up").asyncio_detailed(
            client=apps.client(listing_client, "listing"),
            body=model(listing_client, "OrganizationCreate").from_dict(
                {"name": name, "kind": kind, "region": region}
            ),
        )
        assert signed.status_code == 201, signed.content
        organization_id = signed.parsed.organization.id
        organizations[role] = str(organization_id)
        keys[role] = signed.parsed.api_key.key
        verified = await api(listing_client, "organizations.update_organization").asyncio_detailed(
            organization_id,
            client=operator,
            body=model(listing_client, "OrganizationUpdate").from_dict({"verified": True}),
        )
        assert verified.status_code == 200, verified.content
        assert verified.parsed.verified is True

    async with receiving(Receiver()) as receiver:
        # The buyer subscribes to its matches (the operator allow-lists the test's receiver).
        gateway_operator = apps.client(gateway_client, "gateway", operator_key)
        allowed = await api(gateway_client, "webhooks.add_target").asyncio_detailed(
            client=gateway_operator,
            body=model(gateway_client, "TargetCreate").from_dict(
                allowed_target(receiver.url, organization_id=organizations["buyer"])
            ),
        )
        assert allowed.status_code == 201, allowed.content
        assert allowed.parsed.port == receiver.port
        subscribed = await api(gateway_client, "webhooks.create_subscription").asyncio_detailed(
            client=apps.client(gateway_client, "gateway", keys["buyer"]),
            body=model(gateway_client, "SubscriptionCreate").from_dict(
                {"url": receiver.url, "event_types": ["match.created"]}
            ),
        )
        assert subscribed.status_code == 201, subscribed.content
        secret = subscribed.parsed.secret

        # The seller lists a right; the operator approves it.
        seller = apps.client(listing_client, "listing", keys["seller"])
        number = next(NUMBERS)
        created = await api(listing_client, "listings.create_listing").asyncio_detailed(
            client=seller,
            body=model(listing_client, "ListingCreate").from_dict(
                {
                    "asset": patent("北京理工大学", number, filed_on=f"{number[:4]}-03-01"),
                    "transaction": terms(amount="20000"),
                }
            ),
        )
        assert created.status_code == 201, created.content
        listing_id = created.parsed.id
        assert created.parsed.transaction.price.amount == "20000.00"
        submitted = await api(listing_client, "listings.submit_listing").asyncio_detailed(
            listing_id, client=seller
        )
        assert submitted.status_code == 200, submitted.content
        approved = await api(listing_client, "listings.approve_listing").asyncio_detailed(
            listing_id, client=operator
        )
        assert approved.status_code == 200, approved.content
        assert approved.parsed.status.value == "published"

        # The buyer posts a demand and is matched to the listing.
        buyer = apps.client(matching_client, "matching", keys["buyer"])
        demand = await api(matching_client, "demands.create_demand").asyncio_detailed(
            client=buyer,
            body=model(matching_client, "DemandCreate").from_dict(
                {"title": "锂电池隔膜技术", "text": "我公司需要锂离子电池隔膜的制备技术"}
            ),
        )
        assert demand.status_code == 201, demand.content
        found: list[Any] = []
        deadline = time.monotonic() + 30
        while not found and time.monotonic() < deadline:
            page = await api(matching_client, "demands.demand_matches").asyncio_detailed(
                demand.parsed.id, client=buyer
            )
            assert page.status_code == 200, page.content
            found = [m for m in page.parsed.items if str(m.listing_id) == str(listing_id)]
            await asyncio.sleep(0.2)
        assert found, "no match for the listing"
        assert found[0].listing.kind.value == "invention_patent"
        assert found[0].reasons[0].factor.value == "text"

        # Anyone searches the open catalogue through the gateway.
        searched = await api(gateway_client, "catalogue.catalogue_search").asyncio_detailed(
            client=apps.client(gateway_client, "gateway"), q=number
        )
        assert searched.status_code == 200, searched.content
        [hit] = searched.parsed.items
        assert str(hit.listing_id) == str(listing_id) and hit.amount == "20000.00"
        assert hit.transaction_type.value == "exclusive_license"

        # A partner exchange is registered and pushes an offer, signed.
        code = f"pe{uuid.uuid4().hex[:8]}"
        registered = await api(gateway_client, "partners.register_partner").asyncio_detailed(
            client=gateway_operator,
            body=model(gateway_client, "PartnerCreate").from_dict(
                {"code": code, "name": "天津某交易中心", "region": "120000", "adapter": "canonical"}
            ),
        )
        assert registered.status_code == 201, registered.content
        inbound_secret = registered.parsed.inbound_secret

        async def sign(request: httpx.Request) -> None:
            request.headers.update(
                signed_headers(inbound_secret, request.headers["webhook-id"], request.content)
            )

        partner = apps.client(gateway_client, "gateway", event_hooks={"request": [sign]})
        pushed = await api(gateway_client, "partners.receive_partner_push").asyncio_detailed(
            code,
            client=partner,
            body=model(gateway_client, "CatalogueDocument").from_dict(
                partner_document(code, "P-1", next(NUMBERS))
            ),
            webhook_id=f"msg_{code}_1",
            webhook_timestamp="0",  # replaced by the signing hook, as a partner's own code does
            webhook_signature="v1,unsigned",
        )
        assert pushed.status_code == 202, pushed.content
        assert pushed.parsed.offer_id == f"{code}:P-1"

        # The buyer's match reached it, signed with its subscription's secret.
        await receiver.wait_for(lambda r: len(r.delivered()) >= 1, what="match.created")
        delivered = receiver.received[0]
        verify(secret, delivered.body, delivered.headers)
        assert delivered.json()["type"] == "match.created"
        assert delivered.json()["data"]["listing_id"] == str(listing_id)
