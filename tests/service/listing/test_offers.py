"""Partner offers: the gateway's upsert (PUT /v1/offers/{exchange}/{id}) and an asset's offers
across exchanges (GET /v1/assets/{id}/offers)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import text

from shared.contracts.catalogue import CatalogueDocument
from shared.settings import Settings
from support import (
    assert_problem,
    bearer,
    listing_changes,
    new_organization,
    patent,
    real_application_numbers,
    terms,
)

HOLDER = "北京理工大学"
NUMBERS = real_application_numbers("invention_patent")
TIANJIN = {"exchange_name": "天津知识产权交易中心", "exchange_region": "120000"}
BEIJING = {"exchange_name": "北京技术交易促进中心", "exchange_region": "110000"}
OFFERS_PATH = "/v1/assets/{asset_id}/offers"


@pytest.fixture(scope="module")
async def listing_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The listing app with the asset-offers route mounted (until app.py mounts it itself)."""
    from services.listing.app import create_app
    from services.listing.offers.router import asset_offers_router

    app = create_app(settings)
    if not any(getattr(route, "path", None) == OFFERS_PATH for route in app.routes):
        app.include_router(asset_offers_router)
    async with LifespanManager(app):
        yield app


def offer(
    exchange: str,
    listing_id: str,
    identifier: str,
    *,
    version: int = 1,
    status: str = "published",
    holder: str = HOLDER,
    amount: str = "800000.00",
    seller: str | None = "北京某某科技有限公司",
    **asset: Any,
) -> dict[str, Any]:
    """A partner's catalogue document for a real CN application number."""
    return {
        "schema": "ipx.catalogue/v1",
        "offer_id": f"{exchange}:{listing_id}",
        "source": {
            "exchange": exchange,
            "listing_id": listing_id,
            "url": f"https://{exchange}.example/listings/{listing_id}",
            "updated_at": f"2026-01-{version:02d}T08:00:00Z",
            "version": version,
        },
        "asset": patent(holder, identifier, **asset),
        "transaction": terms("nonexclusive_license", amount=amount),
        "status": status,
        "seller": seller,
    }


async def put(
    listing: httpx.AsyncClient,
    key: str,
    doc: dict[str, Any],
    params: dict[str, str] | None = None,
    *,
    path: str | None = None,
) -> httpx.Response:
    source = doc["source"]
    return await listing.put(
        path or f"/v1/offers/{source['exchange']}/{source['listing_id']}",
        json=doc,
        params=params or {},
        headers=bearer(key),
    )


async def upsert(
    listing: httpx.AsyncClient,
    key: str,
    doc: dict[str, Any],
    params: dict[str, str] | None = None,
) -> dict[str, Any]:
    response = await put(listing, key, doc, params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def events_of(listing: httpx.AsyncClient, key: str, entity_id: str) -> list[dict[str, Any]]:
    return [e for e in await listing_changes(listing, key) if e["entity_id"] == entity_id]


async def stored(
    app: FastAPI, exchange: str, listing_id: str, identifier: str
) -> tuple[int, int, int]:
    """(exchange organisations, listings, assets) stored for this exchange, offer and right."""
    async with app.state.sessionmaker() as session:
        row = (
            await session.execute(
                text(
                    "SELECT (SELECT count(*) FROM listing.organizations WHERE code = :x),"
                    " (SELECT count(*) FROM listing.listings"
                    "   WHERE exchange = :x AND external_id = :l),"
                    " (SELECT count(*) FROM listing.assets WHERE identifier = :i)"
                ),
                {"x": exchange, "l": listing_id, "i": identifier},
            )
        ).one()
    return int(row[0]), int(row[1]), int(row[2])


async def test_a_new_partner_offer_creates_exchange_asset_and_published_listing(
    listing: httpx.AsyncClient, listing_app: FastAPI, service_key: str
) -> None:
    number = next(NUMBERS)
    result = await upsert(listing, service_key, offer("tipei", "L-1", number), TIANJIN)
    assert result["applied"] is True and result["needs_review"] is False
    assert result["version"] == 1 and result["source_version"] == 1
    assert await stored(listing_app, "tipei", "L-1", number) == (1, 1, 1)
    async with listing_app.state.sessionmaker() as session:
        exchange = (
            await session.execute(
                text(
                    "SELECT kind, name, region, verified FROM listing.organizations"
                    " WHERE code = 'tipei'"
                )
            )
        ).one()
    assert tuple(exchange) == ("exchange", TIANJIN["exchange_name"], "120000", True)

    public = (await listing.get(f"/v1/listings/{result['listing_id']}")).json()
    assert public["status"] == "published" and public["exchange"] == "tipei"
    assert public["offer_id"] == "tipei:L-1" and public["published_at"]
    assert public["seller_name"] == "北京某某科技有限公司"
    assert public["source_url"] == "https://tipei.example/listings/L-1"
    assert public["asset_id"] == result["asset_id"]

    events = await events_of(listing, service_key, result["listing_id"])
    assert [e["type"] for e in events] == ["listing.published"]
    doc = CatalogueDocument.model_validate(events[0]["data"])
    assert doc.offer_id == "tipei:L-1" and doc.status == "published"
    assert doc.source.exchange == "tipei" and doc.source.listing_id == "L-1"
    assert doc.source.url == "https://tipei.example/listings/L-1" and doc.source.version == 1
    assert doc.seller == "北京某某科技有限公司" and doc.asset.identifier == number
    assert events[0]["asset_id"] == result["asset_id"]

    history = (
        await listing.get(
            f"/v1/listings/{result['listing_id']}/history", headers=bearer(service_key)
        )
    ).json()["items"]
    assert [h["action"] for h in history] == ["partner_upsert"]
    assert history[0]["changes"]["status"] == [None, "published"]
    assert history[0]["actor_roles"] == ["service"]

    # A known exchange needs no name; without a seller name the exchange's name is shown.
    second = await upsert(listing, service_key, offer("tipei", "L-2", next(NUMBERS), seller=None))
    assert (await stored(listing_app, "tipei", "L-2", number))[0] == 1
    shown = (await listing.get(f"/v1/listings/{second['listing_id']}")).json()
    assert shown["seller_name"] == TIANJIN["exchange_name"]


async def test_the_same_right_on_three_exchanges_is_one_asset(
    listing: httpx.AsyncClient, service_key: str, operator_key: str
) -> None:
    number = next(NUMBERS)
    tianjin = await upsert(listing, service_key, offer("tipei", "L-10", number), TIANJIN)
    # Any typed form of the identifier finds the same asset.
    typed = f"ZL {number}"
    beijing = await upsert(
        listing,
        operator_key,
        offer("bjtec", "B-7", typed, seller="北京理工大学技术转移中心"),
        BEIJING,
    )
    assert beijing["asset_id"] == tianjin["asset_id"]
    assert beijing["needs_review"] is False

    _, ours = await new_organization(listing, operator_key, name=HOLDER)
    created = await listing.post(
        "/v1/listings",
        json={"asset": patent(HOLDER, number), "transaction": terms()},
        headers=bearer(ours),
    )
    assert created.status_code == 201, created.text
    own = created.json()
    assert own["asset_id"] == tianjin["asset_id"]
    for step, key in (("submit", ours), ("approve", operator_key)):
        moved = await listing.post(f"/v1/listings/{own['id']}/{step}", headers=bearer(key))
        assert moved.status_code == 200, moved.text

    page = (await listing.get(f"/v1/assets/{tianjin['asset_id']}/offers")).json()
    assert page["next_page_token"] == ""
    by_offer = {item["document"]["offer_id"]: item for item in page["items"]}
    assert set(by_offer) == {"tipei:L-10", "bjtec:B-7", f"jjj:{own['id']}"}
    assert {item["status"] for item in page["items"]} == {"published"}
    assert by_offer["bjtec:B-7"]["listing_id"] == beijing["listing_id"]
    assert by_offer["bjtec:B-7"]["document"]["seller"] == "北京理工大学技术转移中心"
    assert by_offer[f"jjj:{own['id']}"]["document"]["seller"] == HOLDER
    for item in page["items"]:
        CatalogueDocument.model_validate(item["document"])

    paged = await listing.get(f"/v1/assets/{tianjin['asset_id']}/offers", params={"page_size": 2})
    first = paged.json()
    assert len(first["items"]) == 2 and first["next_page_token"]
    rest = (
        await listing.get(
            f"/v1/assets/{tianjin['asset_id']}/offers",
            params={"page_size": 2, "page_token": first["next_page_token"]},
        )
    ).json()
    assert len(rest["items"]) == 1 and rest["next_page_token"] == ""
    assert_problem(await listing.get("/v1/assets/00000000-0000-0000-0000-000000000000/offers"), 404)
    assert_problem(
        await listing.get(f"/v1/assets/{tianjin['asset_id']}/offers", params={"page_token": "e30"}),
        422,
    )


async def test_an_older_or_equal_source_version_changes_nothing(
    listing: httpx.AsyncClient, service_key: str
) -> None:
    number = next(NUMBERS)
    first = await upsert(listing, service_key, offer("tipei", "L-20", number, version=2), TIANJIN)
    before = (await listing.get(f"/v1/listings/{first['listing_id']}")).json()
    events = await events_of(listing, service_key, first["listing_id"])
    for version in (2, 1):
        again = await upsert(
            listing,
            service_key,
            offer("tipei", "L-20", number, version=version, amount="1.00", holder="别人"),
        )
        assert again["applied"] is False
        assert again["version"] == 1 and again["source_version"] == 2
        assert again["listing_id"] == first["listing_id"] and again["needs_review"] is False
    after = (await listing.get(f"/v1/listings/{first['listing_id']}")).json()
    assert after == before
    assert after["transaction"]["price"]["amount"] == "800000.00"
    assert await events_of(listing, service_key, first["listing_id"]) == events
    asset = (await listing.get(f"/v1/assets/{first['asset_id']}")).json()
    assert asset["needs_review"] is False


async def test_versions_out_of_order_end_at_the_newest(
    listing: httpx.AsyncClient, service_key: str
) -> None:
    number = next(NUMBERS)
    v3 = await upsert(
        listing, service_key, offer("tipei", "L-30", number, version=3, amount="3.00"), TIANJIN
    )
    v2 = await upsert(
        listing, service_key, offer("tipei", "L-30", number, version=2, amount="2.00")
    )
    assert v3["applied"] is True and v2["applied"] is False
    now = (await listing.get(f"/v1/listings/{v3['listing_id']}")).json()
    assert now["transaction"]["price"]["amount"] == "3.00"
    events = await events_of(listing, service_key, v3["listing_id"])
    assert [e["data"]["source"]["version"] for e in events] == [3]
    v4 = await upsert(
        listing, service_key, offer("tipei", "L-30", number, version=4, amount="4.00")
    )
    assert v4["applied"] is True and v4["version"] == 2 and v4["source_version"] == 4
    events = await events_of(listing, service_key, v3["listing_id"])
    assert [(e["type"], e["version"]) for e in events] == [
        ("listing.published", 1),
        ("listing.updated", 2),
    ]
    assert events[-1]["data"]["transaction"]["price"]["amount"] == "4.00"


async def test_a_withdrawal_leaves_a_tombstone(
    listing: httpx.AsyncClient, service_key: str, operator_key: str
) -> None:
    number = next(NUMBERS)
    published = await upsert(listing, service_key, offer("tipei", "L-40", number), TIANJIN)
    withdrawn = await upsert(
        listing, service_key, offer("tipei", "L-40", number, version=2, status="withdrawn")
    )
    assert withdrawn["applied"] is True and withdrawn["version"] == 2
    public = (await listing.get(f"/v1/listings/{published['listing_id']}")).json()
    assert public["status"] == "withdrawn"
    events = await events_of(listing, service_key, published["listing_id"])
    assert [e["type"] for e in events] == ["listing.published", "listing.withdrawn"]
    tombstone = CatalogueDocument.model_validate(events[-1]["data"])
    assert tombstone.status == "withdrawn" and tombstone.offer_id == "tipei:L-40"

    offers = f"/v1/assets/{published['asset_id']}/offers"
    assert (await listing.get(offers)).json()["items"] == []
    closed = (await listing.get(offers, params={"include_closed": "true"})).json()["items"]
    assert [(i["listing_id"], i["status"]) for i in closed] == [
        (published["listing_id"], "withdrawn")
    ]
    history = (
        await listing.get(
            f"/v1/listings/{published['listing_id']}/history", headers=bearer(operator_key)
        )
    ).json()["items"]
    assert [h["action"] for h in history] == ["partner_upsert", "partner_upsert"]
    assert history[1]["changes"]["status"] == ["published", "withdrawn"]

    # Offered again later (a newer version): published again.
    again = await upsert(listing, service_key, offer("tipei", "L-40", number, version=3))
    assert again["version"] == 3
    events = await events_of(listing, service_key, published["listing_id"])
    assert events[-1]["type"] == "listing.published"


async def test_a_partner_closing_its_offer_is_listing_closed_not_withdrawn(
    listing: httpx.AsyncClient, service_key: str
) -> None:
    """The partner closed a deal on its exchange: the feed says `listing.closed` (a withdrawal
    stays `listing.withdrawn`, test_a_withdrawal_leaves_a_tombstone)."""
    number = next(NUMBERS)
    published = await upsert(listing, service_key, offer("tipei", "L-45", number), TIANJIN)
    negotiating = await upsert(
        listing,
        service_key,
        offer("tipei", "L-45", number, version=2, status="under_negotiation"),
    )
    closed = await upsert(
        listing, service_key, offer("tipei", "L-45", number, version=3, status="closed")
    )
    assert negotiating["applied"] and closed["applied"] and closed["version"] == 3
    events = await events_of(listing, service_key, published["listing_id"])
    assert [e["type"] for e in events] == [
        "listing.published",
        "listing.updated",
        "listing.closed",
    ]
    tombstone = CatalogueDocument.model_validate(events[-1]["data"])
    assert tombstone.status == "closed" and tombstone.offer_id == "tipei:L-45"
    offers = f"/v1/assets/{published['asset_id']}/offers"
    assert (await listing.get(offers)).json()["items"] == []


async def test_different_holder_names_flag_the_asset_for_review(
    listing: httpx.AsyncClient, service_key: str, operator_key: str
) -> None:
    number = next(NUMBERS)
    _, ours = await new_organization(listing, operator_key, name="北京工业大学")
    registered = await listing.post(
        "/v1/assets",
        json=patent("北京工业大学", number),
        headers=bearer(ours),
    )
    assert registered.status_code == 201, registered.text
    asset_id = registered.json()["id"]
    result = await upsert(
        listing, service_key, offer("tipei", "L-50", number, holder="北京工业大学资产经营公司")
    )
    assert result["asset_id"] == asset_id and result["needs_review"] is True
    asset = (await listing.get(f"/v1/assets/{asset_id}")).json()
    assert asset["needs_review"] is True
    assert [h["name"] for h in asset["holders"]] == ["北京工业大学"]  # ours, not overwritten
    # The offer itself went through (partner offers skip the holder check).
    public = (await listing.get(f"/v1/listings/{result['listing_id']}")).json()
    assert public["status"] == "published"


BAD_CHECK = "201710601862.4"  # the real 201710601862.3 with its check digit mistyped


@pytest.mark.parametrize(
    ("case", "status", "field", "rule"),
    [
        ("bad_check_digit", 422, "asset.identifier", None),
        ("draft", 422, "status", "partner_status_not_reviewed"),
        ("pending_review", 422, "status", "partner_status_not_reviewed"),
        ("path_listing_id", 422, "source.listing_id", "path_mismatch"),
        ("path_exchange", 422, "source.exchange", "path_mismatch"),
        ("own_exchange", 422, "exchange", "own_exchange"),
        ("new_exchange_unnamed", 422, "exchange_name", "required_for_new_exchange"),
        ("bad_region", 422, "exchange_region", None),
        ("fixed_without_amount", 422, "transaction.price.amount", "required_for_fixed_price"),
        ("member_key", 403, None, None),
        ("anonymous", 401, None, None),
        ("expired_right", 409, "asset.legal_status", "right_not_in_force"),
    ],
)
async def test_refusals_store_nothing(
    listing: httpx.AsyncClient,
    listing_app: FastAPI,
    service_key: str,
    operator_key: str,
    case: str,
    status: int,
    field: str | None,
    rule: str | None,
) -> None:
    exchange, listing_id, number = "hbtm", f"H-{case}", next(NUMBERS)
    doc = offer(exchange, listing_id, number)
    params: dict[str, str] | None = {"exchange_name": "河北技术市场", "exchange_region": "130000"}
    key, path = service_key, None
    if case == "bad_check_digit":
        number = BAD_CHECK
        doc = offer(exchange, listing_id, number)
    elif case in ("draft", "pending_review"):
        doc["status"] = case
    elif case == "path_listing_id":
        path = f"/v1/offers/{exchange}/H-other"
    elif case == "path_exchange":
        path = f"/v1/offers/tipei/{listing_id}"
    elif case == "own_exchange":
        exchange = "jjj"
        doc = offer(exchange, listing_id, number)
    elif case == "new_exchange_unnamed":
        params = {"exchange_region": "130000"}
    elif case == "bad_region":
        params = {"exchange_name": "河北技术市场", "exchange_region": "990000"}
    elif case == "fixed_without_amount":
        doc["transaction"] = terms(amount=None)
    elif case == "member_key":
        _, key = await new_organization(listing, operator_key, name=f"成员{case}")
    elif case == "expired_right":
        number = "97101765.4"  # filed 1997-02-10: the term ended in 2017
        doc = offer(exchange, listing_id, number)
        doc["asset"]["filed_on"] = "1997-02-10"

    if case == "anonymous":
        response = await listing.put(f"/v1/offers/{exchange}/{listing_id}", json=doc)
    else:
        response = await put(listing, key, doc, params, path=path)
    body = assert_problem(response, status)
    if field is not None:
        assert any(
            e["field"] == field and (rule is None or e["rule"] == rule) for e in body["errors"]
        ), body
    assert await stored(listing_app, exchange, listing_id, number) == (0, 0, 0)


async def test_an_ended_right_may_arrive_closed_or_expired(
    listing: httpx.AsyncClient, service_key: str
) -> None:
    doc = offer("tipei", "L-60", "97101765.4", status="expired")
    doc["asset"]["filed_on"] = "1997-02-10"
    result = await upsert(listing, service_key, doc, TIANJIN)
    assert result["applied"] is True
    public = (await listing.get(f"/v1/listings/{result['listing_id']}")).json()
    assert public["status"] == "expired" and public["asset"]["legal_status"] == "expired"
    events = await events_of(listing, service_key, result["listing_id"])
    assert [e["type"] for e in events] == ["listing.expired"]


async def test_concurrent_upserts_of_one_new_offer_make_one_listing(
    listing: httpx.AsyncClient, listing_app: FastAPI, service_key: str
) -> None:
    number = next(NUMBERS)
    params = {"exchange_name": "河北省知识产权交易平台", "exchange_region": "130100"}
    results = await asyncio.gather(
        *(
            put(listing, service_key, offer("hbip", "C-1", number, version=v), params)
            for v in range(1, 11)
        )
    )
    assert [r.status_code for r in results] == [200] * 10, [r.text for r in results]
    bodies = [r.json() for r in results]
    assert len({b["listing_id"] for b in bodies}) == 1
    assert len({b["asset_id"] for b in bodies}) == 1
    assert await stored(listing_app, "hbip", "C-1", number) == (1, 1, 1)
    applied = sum(b["applied"] for b in bodies)
    final = (await listing.get(f"/v1/listings/{bodies[0]['listing_id']}")).json()
    assert final["version"] == applied
    async with listing_app.state.sessionmaker() as session:
        source_version = await session.scalar(
            text(
                "SELECT source_version FROM listing.listings"
                " WHERE exchange = 'hbip' AND external_id = 'C-1'"
            )
        )
    assert source_version == 10
    events = await events_of(listing, service_key, bodies[0]["listing_id"])
    assert len(events) == applied
    assert events[-1]["data"]["source"]["version"] == 10
