"""The change feed: every state change, in order, never skipping an event when transactions
commit out of sequence order, long-polled, with tombstones."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.listing.dependencies import today_in_china
from shared.settings import Settings
from support import (
    assert_problem,
    bearer,
    new_organization,
    patent,
    real_application_numbers,
    terms,
)

SELLER = "天津大学"
NUMBERS = real_application_numbers("utility_model")


@pytest.fixture(scope="module")
async def seller(listing: httpx.AsyncClient, operator_key: str) -> str:
    _, key = await new_organization(listing, operator_key, name=SELLER, region="120104")
    return key


async def read_all(
    listing: httpx.AsyncClient, key: str, after: str = "0.0"
) -> tuple[list[dict[str, Any]], str]:
    events: list[dict[str, Any]] = []
    while True:
        page = (
            await listing.get(
                "/v1/changes", params={"after": after, "limit": 7}, headers=bearer(key)
            )
        ).json()
        events += page["events"]
        if not page["events"]:
            return events, after
        after = page["next_cursor"]


async def make_listing(listing: httpx.AsyncClient, key: str) -> str:
    body = {
        "asset": patent(SELLER, next(NUMBERS), kind="utility_model"),
        "transaction": terms("nonexclusive_license"),
    }
    response = await listing.post("/v1/listings", json=body, headers=bearer(key))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_every_change_is_in_the_feed_in_order_with_tombstones(
    listing: httpx.AsyncClient, seller: str, operator_key: str, service_key: str
) -> None:
    _, start = await read_all(listing, service_key)
    lid = await make_listing(listing, seller)
    await listing.post(f"/v1/listings/{lid}/submit", headers=bearer(seller))
    await listing.post(f"/v1/listings/{lid}/approve", headers=bearer(operator_key))
    await listing.post(f"/v1/listings/{lid}/withdraw", headers=bearer(seller))
    events, _ = await read_all(listing, service_key, start)
    mine = [e for e in events if e["entity_id"] == lid]
    assert [(e["type"], e["version"]) for e in mine] == [
        ("listing.created", 1),
        ("listing.submitted", 2),
        ("listing.published", 3),
        ("listing.withdrawn", 4),
    ]
    tombstone = mine[-1]["data"]
    assert tombstone["status"] == "withdrawn" and tombstone["offer_id"] == f"jjj:{lid}"
    assert tombstone["schema"] == "ipx.catalogue/v1"
    assert tombstone["asset"]["kind"] == "utility_model"
    assert mine[-1]["asset_id"] and mine[-1]["seller_id"]
    cursors = [e["cursor"] for e in events]
    assert len(cursors) == len(set(cursors))
    head = (
        await listing.get("/v1/changes/head", params={"after": start}, headers=bearer(operator_key))
    ).json()
    assert head["cursor"] == events[-1]["cursor"] and head["pending"] == len(events)


async def test_a_deal_ends_a_listing_with_listing_closed_and_a_withdrawal_with_withdrawn(
    listing: httpx.AsyncClient, seller: str, operator_key: str, service_key: str
) -> None:
    _, start = await read_all(listing, service_key)
    sold, taken_back = await make_listing(listing, seller), await make_listing(listing, seller)
    for lid in (sold, taken_back):
        for step, key in (("submit", seller), ("approve", operator_key)):
            moved = await listing.post(f"/v1/listings/{lid}/{step}", headers=bearer(key))
            assert moved.status_code == 200, moved.text
    deal = await listing.post(
        "/v1/deals",
        json={
            "listing_id": sold,
            "buyer_name": "天津某科技有限公司",
            "amount": "50000.00",
            "closed_on": today_in_china().isoformat(),
        },
        headers=bearer(seller),
    )
    assert deal.status_code == 201, deal.text
    withdrawn = await listing.post(f"/v1/listings/{taken_back}/withdraw", headers=bearer(seller))
    assert withdrawn.status_code == 200, withdrawn.text
    events, _ = await read_all(listing, service_key, start)
    ended = [
        (e["type"], e["entity_id"], e["data"].get("status"))
        for e in events
        if e["type"] in ("listing.closed", "listing.withdrawn", "deal.closed")
    ]
    assert ended == [
        ("listing.closed", sold, "closed"),
        ("deal.closed", deal.json()["id"], None),
        ("listing.withdrawn", taken_back, "withdrawn"),
    ]
    closed = next(e for e in events if e["type"] == "listing.closed")
    assert closed["version"] == 4 and closed["data"]["offer_id"] == f"jjj:{sold}"


async def test_a_late_commit_of_an_earlier_transaction_is_not_skipped(
    listing: httpx.AsyncClient, seller: str, service_key: str, settings: Settings
) -> None:
    _, start = await read_all(listing, service_key)
    engine = create_async_engine(settings.database_url)
    insert = text(
        "INSERT INTO listing.change_events (entity, entity_id, type, version, payload, occurred_at)"
        " VALUES ('listing', :id, 'listing.updated', 1, CAST(:payload AS jsonb), now())"
    )
    early_id, late_id = uuid.uuid4(), uuid.uuid4()
    payload = '{"data": {}, "asset_id": null, "seller_id": null}'
    async with engine.connect() as early, engine.connect() as late:
        early_tx = await early.begin()
        await early.execute(insert, {"id": early_id, "payload": payload})  # takes xid, seq first
        async with late.begin():
            await late.execute(insert, {"id": late_id, "payload": payload})  # commits first
        held, _ = await read_all(listing, service_key, start)
        assert [e["entity_id"] for e in held] == []  # held back, not handed out past `early`
        await early_tx.commit()
    await engine.dispose()
    events, _ = await read_all(listing, service_key, start)
    assert [e["entity_id"] for e in events] == [str(early_id), str(late_id)]


async def test_long_poll_returns_as_soon_as_an_event_commits(
    listing: httpx.AsyncClient, seller: str, service_key: str
) -> None:
    _, start = await read_all(listing, service_key)
    began = time.monotonic()
    empty = await listing.get(
        "/v1/changes", params={"after": start, "wait": 0.5}, headers=bearer(service_key)
    )
    assert empty.json() == {"events": [], "next_cursor": start}
    assert time.monotonic() - began >= 0.45

    async def create_later() -> str:
        await asyncio.sleep(0.3)
        return await make_listing(listing, seller)

    began = time.monotonic()
    poll = listing.get(
        "/v1/changes", params={"after": start, "wait": 10}, headers=bearer(service_key)
    )
    response, lid = await asyncio.gather(poll, create_later())
    waited = time.monotonic() - began
    assert [e["entity_id"] for e in response.json()["events"]] == [lid]
    assert waited < 2.0, waited


async def test_the_feed_is_for_services_and_operators(
    listing: httpx.AsyncClient, seller: str
) -> None:
    assert_problem(await listing.get("/v1/changes"), 401)
    assert_problem(await listing.get("/v1/changes", headers=bearer(seller)), 403)


@pytest.mark.parametrize(
    "params",
    [
        {"after": "abc"},
        {"after": "1"},
        {"after": "-1.2"},
        {"limit": "0"},
        {"limit": "5000"},
        {"wait": "31"},
        {"after": "1.2'; DROP TABLE listing.listings; --"},
    ],
)
async def test_bad_feed_parameters_are_422(
    listing: httpx.AsyncClient, service_key: str, params: dict[str, str]
) -> None:
    body = assert_problem(
        await listing.get("/v1/changes", params=params, headers=bearer(service_key)), 422
    )
    assert body["errors"][0]["field"] in params


async def test_the_offer_snapshot_pages_every_listing_for_services(
    listing: httpx.AsyncClient, seller: str, service_key: str
) -> None:
    made = {await make_listing(listing, seller) for _ in range(3)}
    seen: dict[str, dict[str, Any]] = {}
    token = ""
    while True:
        page = (
            await listing.get(
                "/v1/offers",
                params={"page_size": 2, "page_token": token},
                headers=bearer(service_key),
            )
        ).json()
        seen |= {item["listing_id"]: item for item in page["items"]}
        token = page["next_page_token"]
        if not token:
            break
    assert made <= set(seen)
    one = seen[next(iter(made))]
    assert one["status"] == "draft" and one["document"]["offer_id"] == f"jjj:{one['listing_id']}"
    assert_problem(await listing.get("/v1/offers", headers=bearer(seller)), 403)
