"""Matching quality the other way round: the labelled buyer demands are posted to an empty
marketplace, then the demo catalogue is published and matched against them as it is indexed.
A buyer should find the same records whichever came first."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from infra.seed.demo import demo_catalogue, organization_kind
from matching_quality import HOLDOUT, LABELLED, Quality, labelled
from support import bearer, new_organization, publish_records, wait_matched

RECALL_AT_5_FLOOR = 0.75


@pytest.fixture(scope="module")
async def posted(
    listing: httpx.AsyncClient, matching: httpx.AsyncClient, operator_key: str
) -> tuple[str, list[tuple[dict[str, Any], str]]]:
    """The labelled demands, posted first; then the catalogue. (buyer key, [(demand, id)])."""
    _, key = await new_organization(
        listing, operator_key, name="天津市某智能装备有限公司", kind="enterprise", region="120100"
    )
    demands = []
    for demand in labelled(LABELLED) + labelled(HOLDOUT):
        created = await matching.post(
            "/v1/demands",
            json={"title": demand["title"], "text": demand["text"]},
            headers=bearer(key),
        )
        assert created.status_code == 201, created.text
        demands.append((demand, created.json()["id"]))
    for (name, region), records in demo_catalogue():
        seller_id, _ = await new_organization(
            listing, operator_key, name=name, kind=organization_kind(name), region=region
        )
        await publish_records(listing, operator_key, seller_id, records)
    await wait_matched(matching, operator_key, seconds=300)
    return key, demands


async def test_demands_posted_first_find_the_records_published_after(
    matching: httpx.AsyncClient, posted: tuple[str, list[tuple[dict[str, Any], str]]]
) -> None:
    key, demands = posted
    quality = Quality()
    for demand, demand_id in demands:
        page = await matching.get(
            f"/v1/demands/{demand_id}/matches", params={"page_size": 50}, headers=bearer(key)
        )
        assert page.status_code == 200, page.text
        found = [m["listing"]["identifier"] for m in page.json()["items"] if m["listing"]]
        quality.add(demand, found)
    print("\n" + quality.line("demands first"))
    for miss in quality.misses:
        print("  missed", miss)
    assert quality.in_top5 / quality.demands >= RECALL_AT_5_FLOOR, quality.line("demands first")
