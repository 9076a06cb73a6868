"""Buyer demands: matches computed at creation and when new listings are indexed, scored with
the reasons kept; the feed of new matches."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.seed.records import SeedRecord, load_records
from support import (
    assert_problem,
    bearer,
    new_organization,
    publish_records,
    wait_indexed,
    wait_matched,
)

DEMANDS = Path(__file__).resolve().parents[1] / "data" / "tech_demands.jsonl"
SELLER = "京东方科技集团股份有限公司"


@pytest.fixture(scope="module")
def vr_records() -> list[SeedRecord]:
    lawful = [
        r
        for r in load_records()
        if r.asset.legal_status in ("granted", "pending") and r.applicants[0] == SELLER
    ]
    assert len(lawful) >= 40
    return lawful[:40]


@pytest.fixture(scope="module")
async def market(
    listing: httpx.AsyncClient,
    matching: httpx.AsyncClient,
    operator_key: str,
    vr_records: list[SeedRecord],
) -> dict[str, Any]:
    seller_id, seller_key = await new_organization(listing, operator_key, name=SELLER)
    await publish_records(listing, operator_key, seller_id, vr_records[:30])
    _, buyer = await new_organization(
        listing, operator_key, name="河北某科技有限公司", kind="enterprise", region="130100"
    )
    await wait_indexed(matching, operator_key)
    return {"seller_id": seller_id, "seller_key": seller_key, "buyer": buyer}


VR_DEMAND = {
    "title": "虚拟现实头戴显示技术",
    "text": "我公司需要虚拟现实头戴显示及交互技术，预算200万元以内，北京优先",
    "budget_max": "2000000.00",
    "regions": ["11"],
}


async def matches_of(matching: httpx.AsyncClient, key: str, demand_id: str) -> list[Any]:
    page = await matching.get(
        f"/v1/demands/{demand_id}/matches", params={"page_size": 100}, headers=bearer(key)
    )
    assert page.status_code == 200, page.text
    items: list[Any] = page.json()["items"]
    return items


async def test_a_demand_is_matched_at_once_with_reasons(
    matching: httpx.AsyncClient, market: dict[str, Any]
) -> None:
    created = await matching.post("/v1/demands", json=VR_DEMAND, headers=bearer(market["buyer"]))
    assert created.status_code == 201, created.text
    demand = created.json()
    found = await matches_of(matching, market["buyer"], demand["id"])
    assert found and int(created.headers["x-matches"]) == len(found)
    scores = [m["score"] for m in found]
    assert scores == sorted(scores, reverse=True)
    best = found[0]
    factors = {r["factor"]: r for r in best["reasons"]}
    assert "虚拟现实" in factors["text"]["detail"] or "头戴" in factors["text"]["detail"]
    assert factors["region"]["fit"] == 1.0 and "北京" in factors["region"]["detail"]
    assert set(factors) >= {"text", "budget", "region"}
    assert best["listing"]["holders"][0] == SELLER


async def test_a_new_listing_that_fits_is_matched_and_announced(
    matching: httpx.AsyncClient,
    listing: httpx.AsyncClient,
    market: dict[str, Any],
    operator_key: str,
    service_key: str,
    vr_records: list[SeedRecord],
) -> None:
    demand = (
        await matching.post(
            "/v1/demands",
            json={**VR_DEMAND, "title": "虚拟现实 交互", "text": "虚拟现实交互方法"},
            headers=bearer(market["buyer"]),
        )
    ).json()
    before = {m["listing_id"] for m in await matches_of(matching, market["buyer"], demand["id"])}
    start = (
        await matching.get(
            "/v1/matches/changes", params={"limit": 1000}, headers=bearer(service_key)
        )
    ).json()["next_cursor"]
    await publish_records(listing, operator_key, market["seller_id"], vr_records[30:40])
    await wait_matched(matching, operator_key)
    after = {m["listing_id"] for m in await matches_of(matching, market["buyer"], demand["id"])}
    new = after - before
    assert new, "no newly published listing matched"
    feed = (
        await matching.get(
            "/v1/matches/changes",
            params={"after": start, "limit": 1000},
            headers=bearer(service_key),
        )
    ).json()
    announced = {e["listing_id"] for e in feed["events"] if e["demand_id"] == demand["id"]}
    assert new <= announced
    event = next(e for e in feed["events"] if e["demand_id"] == demand["id"])
    assert event["type"] == "match.created" and event["data"]["reasons"]
    assert event["organization_id"] and event["data"]["listing"]["offer_id"].startswith("jjj:")


async def test_real_demands_are_accepted_and_closed_demands_stop_matching(
    matching: httpx.AsyncClient, market: dict[str, Any]
) -> None:
    rows = [json.loads(line) for line in DEMANDS.read_text(encoding="utf-8").splitlines()[:5]]
    for row in rows:
        text = row["content"].replace("\\n", "\n")[:5000] or row["title"]
        created = await matching.post(
            "/v1/demands",
            json={"title": row["title"][:300], "text": text},
            headers=bearer(market["buyer"]),
        )
        assert created.status_code == 201, created.text
    demand = created.json()
    assert (
        await matching.delete(f"/v1/demands/{demand['id']}", headers=bearer(market["buyer"]))
    ).status_code == 204
    closed = await matching.get(f"/v1/demands/{demand['id']}", headers=bearer(market["buyer"]))
    assert closed.json()["status"] == "closed"
    edit = await matching.patch(
        f"/v1/demands/{demand['id']}", json={"title": "x"}, headers=bearer(market["buyer"])
    )
    assert assert_problem(edit, 409)["current_status"] == "closed"


async def test_demands_are_private_and_versioned(
    matching: httpx.AsyncClient,
    listing: httpx.AsyncClient,
    market: dict[str, Any],
    operator_key: str,
) -> None:
    demand = (
        await matching.post("/v1/demands", json=VR_DEMAND, headers=bearer(market["buyer"]))
    ).json()
    path = f"/v1/demands/{demand['id']}"
    _, other = await new_organization(listing, operator_key, name="别家公司", region="120000")
    assert_problem(await matching.get(path, headers=bearer(other)), 404)
    assert_problem(await matching.get(f"{path}/matches", headers=bearer(other)), 404)
    assert_problem(await matching.get(path), 401)
    stale = await matching.patch(
        path, json={"budget_max": "1.00"}, headers={**bearer(market["buyer"]), "If-Match": '"9"'}
    )
    assert assert_problem(stale, 409)["current_version"] == 1
    ok = await matching.patch(
        path,
        json={"budget_max": "3000000.00"},
        headers={**bearer(market["buyer"]), "If-Match": '"1"'},
    )
    assert ok.status_code == 200 and ok.headers["etag"] == '"2"'
    assert (await matching.get(path, headers=bearer(operator_key))).status_code == 200


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"budget_max": "-1"}, "budget_max"),
        ({"kinds": ["spaceship"]}, "kinds"),
        ({"transaction_types": ["barter"]}, "transaction_types"),
        ({"ipc_prefixes": ["not an ipc"]}, "ipc_prefixes"),
        ({"regions": ["beijing"]}, "regions"),
        ({"title": "x" * 301}, "title"),
        ({"text": ""}, "text"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_bad_demands_name_the_field(
    matching: httpx.AsyncClient, market: dict[str, Any], change: dict[str, Any], field: str
) -> None:
    body = assert_problem(
        await matching.post(
            "/v1/demands", json={**VR_DEMAND, **change}, headers=bearer(market["buyer"])
        ),
        422,
    )
    assert any(e["field"].split("[")[0] == field for e in body["errors"]), body


async def test_who_may_post_and_read_the_feed(
    matching: httpx.AsyncClient, market: dict[str, Any], operator_key: str
) -> None:
    assert_problem(await matching.post("/v1/demands", json=VR_DEMAND), 401)
    assert_problem(
        await matching.post("/v1/demands", json=VR_DEMAND, headers=bearer(operator_key)), 403
    )
    assert_problem(await matching.get("/v1/matches/changes", headers=bearer(market["buyer"])), 403)
    assert_problem(
        await matching.get(
            "/v1/matches/changes", params={"after": "x"}, headers=bearer(operator_key)
        ),
        422,
    )
