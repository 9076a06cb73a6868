"""The catalogue index kept in step with the listing feed, and catalogue search, on real
records (real Meilisearch, real PostgreSQL, listing's real app in process)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from infra.seed.records import SeedRecord, load_records
from shared.settings import Settings
from support import assert_problem, bearer, new_organization, publish_records, wait_indexed

SELLERS = ("中科寒武纪科技股份有限公司", "北京航空航天大学", "天津大学")


@pytest.fixture(scope="module")
def records() -> dict[str, list[SeedRecord]]:
    lawful = [r for r in load_records() if r.asset.legal_status in ("granted", "pending")]
    return {name: [r for r in lawful if r.applicants[0] == name][:60] for name in SELLERS}


@pytest.fixture(scope="module")
async def catalogue(
    listing: httpx.AsyncClient,
    operator_key: str,
    records: dict[str, list[SeedRecord]],
    matching: httpx.AsyncClient,
) -> dict[str, Any]:
    """Each seller's real records, published through the operator's publishing import."""
    sellers = {}
    for name, found in records.items():
        region = {"天津大学": "120104"}.get(name, "110108")
        org_id, key = await new_organization(listing, operator_key, name=name, region=region)
        await publish_records(listing, operator_key, org_id, found)
        sellers[name] = {"id": org_id, "key": key}
    await wait_indexed(matching, operator_key)
    return sellers


async def search(matching: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await matching.get("/v1/search", params=params)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_published_listings_are_searchable_in_chinese_and_english(
    matching: httpx.AsyncClient, catalogue: dict[str, Any], records: dict[str, list[SeedRecord]]
) -> None:
    everything = await search(matching, page_size=1)
    assert everything["total"] == sum(len(v) for v in records.values())
    zh = await search(matching, q="神经网络 处理器")
    assert zh["items"] and zh["items"][0]["holders"][0] == "中科寒武纪科技股份有限公司"
    assert "<em>" in json.dumps(zh["items"][0]["highlight"], ensure_ascii=False)
    assert {k for i in zh["items"] for k in i["highlight"]} <= {"title_zh", "title_en"}
    snippets = await search(matching, q="神经网络 处理器", snippet="true")
    abstract = snippets["items"][0]["highlight"]["abstract_zh"]
    assert "<em>" in abstract and len(abstract) < len(snippets["items"][0]["abstract"]["zh"])
    vr = await search(matching, q="虚拟现实")
    assert vr["items"] and any("虚拟现实" in (i["title"]["zh"] or "") for i in vr["items"][:5])
    en = await search(matching, q="virtual reality")  # a synonym of 虚拟现实
    assert en["total"] > 0


async def test_a_patent_number_matches_exactly(
    matching: httpx.AsyncClient, catalogue: dict[str, Any], records: dict[str, list[SeedRecord]]
) -> None:
    record = records["北京航空航天大学"][0]
    number = record.asset.identifier
    for typed in (number, "ZL" + number, "CN" + number.replace(".", "")):
        found = await search(matching, q=typed)
        assert [i["identifier"] for i in found["items"]] == [number], typed
    digits = number.replace(".", "")
    near = digits[:-2] + str((int(digits[-2]) + 1) % 10) + digits[-1]  # one digit off
    assert (await search(matching, q=near))["items"] == [] or all(
        i["identifier"] != number for i in (await search(matching, q=near))["items"]
    )


async def test_filters_facets_and_sorting(
    matching: httpx.AsyncClient, catalogue: dict[str, Any]
) -> None:
    tianjin = await search(matching, region="12", page_size=100)
    assert tianjin["total"] > 0 and all(i["region"].startswith("12") for i in tianjin["items"])
    assert tianjin["facets"]["province"] == {"12": tianjin["total"]}
    utility = await search(matching, kind="utility_model", page_size=100)
    assert all(i["kind"] == "utility_model" for i in utility["items"])
    g06 = await search(matching, ipc="G06N", page_size=100)
    assert g06["total"] > 0 and all(
        any(c.startswith("G06N") for c in i["ipc"]) for i in g06["items"]
    )
    priced = await search(
        matching, price_min="100000", price_max="2000000", sort="price_asc", page_size=100
    )
    amounts = [float(i["amount"]) for i in priced["items"]]
    assert amounts == sorted(amounts) and all(100000 <= a <= 2000000 for a in amounts)
    licences = await search(matching, transaction_type=["open_license", "assignment"])
    assert set(licences["facets"]["transaction_type"]) <= {"open_license", "assignment"}
    pages = [await search(matching, page=p, page_size=7, sort="newest") for p in (1, 2)]
    first, second = ({i["listing_id"] for i in page["items"]} for page in pages)
    assert len(first) == 7 and not first & second


async def test_withdrawn_listings_leave_and_negotiated_ones_stay(
    matching: httpx.AsyncClient,
    listing: httpx.AsyncClient,
    catalogue: dict[str, Any],
    records: dict[str, list[SeedRecord]],
    operator_key: str,
) -> None:
    seller = catalogue["天津大学"]
    target, negotiated = records["天津大学"][:2]
    hits = {}
    for record in (target, negotiated):
        hits[record.asset.identifier] = (await search(matching, q=record.asset.identifier))[
            "items"
        ][0]
    withdrawn = await listing.post(
        f"/v1/listings/{hits[target.asset.identifier]['listing_id']}/withdraw",
        headers=bearer(seller["key"]),
    )
    assert withdrawn.status_code == 200
    _, buyer = await new_organization(listing, operator_key, name="河北某买方", region="130100")
    offer = await listing.post(
        f"/v1/listings/{hits[negotiated.asset.identifier]['listing_id']}/inquiries",
        json={"message": "我们有意向", "offer_amount": "100000.00"},
        headers=bearer(buyer),
    )
    assert offer.status_code == 201, offer.text
    await wait_indexed(matching, operator_key)
    assert (await search(matching, q=target.asset.identifier))["items"] == []
    still = (await search(matching, q=negotiated.asset.identifier))["items"]
    assert still and still[0]["status"] == "under_negotiation"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page_size": "100000"}, "page_size"),
        ({"page": "0"}, "page"),
        ({"page": "500", "page_size": "100"}, "page"),
        ({"ipc": "H01M OR 1=1"}, "ipc"),
        ({"exchange": 'jjj"] OR status = "draft'}, "exchange"),
        ({"region": "11) OR (1"}, "region"),
        ({"kind": "spaceship"}, "kind"),
        ({"nice": "99"}, "nice"),
        ({"price_min": "-1"}, "price_min"),
        ({"price_min": "5", "price_max": "1"}, "price_min"),
        ({"sort": "amount:asc"}, "sort"),
        ({"q": "x" * 501}, "q"),
    ],
)
async def test_malformed_and_hostile_parameters_are_422(
    matching: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    body = assert_problem(await matching.get("/v1/search", params=params), 422)
    assert any(e["field"].split("[")[0] == field for e in body["errors"]), body


async def test_injection_in_the_query_text_is_just_text(
    matching: httpx.AsyncClient, catalogue: dict[str, Any]
) -> None:
    for q in ('" OR status = "draft', "'; DROP TABLE listing.listings; --", '\\"', "*:*"):
        result = await search(matching, q=q)
        assert all(i["status"] in ("published", "under_negotiation") for i in result["items"])


async def test_replaying_the_whole_feed_changes_nothing(
    matching: httpx.AsyncClient,
    catalogue: dict[str, Any],
    operator_key: str,
    matching_settings: Settings,
    matching_app: FastAPI,
) -> None:
    from sqlalchemy import text

    app: Any = matching_app
    before = await documents(app)
    for _ in range(2):
        async with app.state.sessionmaker() as session, session.begin():
            await session.execute(
                text("UPDATE matching.indexer_state SET cursor = '0.0' WHERE index_uid = :uid"),
                {"uid": matching_settings.meili_index},
            )
        await wait_indexed(matching, operator_key)
        assert await documents(app) == before


async def documents(app: Any) -> dict[str, int]:
    """Every document in the index: id -> version."""
    found: dict[str, int] = {}
    offset = 0
    while True:
        page = await app.state.meili.fetch_documents(
            app.state.index_uid, ["id", "version"], offset, 1000
        )
        found |= {d["id"]: d["version"] for d in page}
        if len(page) < 1000:
            return found
        offset += 1000


async def test_an_older_version_never_replaces_a_newer_one(
    matching: httpx.AsyncClient,
    catalogue: dict[str, Any],
    listing: httpx.AsyncClient,
    operator_key: str,
    records: dict[str, list[SeedRecord]],
    matching_app: FastAPI,
) -> None:
    from services.matching.models import IndexerState
    from shared.contracts.events import ChangeFeedPage

    app: Any = matching_app
    record = records["北京航空航天大学"][5]
    hit = (await search(matching, q=record.asset.identifier))["items"][0]
    seller = catalogue["北京航空航天大学"]
    withdrawn = await listing.post(
        f"/v1/listings/{hit['listing_id']}/withdraw", headers=bearer(seller["key"])
    )
    assert withdrawn.status_code == 200
    await wait_indexed(matching, operator_key)
    current = await documents(app)
    assert hit["listing_id"] not in current
    events = (
        await listing.get("/v1/changes", params={"limit": 1000}, headers=bearer(operator_key))
    ).json()["events"]
    stale = [e for e in events if e["entity_id"] == hit["listing_id"] and e["version"] == 1]
    assert stale and stale[0]["data"]["status"] == "published"
    async with app.state.sessionmaker() as session:
        state = await session.get(IndexerState, app.state.index_uid)
    # The old "published" event arrives again (a replay, or out of order): nothing changes.
    page = ChangeFeedPage(events=stale, next_cursor=state.cursor)
    result = await app.state.indexer.apply(page, state.cursor)
    assert (result.upserted, result.deleted) == (0, 0)
    assert await documents(app) == current


async def test_index_status_needs_an_operator(
    matching: httpx.AsyncClient, catalogue: dict[str, Any]
) -> None:
    assert_problem(await matching.get("/v1/index/status"), 401)
    seller = catalogue["天津大学"]
    assert_problem(await matching.get("/v1/index/status", headers=bearer(seller["key"])), 403)
