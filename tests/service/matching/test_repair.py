"""Index status and repair on real records (real PostgreSQL and Meilisearch, listing's real app in
process): the rebuild swaps a complete index in while search keeps answering; the check finds
exactly the damage done to the index and repair undoes it; the index converges to the source
after Meilisearch is killed mid-indexing; two indexers at once share one lease and hand over;
and the `ipx index` commands against real service processes.

Every test has a database of its own (the indexer's records are per database, not per index)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from pytest_postgresql.janitor import DatabaseJanitor

from infra.meili import MeiliHandle, start_meilisearch
from infra.postgres import PostgresHandle
from infra.processes import ServiceProcess, start_service, wait_ready
from infra.seed.demo import demo_import_line
from infra.seed.records import SeedRecord, load_records
from services.matching.catalogue import SEARCHABLE, SETTINGS, search_document
from services.matching.repair import check, rebuild
from shared.settings import Settings
from support import assert_problem, bearer, free_port, wait_indexed

SELLERS = {  # name -> region (each is the first applicant of over 40 real records)
    "中科寒武纪科技股份有限公司": "110108",
    "京东方科技集团股份有限公司": "110105",
    "科大讯飞股份有限公司": "340104",
}
PER_SELLER = 40


@pytest.fixture(scope="module")
def records() -> dict[str, list[SeedRecord]]:
    lawful = [r for r in load_records() if r.asset.legal_status in ("granted", "pending")]
    return {name: [r for r in lawful if r.applicants[0] == name][:PER_SELLER] for name in SELLERS}


@pytest.fixture
def own_database(postgres: PostgresHandle, template_database: str) -> Iterator[str]:
    """A database of this test's own, migrated (a clone of the session's template)."""
    name = f"ipx_{uuid.uuid4().hex[:12]}"
    janitor = DatabaseJanitor(
        user=postgres.user,
        host=postgres.host,
        port=postgres.port,
        dbname=name,
        template_dbname=template_database,
    )
    janitor.init()
    yield postgres.url(name)
    janitor.drop()


@pytest.fixture
def own_settings(settings: Settings, own_database: str) -> Settings:
    return settings.model_copy(
        update={"database_url": own_database, "meili_index": f"repair_{uuid.uuid4().hex[:8]}"}
    )


@dataclass
class Env:
    settings: Settings
    listing_app: FastAPI
    listing: httpx.AsyncClient
    operator_key: str
    service_key: str


@pytest.fixture
async def env(own_settings: Settings, operator_key: str, service_key: str) -> AsyncIterator[Env]:
    from services.listing.app import create_app

    app = create_app(own_settings)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://listing.test") as c:
            yield Env(own_settings, app, c, operator_key, service_key)


@asynccontextmanager
async def matching(
    env: Env, settings: Settings | None = None
) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    """A matching app (with its indexer running) calling listing in process."""
    from services.matching.app import create_app

    app = create_app(
        settings or env.settings, {"http://listing.test": httpx.ASGITransport(env.listing_app)}
    )
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://matching.test") as c:
            yield c, app


async def publish(env: Env, name: str, found: list[SeedRecord], keys: dict[str, str]) -> None:
    """A verified seller and its real records, published by the operator's import (its API key
    goes into `keys` under its id)."""
    signup = await env.listing.post(
        "/v1/organizations", json={"name": name, "kind": "enterprise", "region": SELLERS[name]}
    )
    assert signup.status_code == 201, signup.text
    org_id = signup.json()["organization"]["id"]
    verified = await env.listing.patch(
        f"/v1/organizations/{org_id}", json={"verified": True}, headers=bearer(env.operator_key)
    )
    assert verified.status_code == 200, verified.text
    lines = [demo_import_line(r) for r in found]
    report = await env.listing.post(
        "/v1/imports",
        params={"mode": "publish", "seller_id": org_id},
        content="\n".join(lines).encode(),
        headers={**bearer(env.operator_key), "Content-Type": "application/x-ndjson"},
    )
    assert report.status_code == 201 and report.json()["created"] == len(found), report.text
    keys[str(org_id)] = str(signup.json()["api_key"]["key"])


async def offers(env: Env) -> list[dict[str, Any]]:
    """Every listing as the listing service has it now (GET /v1/offers)."""
    items: list[dict[str, Any]] = []
    token = ""
    while True:
        page = await env.listing.get(
            "/v1/offers",
            params={"page_size": 1000, "page_token": token},
            headers=bearer(env.service_key),
        )
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        token = page.json()["next_page_token"]
        if not token:
            return items


async def published(env: Env, count: int) -> list[dict[str, Any]]:
    """The first `count` published listings (in listing-id order)."""
    found = [i for i in await offers(env) if i["status"] == "published"][:count]
    assert len(found) == count
    return found


async def searchable_source(env: Env) -> dict[str, int]:
    """What the index must hold: searchable listings, id -> version."""
    return {i["listing_id"]: i["version"] for i in await offers(env) if i["status"] in SEARCHABLE}


async def documents(app: FastAPI) -> dict[str, int]:
    """Every document in the app's index: id -> version."""
    found: dict[str, int] = {}
    for document in await app.state.meili.fetch_documents(
        app.state.index_uid, ["id", "version"], 0, 100_000
    ):
        found[document["id"]] = document.get("version", 0)
    return found


async def indexed_records(app: FastAPI) -> dict[str, tuple[int, bool]]:
    from sqlalchemy import text

    async with app.state.sessionmaker() as session:
        rows = await session.execute(
            text("SELECT listing_id, version, searchable FROM matching.indexed_listings")
        )
        return {str(r[0]): (r[1], r[2]) for r in rows}


async def assert_agrees_with_source(env: Env, app: FastAPI) -> None:
    """Index documents and the indexer's records are exactly the source's current state."""
    listings = await offers(env)
    assert await documents(app) == {
        i["listing_id"]: i["version"] for i in listings if i["status"] in SEARCHABLE
    }
    assert await indexed_records(app) == {
        i["listing_id"]: (i["version"], i["status"] in SEARCHABLE) for i in listings
    }


async def converge(env: Env, app: FastAPI, seconds: float) -> dict[str, int]:
    """Until the index holds exactly the source's searchable listings (ids and versions)."""
    deadline = time.monotonic() + seconds
    want: dict[str, int] = {}
    have: dict[str, int] = {}
    while time.monotonic() < deadline:
        want = await searchable_source(env)
        try:
            have = await documents(app)
        except Exception:  # Meilisearch still starting
            have = {}
        if want == have:
            return have
        await asyncio.sleep(0.25)
    raise AssertionError(
        f"no convergence in {seconds:.0f}s: missing {sorted(want.keys() - have.keys())[:5]}, "
        f"extra {sorted(have.keys() - want.keys())[:5]}, "
        f"stale {[k for k in want.keys() & have.keys() if want[k] != have[k]][:5]}"
    )


async def withdraw(env: Env, item: dict[str, Any], keys: dict[str, str]) -> None:
    """The seller withdraws the listing `item` (an offer of GET /v1/offers)."""
    response = await env.listing.post(
        f"/v1/listings/{item['listing_id']}/withdraw", headers=bearer(keys[item["seller_id"]])
    )
    assert response.status_code == 200, response.text


def repair_args(app: FastAPI) -> dict[str, Any]:
    return {
        "settings": app.state.settings,
        "sessionmaker": app.state.sessionmaker,
        "http": app.state.http,
        "meili": app.state.meili,
        "index_uid": app.state.index_uid,
    }


async def lease_held(app: FastAPI) -> bool:
    from sqlalchemy import text

    async with app.state.sessionmaker() as session:
        return bool(
            await session.scalar(
                text(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
                    "AND granted AND objid::bigint = :key AND database = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database()))"
                ),
                {"key": app.state.indexer.lease_key},
            )
        )


async def test_rebuild_swaps_in_a_complete_index_while_search_keeps_answering(
    env: Env, records: dict[str, list[SeedRecord]]
) -> None:
    first, second, third = SELLERS
    async with matching(env) as (client, app):
        keys: dict[str, str] = {}
        for name in (first, second):
            await publish(env, name, records[name], keys)
        for item in await published(env, 4):
            await withdraw(env, item, keys)
        await wait_indexed(client, env.operator_key)
        assert len(await documents(app)) == 2 * PER_SELLER - 4

        totals: list[int] = []
        progress: list[tuple[int, int | None]] = []
        done, snapshot_sent = asyncio.Event(), asyncio.Event()

        def on_progress(indexed: int, total: int | None) -> None:
            progress.append((indexed, total))
            if indexed == total:
                snapshot_sent.set()

        async def search_all_along() -> None:
            while not done.is_set():
                response = await client.get("/v1/search", params={"page_size": 1})
                assert response.status_code == 200, response.text
                totals.append(response.json()["total"])
                await asyncio.sleep(0.005)

        async def change_meanwhile() -> None:
            # Changes while the snapshot is read, then while the feed is caught up, the lease
            # taken and the index swapped: the live indexer writes them into the old index.
            for item in await published(env, 2):
                await withdraw(env, item, keys)
            await snapshot_sent.wait()
            await publish(env, third, records[third], keys)
            for item in await published(env, 2):
                await withdraw(env, item, keys)

        searching = asyncio.create_task(search_all_along())
        try:
            report, _ = await asyncio.gather(
                rebuild(
                    **repair_args(app),
                    page_size=25,
                    progress=on_progress,
                ),
                change_meanwhile(),
            )
        finally:
            done.set()
            await searching
        assert len(totals) > 20 and min(totals) > 0, totals[:50]
        assert report.preempted  # the live indexer handed its lease over and got it back
        assert report.listings >= 2 * PER_SELLER
        assert progress and progress[-1][0] == progress[-1][1]
        assert not await app.state.meili.index_exists(report.temporary_uid)
        live = await app.state.meili.get_settings(app.state.index_uid)
        assert sorted(live["filterableAttributes"]) == sorted(SETTINGS["filterableAttributes"])
        # Right away, every listing the indexer has no events left of is exactly right.
        assert (await check(**repair_args(app), repair=False)).consistent

        await wait_indexed(client, env.operator_key)
        await assert_agrees_with_source(env, app)
        assert len(await documents(app)) == 3 * PER_SELLER - 8
        # The indexer carries on after the rebuild.
        await withdraw(env, next(i for i in await offers(env) if i["status"] == "published"), keys)
        await wait_indexed(client, env.operator_key)
        await assert_agrees_with_source(env, app)


async def test_check_finds_exactly_the_damage_and_repair_undoes_it(
    env: Env, records: dict[str, list[SeedRecord]]
) -> None:
    from sqlalchemy import text

    first, second, _ = SELLERS
    async with matching(env) as (client, app):
        keys: dict[str, str] = {}
        await publish(env, first, records[first], keys)
        await publish(env, second, records[second], keys)
        withdrawn = (await published(env, 1))[0]
        await withdraw(env, withdrawn, keys)
        await wait_indexed(client, env.operator_key)
        clean = await check(**repair_args(app), repair=False)
        assert clean.consistent and clean.pending == 0, clean
        assert (clean.listings, clean.searchable, clean.documents) == (
            2 * PER_SELLER,
            2 * PER_SELLER - 1,
            2 * PER_SELLER - 1,
        )

        meili, uid = app.state.meili, app.state.index_uid
        ids = sorted(await documents(app))
        deleted, old, misrecorded = ids[:3], ids[3], ids[4]
        document = await meili.request("GET", f"/indexes/{uid}/documents/{old}")
        bogus = {"id": "bogus-listing", "version": 1, "status": "published"}
        stranger = {"id": str(uuid.uuid4()), "version": 3, "status": "published"}
        withdrawn_doc = search_document(
            withdrawn["listing_id"],
            withdrawn["asset_id"],
            withdrawn["version"] - 1,
            {**withdrawn["document"], "status": "published"},
        )
        for task in (
            await meili.delete_documents(uid, deleted),
            await meili.add_documents(
                uid, [{**document, "version": document["version"] - 1}, bogus, stranger]
            ),
            await meili.add_documents(uid, [withdrawn_doc]),
        ):
            await meili.wait_task(task)
        async with app.state.sessionmaker() as session, session.begin():
            await session.execute(
                text(
                    "UPDATE matching.indexed_listings SET version = version + 5 "
                    "WHERE listing_id = :id"
                ),
                {"id": misrecorded},
            )

        found = await check(**repair_args(app), repair=False)
        assert sorted(found.missing) == deleted
        assert found.stale == [old]
        assert sorted(found.extra) == sorted([bogus["id"], stranger["id"], withdrawn["listing_id"]])
        assert found.records == [misrecorded]
        assert not found.repaired and not found.consistent

        repaired = await check(**repair_args(app), repair=True)
        assert repaired.repaired and repaired.preempted
        assert (sorted(repaired.missing), repaired.stale, repaired.records) == (
            deleted,
            [old],
            [misrecorded],
        )
        assert sorted(repaired.extra) == sorted(found.extra)
        again = await check(**repair_args(app), repair=False)
        assert again.consistent, again
        await assert_agrees_with_source(env, app)

        # The indexer takes its lease back and carries on from where it was.
        listings = {i["listing_id"]: i for i in await offers(env)}
        for listing_id in (deleted[0], old):
            await withdraw(env, listings[listing_id], keys)
        await wait_indexed(client, env.operator_key)
        await assert_agrees_with_source(env, app)
        assert (await check(**repair_args(app), repair=False)).consistent


async def test_the_index_converges_after_meilisearch_is_killed_during_indexing(
    env: Env,
    records: dict[str, list[SeedRecord]],
    test_root: Path,
    meili_key: str,
) -> None:
    first, second, third = SELLERS
    data_dir = test_root / f"meili-killed-{uuid.uuid4().hex[:6]}"
    port = free_port()
    handle: MeiliHandle | None = start_meilisearch(data_dir, port=port, master_key=meili_key)
    assert handle is not None
    own = env.settings.model_copy(update={"meili_url": handle.url})
    try:
        async with matching(env, own) as (client, app):
            keys: dict[str, str] = {}
            await publish(env, first, records[first], keys)
            await wait_indexed(client, env.operator_key)
            assert len(await documents(app)) == PER_SELLER

            # A batch is published and Meilisearch dies while the indexer waits for it to be
            # indexed (the page is not recorded; Meilisearch still has the task). While it is
            # down, listings of both sellers are withdrawn and a third seller publishes.
            await publish(env, second, records[second], keys)
            await stop_while_indexing(handle, app)
            handle = None
            listings = await published(env, 2 * PER_SELLER)
            one, two = ([i for i in listings if i["seller_id"] == seller] for seller in keys)
            for item in one[:2] + two[:3]:
                await withdraw(env, item, keys)
            await publish(env, third, records[third], keys)

            body = assert_problem(await client.get("/readyz"), 503)
            assert body["checks"]["meilisearch"] != "ok"
            assert body["checks"]["database"] == "ok"
            assert_problem(await client.get("/v1/search", params={"q": "神经网络"}), 503)

            handle = start_meilisearch(data_dir, port=port, master_key=meili_key)
            # The indexer backs off (up to 10 s) and resumes by itself; once it has caught up
            # with the feed, the index is exactly the source: same ids, same versions.
            await wait_indexed(client, env.operator_key, seconds=60)
            have = await converge(env, app, seconds=5)
            assert len(have) == 3 * PER_SELLER - 5
            await assert_agrees_with_source(env, app)
            assert (await client.get("/readyz")).status_code == 200
    finally:
        if handle is not None:
            handle.stop()


async def stop_while_indexing(handle: MeiliHandle, app: FastAPI) -> None:
    """Stop Meilisearch as soon as the indexer has a document task in it. Stopping blocks the
    event loop the indexer shares with us, so it cannot see the task succeed first."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        tasks = await app.state.meili.request(
            "GET",
            "/tasks",
            params={
                "indexUids": app.state.index_uid,
                "types": "documentAdditionOrUpdate",
                "statuses": "enqueued,processing",
                "limit": 1,
            },
        )
        if tasks["results"]:
            handle.stop()
            return
        await asyncio.sleep(0)
    raise AssertionError("the indexer never sent the batch to Meilisearch")


async def test_two_indexers_share_one_lease_and_hand_over(
    env: Env, records: dict[str, list[SeedRecord]]
) -> None:
    first, second, third = SELLERS
    keys: dict[str, str] = {}
    async with contextlib.AsyncExitStack() as outlives_a:
        async with matching(env) as (_, app_a):
            deadline = time.monotonic() + 10
            while not await lease_held(app_a):  # A, alone so far, takes the lease
                assert time.monotonic() < deadline, "the indexer never took its lease"
                await asyncio.sleep(0.05)
            client_b, app_b = await outlives_a.enter_async_context(matching(env))
            # Both run_forever loops run (B waits for the lease); publish and withdraw meanwhile.
            await publish(env, first, records[first], keys)
            await publish(env, second, records[second], keys)
            for item in await published(env, 6):
                await withdraw(env, item, keys)
            await wait_indexed(client_b, env.operator_key)
            await converge(env, app_b, seconds=30)
            await assert_agrees_with_source(env, app_b)
            assert await lease_held(app_a)
        # A shut down and released the lease: B takes over (its loop retries every 2-3 s).
        await publish(env, third, records[third], keys)
        for item in await published(env, 3):
            await withdraw(env, item, keys)
        await wait_indexed(client_b, env.operator_key, seconds=30)
        await converge(env, app_b, seconds=30)
        await assert_agrees_with_source(env, app_b)
        assert await lease_held(app_b)
        assert len(await documents(app_b)) == 3 * PER_SELLER - 9


def test_the_cli_checks_repairs_and_rebuilds(
    own_settings: Settings,
    records: dict[str, list[SeedRecord]],
    test_root: Path,
    meili: MeiliHandle,
    meili_key: str,
    operator_key: str,
    service_key: str,
) -> None:
    ports = {"listing": free_port(), "matching": free_port()}
    environment = {k: v for k, v in os.environ.items() if not k.startswith("IPX_")}
    environment.update(
        {
            "IPX_DATABASE_URL": own_settings.database_url,
            "IPX_MEILI_URL": meili.url,
            "IPX_MEILI_MASTER_KEY": meili_key,
            "IPX_MEILI_INDEX": own_settings.meili_index,
            "IPX_SERVICE_KEY": service_key,
            "IPX_OPERATOR_KEY": operator_key,
            "IPX_LISTING_URL": f"http://127.0.0.1:{ports['listing']}",
            "IPX_MATCHING_URL": f"http://127.0.0.1:{ports['matching']}",
            "IPX_LOG_FORMAT": "text",
            "IPX_ACCESS_LOG": "false",
            "COLUMNS": "200",
        }
    )
    logs = test_root / f"cli-{own_settings.meili_index}"
    services: list[ServiceProcess] = []
    try:
        for name in ("listing", "matching"):
            service = start_service(
                name,
                port=ports[name],
                env=environment,
                log_path=logs / f"{name}.log",
            )
            services.append(service)
            wait_ready(service)
        listing, matching_url = services[0].url, services[1].url
        first = next(iter(SELLERS))
        with httpx.Client(base_url=listing, timeout=30) as client:
            signup = client.post(
                "/v1/organizations",
                json={"name": first, "kind": "enterprise", "region": SELLERS[first]},
            )
            org_id = signup.json()["organization"]["id"]
            client.patch(
                f"/v1/organizations/{org_id}", json={"verified": True}, headers=bearer(operator_key)
            ).raise_for_status()
            lines = [demo_import_line(r) for r in records[first]]
            imported = client.post(
                "/v1/imports",
                params={"mode": "publish", "seller_id": org_id},
                content="\n".join(lines).encode(),
                headers={**bearer(operator_key), "Content-Type": "application/x-ndjson"},
            )
            assert imported.status_code == 201, imported.text
        caught_up(matching_url, operator_key, documents=PER_SELLER)

        def ipx(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "infra.cli", "index", *args],
                env=environment,
                capture_output=True,
                text=True,
                timeout=120,
            )

        clean = ipx("check")
        assert clean.returncode == 0, clean.stdout + clean.stderr
        assert "consistent" in clean.stdout

        meili_http = httpx.Client(base_url=meili.url, headers=bearer(meili_key), timeout=10)
        with meili_http:
            uid = own_settings.meili_index
            docs = meili_http.post(
                f"/indexes/{uid}/documents/fetch", json={"fields": ["id"], "limit": 1000}
            ).json()["results"]
            gone = sorted(d["id"] for d in docs)[0]
            task = meili_http.post(f"/indexes/{uid}/documents/delete-batch", json=[gone]).json()
            for _ in range(100):
                status = meili_http.get(f"/tasks/{task['taskUid']}").json()["status"]
                if status == "succeeded":
                    break
                time.sleep(0.05)

            damaged = ipx("check")
            assert damaged.returncode == 1, damaged.stdout + damaged.stderr
            assert "differs from the source" in damaged.stdout and gone in damaged.stdout

            repaired = ipx("check", "--repair")
            assert repaired.returncode == 0, repaired.stdout + repaired.stderr
            assert "repaired" in repaired.stdout and gone in repaired.stdout

            rebuilt = ipx("rebuild", "--page-size", "10")
            assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
            assert "rebuilt and swapped in" in rebuilt.stdout

            after = ipx("check")
            assert after.returncode == 0, after.stdout + after.stderr
            assert "consistent" in after.stdout
            docs = meili_http.post(
                f"/indexes/{uid}/documents/fetch", json={"fields": ["id"], "limit": 1000}
            ).json()["results"]
            assert len(docs) == PER_SELLER
    finally:
        for service in services:
            service.stop()


def caught_up(matching_url: str, key: str, *, documents: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = httpx.get(f"{matching_url}/v1/index/status", headers=bearer(key), timeout=5)
        if response.status_code == 200:
            status = response.json()
            if status["lag_events"] == 0 and status["documents"] == documents:
                return
        time.sleep(0.2)
    raise AssertionError(f"matching did not catch up: {status}")
