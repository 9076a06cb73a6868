"""Money written one way (shared/contracts/catalogue.py `Money`): an amount typed `20000` reads
`20000.00` with its currency on create, on read, in the catalogue search, in the change feed,
in the deals list and in the `deal.closed` webhook."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from receiver import Receiver, receiving

from shared.webhooks import verify
from support import (
    allow_local,
    bearer,
    new_organization,
    patent,
    real_application_numbers,
    terms,
    wait_indexed,
)

NUMBERS = real_application_numbers("invention_patent")


async def feed_data(listing: httpx.AsyncClient, key: str, entity_id: str) -> list[dict[str, Any]]:
    page = await listing.get("/v1/changes", params={"limit": 1000}, headers=bearer(key))
    assert page.status_code == 200, page.text
    return [e["data"] for e in page.json()["events"] if e["entity_id"] == entity_id]


async def test_an_amount_is_written_one_way_everywhere(
    listing: httpx.AsyncClient,
    matching: httpx.AsyncClient,
    gateway: httpx.AsyncClient,
    operator_key: str,
    service_key: str,
) -> None:
    _, seller = await new_organization(listing, operator_key, name="北京化工大学")
    watcher_org, watcher = await new_organization(
        listing, operator_key, name="天津某化工有限公司", kind="enterprise", region="120000"
    )
    number = next(NUMBERS)
    body = {
        "asset": patent("北京化工大学", number, filed_on=f"{number[:4]}-04-01"),
        "transaction": terms("assignment", amount="20000", royalty_rate="0.035"),
    }
    created = await listing.post("/v1/listings", json=body, headers=bearer(seller))
    assert created.status_code == 201, created.text
    listing_id = created.json()["id"]
    price = created.json()["transaction"]["price"]
    assert (price["amount"], price["currency"]) == ("20000.00", "CNY")
    assert created.json()["transaction"]["royalty_rate"] == "0.035000"

    read = await listing.get(f"/v1/listings/{listing_id}", headers=bearer(seller))
    assert read.json()["transaction"] == created.json()["transaction"]
    for action, key in (("submit", seller), ("approve", operator_key)):
        moved = await listing.post(f"/v1/listings/{listing_id}/{action}", headers=bearer(key))
        assert moved.status_code == 200, moved.text

    await wait_indexed(matching, operator_key)
    found = await gateway.get("/v1/catalogue/search", params={"q": number})
    [hit] = found.json()["items"]
    assert (hit["amount"], hit["currency"]) == ("20000.00", "CNY")
    assert [(o["amount"], o["currency"]) for o in hit["offers"]] == [("20000.00", "CNY")]
    documents = await feed_data(listing, service_key, listing_id)
    assert {d["transaction"]["price"]["amount"] for d in documents} == {"20000.00"}

    async with receiving(Receiver()) as receiver:
        await allow_local(gateway, operator_key, watcher_org, receiver.url)
        subscribed = await gateway.post(
            "/v1/subscriptions",
            json={"url": receiver.url, "event_types": ["deal.closed"]},
            headers=bearer(watcher),
        )
        assert subscribed.status_code == 201, subscribed.text
        closed = await listing.post(
            "/v1/deals",
            json={
                "listing_id": listing_id,
                "buyer_name": "天津某化工有限公司",
                "amount": "140000",
                "closed_on": datetime.now(UTC).date().isoformat(),
            },
            headers=bearer(seller),
        )
        assert closed.status_code == 201, closed.text
        assert (closed.json()["amount"], closed.json()["currency"]) == ("140000.00", "CNY")
        deals = await listing.get("/v1/deals", params={"region": "11"})
        listed = [d for d in deals.json()["items"] if d["listing_id"] == listing_id]
        assert [(d["amount"], d["currency"]) for d in listed] == [("140000.00", "CNY")]
        deal_events = await feed_data(listing, service_key, closed.json()["id"])
        assert [d["amount"] for d in deal_events] == ["140000.00"]

        await receiver.wait_for(lambda r: len(r.delivered()) >= 1, what="deal.closed")
        delivered = receiver.received[0]
        verify(subscribed.json()["secret"], delivered.body, delivered.headers)
        assert delivered.json()["type"] == "deal.closed"
        assert delivered.json()["data"]["amount"] == "140000.00"
        assert delivered.json()["data"]["currency"] == "CNY"
