"""Confidential deal amounts shown only to the parties: not in the public catalogue, the
statistics, the feeds, webhooks, the listing or the index, on the in-process apps."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from typing import Any

import httpx
from receiver import Receiver, receiving

from service.security.helpers import World, disallow_local, publish
from support import allow_local, bearer, wait_indexed


async def all_events(client: httpx.AsyncClient, path: str, key: str | None) -> list[dict[str, Any]]:
    """Every event of a change feed from the start (bounded: at most 50 pages)."""
    events: list[dict[str, Any]] = []
    after = "0.0"
    for _ in range(50):
        response = await client.get(
            path, params={"after": after, "limit": 1000}, headers=bearer(key) if key else {}
        )
        assert response.status_code == 200, response.text
        page = response.json()
        events += page["events"]
        if not page["events"] or page["next_cursor"] == after:
            return events
        after = page["next_cursor"]
    raise AssertionError("the feed did not end within 50 pages")


async def test_a_confidential_amount_is_shown_only_to_the_parties(
    listing: httpx.AsyncClient,
    matching: httpx.AsyncClient,
    gateway: httpx.AsyncClient,
    world: World,
    operator_key: str,
    service_key: str,
    numbers: Iterator[str],
) -> None:
    region, secret_amount = "130700", "987654.32"
    hidden = "987654"
    published = await publish(listing, world.seller, operator_key, next(numbers), region=region)
    lid = published["id"]
    inquiry = await listing.post(
        f"/v1/listings/{lid}/inquiries",
        json={"message": "报价", "offer_amount": secret_amount},
        headers=bearer(world.buyer),
    )
    assert inquiry.status_code == 201, inquiry.text
    async with receiving(Receiver()) as receiver:
        await allow_local(gateway, operator_key, world.third_id, receiver.url)
        subscribed = await gateway.post(
            "/v1/subscriptions",
            json={
                "url": receiver.url,
                "event_types": ["deal.closed"],
                "filter": {"region": region},
            },
            headers=bearer(world.third),
        )
        assert subscribed.status_code == 201, subscribed.text
        try:
            closed = await listing.post(
                "/v1/deals",
                json={
                    "listing_id": lid,
                    "inquiry_id": inquiry.json()["id"],
                    "amount": secret_amount,
                    "confidential": True,
                    "closed_on": date.today().isoformat(),
                },
                headers=bearer(world.seller),
            )
            assert closed.status_code == 201, closed.text
            assert closed.json()["amount"] == secret_amount
            # Two disclosed deals in the region, so its statistics group is shown (3 deals).
            for amount in ("100.00", "300.00"):
                other = await publish(
                    listing, world.seller, operator_key, next(numbers), region=region
                )
                done = await listing.post(
                    "/v1/deals",
                    json={
                        "listing_id": other["id"],
                        "buyer_name": "河北某科技有限公司",
                        "amount": amount,
                        "closed_on": date.today().isoformat(),
                    },
                    headers=bearer(world.seller),
                )
                assert done.status_code == 201, done.text
            await receiver.wait_for(lambda r: len(r.delivered()) >= 3, what="three deal.closed")
            announced = [r.json()["data"] for r in receiver.received]
            (confidential,) = [d for d in announced if d["listing_id"] == lid]
            assert confidential["amount"] is None and confidential["confidential"] is True
            assert all(hidden not in r.body.decode() for r in receiver.received)
        finally:
            await gateway.delete(
                f"/v1/subscriptions/{subscribed.json()['id']}", headers=bearer(world.third)
            )
            await disallow_local(gateway, operator_key, world.third_id)

    # listing's deal list: the amount for the seller, the buyer and operators only.
    async def shown(client: httpx.AsyncClient, path: str, key: str | None) -> dict[str, Any]:
        response = await client.get(
            path, params={"region": region}, headers=bearer(key) if key else {}
        )
        assert response.status_code == 200, response.text
        (deal,) = [d for d in response.json()["items"] if d["listing_id"] == lid]
        return dict(deal)

    for party in (world.seller, world.buyer, operator_key):
        assert (await shown(listing, "/v1/deals", party))["amount"] == secret_amount
    outsiders: tuple[str | None, ...] = (None, world.third, world.partner_key, service_key)
    for outsider in outsiders:
        deal = await shown(listing, "/v1/deals", outsider)
        assert deal["amount"] is None and deal["confidential"] is True
    # The gateway's catalogue is public and cached: no amount, whoever asks.
    askers: tuple[str | None, ...] = (None, world.seller, world.buyer, operator_key)
    for asker in askers:
        deal = await shown(gateway, "/v1/catalogue/deals", asker)
        assert deal["amount"] is None
        response = await gateway.get(
            "/v1/catalogue/deals",
            params={"region": region},
            headers=bearer(asker) if asker else {},
        )
        assert hidden not in response.text
    # Statistics count the deal but not its amount.
    stats = await listing.get("/v1/deals/stats", params={"group_by": "region", "region": "13"})
    group = next(g for g in stats.json()["groups"] if g["group"] == "130000")
    assert group["deal_count"] >= 3 and hidden not in stats.text
    assert group["disclosed_count"] == group["deal_count"] - 1
    # Nor in the feeds: listing's (service key: the gateway republishes it) and the public one.
    feeds: tuple[tuple[httpx.AsyncClient, str, str | None], ...] = (
        (listing, "/v1/changes", service_key),
        (listing, "/v1/changes", operator_key),
        (gateway, "/v1/catalogue/changes", None),
    )
    for client, path, reader in feeds:
        events = await all_events(client, path, reader)
        deals = [e for e in events if e["type"] == "deal.closed" and e["data"]["listing_id"] == lid]
        assert len(deals) == 1 and deals[0]["data"]["amount"] is None, path
        assert hidden not in json.dumps(events), path
    # Nor on the listing, its history, the index; the buyer's offer stays in the thread.
    for viewer in (None, world.third):
        headers = bearer(viewer) if viewer else {}
        for path in (f"/v1/listings/{lid}", f"/v1/listings/{lid}/history"):
            response = await listing.get(path, headers=headers)
            assert hidden not in response.text, (path, response.status_code)
    assert hidden not in (await gateway.get(f"/v1/catalogue/listings/{lid}")).text
    thread = f"/v1/inquiries/{inquiry.json()['id']}"
    assert (await listing.get(thread, headers=bearer(world.buyer))).status_code == 200
    assert (await listing.get(thread, headers=bearer(world.third))).status_code in (403, 404)
    threads = await listing.get(
        "/v1/inquiries", params={"listing_id": lid}, headers=bearer(world.third)
    )
    assert threads.status_code in (200, 403) and hidden not in threads.text
    await wait_indexed(matching, operator_key)
    found = await matching.get("/v1/search", params={"q": published["asset"]["identifier"]})
    assert hidden not in found.text
