"""Inquiries and deals: the buyer's thread and offers, closing a deal, public announcements with
confidential amounts, statistics over groups of three or more, and refusals that write nothing."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from services.listing.dependencies import today_in_china
from support import (
    assert_problem,
    bearer,
    listing_changes,
    new_organization,
    partner_document,
    patent,
    real_application_numbers,
    submit_and_approve,
    terms,
)

SELLER = "北京航空航天大学"
BUYER = "天津中环半导体股份有限公司"
NUMBERS = real_application_numbers("invention_patent")
UTILITY_MODELS = real_application_numbers("utility_model")
Org = tuple[str, str]  # (id, admin key)


@pytest.fixture(scope="module")
async def seller(listing: httpx.AsyncClient, operator_key: str) -> Org:
    return await new_organization(listing, operator_key, name=SELLER, region="110108")


@pytest.fixture(scope="module")
async def buyer(listing: httpx.AsyncClient, operator_key: str) -> Org:
    return await new_organization(
        listing, operator_key, name=BUYER, region="120116", kind="enterprise"
    )


@pytest.fixture(scope="module")
async def third(listing: httpx.AsyncClient, operator_key: str) -> Org:
    return await new_organization(
        listing, operator_key, name="河北工业大学", region="130100", kind="university"
    )


def yesterday() -> date:
    return today_in_china() - timedelta(days=1)


async def new_listing(
    listing: httpx.AsyncClient,
    key: str,
    *,
    region: str = "110108",
    kind: str = "invention_patent",
    deal: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A draft on a fresh asset held by SELLER, in `region`."""
    number = next(UTILITY_MODELS) if kind == "utility_model" else next(NUMBERS)
    asset = patent(
        SELLER,
        number,
        kind=kind,
        holders=[{"name": SELLER, "region": region}],
    )
    response = await listing.post(
        "/v1/listings",
        json={"asset": asset, "transaction": deal or terms()},
        headers=bearer(key),
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def published_listing(
    listing: httpx.AsyncClient, key: str, operator_key: str, **kwargs: Any
) -> dict[str, Any]:
    lid = (await new_listing(listing, key, **kwargs))["id"]
    return await submit_and_approve(listing, key, operator_key, lid)


async def close(
    listing: httpx.AsyncClient,
    key: str,
    listing_id: str,
    *,
    closed_on: date | None = None,
    headers: dict[str, str] | None = None,
    **body: Any,
) -> httpx.Response:
    payload = {"listing_id": listing_id, "closed_on": (closed_on or yesterday()).isoformat()}
    if "inquiry_id" not in body:
        payload["buyer_name"] = "场外买方有限公司"
    payload.update(body)
    return await listing.post("/v1/deals", json=payload, headers={**bearer(key), **(headers or {})})


async def deal_in(
    listing: httpx.AsyncClient,
    seller_key: str,
    operator_key: str,
    *,
    region: str,
    amount: str | None = "100000.00",
    confidential: bool = False,
    closed_on: date | None = None,
    kind: str = "invention_patent",
) -> dict[str, Any]:
    """A published listing in `region`, closed with an off-platform buyer."""
    published = await published_listing(listing, seller_key, operator_key, region=region, kind=kind)
    response = await close(
        listing,
        seller_key,
        published["id"],
        amount=amount,
        confidential=confidential,
        closed_on=closed_on,
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def listing_state(listing: httpx.AsyncClient, key: str, listing_id: str) -> tuple[str, int]:
    body = (await listing.get(f"/v1/listings/{listing_id}", headers=bearer(key))).json()
    return body["status"], body["version"]


async def history_of(listing: httpx.AsyncClient, key: str, listing_id: str) -> list[Any]:
    response = await listing.get(f"/v1/listings/{listing_id}/history", headers=bearer(key))
    assert response.status_code == 200, response.text
    items: list[Any] = response.json()["items"]
    return items


async def deals_in(
    listing: httpx.AsyncClient, region: str, key: str | None = None, **params: Any
) -> list[dict[str, Any]]:
    response = await listing.get(
        "/v1/deals",
        params={"region": region, "page_size": 200, **params},
        headers=bearer(key) if key else None,
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_the_buyer_flow(
    listing: httpx.AsyncClient, seller: Org, buyer: Org, third: Org, operator_key: str
) -> None:
    published = await published_listing(listing, seller[1], operator_key)
    lid = published["id"]
    # The buyer's first message carries an offer: the listing goes under negotiation.
    opened = await listing.post(
        f"/v1/listings/{lid}/inquiries",
        json={"message": "我司希望获得独占许可，报价如下。", "offer_amount": "950000.00"},
        headers=bearer(buyer[1]),
    )
    assert opened.status_code == 201, opened.text
    thread = opened.json()
    iid = thread["id"]
    assert opened.headers["location"] == f"/v1/inquiries/{iid}"
    assert thread["buyer_id"] == buyer[0] and thread["buyer_name"] == BUYER
    assert thread["seller_id"] == seller[0] and thread["status"] == "open"
    assert [(m["author_role"], m["offer_amount"]) for m in thread["messages"]] == [
        ("buyer", "950000.00")
    ]
    assert await listing_state(listing, seller[1], lid) == ("under_negotiation", 4)
    history = await history_of(listing, seller[1], lid)
    assert [h["action"] for h in history][-1] == "negotiate"
    # The seller replies with a counter-offer; the buyer writes again into the same thread.
    reply = await listing.post(
        f"/v1/inquiries/{iid}/messages",
        json={"message": "可以接受 1,100,000 元。", "offer_amount": "1100000.00"},
        headers=bearer(seller[1]),
    )
    assert reply.status_code == 201, reply.text
    again = await listing.post(
        f"/v1/listings/{lid}/inquiries",
        json={"message": "同意，请准备合同。"},
        headers=bearer(buyer[1]),
    )
    assert again.status_code == 201 and again.json()["id"] == iid
    assert [m["author_role"] for m in again.json()["messages"]] == ["buyer", "seller", "buyer"]
    # Still one negotiation in the history: offers in a negotiation do not transition again.
    history = await history_of(listing, seller[1], lid)
    assert [h["action"] for h in history].count("negotiate") == 1
    # The thread: for the buyer, the seller and operators; 404 for anyone else.
    for key in (buyer[1], seller[1], operator_key):
        read = await listing.get(f"/v1/inquiries/{iid}", headers=bearer(key))
        assert read.status_code == 200, read.text
        assert [m["message"] for m in read.json()["messages"]] == [
            "我司希望获得独占许可，报价如下。",
            "可以接受 1,100,000 元。",
            "同意，请准备合同。",
        ]
    assert_problem(await listing.get(f"/v1/inquiries/{iid}", headers=bearer(third[1])), 404)
    assert_problem(
        await listing.post(
            f"/v1/inquiries/{iid}/messages", json={"message": "?"}, headers=bearer(third[1])
        ),
        404,
    )
    threads = await listing.get(
        "/v1/inquiries", params={"listing_id": lid}, headers=bearer(seller[1])
    )
    assert [
        (t["id"], t["message_count"], t["latest_offer_amount"]) for t in threads.json()["items"]
    ] == [(iid, 3, "1100000.00")]
    # The seller closes the deal with this buyer.
    closed_on = yesterday()
    response = await close(
        listing, seller[1], lid, inquiry_id=iid, amount="1100000.00", closed_on=closed_on
    )
    assert response.status_code == 201, response.text
    deal = response.json()
    assert deal["listing_id"] == lid and deal["offer_id"] == f"jjj:{lid}"
    assert deal["buyer_name"] == BUYER and deal["seller_name"] == SELLER
    assert deal["amount"] == "1100000.00" and deal["confidential"] is False
    assert deal["transaction_type"] == "exclusive_license" and deal["region"] == "110108"
    assert deal["closed_on"] == closed_on.isoformat()
    assert deal["asset"]["kind"] == "invention_patent"
    assert deal["asset"]["identifier"] == published["asset"]["identifier"]
    assert deal["asset"]["title"]["zh"] == published["asset"]["title"]["zh"]
    assert await listing_state(listing, seller[1], lid) == ("closed", 5)
    history = await history_of(listing, seller[1], lid)
    assert [h["action"] for h in history][-2:] == ["negotiate", "close"]
    read = await listing.get(f"/v1/inquiries/{iid}", headers=bearer(buyer[1]))
    assert read.json()["status"] == "accepted"
    # The feed: the listing closes, then the deal is announced (the public announcement).
    events = await listing_changes(listing, operator_key)
    ours = [(e["type"], e["entity_id"]) for e in events if e["entity_id"] in (lid, deal["id"])]
    assert ours[-2:] == [("listing.closed", lid), ("deal.closed", deal["id"])]
    announced = next(
        e for e in events if e["type"] == "deal.closed" and e["entity_id"] == deal["id"]
    )
    assert announced["data"] == deal and announced["entity"] == "deal"
    assert announced["seller_id"] == seller[0]
    assert announced["asset_id"] == published["asset_id"]
    # The thread is over: no more messages.
    late = await listing.post(
        f"/v1/inquiries/{iid}/messages", json={"message": "谢谢"}, headers=bearer(buyer[1])
    )
    assert assert_problem(late, 409)["current_status"] == "closed"
    public = await deals_in(listing, "110108")
    assert deal["id"] in [d["id"] for d in public]


async def test_a_message_without_an_offer_leaves_the_listing_published(
    listing: httpx.AsyncClient, seller: Org, buyer: Org, operator_key: str
) -> None:
    lid = (await published_listing(listing, seller[1], operator_key))["id"]
    opened = await listing.post(
        f"/v1/listings/{lid}/inquiries",
        json={"message": "请问是否包含技术秘密的转让？"},
        headers=bearer(buyer[1]),
    )
    assert opened.status_code == 201, opened.text
    assert await listing_state(listing, seller[1], lid) == ("published", 3)
    offered = await listing.post(
        f"/v1/inquiries/{opened.json()['id']}/messages",
        json={"message": "报价", "offer_amount": "0"},
        headers=bearer(buyer[1]),
    )
    assert offered.status_code == 201, offered.text
    assert await listing_state(listing, seller[1], lid) == ("under_negotiation", 4)


async def test_concurrent_offers_negotiate_once_and_concurrent_deals_close_once(
    listing: httpx.AsyncClient, seller: Org, buyer: Org, third: Org, operator_key: str
) -> None:
    lid = (await published_listing(listing, seller[1], operator_key))["id"]
    opened = await listing.post(
        f"/v1/listings/{lid}/inquiries", json={"message": "询价"}, headers=bearer(buyer[1])
    )
    offer = {"message": "报价", "offer_amount": "300.00"}
    results = await asyncio.gather(
        listing.post(
            f"/v1/inquiries/{opened.json()['id']}/messages", json=offer, headers=bearer(buyer[1])
        ),
        listing.post(f"/v1/listings/{lid}/inquiries", json=offer, headers=bearer(third[1])),
    )
    assert [r.status_code for r in results] == [201, 201], [r.text for r in results]
    assert await listing_state(listing, seller[1], lid) == ("under_negotiation", 4)
    history = await history_of(listing, seller[1], lid)
    assert [h["version"] for h in history] == [1, 2, 3, 4]
    assert [h["action"] for h in history].count("negotiate") == 1
    deals = await asyncio.gather(
        close(listing, seller[1], lid, amount="300.00"),
        close(listing, seller[1], lid, amount="310.00"),
    )
    assert sorted(r.status_code for r in deals) == [201, 409]
    assert await listing_state(listing, seller[1], lid) == ("closed", 5)


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({"message": "报价", "offer_amount": "-1.00"}, "offer_amount", "greater_than_equal"),
        ({"message": "报价", "offer_amount": "1.005"}, "offer_amount", "decimal_max_places"),
        ({"message": "   "}, "message", "string_too_short"),
        ({"message": "长" * 5001}, "message", "string_too_long"),
        ({}, "message", "missing"),
        ({"message": "报价", "price": "1"}, "price", "extra_forbidden"),
    ],
)
async def test_bad_inquiries_name_the_field_and_rule(
    listing: httpx.AsyncClient,
    seller: Org,
    buyer: Org,
    operator_key: str,
    body: dict[str, Any],
    field: str,
    rule: str,
) -> None:
    lid = (await published_listing(listing, seller[1], operator_key))["id"]
    response = await listing.post(
        f"/v1/listings/{lid}/inquiries", json=body, headers=bearer(buyer[1])
    )
    errors = assert_problem(response, 422)["errors"]
    assert any(e["field"] == field and e["rule"] == rule for e in errors), errors
    assert await listing_state(listing, seller[1], lid) == ("published", 3)


async def test_inquiries_only_on_open_listings_of_others(
    listing: httpx.AsyncClient, seller: Org, buyer: Org, operator_key: str
) -> None:
    message = {"message": "感兴趣", "offer_amount": "10.00"}
    published = await published_listing(listing, seller[1], operator_key)
    own = await listing.post(
        f"/v1/listings/{published['id']}/inquiries", json=message, headers=bearer(seller[1])
    )
    assert assert_problem(own, 403)["errors"] == [
        {"field": "listing_id", "rule": "own_listing", "message": "the listing is the caller's own"}
    ]
    # A draft is private to its seller: 404, not 409.
    draft = await new_listing(listing, seller[1])
    assert_problem(
        await listing.post(
            f"/v1/listings/{draft['id']}/inquiries", json=message, headers=bearer(buyer[1])
        ),
        404,
    )
    withdrawn = await published_listing(listing, seller[1], operator_key)
    await listing.post(f"/v1/listings/{withdrawn['id']}/withdraw", headers=bearer(seller[1]))
    body = assert_problem(
        await listing.post(
            f"/v1/listings/{withdrawn['id']}/inquiries", json=message, headers=bearer(buyer[1])
        ),
        409,
    )
    assert body["current_status"] == "withdrawn" and "withdrawn" in body["detail"]
    unknown = "00000000-0000-4000-8000-000000000000"
    assert_problem(
        await listing.post(
            f"/v1/listings/{unknown}/inquiries", json=message, headers=bearer(buyer[1])
        ),
        404,
    )
    assert_problem(
        await listing.post(f"/v1/listings/{published['id']}/inquiries", json=message), 401
    )
    assert await listing_state(listing, seller[1], published["id"]) == ("published", 3)


async def test_idempotent_inquiry(
    listing: httpx.AsyncClient, seller: Org, buyer: Org, operator_key: str
) -> None:
    lid = (await published_listing(listing, seller[1], operator_key))["id"]
    other = (await published_listing(listing, seller[1], operator_key))["id"]
    body = {"message": "报价", "offer_amount": "5000.00"}
    headers = {**bearer(buyer[1]), "Idempotency-Key": "inq-1"}
    first = await listing.post(f"/v1/listings/{lid}/inquiries", json=body, headers=headers)
    second = await listing.post(f"/v1/listings/{lid}/inquiries", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json() and second.headers["idempotent-replayed"] == "true"
    read = await listing.get(f"/v1/inquiries/{first.json()['id']}", headers=bearer(buyer[1]))
    assert len(read.json()["messages"]) == 1
    # The same key on another listing is another request.
    elsewhere = await listing.post(f"/v1/listings/{other}/inquiries", json=body, headers=headers)
    assert assert_problem(elsewhere, 422)["errors"][0]["rule"] == "idempotency_key_reused"


async def test_listing_threads(
    listing: httpx.AsyncClient, seller: Org, buyer: Org, third: Org, operator_key: str
) -> None:
    lid = (await published_listing(listing, seller[1], operator_key))["id"]
    ids = []
    for key in (buyer[1], third[1]):
        opened = await listing.post(
            f"/v1/listings/{lid}/inquiries", json={"message": "询价"}, headers=bearer(key)
        )
        ids.append(opened.json()["id"])
    page = (
        await listing.get(
            "/v1/inquiries", params={"listing_id": lid, "page_size": 1}, headers=bearer(seller[1])
        )
    ).json()
    seen = [t["id"] for t in page["items"]]
    assert page["next_page_token"]
    page = (
        await listing.get(
            "/v1/inquiries",
            params={"listing_id": lid, "page_size": 1, "page_token": page["next_page_token"]},
            headers=bearer(seller[1]),
        )
    ).json()
    seen += [t["id"] for t in page["items"]]
    assert seen == ids and page["next_page_token"] == ""
    # A buyer sees its own thread only, on this listing and across listings.
    mine = await listing.get("/v1/inquiries", params={"listing_id": lid}, headers=bearer(third[1]))
    assert [t["id"] for t in mine.json()["items"]] == [ids[1]]
    everywhere = await listing.get("/v1/inquiries", headers=bearer(third[1]))
    theirs = everywhere.json()["items"]
    assert ids[1] in [t["id"] for t in theirs] and ids[0] not in [t["id"] for t in theirs]
    assert {t["buyer_id"] for t in theirs} == {third[0]}
    # Without listing_id, the seller sees the threads on its listings.
    ours = await listing.get("/v1/inquiries", params={"page_size": 200}, headers=bearer(seller[1]))
    assert set(ids) <= {t["id"] for t in ours.json()["items"]}
    forged = await listing.get(
        "/v1/inquiries",
        params={"page_token": "eyJjcmVhdGVkX2F0IjoieCIsImlkIjoieSJ9"},
        headers=bearer(seller[1]),
    )
    assert assert_problem(forged, 422)["errors"][0]["rule"] == "page_token_invalid"


@pytest.mark.parametrize(
    ("change", "field", "rule"),
    [
        ({"amount": "-1.00"}, "amount", "greater_than_equal"),
        ({"amount": "1.001"}, "amount", "decimal_max_places"),
        ({"closed_on": "2026-13-01"}, "closed_on", "date_from_datetime_parsing"),
        ({"buyer_name": None}, "buyer_name", "required_without_inquiry"),
        ({"buyer_name": ""}, "buyer_name", "string_too_short"),
        ({"listing_id": "L-1"}, "listing_id", "uuid_parsing"),
        ({"confidential": "secret"}, "confidential", "bool_parsing"),
    ],
)
async def test_bad_deals_name_the_field_and_rule(
    listing: httpx.AsyncClient,
    seller: Org,
    operator_key: str,
    change: dict[str, Any],
    field: str,
    rule: str,
) -> None:
    lid = (await published_listing(listing, seller[1], operator_key))["id"]
    body: dict[str, Any] = {
        "listing_id": lid,
        "buyer_name": "场外买方有限公司",
        "amount": "1000.00",
        "closed_on": yesterday().isoformat(),
        **change,
    }
    body = {k: v for k, v in body.items() if v is not None}
    response = await listing.post("/v1/deals", json=body, headers=bearer(seller[1]))
    errors = assert_problem(response, 422)["errors"]
    assert any(e["field"] == field and e["rule"] == rule for e in errors), errors
    assert await listing_state(listing, seller[1], lid) == ("published", 3)


async def test_deals_are_refused_with_a_reason(
    listing: httpx.AsyncClient, seller: Org, buyer: Org, third: Org, operator_key: str
) -> None:
    published = await published_listing(listing, seller[1], operator_key)
    lid = published["id"]
    future = await close(listing, seller[1], lid, closed_on=today_in_china() + timedelta(days=2))
    error = assert_problem(future, 422)["errors"][0]
    assert (error["field"], error["rule"]) == ("closed_on", "not_in_future")
    by_other = assert_problem(await close(listing, third[1], lid), 403)
    assert by_other["errors"][0]["field"] == "listing_id"
    assert by_other["errors"][0]["rule"] == "not_the_seller"
    draft = await new_listing(listing, seller[1])
    on_draft = assert_problem(await close(listing, seller[1], draft["id"]), 409)
    assert on_draft["current_status"] == "draft"
    unknown = "00000000-0000-4000-8000-000000000000"
    assert_problem(await close(listing, seller[1], unknown), 404)
    # Another listing's inquiry is not this deal's buyer.
    elsewhere = (await published_listing(listing, seller[1], operator_key))["id"]
    opened = await listing.post(
        f"/v1/listings/{elsewhere}/inquiries", json={"message": "询价"}, headers=bearer(buyer[1])
    )
    foreign = await close(listing, seller[1], lid, inquiry_id=opened.json()["id"])
    error = assert_problem(foreign, 422)["errors"][0]
    assert (error["field"], error["rule"]) == ("inquiry_id", "not_on_listing")
    both = await close(
        listing, seller[1], elsewhere, inquiry_id=opened.json()["id"], buyer_name="某公司"
    )
    error = assert_problem(both, 422)["errors"][0]
    assert (error["field"], error["rule"]) == ("buyer_name", "not_with_inquiry")
    first = await close(listing, seller[1], lid, amount="10.00")
    assert first.status_code == 201, first.text
    second = assert_problem(await close(listing, seller[1], lid, amount="20.00"), 409)
    assert second["deal_id"] == first.json()["id"] and second["current_status"] == "closed"
    assert_problem(await listing.post("/v1/deals", json={"listing_id": lid}), 401)


async def test_a_refused_deal_writes_nothing(
    listing: httpx.AsyncClient, seller: Org, buyer: Org, third: Org, operator_key: str
) -> None:
    region = "150102"  # only this test's deals
    lid = (await published_listing(listing, seller[1], operator_key, region=region))["id"]
    opened = await listing.post(
        f"/v1/listings/{lid}/inquiries",
        json={"message": "报价", "offer_amount": "700.00"},
        headers=bearer(buyer[1]),
    )
    iid = opened.json()["id"]
    before = await listing_state(listing, seller[1], lid)
    assert before == ("under_negotiation", 4)
    events_before = len(await listing_changes(listing, operator_key))
    key = {"Idempotency-Key": "deal-refused-1"}
    refusals = [
        await close(
            listing,
            seller[1],
            lid,
            inquiry_id=iid,
            closed_on=today_in_china() + timedelta(days=2),
            headers=key,
        ),
        await close(listing, third[1], lid, inquiry_id=iid, amount="1.00"),
        await close(listing, seller[1], lid, inquiry_id=str(lid), amount="1.00"),
    ]
    assert [r.status_code for r in refusals] == [422, 403, 422]
    assert await listing_state(listing, seller[1], lid) == before
    assert await deals_in(listing, region, operator_key) == []
    assert len(await listing_changes(listing, operator_key)) == events_before
    thread = (await listing.get(f"/v1/inquiries/{iid}", headers=bearer(buyer[1]))).json()
    assert thread["status"] == "open"
    # Even the Idempotency-Key claim was rolled back: the key is free for another body.
    done = await close(listing, seller[1], lid, inquiry_id=iid, amount="700.00", headers=key)
    assert done.status_code == 201, done.text
    replay = await close(listing, seller[1], lid, inquiry_id=iid, amount="700.00", headers=key)
    assert replay.status_code == 201 and replay.json() == done.json()
    assert replay.headers["idempotent-replayed"] == "true"
    assert [d["id"] for d in await deals_in(listing, region)] == [done.json()["id"]]


async def test_confidential_amounts(
    listing: httpx.AsyncClient,
    seller: Org,
    buyer: Org,
    third: Org,
    operator_key: str,
    service_key: str,
) -> None:
    region = "140105"  # only this test's deals
    lid = (await published_listing(listing, seller[1], operator_key, region=region))["id"]
    opened = await listing.post(
        f"/v1/listings/{lid}/inquiries",
        json={"message": "报价", "offer_amount": "2000000.00"},
        headers=bearer(buyer[1]),
    )
    response = await close(
        listing,
        seller[1],
        lid,
        inquiry_id=opened.json()["id"],
        amount="2000000.00",
        confidential=True,
    )
    assert response.status_code == 201, response.text
    deal = response.json()
    assert deal["amount"] == "2000000.00" and deal["confidential"] is True
    for key in (None, third[1], service_key):
        [shown] = await deals_in(listing, region, key)
        assert shown["id"] == deal["id"] and shown["amount"] is None
        assert shown["confidential"] is True and shown["buyer_name"] == BUYER
    for key in (seller[1], buyer[1], operator_key):
        [shown] = await deals_in(listing, region, key)
        assert shown["amount"] == "2000000.00"
    events = await listing_changes(listing, operator_key)
    announced = next(e for e in events if e["entity_id"] == deal["id"])
    assert announced["type"] == "deal.closed"
    assert announced["data"]["amount"] is None and announced["data"]["confidential"] is True
    assert "2000000" not in str(announced)


async def test_operators_close_deals_for_sellers(
    listing: httpx.AsyncClient, seller: Org, operator_key: str
) -> None:
    lid = (await published_listing(listing, seller[1], operator_key, region="610103"))["id"]
    response = await close(listing, operator_key, lid, amount="88.00", confidential=True)
    assert response.status_code == 201, response.text
    assert response.json()["amount"] == "88.00"
    assert response.json()["seller_name"] == SELLER
    assert await listing_state(listing, seller[1], lid) == ("closed", 4)


async def test_statistics_use_disclosed_amounts_of_groups_of_three(
    listing: httpx.AsyncClient, seller: Org, operator_key: str
) -> None:
    # Shanghai: exactly three deals, one of them confidential. Jiangsu: two deals.
    for amount, confidential in (("100.00", False), ("300.00", False), ("5000.00", True)):
        await deal_in(
            listing,
            seller[1],
            operator_key,
            region="310104",
            amount=amount,
            confidential=confidential,
            closed_on=date(2021, 2, 10),
        )
    for _ in range(2):
        await deal_in(
            listing,
            seller[1],
            operator_key,
            region="320102",
            amount="999.00",
            closed_on=date(2021, 3, 10),
            kind="utility_model",
        )
    stats = await listing.get("/v1/deals/stats", params={"group_by": "region"})
    assert stats.status_code == 200, stats.text
    assert stats.json()["group_by"] == "region"
    groups = {g["group"]: g for g in stats.json()["groups"]}
    assert groups["310000"] == {
        "group": "310000",
        "deal_count": 3,
        "disclosed_count": 2,
        "disclosed_total": "400.00",
        "disclosed_median": "200.00",
    }
    assert "320000" not in groups
    assert all(g["deal_count"] >= 3 for g in groups.values())
    months = (await listing.get("/v1/deals/stats", params={"group_by": "month"})).json()
    by_month = {g["group"]: g["deal_count"] for g in months["groups"]}
    assert by_month["2021-02"] == 3 and "2021-03" not in by_month
    kinds = await listing.get("/v1/deals/stats", params={"group_by": "kind", "region": "31"})
    assert [(g["group"], g["deal_count"]) for g in kinds.json()["groups"]] == [
        ("invention_patent", 3)
    ]
    jiangsu = await listing.get("/v1/deals/stats", params={"group_by": "kind", "region": "32"})
    assert jiangsu.json()["groups"] == []
    assert_problem(await listing.get("/v1/deals/stats", params={"group_by": "seller"}), 422)


async def test_deal_announcements_page_and_filter(
    listing: httpx.AsyncClient, seller: Org, operator_key: str
) -> None:
    region = "330106"  # only this test's deals
    days = [
        date(2025, 5, 1),
        date(2025, 5, 3),
        date(2025, 5, 3),
        date(2025, 4, 1),
        date(2024, 12, 31),
    ]
    created = [
        await deal_in(listing, seller[1], operator_key, region=region, closed_on=day)
        for day in days
    ]
    expected = sorted(created, key=lambda d: (d["closed_on"], d["id"]), reverse=True)
    seen: list[dict[str, Any]] = []
    token = ""
    while True:
        response = await listing.get(
            "/v1/deals", params={"region": "33", "page_size": 2, "page_token": token}
        )
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= 2
        seen += page["items"]
        token = page["next_page_token"]
        if not token:
            break
    assert [d["id"] for d in seen] == [d["id"] for d in expected]
    assert seen[0]["closed_on"] == "2025-05-03" and seen[-1]["closed_on"] == "2024-12-31"
    # A six-digit code reads hierarchically: the province, the city, the district.
    for code, count in (("330000", 5), ("330100", 5), ("330106", 5), ("330200", 0)):
        assert len(await deals_in(listing, code)) == count, code
    assert len(await deals_in(listing, "33", since="2025-05-01")) == 3
    assert len(await deals_in(listing, "33", until="2025-04-30")) == 2
    assert len(await deals_in(listing, "33", kind="invention_patent")) == 5
    assert await deals_in(listing, "33", kind="trademark") == []
    assert len(await deals_in(listing, "33", transaction_type="exclusive_license")) == 5
    # One asset's deal history (the web catalogue's asset page reads it).
    first = (await listing.get(f"/v1/listings/{created[0]['listing_id']}")).json()
    on_asset = await listing.get("/v1/deals", params={"asset_id": first["asset_id"]})
    assert [d["id"] for d in on_asset.json()["items"]] == [created[0]["id"]]
    for params, field, rule in (
        ({"asset_id": "not-a-uuid"}, "asset_id", "uuid_parsing"),
        ({"region": "3"}, "region", "string_pattern_mismatch"),
        ({"kind": "barter"}, "kind", "literal_error"),
        ({"since": "2025-05-02", "until": "2025-05-01"}, "since", "since_after_until"),
        ({"page_token": "%%%"}, "page_token", "page_token_invalid"),
        ({"page_size": 0}, "page_size", "greater_than_equal"),
    ):
        errors = assert_problem(await listing.get("/v1/deals", params=params), 422)["errors"]
        assert any(e["field"] == field and e["rule"] == rule for e in errors), errors


# Partner exchanges' offers ---------------------------------------------------------------------

PARTNER = "tjipx"
PARTNER_PARAMS = {"exchange_name": "天津知识产权交易中心", "exchange_region": "120000"}


async def partner_offer(
    listing: httpx.AsyncClient, service_key: str, external_id: str, status: str = "published"
) -> dict[str, Any]:
    """A partner exchange's offer as the gateway pushes it: the upsert's answer, with the
    offer's `source_url`."""
    doc = partner_document(PARTNER, external_id, next(NUMBERS), status=status)
    pushed = await listing.put(
        f"/v1/offers/{PARTNER}/{external_id}",
        json=doc,
        params=PARTNER_PARAMS,
        headers=bearer(service_key),
    )
    assert pushed.status_code == 200, pushed.text
    result: dict[str, Any] = pushed.json()
    return {**result, "source_url": doc["source"]["url"]}


def assert_partner_offer(response: httpx.Response, external_id: str) -> dict[str, Any]:
    """A 409 `/problems/partner-offer` pointing at the offer on its exchange."""
    body = assert_problem(response, 409)
    assert body["type"] == "/problems/partner-offer", body
    assert body["source_url"] == f"https://{PARTNER}.example/listings/{external_id}"
    assert body["offer_id"] == f"{PARTNER}:{external_id}" and body["exchange"] == PARTNER
    assert [(e["field"], e["rule"]) for e in body["errors"]] == [("listing_id", "partner_offer")]
    assert body["source_url"] in body["detail"]
    return body


async def stored_for(app: FastAPI, listing_id: str) -> tuple[int, int, int]:
    """(inquiries, messages, deals) stored for the listing."""
    async with app.state.sessionmaker() as session:
        row = (
            await session.execute(
                text(
                    "SELECT (SELECT count(*) FROM listing.inquiries WHERE listing_id = :l),"
                    " (SELECT count(*) FROM listing.inquiry_messages AS m"
                    "   JOIN listing.inquiries AS i ON i.id = m.inquiry_id"
                    "   WHERE i.listing_id = :l),"
                    " (SELECT count(*) FROM listing.deals WHERE listing_id = :l)"
                ),
                {"l": listing_id},
            )
        ).one()
    return int(row[0]), int(row[1]), int(row[2])


async def test_an_inquiry_on_a_partner_offer_is_sent_to_its_exchange(
    listing: httpx.AsyncClient,
    listing_app: FastAPI,
    buyer: Org,
    operator_key: str,
    service_key: str,
) -> None:
    offer = await partner_offer(listing, service_key, "T-INQ-1")
    lid = offer["listing_id"]
    events_before = len(await listing_changes(listing, operator_key))
    headers = {**bearer(buyer[1]), "Idempotency-Key": "partner-inquiry-1"}
    body = {"message": "我司希望获得许可，报价如下。", "offer_amount": "950000.00"}
    for _ in range(2):  # nothing was claimed either: the same key is refused the same way
        refused = await listing.post(f"/v1/listings/{lid}/inquiries", json=body, headers=headers)
        problem = assert_partner_offer(refused, "T-INQ-1")
        assert problem["current_status"] == "published"
        assert "idempotent-replayed" not in refused.headers
    # Nothing stored: no thread, no message, no negotiation, no event.
    assert await stored_for(listing_app, lid) == (0, 0, 0)
    assert await listing_state(listing, operator_key, lid) == ("published", 1)
    assert len(await listing_changes(listing, operator_key)) == events_before
    threads = await listing.get(
        "/v1/inquiries", params={"listing_id": lid}, headers=bearer(buyer[1])
    )
    assert threads.json()["items"] == []


async def test_a_thread_on_a_partner_offer_takes_no_more_messages(
    listing: httpx.AsyncClient,
    listing_app: FastAPI,
    buyer: Org,
    operator_key: str,
    service_key: str,
) -> None:
    """A thread opened before inquiries on partner offers were refused stays closed to writes."""
    offer = await partner_offer(listing, service_key, "T-INQ-2")
    lid = offer["listing_id"]
    async with listing_app.state.sessionmaker() as session, session.begin():
        iid = await session.scalar(
            text(
                "INSERT INTO listing.inquiries (id, listing_id, buyer_id, status, created_at,"
                " updated_at) VALUES (gen_random_uuid(), :l, :b, 'open', now(), now())"
                " RETURNING id"
            ),
            {"l": lid, "b": buyer[0]},
        )
    written = await listing.post(
        f"/v1/inquiries/{iid}/messages",
        json={"message": "报价", "offer_amount": "10.00"},
        headers=bearer(buyer[1]),
    )
    assert_partner_offer(written, "T-INQ-2")
    assert await stored_for(listing_app, lid) == (1, 0, 0)
    assert await listing_state(listing, operator_key, lid) == ("published", 1)


async def test_nobody_closes_a_deal_or_moves_a_partner_offer_here(
    listing: httpx.AsyncClient,
    listing_app: FastAPI,
    seller: Org,
    operator_key: str,
    service_key: str,
) -> None:
    published = await partner_offer(listing, service_key, "T-DEAL-1")
    negotiating = await partner_offer(listing, service_key, "T-DEAL-2", "under_negotiation")
    events_before = len(await listing_changes(listing, operator_key))
    for offer, external_id in ((published, "T-DEAL-1"), (negotiating, "T-DEAL-2")):
        lid = offer["listing_id"]
        # The operator: every deal transition the exchange's own seller would make is the
        # source exchange's.
        deal = await close(listing, operator_key, lid, amount="100.00")
        assert_partner_offer(deal, external_id)
        by_inquiry = await close(
            listing, operator_key, lid, inquiry_id="00000000-0000-4000-8000-000000000000"
        )
        assert_partner_offer(by_inquiry, external_id)
        withdrawn = await listing.post(f"/v1/listings/{lid}/withdraw", headers=bearer(operator_key))
        assert_partner_offer(withdrawn, external_id)
        current = await listing.get(f"/v1/listings/{lid}", headers=bearer(operator_key))
        edited = await listing.patch(
            f"/v1/listings/{lid}",
            json={"transaction": terms(amount="1.00")},
            headers={**bearer(operator_key), "If-Match": current.headers["etag"]},
        )
        assert_partner_offer(edited, external_id)
        # Anyone else is refused as before, by who they are (403), before any state.
        other = assert_problem(await close(listing, seller[1], lid), 403)
        assert other["errors"][0]["rule"] == "not_the_seller"
    reopened = await listing.post(
        f"/v1/listings/{negotiating['listing_id']}/reopen", headers=bearer(operator_key)
    )
    assert assert_partner_offer(reopened, "T-DEAL-2")["current_status"] == "under_negotiation"
    # Nothing written: states, versions, deals and the feed are as they were.
    assert await listing_state(listing, operator_key, published["listing_id"]) == ("published", 1)
    assert await listing_state(listing, operator_key, negotiating["listing_id"]) == (
        "under_negotiation",
        1,
    )
    for offer in (published, negotiating):
        assert await stored_for(listing_app, offer["listing_id"]) == (0, 0, 0)
    assert len(await listing_changes(listing, operator_key)) == events_before
