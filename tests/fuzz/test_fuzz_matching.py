"""Schemathesis against matching's OpenAPI document (issue 7): no 5xx, every response as
documented (status, content type, schema), every error problem+json. Listing's real app is
mounted in process; the index lives in the session's real Meilisearch."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from fuzz.harness import (
    FUZZ_SETTINGS,
    LARGE_REPRS_ALLOWED,
    Fuzz,
    FuzzCase,
    assert_errors_documented_as_problems,
    seed_listing,
    wait_indexed,
)
from services.listing.app import create_app as create_listing
from services.matching.app import create_app
from shared.settings import Settings

pytestmark = LARGE_REPRS_ALLOWED
KEYS = ("anonymous", "operator", "service", "seller admin", "buyer member", "buyer admin")
FUZZ = Fuzz("matching", key_names=KEYS)
schema = FUZZ.schema(create_app(Settings()).openapi())


@pytest.fixture(scope="module")
def fuzz(settings: Settings, operator_key: str, service_key: str) -> Iterator[Fuzz]:
    listing = create_listing(settings)
    matching_settings = settings.model_copy(
        update={"meili_index": f"catalogue_{uuid.uuid4().hex[:8]}"}
    )
    matching = create_app(matching_settings, {"http://listing.test": httpx.ASGITransport(listing)})
    with FUZZ.running(
        matching,
        {"listing.test": listing},
        operator_key=operator_key,
        service_key=service_key,
    ) as fuzz:
        seed = seed_listing(fuzz)
        wait_indexed(fuzz, operator_key)
        demand_body = {
            "title": "锂离子电池隔膜技术",
            "text": "我公司需要锂离子电池隔膜的制备技术，预算200万元以内，北京优先",
            "kinds": ["invention_patent"],
            "budget_max": "2000000.00",
        }
        demands = [
            fuzz.call("POST", "/v1/demands", seed.buyer.member_key, json=demand_body, expect=201)
            for _ in range(2)
        ]
        # Every organisation that reads its match feed has a match in it (the seller's demand
        # matches the partner's offer): a long poll with nothing to hand out waits its whole
        # `wait`, up to 30 s, the fuzzer's own time-out.
        fuzz.call(
            "POST",
            "/v1/demands",
            seed.seller.admin_key,
            json={"title": "神经网络运算装置", "text": "需要神经网络运算装置的技术"},
            expect=201,
        )
        keys = [None, operator_key, service_key, seed.seller.admin_key]
        keys += [seed.buyer.member_key, seed.buyer.admin_key]
        fuzz.keys = dict(zip(KEYS, keys, strict=True))

        known = [{"demand_id": demand["id"]} for demand in demands]
        for op in (
            "GET /v1/demands/{demand_id}",
            "PATCH /v1/demands/{demand_id}",
            "DELETE /v1/demands/{demand_id}",
            "GET /v1/demands/{demand_id}/matches",
        ):
            fuzz.known_path(op, *known)
        fuzz.known_query(
            "GET /v1/search",
            {"q": "锂离子电池隔膜"},
            {"q": f"ZL{seed.numbers[1]}"},
            {"q": "电池", "kind": ["invention_patent"], "region": ["11"]},
        )
        fuzz.known_query("GET /v1/matches/changes", {"after": "0.0", "limit": 5})
        fuzz.known_body("POST /v1/demands", demand_body)
        fuzz.known_body("PATCH /v1/demands/{demand_id}", {"budget_max": "3000000.00"})
        yield fuzz


@schema.parametrize()
@FUZZ_SETTINGS
def test_matching_api_conforms_to_its_openapi_document(case: FuzzCase, fuzz: Fuzz) -> None:
    fuzz.exercise(case)


def test_every_documented_error_is_problem_json() -> None:
    assert assert_errors_documented_as_problems(FUZZ.openapi) > 0
