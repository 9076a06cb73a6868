"""Partners confined to their own offers: a partner's signature, intake and key reach no other
exchange's offer and no local listing, on the in-process gateway and listing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import date

import httpx

from service.security.helpers import World, offer_of, push, register_partner
from support import assert_problem, bearer, eventually, nonexclusive_offer, terms


async def test_a_partner_touches_only_its_own_offers(
    listing: httpx.AsyncClient,
    gateway: httpx.AsyncClient,
    world: World,
    operator_key: str,
    service_key: str,
    numbers: Iterator[str],
) -> None:
    mine, theirs = "pa" + uuid.uuid4().hex[:8], "pb" + uuid.uuid4().hex[:8]
    my_secret = await register_partner(gateway, operator_key, mine, world.exchange_id)
    their_secret = await register_partner(gateway, operator_key, theirs)
    number = next(numbers)
    accepted, _ = await push(
        gateway, theirs, their_secret, nonexclusive_offer(theirs, "T-1", number)
    )
    assert accepted.status_code == 202, accepted.text
    their_offer = await eventually(
        lambda: offer_of(listing, service_key, f"{theirs}:T-1"), "the other partner's offer"
    )
    local_before = (await listing.get(f"/v1/listings/{world.listing_id}")).json()

    # My signature on a push to the other partner's intake: 401, nothing queued.
    withdrawn = {**nonexclusive_offer(theirs, "T-1", number, version=2), "status": "withdrawn"}
    refused, _ = await push(gateway, theirs, my_secret, withdrawn)
    body = assert_problem(refused, 401)
    assert body["errors"][0]["field"] == "webhook-signature"
    # Through my own intake, documents naming the other exchange, or ours, are refused.
    for document in (
        withdrawn,  # source.exchange and offer_id of the other partner
        {**nonexclusive_offer(mine, "T-1", number, version=2), "offer_id": f"{theirs}:T-1"},
        {
            **nonexclusive_offer(mine, "X", number, version=2),
            "source": {**withdrawn["source"], "exchange": "jjj", "listing_id": world.listing_id},
            "offer_id": f"jjj:{world.listing_id}",
        },
    ):
        answer, _ = await push(gateway, mine, my_secret, document)
        problem = assert_problem(answer, 422)
        assert {e["field"] for e in problem["errors"]} & {"source.exchange", "offer_id"}, problem
    # Text PostgreSQL cannot store is refused at intake, not queued to fail at listing forever.
    poisoned = nonexclusive_offer(mine, "N-1", number)
    poisoned["asset"]["title"] = {"zh": "一种\u0000装置"}
    answer, _ = await push(gateway, mine, my_secret, poisoned)
    problem = assert_problem(answer, 422)
    assert [(e["field"], e["rule"]) for e in problem["errors"]] == [
        ("asset.title.zh", "nul_character")
    ], problem
    # An offer of mine whose listing id is the local listing's id is a separate offer of mine.
    own = nonexclusive_offer(mine, world.listing_id, number)
    own["status"] = "withdrawn"
    accepted, _ = await push(gateway, mine, my_secret, own)
    assert accepted.status_code == 202, accepted.text
    await eventually(
        lambda: offer_of(listing, service_key, f"{mine}:{world.listing_id}"), "my own offer"
    )

    # The partner role's key on listing: no offer upserts, no edits of anyone else's listing.
    key = bearer(world.partner_key)
    for exchange, listing_id in ((theirs, "T-1"), (mine, "M-1"), ("jjj", world.listing_id)):
        document = nonexclusive_offer(exchange, listing_id, number, version=9)
        answer = await listing.put(
            f"/v1/offers/{exchange}/{listing_id}", json=document, headers=key
        )
        assert_problem(answer, 403)
    for target in (world.listing_id, their_offer["listing_id"]):
        current = await listing.get(f"/v1/listings/{target}")
        assert current.status_code == 200, current.text
        patched = await listing.patch(
            f"/v1/listings/{target}",
            json={"transaction": terms(amount="1.00")},
            headers={**key, "If-Match": current.headers["etag"]},
        )
        assert_problem(patched, 403)
        assert_problem(await listing.post(f"/v1/listings/{target}/withdraw", headers=key), 403)
        assert_problem(
            await listing.post(
                "/v1/deals",
                json={
                    "listing_id": target,
                    "buyer_name": "某公司",
                    "amount": "1.00",
                    "closed_on": date.today().isoformat(),
                },
                headers=key,
            ),
            403,
        )

    # Wait for the inbox to settle, then: the other partner's offer and the local listing are
    # as they were.
    await asyncio.sleep(2.5)  # more than two inbox rounds: a wrongly queued event would land
    after = await offer_of(listing, service_key, f"{theirs}:T-1")
    assert after is not None
    assert (after["version"], after["status"]) == (their_offer["version"], "published")
    local_after = (await listing.get(f"/v1/listings/{world.listing_id}")).json()
    assert local_after == local_before
