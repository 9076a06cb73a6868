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
from shared.search import catalogue_search, search_params
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
    ):
        direct = assert_problem(await gateway.get("/v1/catalogue/search", params=params), 422)
        hop = assert_problem(await matching.get("/v1/search", params=params), 422)
        assert direct["errors"] == hop["errors"] and direct["detail"] == hop["detail"]


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
