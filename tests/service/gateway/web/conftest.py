"""A catalogue to look at: real patent records of three sellers published on this exchange
(`jjj`), one right offered here and by a partner exchange (`tjipe`) with a deal closed on it,
a right only the partner offers, and deals enough for public statistics (groups of three)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest

from infra.seed.demo import demo_catalogue
from services.listing.dependencies import today_in_china
from support import (
    bearer,
    new_organization,
    nonexclusive_offer,
    partner_document,
    patent,
    publish_listing,
    publish_records,
    real_application_numbers,
    terms,
    wait_indexed,
)

SELLER = "中科寒武纪科技股份有限公司"  # the holder partner_document() writes
PARTNER = {"exchange_name": "天津知识产权交易中心", "exchange_region": "120000"}


@dataclass(frozen=True)
class Catalogue:
    shared_asset: str  # offered here and by tjipe, one deal closed on it
    shared_number: str  # its application number, normalised
    partner_only_asset: str
    seller_key: str
    records: int


async def _close(listing: httpx.AsyncClient, key: str, listing_id: str, **body: Any) -> None:
    closed = await listing.post(
        "/v1/deals",
        json={"listing_id": listing_id, "buyer_name": "天津中环半导体股份有限公司", **body},
        headers=bearer(key),
    )
    assert closed.status_code == 201, closed.text


@pytest.fixture(scope="module")
async def catalogue(
    listing: httpx.AsyncClient,
    matching: httpx.AsyncClient,
    operator_key: str,
    service_key: str,
) -> Catalogue:
    published = 0
    for (name, region), records in demo_catalogue(limit=5000)[:3]:
        org_id, _ = await new_organization(listing, operator_key, name=name, region=region)
        await publish_records(listing, operator_key, org_id, records[:12])
        published += len(records[:12])

    _, key = await new_organization(listing, operator_key, name=SELLER, region="110108")
    numbers = real_application_numbers("invention_patent")
    shared = next(numbers)
    # Two non-exclusive licences here (one closed with a deal) and one on the partner.
    body = {"asset": patent(SELLER, shared), "transaction": terms("nonexclusive_license")}
    first = await publish_listing(listing, key, operator_key, body)
    await publish_listing(
        listing,
        key,
        operator_key,
        {**body, "transaction": terms("nonexclusive_license", amount="650000.00")},
    )
    yesterday = today_in_china() - timedelta(days=1)
    await _close(listing, key, first, amount="980000.00", closed_on=yesterday.isoformat())
    put = await listing.put(
        "/v1/offers/tjipe/TJ-24-1",
        json=nonexclusive_offer("tjipe", "TJ-24-1", shared),
        params=PARTNER,
        headers=bearer(service_key),
    )
    assert put.status_code in (200, 201), put.text
    shared_asset = str(put.json()["asset_id"])

    only = next(numbers)
    document = partner_document("tjipe", "TJ-24-2", only, amount="2400000.00")
    document["asset"]["holders"] = [{"name": "天津大学", "region": "120104"}]
    put = await listing.put(
        "/v1/offers/tjipe/TJ-24-2", json=document, params=PARTNER, headers=bearer(service_key)
    )
    assert put.status_code in (200, 201), put.text
    partner_only = str(put.json()["asset_id"])

    # Deals for the statistics: three more last month and three this month, in two regions.
    for i, (region, days) in enumerate([("110108", 1), ("110108", 2), ("120116", 35)] * 2):
        holders = [{"name": SELLER, "region": region}]
        lid = await publish_listing(
            listing,
            key,
            operator_key,
            {"asset": patent(SELLER, next(numbers), holders=holders), "transaction": terms()},
        )
        closed_on = today_in_china() - timedelta(days=days)
        await _close(
            listing, key, lid, amount=f"{(i + 1) * 150000}.00", closed_on=closed_on.isoformat()
        )
    await wait_indexed(matching, operator_key)
    return Catalogue(shared_asset, shared, partner_only, key, published)
