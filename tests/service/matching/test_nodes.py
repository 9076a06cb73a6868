"""The catalogue index on several Meilisearch nodes (services/matching/nodes.py, issue 21 item 2):
a read replica fed from the change feed by an indexer of its own, searches spread over the
nodes that are caught up, a node that falls behind leaves the rotation, and a search survives
the primary node being killed. Two Meilisearch processes of this module's own (the suite's
shared one is never killed)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from infra.meili import MeiliHandle, start_meilisearch
from infra.seed.records import SeedRecord, load_records
from shared.db import create_engine
from shared.settings import Settings
from support import bearer, eventually, free_port, new_organization, publish_records

SELLER = "北京航空航天大学"


@pytest.fixture(scope="module")
def nodes(test_root: Path, meili_key: str) -> Iterator[list[MeiliHandle]]:
    handles = [
        start_meilisearch(test_root / f"meili-node-{n}", port=free_port(), master_key=meili_key)
        for n in range(2)
    ]
    yield handles
    for handle in handles:
        if handle.process.poll() is None:
            handle.stop()


@pytest.fixture(scope="module")
def settings(settings: Settings, nodes: list[MeiliHandle]) -> Settings:
    """The primary node and one read replica, this module's own."""
    return settings.model_copy(
        update={"meili_url": nodes[0].url, "meili_replica_urls": [nodes[1].url]}
    )


@pytest.fixture(scope="module")
def records() -> list[SeedRecord]:
    return [r for r in load_records() if r.asset.holders[0].name == SELLER][:6]


async def documents(handle: MeiliHandle, key: str, uid: str) -> int:
    async with httpx.AsyncClient() as client:
        stats = await client.get(f"{handle.url}/indexes/{uid}/stats", headers=bearer(key))
    return int(stats.json().get("numberOfDocuments", 0)) if stats.status_code == 200 else 0


async def search_key(matching: httpx.AsyncClient, service_key: str) -> dict[str, object]:
    answer = await matching.get("/v1/index/search-key", headers=bearer(service_key))
    assert answer.status_code == 200, answer.text
    found: dict[str, object] = answer.json()
    return found


async def test_a_replica_node_catches_up_and_searches_survive_the_primary(
    matching_settings: Settings,
    nodes: list[MeiliHandle],
    meili_key: str,
    service_key: str,
    operator_key: str,
    listing: httpx.AsyncClient,
    matching_app: FastAPI,
    matching: httpx.AsyncClient,
    gateway: httpx.AsyncClient,
    records: list[SeedRecord],
) -> None:
    uid = matching_settings.meili_index
    seller, _ = await new_organization(
        listing, operator_key, name=SELLER, region="110108", kind="university"
    )
    await publish_records(listing, operator_key, seller, records[:4])

    # The replica's own indexer brings it every document, and it joins the rotation.
    async def both_hold_them() -> bool:
        held = [await documents(node, meili_key, uid) for node in nodes]
        return held == [4, 4]

    await eventually(both_hold_them, "both nodes hold the four listings")

    async def caught_up() -> dict[str, Any] | None:
        status = (await matching.get("/v1/index/status", headers=bearer(operator_key))).json()
        (replica,) = status["replicas"]
        same = replica["in_rotation"] and replica["cursor"] == status["cursor"] != "0.0"
        return replica if same else None

    replica = await eventually(caught_up, "the replica at the primary's cursor")
    assert (await search_key(matching, service_key))["urls"] == [n.url for n in nodes]
    ready = (await matching.get("/readyz")).json()
    assert ready["workers"]["indexer"] == "leader"
    assert ready["workers"][f"indexer@{replica['name']}"] == "leader"

    # Fallen behind (its last indexed event a minute before the primary's): out of rotation.
    engine = create_engine(matching_settings, application_name="test-nodes")
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE matching.indexer_state SET last_event_at = last_event_at"
                    " - interval '60 seconds' WHERE index_uid = :key"
                ),
                {"key": f"{uid}@{replica['name']}"},
            )
    finally:
        await engine.dispose()
    assert (await search_key(matching, service_key))["urls"] == [nodes[0].url]
    # New events: the replica indexes them and comes back.
    await publish_records(listing, operator_key, seller, records[4:5])

    async def back_in_rotation() -> bool:
        urls = (await search_key(matching, service_key))["urls"]
        return isinstance(urls, list) and len(urls) == 2

    await eventually(back_in_rotation, "the replica back in the rotation")
    await eventually(lambda: _holds(nodes[1], meili_key, uid, 5), "the replica has the new listing")

    # Searches go round both nodes; the primary killed, every search is answered by the other.
    identifier = records[0].asset.identifier
    assert (await gateway.get("/v1/catalogue/search", params={"q": identifier})).status_code == 200
    nodes[0].process.kill()
    nodes[0].process.wait(10)
    answers = []
    for _ in range(30):  # 3 s of searches, under the anonymous rate limit
        answer = await gateway.get("/v1/catalogue/search", params={"q": identifier})
        answers.append(answer.status_code)
        if answer.status_code == 200:
            assert answer.json()["items"][0]["identifier"] == identifier
        await asyncio.sleep(0.1)
    assert set(answers) == {200}, answers
    # Matching's own search too.
    for _ in range(5):
        answer = await matching.get("/v1/search", params={"q": identifier})
        assert answer.status_code == 200, answer.text
        assert answer.json()["items"][0]["identifier"] == identifier


async def _holds(node: MeiliHandle, key: str, uid: str, count: int) -> bool:
    return await documents(node, key, uid) == count
