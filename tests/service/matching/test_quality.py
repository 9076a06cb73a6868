"""Matching quality, measured: demands written the way buyers write them (tests/data/matching/,
labelled before the reading of demands was built) posted against the demo catalogue (the 1,190
real records `make run` seeds), and the 371 real enterprise demands against the same catalogue.

Prints recall@5 (an expected record among the first five matches), expected-first and the
share with any match, per set and per style; fails below the floors (raise them as matching
improves, never edit the sets to fit the code).
"""

from __future__ import annotations

import json
import statistics
from typing import Any

import httpx
import pytest

from infra.seed.demo import demo_catalogue, organization_kind
from matching_quality import HOLDOUT, LABELLED, REAL, Quality, labelled
from support import bearer, new_organization, publish_records, wait_indexed

RECALL_AT_5_FLOOR = 0.9
FIRST_FLOOR = 0.8
ANY_MATCH_FLOOR = 0.95


@pytest.fixture(scope="module")
async def buyer(listing: httpx.AsyncClient, matching: httpx.AsyncClient, operator_key: str) -> str:
    """The demo catalogue, published as the demo seeds it; returns a buyer's key."""
    for (name, region), records in demo_catalogue():
        seller_id, _ = await new_organization(
            listing, operator_key, name=name, kind=organization_kind(name), region=region
        )
        await publish_records(listing, operator_key, seller_id, records)
    await wait_indexed(matching, operator_key, seconds=180)
    _, key = await new_organization(
        listing, operator_key, name="天津市某智能装备有限公司", kind="enterprise", region="120100"
    )
    return key


async def matched_identifiers(
    matching: httpx.AsyncClient, key: str, demand: dict[str, Any]
) -> list[str]:
    created = await matching.post("/v1/demands", json=demand, headers=bearer(key))
    assert created.status_code == 201, created.text
    page = await matching.get(
        f"/v1/demands/{created.json()['id']}/matches",
        params={"page_size": 50},
        headers=bearer(key),
    )
    assert page.status_code == 200, page.text
    return [m["listing"]["identifier"] for m in page.json()["items"] if m["listing"]]


async def quality_of(
    matching: httpx.AsyncClient, key: str, demands: list[dict[str, Any]]
) -> Quality:
    quality = Quality()
    for demand in demands:
        found = await matched_identifiers(
            matching, key, {"title": demand["title"], "text": demand["text"]}
        )
        quality.add(demand, found)
    return quality


async def test_buyers_demands_find_the_record_they_describe(
    matching: httpx.AsyncClient, buyer: str
) -> None:
    for name, path in (("labelled", LABELLED), ("held out", HOLDOUT)):
        demands = labelled(path)
        quality = await quality_of(matching, buyer, demands)
        print("\n" + quality.line(name))
        for miss in quality.misses:
            print("  missed", miss)
        assert quality.demands >= 30
        assert quality.in_top5 / quality.demands >= RECALL_AT_5_FLOOR, quality.line(name)
        assert quality.first / quality.demands >= FIRST_FLOOR, quality.line(name)
        assert quality.any_match / quality.demands >= ANY_MATCH_FLOOR, quality.line(name)


async def test_real_enterprise_demands_against_the_demo_catalogue(
    matching: httpx.AsyncClient, buyer: str
) -> None:
    """No floor: the real demands (mostly Henan industry) rarely concern the demo catalogue's
    VR, speech and chip records; printed to watch precision (a loose matcher matches them all)."""
    counts = []
    for line in REAL.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        demand = {
            "title": record["title"][:300],
            "text": record["content"].replace("\\n", "\n")[:5000] or record["title"],
        }
        created = await matching.post("/v1/demands", json=demand, headers=bearer(buyer))
        if created.status_code == 422:
            counts.append(-1)
            continue
        assert created.status_code == 201, created.text
        counts.append(int(created.headers["x-matches"]))
    matched = [c for c in counts if c > 0]
    print(
        f"\nreal demands: {len(counts)}, refused {counts.count(-1)}, with a match "
        f"{len(matched)}, median matches of those {statistics.median(matched) if matched else 0}"
        f", median of all {statistics.median(max(c, 0) for c in counts)}"
    )
    assert counts.count(-1) == 0  # every real demand names something technical
