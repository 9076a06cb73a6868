"""Schemathesis against listing's OpenAPI document (issue 7): no 5xx, every response as
documented (status, content type, schema), every error problem+json."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis

from fuzz.harness import (
    FUZZ_SETTINGS,
    LARGE_REPRS_ALLOWED,
    Fuzz,
    FuzzCase,
    ListingSeed,
    assert_errors_documented_as_problems,
    asset_body,
    seed_listing,
    terms_body,
)
from services.listing.app import create_app
from shared.settings import Settings
from support import nonexclusive_offer

pytestmark = LARGE_REPRS_ALLOWED
KEYS = ("anonymous", "operator", "service", "seller admin", "seller member", "buyer member")
FUZZ = Fuzz("listing", key_names=KEYS)
schema = FUZZ.schema(create_app(Settings()).openapi())


def known_values(fuzz: Fuzz, seed: ListingSeed) -> None:
    """Real ids for path and query parameters, and bodies that reach the handlers."""
    orgs = [seed.seller.id, seed.buyer.id, seed.unverified.id]
    for op in (
        "GET /v1/organizations/{organization_id}",
        "PATCH /v1/organizations/{organization_id}",
        "POST /v1/organizations/{organization_id}/api-keys",
        "GET /v1/organizations/{organization_id}/api-keys",
    ):
        fuzz.known_path(op, *({"organization_id": org} for org in orgs))
    spares = [{"organization_id": seed.seller.id, "key_id": k} for k in seed.spare_key_ids]
    for op in (
        "POST /v1/organizations/{organization_id}/api-keys/{key_id}/rotate",
        "DELETE /v1/organizations/{organization_id}/api-keys/{key_id}",
    ):
        fuzz.path_values[op] = spares  # one live list: the observer below keeps it current

    listings = [{"listing_id": listing["id"]} for listing in seed.listings]
    for action in ("submit", "approve", "reject", "withdraw", "reopen", "expire"):
        fuzz.known_path(f"POST /v1/listings/{{listing_id}}/{action}", *listings)
    for op in (
        "GET /v1/listings/{listing_id}",
        "PATCH /v1/listings/{listing_id}",
        "GET /v1/listings/{listing_id}/history",
        "POST /v1/listings/{listing_id}/inquiries",
    ):
        fuzz.known_path(op, *listings)
    assets = [{"asset_id": listing["asset_id"]} for listing in seed.listings]
    fuzz.known_path("GET /v1/assets/{asset_id}", *assets)
    fuzz.known_path("GET /v1/assets/{asset_id}/offers", *assets)
    fuzz.known_path("GET /v1/inquiries/{inquiry_id}", {"inquiry_id": seed.inquiry_id})
    fuzz.known_path("POST /v1/inquiries/{inquiry_id}/messages", {"inquiry_id": seed.inquiry_id})
    fuzz.known_path("GET /v1/imports/{import_id}", {"import_id": seed.import_id})
    fuzz.known_path(
        "PUT /v1/offers/{exchange}/{listing_id}", {"exchange": "tipei", "listing_id": "L-2026-0001"}
    )

    fuzz.known_query(
        "GET /v1/assets",
        {"kind": "invention_patent", "identifier": seed.numbers[1]},
        {"kind": "invention_patent", "identifier": f"ZL {seed.numbers[2]}"},
    )
    fuzz.known_query("GET /v1/listings", {"seller": seed.seller.id}, {"status": "published"})
    fuzz.known_query("GET /v1/changes", {"after": "0.0", "limit": 5})
    fuzz.known_query("GET /v1/deals/stats", {"group_by": "kind"}, {"group_by": "province"})

    fuzz.known_body("POST /v1/assets", asset_body(seed.numbers[8]), asset_body(seed.numbers[1]))
    fuzz.known_body(
        "POST /v1/listings",
        {"asset_id": seed.draft["asset_id"], "transaction": terms_body()},
        {"asset": asset_body(seed.numbers[9]), "transaction": terms_body("assignment")},
    )
    fuzz.known_body(
        "POST /v1/deals",
        {
            "listing_id": seed.published[0]["id"],
            "buyer_name": "场外买方有限公司",
            "closed_on": "2026-02-01",
        },
        {"listing_id": seed.negotiating["id"], "inquiry_id": seed.inquiry_id},
    )
    fuzz.known_body("POST /v1/auth/introspect", {"token": seed.buyer.member_key})
    fuzz.known_body(
        "PUT /v1/offers/{exchange}/{listing_id}",
        nonexclusive_offer("tipei", "L-2026-0001", seed.numbers[7]),
    )


def keep_spare_keys(fuzz: Fuzz, seed: ListingSeed) -> None:
    """A spare key the fuzzer rotated or revoked is replaced, so the known ids stay live."""
    spares = fuzz.path_values["POST /v1/organizations/{organization_id}/api-keys/{key_id}/rotate"]

    def observe(case: FuzzCase, response: schemathesis.Response) -> None:
        if case.path_parameters is None or "key_id" not in case.path_parameters:
            return
        used = {"organization_id": seed.seller.id, "key_id": case.path_parameters["key_id"]}
        if used not in spares:
            return
        if case.method.upper() == "POST" and response.status_code == 201:
            new_id = response.json()["id"]
        elif case.method.upper() == "DELETE" and response.status_code == 204:
            new_id = fuzz.call(
                "POST",
                f"http://listing.test/v1/organizations/{seed.seller.id}/api-keys",
                fuzz.operator_key,
                json={"name": "spare", "roles": ["member"]},
                expect=201,
            )["id"]
        else:
            return
        spares[spares.index(used)] = {"organization_id": seed.seller.id, "key_id": new_id}

    fuzz.observers.append(observe)


@pytest.fixture(scope="module")
def fuzz(settings: Settings, operator_key: str, service_key: str) -> Iterator[Fuzz]:
    with FUZZ.running(
        create_app(settings), {}, operator_key=operator_key, service_key=service_key
    ) as fuzz:
        seed = seed_listing(fuzz)
        keys = [None, operator_key, service_key]
        keys += [seed.seller.admin_key, seed.seller.member_key, seed.buyer.member_key]
        fuzz.keys = dict(zip(KEYS, keys, strict=True))
        known_values(fuzz, seed)
        keep_spare_keys(fuzz, seed)
        yield fuzz


@schema.parametrize()
@FUZZ_SETTINGS
def test_listing_api_conforms_to_its_openapi_document(case: FuzzCase, fuzz: Fuzz) -> None:
    fuzz.exercise(case)


def test_every_documented_error_is_problem_json() -> None:
    assert assert_errors_documented_as_problems(FUZZ.openapi) > 0
