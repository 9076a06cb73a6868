"""The gateway's catalogue search queries Meilisearch directly, with a read-only key that
matching provisions (NOTES.md "Search hop"): the key can search the catalogue index and fetch its
documents, nothing else, and the gateway answers exactly what matching's own search answers (one
query builder, shared/search.py). Real PostgreSQL, real Meilisearch, the three apps in process."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from infra.meili import MeiliHandle
from infra.seed.records import SeedRecord, load_records
from services.gateway.catalogue.engine import CatalogueEngine
from shared.search import (
    MAX_HITS,
    SearchParams,
    catalogue_search,
    next_page_token,
    search_params,
)
from shared.settings import Settings
from support import assert_problem, bearer, new_organization, publish_records, wait_indexed

SELLER = "北京航空航天大学"
# A real right with two holders: each lists it, so the asset has two offers.
CO_HOLDERS = ("中国移动通信有限公司研究院", "中国移动通信集团有限公司")


@pytest.fixture(scope="module")
def records() -> dict[str, Any]:
    lawful = [r for r in load_records() if r.asset.legal_status in ("granted", "pending")]
    shared_right = next(r for r in lawful if tuple(r.applicants) == CO_HOLDERS)
    return {"seller": [r for r in lawful if r.applicants[0] == SELLER][:40], "shared": shared_right}


@pytest.fixture(scope="module")
async def catalogue(
    listing: httpx.AsyncClient,
    matching: httpx.AsyncClient,
    operator_key: str,
    records: dict[str, Any],
) -> dict[str, Any]:
    seller_id, _ = await new_organization(listing, operator_key, name=SELLER)
    await publish_records(listing, operator_key, seller_id, records["seller"])
    for holder in CO_HOLDERS:
        org_id, _ = await new_organization(listing, operator_key, name=holder, kind="enterprise")
        await publish_records(listing, operator_key, org_id, [records["shared"]])
    await wait_indexed(matching, operator_key)
    return records


async def test_the_search_key_is_provisioned_once_and_can_only_read(
    matching: httpx.AsyncClient,
    service_key: str,
    operator_key: str,
    meili: MeiliHandle,
    meili_key: str,
    matching_settings: Settings,
    catalogue: dict[str, Any],
) -> None:
    assert_problem(await matching.get("/v1/index/search-key"), 401)
    assert_problem(await matching.get("/v1/index/search-key", headers=bearer(operator_key)), 403)
    first = await matching.get("/v1/index/search-key", headers=bearer(service_key))
    again = await matching.get("/v1/index/search-key", headers=bearer(service_key))
    assert first.status_code == 200, first.text
    assert first.json() == again.json()
    found = first.json()
    index = matching_settings.meili_index
    assert found["url"] == meili.url and found["index"] == index
    assert found["key"] and found["key"] != meili_key

    async with httpx.AsyncClient(base_url=meili.url, timeout=10) as meili_http:
        master = bearer(meili_key)
        keys = (await meili_http.get("/keys", params={"limit": 1000}, headers=master)).json()
        mine = [k for k in keys["results"] if k["key"] == found["key"]]
        assert len(mine) == 1  # asked twice, created once
        assert mine[0]["actions"] == ["search", "documents.get"]
        assert mine[0]["indexes"] == [index]

        # Meilisearch answers a refused write before reading its body, and the next request on
        # that connection hangs: one connection per refused request.
        key = {**bearer(found["key"]), "Connection": "close"}
        searched = await meili_http.post(f"/indexes/{index}/search", json={"q": ""}, headers=key)
        assert searched.status_code == 200 and searched.json()["hits"]
        fetched = await meili_http.post(
            f"/indexes/{index}/documents/fetch", json={"limit": 1}, headers=key
        )
        assert fetched.status_code == 200 and fetched.json()["results"]
        refused = [
            await meili_http.post(f"/indexes/{index}/documents", json=[{"id": "x"}], headers=key),
            await meili_http.post(f"/indexes/{index}/documents/delete-batch", json=[], headers=key),
            await meili_http.patch(f"/indexes/{index}/settings", json={}, headers=key),
            await meili_http.delete(f"/indexes/{index}", headers=key),
            await meili_http.post(f"/indexes/{index}_other/search", json={}, headers=key),
            await meili_http.get("/keys", headers=key),
            await meili_http.post(f"/indexes/{index}_other/documents/fetch", json={}, headers=key),
            await meili_http.get("/indexes", headers=key),
        ]
        assert [r.status_code for r in refused] == [403] * len(refused)
        # Nothing was written: the index holds what the indexer put there.
        count = await meili_http.get(f"/indexes/{index}/stats", headers=master)
        assert count.json()["numberOfDocuments"] == len(catalogue["seller"]) + 2


QUERIES: list[dict[str, Any]] = [
    {"q": "虚拟现实"},
    {"q": "显示 装置", "page_size": 5, "page": 2},
    {"q": "virtual reality", "facets": "false"},
    {"q": "", "sort": "newest", "page_size": 3},
    {"q": "头戴", "kind": "invention_patent", "highlight": "false"},
    {"q": "虚拟现实", "region": ["11", "120104"], "price_max": "2000000"},
    {"q": "虚拟现实", "group": "false", "transaction_type": ["assignment", "exclusive_license"]},
    {"q": "no such words anywhere xyzzy"},
]


@pytest.mark.parametrize("params", QUERIES, ids=lambda p: str(p)[:40])
async def test_the_gateway_answers_what_matching_answers(
    gateway: httpx.AsyncClient,
    matching: httpx.AsyncClient,
    catalogue: dict[str, Any],
    params: dict[str, Any],
) -> None:
    direct = await gateway.get("/v1/catalogue/search", params=params)
    hop = await matching.get("/v1/search", params=params)
    assert direct.status_code == hop.status_code == 200, direct.text
    assert direct.json() == hop.json()
    assert direct.headers["etag"] and direct.headers["cache-control"] == "public, max-age=10"


async def test_a_patent_number_and_an_asset_with_two_offers(
    gateway: httpx.AsyncClient, matching: httpx.AsyncClient, catalogue: dict[str, Any]
) -> None:
    shared_right: SeedRecord = catalogue["shared"]
    identifier = shared_right.asset.identifier
    grouped = (await gateway.get("/v1/catalogue/search", params={"q": f"CN{identifier}"})).json()
    assert grouped["query"]["identifier"] == identifier
    assert [hit["identifier"] for hit in grouped["items"]] == [identifier]
    offers = grouped["items"][0]["offers"]
    assert len(offers) == 2 and len({o["listing_id"] for o in offers}) == 2
    assert grouped == (await matching.get("/v1/search", params={"q": identifier})).json()

    apart = (
        await gateway.get("/v1/catalogue/search", params={"q": identifier, "group": "false"})
    ).json()
    assert sorted(hit["listing_id"] for hit in apart["items"]) == sorted(
        o["listing_id"] for o in offers
    )
    assert all(hit["offers"] == [] for hit in apart["items"])

    # An asset with one offer lists that offer, with its address like any other (it used to
    # come without one: only assets with several offers were looked up).
    hits = (await gateway.get("/v1/catalogue/search", params={"q": "虚拟现实"})).json()["items"]
    one = next(hit for hit in hits if hit["identifier"] != identifier)
    assert one["offers"] == [
        {
            "listing_id": one["listing_id"],
            "offer_id": one["offer_id"],
            "exchange": one["exchange"],
            "transaction_type": one["transaction_type"],
            "price_mode": one["price_mode"],
            "amount": one["amount"],
            "currency": "CNY",
            "status": one["status"],
            "source_url": f"http://127.0.0.1:8000/v1/catalogue/listings/{one['listing_id']}",
        }
    ]


async def test_bad_parameters_are_the_same_422_on_both(
    gateway: httpx.AsyncClient, matching: httpx.AsyncClient, catalogue: dict[str, Any]
) -> None:
    for params in (
        {"page_size": "100000"},
        {"ipc": "not an ipc"},
        {"region": "beijing"},
        {"price_min": "5", "price_max": "1"},
        {"page": "500", "page_size": "100"},
        {"kind": "spaceship"},
        {"page_token": "not a token"},
    ):
        direct = assert_problem(await gateway.get("/v1/catalogue/search", params=params), 422)
        hop = assert_problem(await matching.get("/v1/search", params=params), 422)
        assert direct["errors"] == hop["errors"] and direct["detail"] == hop["detail"]


async def test_totals_are_estimates_unless_counted_and_pages_follow_tokens(
    gateway: httpx.AsyncClient, catalogue: dict[str, Any]
) -> None:
    """N assets, N + 1 offers (the shared right is offered twice): Meilisearch's estimate counts
    offers, an exact count counts assets, and paging by token visits each asset once."""
    assets = len(catalogue["seller"]) + 1

    async def search(**params: Any) -> dict[str, Any]:
        response = await gateway.get("/v1/catalogue/search", params=params)
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    estimated = await search(page_size=1)
    assert estimated["total_relation"] == "about" and not estimated["total_is_exact"]
    assert estimated["total"] >= assets and estimated["query"]["count"] == "estimated"
    assert not estimated["facets_are_exact"]
    exact = await search(page_size=1, exact_total="true")
    assert (exact["total"], exact["total_relation"], exact["total_is_exact"]) == (
        assets,
        "eq",
        True,
    )
    assert exact["facets_are_exact"] and sum(exact["facets"]["kind"].values()) == assets
    assert exact["total_pages"] == assets and exact["query"]["count"] == "exact"
    # One short page is every result; asked for, its facets are counted exactly too.
    short = await search(exact_total="true")
    assert (short["total"], short["total_is_exact"], short["facets_are_exact"]) == (
        assets,
        True,
        True,
    )
    assert short["facets"] == exact["facets"]

    seen: list[str] = []
    page = await search(page_size=3, sort="newest")
    while True:
        seen += [hit["asset_id"] for hit in page["items"]]
        if not page["next_page_token"]:
            break
        page = await search(page_size=3, sort="newest", page_token=page["next_page_token"])
    assert len(seen) == len(set(seen)) == assets
    assert page["total"] == assets and page["total_is_exact"]
    assert page["page"] == -(-assets // 3) > 2

    # A page past the end is empty, and says how many results there are: it is counted.
    beyond = await search(page_size=3, page=assets)
    assert beyond["items"] == [] and (beyond["total"], beyond["total_is_exact"]) == (assets, True)
    assert beyond["next_page_token"] == ""


async def test_bad_pages_and_tokens_name_the_parameter(
    gateway: httpx.AsyncClient, catalogue: dict[str, Any]
) -> None:
    deep = assert_problem(
        await gateway.get("/v1/catalogue/search", params={"page": "101", "page_size": "100"}),
        422,
    )
    assert [(e["field"], e["rule"]) for e in deep["errors"]] == [("page", "max_hits")]
    assert "10000" in deep["detail"]
    first = await gateway.get("/v1/catalogue/search", params={"q": "虚拟现实", "page_size": 2})
    token = first.json()["next_page_token"]
    assert token
    for params, rule in (
        ({"q": "显示", "page_token": token}, "page_token_query"),
        ({"q": "虚拟现实", "sort": "newest", "page_token": token}, "page_token_query"),
        ({"q": "虚拟现实", "page": "2", "page_token": token}, "page_or_token"),
        ({"q": "虚拟现实", "page_token": "eyJvZmZzZXQiOi0xfQ"}, "page_token_invalid"),
    ):
        problem = assert_problem(await gateway.get("/v1/catalogue/search", params=params), 422)
        assert [(e["field"], e["rule"]) for e in problem["errors"]] == [("page_token", rule)]
    # A token walks the same bounded window as pages: page_size may not push it past 10,000.
    near_the_end = SearchParams(q="虚拟现实", offset=9970, page_size=20)
    last = next_page_token(near_the_end, returned=20, total=MAX_HITS)  # offset 9,990
    problem = assert_problem(
        await gateway.get(
            "/v1/catalogue/search", params={"q": "虚拟现实", "page_size": 20, "page_token": last}
        ),
        422,
    )
    assert [(e["field"], e["rule"]) for e in problem["errors"]] == [("page_token", "max_hits")]


async def test_a_deleted_search_key_is_provisioned_again(
    gateway: httpx.AsyncClient,
    matching: httpx.AsyncClient,
    service_key: str,
    meili: MeiliHandle,
    meili_key: str,
    catalogue: dict[str, Any],
) -> None:
    assert (await gateway.get("/v1/catalogue/search", params={"q": "虚拟现实"})).status_code == 200
    found = (await matching.get("/v1/index/search-key", headers=bearer(service_key))).json()
    async with httpx.AsyncClient(base_url=meili.url, timeout=10) as meili_http:
        keys = (
            await meili_http.get("/keys", params={"limit": 1000}, headers=bearer(meili_key))
        ).json()
        uid = next(k["uid"] for k in keys["results"] if k["key"] == found["key"])
        deleted = await meili_http.delete(f"/keys/{uid}", headers=bearer(meili_key))
        assert deleted.status_code == 204
        refused = await meili_http.post(
            f"/indexes/{found['index']}/search", json={}, headers=bearer(found["key"])
        )
        assert refused.status_code == 403
    # The gateway's key is refused; it asks matching again, which provisions it anew.
    answer = await gateway.get("/v1/catalogue/search", params={"q": "虚拟现实", "page_size": 2})
    assert answer.status_code == 200, answer.text
    assert answer.json()["items"]


async def test_the_engine_answers_as_matching_does(
    matching_app: FastAPI,
    matching: httpx.AsyncClient,
    matching_settings: Settings,
    catalogue: dict[str, Any],
) -> None:
    """The gateway's own hop (aiohttp, straight to Meilisearch) gives the answer matching
    gives."""
    mounts = {"http://matching.test": httpx.ASGITransport(matching_app)}
    async with (
        httpx.AsyncClient(mounts=mounts, headers={"Accept-Encoding": "identity"}) as http,
        CatalogueEngine(matching_settings, http) as engine,
    ):
        for params in QUERIES[:3]:
            answer = await catalogue_search(engine, await search_params(**_typed(params)))
            hop = await matching.get("/v1/search", params=params)
            assert json.loads(answer) == hop.json()
        # An exact count that cannot finish within its budget answers the estimate, saying so.
        asked = await search_params(**_typed({"q": "", "page_size": 1, "exact_total": "true"}))
        late = json.loads(await catalogue_search(engine, asked, count_budget=0))
        assert (late["total_relation"], late["query"]["count"]) == ("about", "over_budget")
        assert late["items"] and not late["total_is_exact"]


def _typed(params: dict[str, Any]) -> dict[str, Any]:
    """Query-string values as search_params() takes them when called directly."""
    typed: dict[str, Any] = {}
    for name, value in params.items():
        if value in ("true", "false"):
            typed[name] = value == "true"
        elif name in ("page", "page_size"):
            typed[name] = int(value)
        else:
            typed[name] = value
    return typed
