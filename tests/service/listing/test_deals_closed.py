"""A listing closed by a deal, through every reader of the change feed: `listing.closed` in the
feed, out of the search index exactly as a withdrawn listing, never matched again (not by a
demand created after the close, not by the match worker when the listing was queued while it
was still published), and a webhook type subscribers may choose."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from services.gateway.webhooks.schemas import WEBHOOK_EVENT_TYPES
from services.listing.dependencies import today_in_china
from services.matching.catalogue import search_document
from services.matching.demands import queue
from support import (
    allow_local,
    assert_problem,
    bearer,
    listing_changes,
    new_organization,
    patent,
    publish_listing,
    real_application_numbers,
    terms,
    wait_indexed,
    wait_matched,
)

NUMBERS = real_application_numbers("invention_patent")
SELLER = "河北农业大学"
TITLE = "温室大棚智能灌溉控制方法"
# Written around the title: it finds every listing so titled (matching/test_demands.py).
DEMAND = {"title": "温室智能灌溉技术", "text": "需要温室大棚智能灌溉控制技术"}


async def greenhouse_listing(listing: httpx.AsyncClient, seller: str, operator_key: str) -> str:
    number = next(NUMBERS)
    body = {
        "asset": patent(
            SELLER,
            number,
            filed_on=f"{number[:4]}-03-01",
            title={"zh": TITLE},
            classifications={"ipc": ["A01G 25/16"]},
            holders=[{"name": SELLER, "region": "130600"}],
        ),
        "transaction": terms(),
    }
    return await publish_listing(listing, seller, operator_key, body)


async def match_events(matching: httpx.AsyncClient, key: str, after: str) -> list[dict[str, Any]]:
    page = await matching.get(
        "/v1/matches/changes", params={"after": after, "limit": 1000}, headers=bearer(key)
    )
    assert page.status_code == 200, page.text
    events: list[dict[str, Any]] = page.json()["events"]
    return events


async def searched(matching: httpx.AsyncClient) -> set[str]:
    """Every listing the catalogue search finds for the title (each hit and its offers)."""
    response = await matching.get("/v1/search", params={"q": TITLE, "page_size": 50})
    assert response.status_code == 200, response.text
    found = set()
    for hit in response.json()["items"]:
        found.add(hit["listing_id"])
        found.update(offer["listing_id"] for offer in hit["offers"])
    return found


async def indexed(app: FastAPI, listing_id: str) -> tuple[int, bool] | None:
    """(version, searchable) the index holds for the listing."""
    async with app.state.sessionmaker() as session:
        row = (
            await session.execute(
                text(
                    "SELECT version, searchable FROM matching.indexed_listings"
                    " WHERE listing_id = :l"
                ),
                {"l": listing_id},
            )
        ).first()
    return (int(row[0]), bool(row[1])) if row else None


async def test_a_listing_closed_by_a_deal_leaves_the_index_and_is_never_matched(
    listing: httpx.AsyncClient,
    matching: httpx.AsyncClient,
    matching_app: FastAPI,
    operator_key: str,
    service_key: str,
) -> None:
    _, seller = await new_organization(
        listing, operator_key, name=SELLER, kind="university", region="130600"
    )
    kept, closed, withdrawn = [
        await greenhouse_listing(listing, seller, operator_key) for _ in range(3)
    ]
    await wait_matched(matching, operator_key)
    assert {kept, closed, withdrawn} <= await searched(matching)

    deal = await listing.post(
        "/v1/deals",
        json={
            "listing_id": closed,
            "buyer_name": "天津某农业科技有限公司",
            "amount": "300000.00",
            "closed_on": today_in_china().isoformat(),
        },
        headers=bearer(seller),
    )
    assert deal.status_code == 201, deal.text
    taken_back = await listing.post(f"/v1/listings/{withdrawn}/withdraw", headers=bearer(seller))
    assert taken_back.status_code == 200, taken_back.text

    # The listing feed: the deal's listing is closed, not withdrawn.
    events = await listing_changes(listing, service_key)
    ends = {
        e["entity_id"]: (e["type"], e["data"]["status"])
        for e in events
        if e["entity"] == "listing" and e["entity_id"] in (closed, withdrawn)
    }
    assert ends == {
        closed: ("listing.closed", "closed"),
        withdrawn: ("listing.withdrawn", "withdrawn"),
    }
    assert not any(e["type"] == "listing.withdrawn" and e["entity_id"] == closed for e in events)

    # The index: the closed listing is gone exactly as the withdrawn one is.
    await wait_indexed(matching, operator_key)
    found = await searched(matching)
    assert kept in found and closed not in found and withdrawn not in found
    assert await indexed(matching_app, closed) == (4, False)
    assert await indexed(matching_app, withdrawn) == (4, False)

    # A demand created after the close matches the listing still on the market, not the closed.
    start = (
        await matching.get(
            "/v1/matches/changes", params={"limit": 1000}, headers=bearer(service_key)
        )
    ).json()["next_cursor"]
    _, buyer = await new_organization(
        listing, operator_key, name="天津某农业科技有限公司", kind="enterprise", region="120000"
    )
    created = await matching.post("/v1/demands", json=DEMAND, headers=bearer(buyer))
    assert created.status_code == 201, created.text
    demand_id = created.json()["id"]

    # The match worker, with the closed listing still queued from when it was published (a
    # close that follows the publication before the worker got to it), and a new listing: the
    # new one is matched and announced, the closed one is skipped.
    published = next(
        e for e in events if e["entity_id"] == closed and e["type"] == "listing.published"
    )
    stale = search_document(
        closed,
        published["asset_id"],
        published["version"],
        published["data"],
        seller_id=published["seller_id"],
    )
    async with matching_app.state.sessionmaker() as session, session.begin():
        await queue.enqueue(session, [stale])
    late = await greenhouse_listing(listing, seller, operator_key)
    await wait_matched(matching, operator_key)

    page = await matching.get(
        f"/v1/demands/{demand_id}/matches", params={"page_size": 100}, headers=bearer(buyer)
    )
    assert page.status_code == 200, page.text
    matched = {m["listing_id"] for m in page.json()["items"]}
    assert {kept, late} <= matched
    assert closed not in matched and withdrawn not in matched
    announced = await match_events(matching, service_key, start)
    assert all(e["type"] == "match.created" for e in announced)
    mine = {e["listing_id"] for e in announced if e["demand_id"] == demand_id}
    assert {kept, late} <= mine
    assert closed not in {e["listing_id"] for e in announced}
    assert withdrawn not in {e["listing_id"] for e in announced}


async def test_subscribers_may_choose_listing_closed(
    gateway: httpx.AsyncClient, listing: httpx.AsyncClient, operator_key: str
) -> None:
    member_org, member = await new_organization(
        listing, operator_key, name="北京某数据服务有限公司", kind="enterprise"
    )
    url = "http://127.0.0.1:9/hooks/ipx"
    await allow_local(gateway, operator_key, member_org, url)
    only = await gateway.post(
        "/v1/subscriptions",
        json={"url": url, "event_types": ["listing.closed"]},
        headers=bearer(member),
    )
    assert only.status_code == 201, only.text
    assert only.json()["event_types"] == ["listing.closed"]
    every = await gateway.post(
        "/v1/subscriptions",
        json={"url": url, "event_types": list(reversed(WEBHOOK_EVENT_TYPES))},
        headers=bearer(member),
    )
    assert every.status_code == 201, every.text
    assert every.json()["event_types"] == list(WEBHOOK_EVENT_TYPES)
    assert "listing.closed" in WEBHOOK_EVENT_TYPES and "listing.withdrawn" in WEBHOOK_EVENT_TYPES
    for event_types, rule in (
        ([*WEBHOOK_EVENT_TYPES, "listing.closed"], "too_long"),
        (["listing.expired"], "literal_error"),
    ):
        refused = await gateway.post(
            "/v1/subscriptions",
            json={"url": url, "event_types": event_types},
            headers=bearer(member),
        )
        errors = assert_problem(refused, 422)["errors"]
        assert any(e["field"].startswith("event_types") and e["rule"] == rule for e in errors), (
            errors
        )
