"""Listings: terms, the reviewed lifecycle, publishability, concurrency, idempotency, history."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from support import (
    assert_problem,
    bearer,
    new_organization,
    patent,
    real_application_numbers,
    submit_and_approve,
    terms,
)

SELLER = "北京航空航天大学"
NUMBERS = real_application_numbers("invention_patent")


@pytest.fixture(scope="module")
async def seller(listing: httpx.AsyncClient, operator_key: str) -> str:
    _, key = await new_organization(listing, operator_key, name=SELLER)
    return key


async def new_listing(
    listing: httpx.AsyncClient,
    key: str,
    *,
    asset: dict[str, Any] | None = None,
    deal: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body = {
        "asset": asset or patent(SELLER, next(NUMBERS)),
        "transaction": deal or terms(),
        **extra,
    }
    response = await listing.post("/v1/listings", json=body, headers=bearer(key))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_create_submit_approve_and_read(
    listing: httpx.AsyncClient, seller: str, operator_key: str
) -> None:
    created = await new_listing(listing, seller)
    assert created["status"] == "draft" and created["version"] == 1
    assert created["offer_id"] == f"jjj:{created['id']}"
    assert created["transaction"]["price"]["amount"] == "1200000.00"
    lid = created["id"]
    # A draft is private: 404 to anyone else.
    assert_problem(await listing.get(f"/v1/listings/{lid}"), 404)
    assert_problem(await listing.post(f"/v1/listings/{lid}/approve", headers=bearer(seller)), 403)
    published = await submit_and_approve(listing, seller, operator_key, lid)
    assert published["status"] == "published" and published["version"] == 3
    assert published["published_at"]
    public = await listing.get(f"/v1/listings/{lid}")
    assert public.status_code == 200 and public.headers["etag"] == '"3"'
    cached = await listing.get(f"/v1/listings/{lid}", headers={"If-None-Match": '"3"'})
    assert cached.status_code == 304
    again = await listing.post(f"/v1/listings/{lid}/approve", headers=bearer(operator_key))
    body = assert_problem(again, 409)
    assert body["current_status"] == "published" and "published" in str(body["detail"])


async def test_reject_needs_a_reason_and_returns_to_draft(
    listing: httpx.AsyncClient, seller: str, operator_key: str
) -> None:
    lid = (await new_listing(listing, seller))["id"]
    await listing.post(f"/v1/listings/{lid}/submit", headers=bearer(seller))
    assert_problem(
        await listing.post(f"/v1/listings/{lid}/reject", headers=bearer(operator_key)), 422
    )
    rejected = await listing.post(
        f"/v1/listings/{lid}/reject", json={"reason": "价格缺失说明"}, headers=bearer(operator_key)
    )
    assert rejected.json()["status"] == "draft"
    assert rejected.json()["rejection_reason"] == "价格缺失说明"


async def test_unverified_organisations_cannot_submit(
    listing: httpx.AsyncClient, operator_key: str
) -> None:
    _, key = await new_organization(listing, operator_key, name="新公司", verified=False)
    lid = (await new_listing(listing, key, asset=patent("新公司", next(NUMBERS))))["id"]
    body = assert_problem(
        await listing.post(f"/v1/listings/{lid}/submit", headers=bearer(key)), 403
    )
    assert body["errors"][0]["rule"] == "organization_not_verified"


async def test_updates_need_the_current_version(listing: httpx.AsyncClient, seller: str) -> None:
    lid = (await new_listing(listing, seller))["id"]
    change = {"transaction": terms(amount="990000.00")}
    assert_problem(
        await listing.patch(f"/v1/listings/{lid}", json=change, headers=bearer(seller)), 428
    )
    stale = await listing.patch(
        f"/v1/listings/{lid}", json=change, headers={**bearer(seller), "If-Match": '"7"'}
    )
    assert assert_problem(stale, 409)["current_version"] == 1
    # Two editors based on version 1: exactly one wins, the other gets a 409.
    results = await asyncio.gather(
        *(
            listing.patch(
                f"/v1/listings/{lid}",
                json={"transaction": terms(amount=amount)},
                headers={**bearer(seller), "If-Match": '"1"'},
            )
            for amount in ("1.00", "2.00")
        )
    )
    assert sorted(r.status_code for r in results) == [200, 409]
    winner = next(r for r in results if r.status_code == 200)
    assert winner.headers["etag"] == '"2"'
    history = (await listing.get(f"/v1/listings/{lid}/history", headers=bearer(seller))).json()[
        "items"
    ]
    assert [h["action"] for h in history] == ["created", "updated"]
    assert history[1]["changes"]["price"][0]["amount"] == "1200000.00"
    assert history[1]["actor_roles"] == ["admin"]


async def test_idempotent_create(listing: httpx.AsyncClient, seller: str) -> None:
    body = {"asset": patent(SELLER, next(NUMBERS)), "transaction": terms()}
    headers = {**bearer(seller), "Idempotency-Key": "import-2026-11-a"}
    first = await listing.post("/v1/listings", json=body, headers=headers)
    second = await listing.post("/v1/listings", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json() and second.headers["idempotent-replayed"] == "true"
    other = await listing.post(
        "/v1/listings", json={**body, "pledge_disclosed": True}, headers=headers
    )
    assert assert_problem(other, 422)["errors"][0]["rule"] == "idempotency_key_reused"


@pytest.mark.parametrize(
    ("deal", "field", "rule"),
    [
        (terms(amount="-5.00"), "transaction.price.amount", "greater_than_equal"),
        (terms(type_="barter"), "transaction.type", "literal_error"),
        (terms(amount=None), "transaction.price.amount", "required_for_fixed_price"),
        (terms(mode="royalty", amount=None), "transaction.royalty_rate", "required_for_royalty"),
        (terms(amount="1.005"), "transaction.price.amount", "decimal_max_places"),
        (
            terms(type_="open_license", mode="negotiable", amount=None),
            "transaction.royalty_rate",
            "open_license_declared_royalty",
        ),
        ({**terms(), "royalty_rate": "1.5"}, "transaction.royalty_rate", "less_than_equal"),
    ],
)
async def test_bad_terms_name_the_field_and_rule(
    listing: httpx.AsyncClient, seller: str, deal: dict[str, Any], field: str, rule: str
) -> None:
    response = await listing.post(
        "/v1/listings", json={"asset": patent(SELLER), "transaction": deal}, headers=bearer(seller)
    )
    errors = assert_problem(response, 422)["errors"]
    assert any(e["field"] == field and e["rule"] == rule for e in errors), errors


async def test_a_listing_on_another_organisations_asset_is_refused(
    listing: httpx.AsyncClient, seller: str, operator_key: str
) -> None:
    asset_id = (await new_listing(listing, seller))["asset_id"]
    _, other = await new_organization(listing, operator_key, name="河北工业大学", region="120132")
    response = await listing.post(
        "/v1/listings", json={"asset_id": asset_id, "transaction": terms()}, headers=bearer(other)
    )
    assert assert_problem(response, 403)["errors"][0]["rule"] == "not_a_holder"


async def test_expired_rights_cannot_be_published(listing: httpx.AsyncClient, seller: str) -> None:
    old = patent(SELLER, "97101765.4", filed_on="1997-02-10")
    created = await new_listing(listing, seller, asset=old)
    assert created["asset"]["legal_status"] == "expired"
    body = assert_problem(
        await listing.post(f"/v1/listings/{created['id']}/submit", headers=bearer(seller)), 409
    )
    assert body["errors"][0]["rule"] == "right_not_in_force"


async def test_no_second_exclusive_licence(
    listing: httpx.AsyncClient, seller: str, operator_key: str
) -> None:
    first = await new_listing(listing, seller)
    await submit_and_approve(listing, seller, operator_key, first["id"])
    second = await listing.post(
        "/v1/listings",
        json={"asset_id": first["asset_id"], "transaction": terms()},
        headers=bearer(seller),
    )
    body = assert_problem(
        await listing.post(f"/v1/listings/{second.json()['id']}/submit", headers=bearer(seller)),
        409,
    )
    assert body["errors"][0]["rule"] == "second_exclusive_license"
    # A non-exclusive licence on the same asset is fine.
    third = await listing.post(
        "/v1/listings",
        json={"asset_id": first["asset_id"], "transaction": terms("nonexclusive_license")},
        headers=bearer(seller),
    )
    await submit_and_approve(listing, seller, operator_key, third.json()["id"])


async def test_pledged_assets_are_sold_only_with_the_pledge_disclosed(
    listing: httpx.AsyncClient, seller: str, operator_key: str
) -> None:
    pledged = patent(
        SELLER,
        next(NUMBERS),
        encumbrances=[{"type": "pledge", "holder": "中国银行", "until": None}],
    )
    hidden = await new_listing(listing, seller, asset=pledged, deal=terms("assignment"))
    body = assert_problem(
        await listing.post(f"/v1/listings/{hidden['id']}/submit", headers=bearer(seller)), 409
    )
    assert body["errors"][0]["field"] == "pledge_disclosed"
    disclosed = await listing.post(
        "/v1/listings",
        json={
            "asset_id": hidden["asset_id"],
            "transaction": terms("assignment"),
            "pledge_disclosed": True,
        },
        headers=bearer(seller),
    )
    await submit_and_approve(listing, seller, operator_key, disclosed.json()["id"])


async def test_lists_and_the_review_queue(
    listing: httpx.AsyncClient, seller: str, operator_key: str
) -> None:
    lid = (await new_listing(listing, seller))["id"]
    await listing.post(f"/v1/listings/{lid}/submit", headers=bearer(seller))
    queue = await listing.get(
        "/v1/listings",
        params={"status": "pending_review", "page_size": 200},
        headers=bearer(operator_key),
    )
    assert lid in [item["id"] for item in queue.json()["items"]]
    mine = await listing.get("/v1/listings", params={"page_size": 2}, headers=bearer(seller))
    page = mine.json()
    assert len(page["items"]) == 2 and page["next_page_token"]
    seen = [i["id"] for i in page["items"]]
    while page["next_page_token"]:
        page = (
            await listing.get(
                "/v1/listings",
                params={"page_size": 2, "page_token": page["next_page_token"]},
                headers=bearer(seller),
            )
        ).json()
        seen += [i["id"] for i in page["items"]]
    assert len(seen) == len(set(seen)) and lid in seen
    assert_problem(
        await listing.get("/v1/listings", params={"page_token": "%%%"}, headers=bearer(seller)), 422
    )
    _, other = await new_organization(listing, operator_key, name="其他", region="130100")
    theirs = await listing.get("/v1/listings", headers=bearer(other))
    assert theirs.json()["items"] == []


async def test_listings_of_ended_rights_expire_by_themselves(
    listing: httpx.AsyncClient,
    listing_app: Any,
    seller: str,
    operator_key: str,
    settings: Any,
) -> None:
    from sqlalchemy import text as sql

    from services.listing.dependencies import today_in_china
    from services.listing.listings.workers import expire_lapsed

    published = await new_listing(listing, seller)
    await submit_and_approve(listing, seller, operator_key, published["id"])
    draft = await new_listing(listing, seller)
    async with listing_app.state.sessionmaker() as session, session.begin():
        await session.execute(
            sql("UPDATE listing.assets SET expires_on = DATE '2020-01-01' WHERE id IN (:a, :b)"),
            {"a": published["asset_id"], "b": draft["asset_id"]},
        )
    maker = listing_app.state.sessionmaker
    count = await expire_lapsed(maker, today=today_in_china(), catalogue_url="http://x")
    assert count >= 2
    for item in (published, draft):
        now = (await listing.get(f"/v1/listings/{item['id']}", headers=bearer(seller))).json()
        assert now["status"] == "expired"
    assert await expire_lapsed(maker, today=today_in_china(), catalogue_url="http://x") == 0
    history = (
        await listing.get(f"/v1/listings/{published['id']}/history", headers=bearer(seller))
    ).json()["items"]
    assert history[-1]["action"] == "expire" and history[-1]["reason"] == "the right has ended"
