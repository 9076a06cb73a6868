"""Organisations on listing's real app and PostgreSQL: the operators' filtered, paged list
(GET /v1/organizations) and the credit code's check-character error on sign-up."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from support import assert_problem, bearer, new_organization

# (name, kind, region, verified): signed up in this order, one module database of their own.
ORGANIZATIONS = [
    ("北京理工大学", "university", "110108", True),
    ("Tsinghua Unisplendour Ltd", "enterprise", "110108", False),
    ("北京市某研究院", "research_institute", "110000", False),
    ("天津大学", "university", "120104", False),
    ("河北大学", "university", "130602", False),
    ("保定某新能源有限公司", "enterprise", "130600", True),
    ("石家庄100%科技有限公司", "enterprise", "130100", False),
    ("Beijing Tsinghua Tech Transfer", "service_agency", "110105", False),
]
VALID_USCC = "91330100716105852F"
BAD_CHECK_USCC = "91330100716105852E"  # the check character (position 18) is off


@pytest.fixture(scope="module")
async def signed_up(listing: httpx.AsyncClient, operator_key: str) -> dict[str, str]:
    """Name -> id of every organisation above (the bootstrap operator verifies some)."""
    ids = {}
    for name, kind, region, verified in ORGANIZATIONS:
        org_id, _ = await new_organization(
            listing, operator_key, name=name, kind=kind, region=region, verified=verified
        )
        ids[name] = org_id
    return ids


async def names(listing: httpx.AsyncClient, operator_key: str, **params: str) -> list[str]:
    response = await listing.get(
        "/v1/organizations", params={"page_size": "200", **params}, headers=bearer(operator_key)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["next_page_token"] == ""
    return [item["name"] for item in body["items"]]


async def test_operators_find_the_organisations_waiting_for_verification(
    listing: httpx.AsyncClient, operator_key: str, signed_up: dict[str, str]
) -> None:
    # (Other tests of the module sign up more; this one looks at the fixture's own.)
    ours = set(signed_up)
    pending = [name for name, _, _, verified in ORGANIZATIONS if not verified]
    queue = await names(listing, operator_key, verified="false")
    assert [name for name in queue if name in ours] == pending
    verified = await names(listing, operator_key, verified="true")
    assert [name for name in verified if name in ours] == ["北京理工大学", "保定某新能源有限公司"]
    everything = await names(listing, operator_key)
    assert [name for name in everything if name in ours] == [name for name, *_ in ORGANIZATIONS]
    response = await listing.get(
        "/v1/organizations",
        params={"verified": "false", "name": "unisplendour"},
        headers=bearer(operator_key),
    )
    (item,) = response.json()["items"]
    assert item["id"] == signed_up["Tsinghua Unisplendour Ltd"]
    assert item["verified"] is False and item["kind"] == "enterprise"
    assert set(item) >= {"id", "name", "kind", "region", "uscc", "verified", "created_at"}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"kind": "university"}, ["北京理工大学", "天津大学", "河北大学"]),
        # A six-digit code covers what lies in it: 110000 is all of Beijing, its districts too.
        (
            {"region": "110000"},
            [
                "北京理工大学",
                "Tsinghua Unisplendour Ltd",
                "北京市某研究院",
                "Beijing Tsinghua Tech Transfer",
            ],
        ),
        ({"region": "130600"}, ["河北大学", "保定某新能源有限公司"]),  # Baoding, city and district
        ({"region": "110108"}, ["北京理工大学", "Tsinghua Unisplendour Ltd"]),  # Haidian only
        (
            {"region": "13"},
            ["河北大学", "保定某新能源有限公司", "石家庄100%科技有限公司"],
        ),  # fewer digits: a prefix
        ({"region": "1306"}, ["河北大学", "保定某新能源有限公司"]),
        ({"region": "310000"}, []),
        # Name: a substring, any case; LIKE's wildcards are plain characters.
        ({"name": "tsinghua"}, ["Tsinghua Unisplendour Ltd", "Beijing Tsinghua Tech Transfer"]),
        ({"name": "TSINGHUA UNI"}, ["Tsinghua Unisplendour Ltd"]),
        ({"name": "大学"}, ["北京理工大学", "天津大学", "河北大学"]),
        ({"name": "100%"}, ["石家庄100%科技有限公司"]),
        ({"name": "%"}, ["石家庄100%科技有限公司"]),
        ({"name": "_"}, []),
        # Filters combine with AND.
        (
            {"verified": "false", "region": "110000", "name": "tsinghua"},
            ["Tsinghua Unisplendour Ltd", "Beijing Tsinghua Tech Transfer"],
        ),
        ({"verified": "false", "kind": "university", "region": "12"}, ["天津大学"]),
        ({"verified": "true", "kind": "university", "region": "12"}, []),
    ],
)
async def test_filters_select_by_state_kind_region_and_name(
    listing: httpx.AsyncClient,
    operator_key: str,
    signed_up: dict[str, str],
    params: dict[str, str],
    expected: list[str],
) -> None:
    assert await names(listing, operator_key, **params) == expected


async def test_pages_follow_the_sign_up_order_without_repeats(
    listing: httpx.AsyncClient, operator_key: str
) -> None:
    # Its own organisations (individuals in Xinjiang), apart from the other tests' filters.
    expected = [f"新疆某个人{i}" for i in range(6)]
    for name in expected[:5]:
        await new_organization(
            listing, operator_key, name=name, kind="individual", region="650102", verified=False
        )
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        params = {"page_size": "2", "verified": "false", "region": "65"}
        if token:
            params["page_token"] = token
        response = await listing.get(
            "/v1/organizations", params=params, headers=bearer(operator_key)
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"items", "next_page_token"}
        assert len(body["items"]) <= 2
        seen += [item["name"] for item in body["items"]]
        pages += 1
        token = body["next_page_token"]
        if not token:
            break
        if pages == 1:
            # A sign-up between pages lands at the end, never shifting what is still to come.
            await new_organization(
                listing,
                operator_key,
                name=expected[5],
                kind="individual",
                region="650103",
                verified=False,
            )
    assert seen == expected
    assert pages == 3


@pytest.mark.parametrize(
    ("params", "field", "rule"),
    [
        ({"verified": "maybe"}, "verified", "bool_parsing"),
        ({"kind": "pirate"}, "kind", "literal_error"),
        ({"region": "1"}, "region", "string_pattern_mismatch"),
        ({"region": "1100000"}, "region", "string_pattern_mismatch"),
        ({"region": "11010a"}, "region", "string_pattern_mismatch"),
        ({"region": "北京"}, "region", "string_pattern_mismatch"),
        ({"name": ""}, "name", "string_too_short"),
        ({"name": "x" * 201}, "name", "string_too_long"),
        ({"name": "北京\x00"}, "name", "nul_character"),
        ({"page_size": "0"}, "page_size", "greater_than_equal"),
        ({"page_size": "201"}, "page_size", "less_than_equal"),
        ({"page_token": "not-ours"}, "page_token", "page_token_invalid"),
        # Well-formed base64 JSON with values the keyset cannot use.
        ({"page_token": "eyJjcmVhdGVkX2F0IjoxLCJpZCI6MX0"}, "page_token", "page_token_invalid"),
    ],
)
async def test_bad_filters_are_422s_naming_the_field_and_rule(
    listing: httpx.AsyncClient, operator_key: str, params: dict[str, str], field: str, rule: str
) -> None:
    response = await listing.get("/v1/organizations", params=params, headers=bearer(operator_key))
    body = assert_problem(response, 422)
    assert body["type"] == "/problems/validation-error"
    assert [(e["field"], e["rule"]) for e in body["errors"]] == [(field, rule)], body
    assert all(e["message"] for e in body["errors"])


async def test_only_operators_list_organisations(
    listing: httpx.AsyncClient, operator_key: str, service_key: str, signed_up: dict[str, str]
) -> None:
    body = assert_problem(await listing.get("/v1/organizations"), 401)
    assert body["type"] == "/problems/unauthorized"
    _, admin = await new_organization(
        listing, operator_key, name="新疆某个人", kind="individual", region="650104"
    )
    for key in (admin, service_key):
        for params in ({}, {"verified": "false"}, {"kind": "pirate"}):
            # Refused before its filters are read: a bad filter tells a non-operator nothing.
            response = await listing.get("/v1/organizations", params=params, headers=bearer(key))
            assert assert_problem(response, 403)["type"] == "/problems/forbidden"


# ----------------------------------------------------------------------------- credit codes


async def test_a_wrong_check_character_says_what_would_be_valid_once(
    listing: httpx.AsyncClient,
) -> None:
    body = {"name": "杭州某科技有限公司", "kind": "enterprise", "region": "330100"}
    response = await listing.post("/v1/organizations", json={**body, "uscc": BAD_CHECK_USCC})
    problem = assert_problem(response, 422)
    assert problem["type"] == "/problems/validation-error"
    assert problem["errors"] == [
        {
            "field": "uscc",
            "rule": "uscc_check_character",
            "message": f"uscc {BAD_CHECK_USCC}: check character (position 18) is E, expected F "
            f"({VALID_USCC} would be valid; GB 32100-2015 mod-31 rule, which an operator may "
            "override for a lawful early pilot-region code)",
        }
    ]
    assert problem["detail"] == "1 field is invalid: uscc (uscc_check_character)"
    # The explanation appears once in the whole answer.
    assert response.text.count("would be valid") == 1
    assert response.text.count(VALID_USCC) == 1
    # Typed the way people type it (lower case, spaces): the same answer about the same code.
    typed = await listing.post("/v1/organizations", json={**body, "uscc": "9133 0100 7161 0585 2e"})
    assert assert_problem(typed, 422)["errors"] == problem["errors"]
    # The code it proposes is accepted.
    accepted = await listing.post("/v1/organizations", json={**body, "uscc": VALID_USCC})
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["organization"]["uscc"] == VALID_USCC


async def test_a_wrong_organisation_code_check_names_both_characters(
    listing: httpx.AsyncClient,
) -> None:
    # Position 17 (the GB 11714 check) is wrong as well as position 18.
    code = "91110108MA01ABCDE3"
    response = await listing.post(
        "/v1/organizations",
        json={"name": "北京某公司", "kind": "enterprise", "region": "110108", "uscc": code},
    )
    (error,) = assert_problem(response, 422)["errors"]
    assert error["field"] == "uscc" and error["rule"] == "uscc_check_character"
    assert "position 17) is E, expected 5" in error["message"]
    assert "position 18) is 3, expected T" in error["message"]
    assert "91110108MA01ABCD5T would be valid" in error["message"]
    assert response.text.count("91110108MA01ABCD5T") == 1


async def test_a_holder_credit_code_and_an_update_say_it_once_too(
    listing: httpx.AsyncClient, operator_key: str
) -> None:
    org_id, key = await new_organization(
        listing, operator_key, name="浙江某研究中心", kind="research_institute", region="330100"
    )
    asset = {
        "kind": "invention_patent",
        "identifier": "201710601862.3",
        "title": {"zh": "一种锂离子电池隔膜及其制备方法"},
        "holders": [{"name": "浙江某研究中心", "uscc": BAD_CHECK_USCC}],
        "filed_on": "2017-07-21",
        "legal_status": "granted",
    }
    registered = await listing.post("/v1/assets", json=asset, headers=bearer(key))
    (error,) = assert_problem(registered, 422)["errors"]
    assert (error["field"], error["rule"]) == ("asset.holders[0].uscc", "uscc_check_character")
    assert f"{VALID_USCC} would be valid" in error["message"]
    assert registered.text.count(VALID_USCC) == 1

    path = f"/v1/organizations/{org_id}"
    updated = await listing.patch(path, json={"uscc": BAD_CHECK_USCC}, headers=bearer(key))
    (error,) = assert_problem(updated, 422)["errors"]
    assert (error["field"], error["rule"]) == ("uscc", "uscc_check_character")
    assert updated.text.count(VALID_USCC) == 1
    # The operator's override still takes a lawful pilot-region code as it is.
    overridden = await listing.patch(
        path,
        json={"uscc": BAD_CHECK_USCC, "uscc_check_override": True},
        headers=bearer(operator_key),
    )
    assert overridden.status_code == 200, overridden.text
    assert overridden.json()["uscc"] == BAD_CHECK_USCC
