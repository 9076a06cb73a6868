"""The create path as tuned for throughput (issue 6): statements sent straight to the driver
still commit or roll back with the request, a keyed create is exactly once even when raced, the
key and its organisation are read fresh on every request, and the connection pool keeps its
connections (and replaces those PostgreSQL closed) without a ping per checkout."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
from sqlalchemy import event, text

from shared.db import (
    asyncpg_connect_kwargs,
    create_engine,
    create_sessionmaker,
    driver_connection,
    statement_connection,
)
from shared.settings import Settings
from support import (
    assert_problem,
    bearer,
    new_organization,
    patent,
    real_application_numbers,
    terms,
)

SELLER = "北京理工大学"
NUMBERS = real_application_numbers("invention_patent")


@pytest.fixture(scope="module")
async def seller(listing: httpx.AsyncClient, operator_key: str) -> tuple[str, str]:
    return await new_organization(listing, operator_key, name=SELLER)


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(**asyncpg_connect_kwargs(settings.database_url))
    try:
        yield conn
    finally:
        await conn.close()


async def test_a_refused_create_leaves_nothing_behind(
    listing: httpx.AsyncClient, seller: tuple[str, str], db: asyncpg.Connection
) -> None:
    """The key is claimed and the asset inserted before the holder check refuses: both must
    roll back with the request (they would stay, had the driver run them outside the
    transaction), so the same key is free for a corrected body."""
    _, key = seller
    number = next(NUMBERS)
    headers = {**bearer(key), "Idempotency-Key": "refused-then-fixed"}
    someone_elses = {"asset": patent("清华大学", number), "transaction": terms()}
    refused = await listing.post("/v1/listings", json=someone_elses, headers=headers)
    assert assert_problem(refused, 403)["errors"][0]["rule"] == "not_a_holder"
    found = await listing.get(
        "/v1/assets", params={"kind": "invention_patent", "identifier": number}
    )
    assert found.json()["items"] == []
    claims = await db.fetchval(
        "SELECT count(*) FROM listing.idempotency_keys WHERE key = 'refused-then-fixed'"
    )
    assert claims == 0

    ours = {"asset": patent(SELLER, number), "transaction": terms()}
    created = await listing.post("/v1/listings", json=ours, headers=headers)
    assert created.status_code == 201, created.text
    assert "idempotent-replayed" not in created.headers


async def test_raced_keyed_creates_make_one_listing_one_history_entry_one_event(
    listing: httpx.AsyncClient, seller: tuple[str, str], db: asyncpg.Connection
) -> None:
    org_id, key = seller
    body = {"asset": patent(SELLER, next(NUMBERS)), "transaction": terms()}
    headers = {**bearer(key), "Idempotency-Key": "raced-create"}
    responses = await asyncio.gather(
        *(listing.post("/v1/listings", json=body, headers=headers) for _ in range(6))
    )
    assert [r.status_code for r in responses] == [201] * 6, [r.text for r in responses]
    originals = [r for r in responses if "idempotent-replayed" not in r.headers]
    assert len(originals) == 1 and originals[0].headers["etag"] == '"1"'
    first = originals[0].json()
    assert all(r.json() == first for r in responses)
    assert first["seller_id"] == org_id and first["seller_name"] == SELLER
    assert first["status"] == "draft" and first["version"] == 1

    listing_id = UUID(first["id"])
    listings = await db.fetchval(
        "SELECT count(*) FROM listing.listings WHERE asset_id = $1", UUID(first["asset_id"])
    )
    history = await db.fetch(
        "SELECT action, version, actor_roles, actor_key_id, changes"
        " FROM listing.listing_history WHERE listing_id = $1",
        listing_id,
    )
    events = await db.fetch(
        "SELECT type, version, payload::text AS payload FROM listing.change_events"
        " WHERE entity_id = $1",
        listing_id,
    )
    assert listings == 1
    assert [(h["action"], h["version"], h["actor_roles"]) for h in history] == [
        ("created", 1, ["admin"])
    ]
    assert history[0]["actor_key_id"] is not None
    assert [(e["type"], e["version"]) for e in events] == [("listing.created", 1)]
    # The event carries the catalogue document of what the API returned.
    payload: dict[str, Any] = json.loads(events[0]["payload"])
    assert payload["seller_id"] == org_id and payload["asset_id"] == first["asset_id"]
    document = payload["data"]
    assert document["offer_id"] == first["offer_id"]
    assert document["asset"]["identifier"] == first["asset"]["identifier"]
    assert document["transaction"] == first["transaction"]
    assert document["seller"] == SELLER and document["status"] == "draft"

    # What a later read returns is what the create returned.
    read = await listing.get(f"/v1/listings/{listing_id}", headers=bearer(key))
    assert read.json() == first


async def test_a_rename_and_a_revocation_apply_to_the_next_request(
    listing: httpx.AsyncClient, operator_key: str
) -> None:
    """The key and its organisation are read together on every request, never cached."""
    org_id, key = await new_organization(listing, operator_key, name="河北工业大学")
    renamed = await listing.patch(
        f"/v1/organizations/{org_id}", json={"name": "河北工业大学（天津）"}, headers=bearer(key)
    )
    assert renamed.status_code == 200, renamed.text
    body = {"asset": patent("河北工业大学（天津）", next(NUMBERS)), "transaction": terms()}
    created = await listing.post("/v1/listings", json=body, headers=bearer(key))
    assert created.status_code == 201, created.text
    assert created.json()["seller_name"] == "河北工业大学（天津）"

    keys = (await listing.get(f"/v1/organizations/{org_id}/api-keys", headers=bearer(key))).json()[
        "items"
    ]
    revoked = await listing.delete(
        f"/v1/organizations/{org_id}/api-keys/{keys[0]['id']}", headers=bearer(key)
    )
    assert revoked.status_code == 204
    again = {"asset": patent("河北工业大学（天津）", next(NUMBERS)), "transaction": terms()}
    assert_problem(await listing.post("/v1/listings", json=again, headers=bearer(key)), 401)


async def test_the_pool_keeps_its_connections_and_replaces_closed_ones(
    settings: Settings, db: asyncpg.Connection
) -> None:
    name = "ipx-pool-test"
    engine = create_engine(
        settings.model_copy(update={"db_pool_size": 1, "db_max_overflow": 1}),
        application_name=name,
    )
    opened: list[object] = []
    event.listen(engine.sync_engine.pool, "connect", lambda *_: opened.append(1))

    async def two_at_once() -> list[int]:
        async with engine.connect() as a, engine.connect() as b:
            pids = [(await c.execute(text("SELECT pg_backend_pid()"))).scalar_one() for c in (a, b)]
        return pids

    try:
        first = await two_at_once()
        # The second (overflow) connection was kept, not closed on its return.
        assert sorted(await two_at_once()) == sorted(first) and len(opened) == 2

        # PostgreSQL ends both (as on a restart): the next checkouts get new connections
        # instead of failing, once asyncpg has read the server's goodbye.
        await db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            name,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", name
        ):
            assert loop.time() < deadline, "the backends did not end"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # the loop reads the EOF on the idle sockets
        replaced = await two_at_once()
        assert not set(replaced) & set(first) and len(opened) == 4
    finally:
        await engine.dispose()


async def test_metrics_count_requests_by_route_template(listing: httpx.AsyncClient) -> None:
    """The instrumentator remembers each path's template: a path asked twice is counted under
    its template both times, and two routes sharing a path prefix stay apart."""

    def count(text_: str, handler: str, method: str, status: str) -> float:
        labels = f'{{handler="{handler}",method="{method}",status="{status}"}}'
        line = next(
            (x for x in text_.splitlines() if x.startswith(f"http_requests_total{labels}")),
            None,
        )
        return float(line.split()[-1]) if line else 0.0

    before = (await listing.get("/metrics")).text
    missing = "00000000-0000-4000-8000-000000000000"
    for path in (f"/v1/listings/{missing}", f"/v1/listings/{missing}", "/v1/listings/x/history"):
        assert (await listing.get(path)).status_code in (401, 404, 422)
    after = (await listing.get("/metrics")).text
    item, history = "/v1/listings/{listing_id}", "/v1/listings/{listing_id}/history"
    assert count(after, item, "GET", "4xx") - count(before, item, "GET", "4xx") == 2
    assert count(after, history, "GET", "4xx") - count(before, history, "GET", "4xx") == 1
    assert f"/v1/listings/{missing}" not in after


async def test_driver_statements_follow_each_transaction_of_a_session(
    settings: Settings, db: asyncpg.Connection
) -> None:
    """driver_connection remembers the connection for the session's transaction only: after a
    commit, the next statements belong to the next transaction (and roll back with it)."""
    engine = create_engine(settings, application_name="ipx-driver-test")
    owner = uuid4()
    insert = (
        "INSERT INTO listing.idempotency_keys (organization_id, scope, key, request_hash,"
        " status_code, response, created_at) VALUES ($1, 'test', $2, '', 0, '{}', now())"
    )
    try:
        async with create_sessionmaker(engine)() as session:
            await (await driver_connection(session)).execute(insert, owner, "committed")
            await session.commit()
            conn = await driver_connection(session)
            await conn.execute(insert, owner, "rolled-back")
            assert await conn.fetchval("SELECT pg_current_xact_id_if_assigned() IS NOT NULL")
            await session.rollback()
    finally:
        await engine.dispose()
    kept = await db.fetch(
        "SELECT key FROM listing.idempotency_keys WHERE organization_id = $1", owner
    )
    assert [r["key"] for r in kept] == ["committed"]


async def test_a_statement_connection_that_failed_is_not_reused(settings: Settings) -> None:
    """statement_connection hands a failed connection back invalidated (outside a transaction
    the pool's reset sends nothing, so one left mid-operation would fail the next request)."""
    engine = create_engine(
        settings.model_copy(update={"db_pool_size": 1, "db_max_overflow": 0}),
        application_name="ipx-statement-test",
    )
    try:
        async with statement_connection(engine) as connection:
            first = await connection.fetchval("SELECT pg_backend_pid()")
        async with statement_connection(engine) as connection:
            assert await connection.fetchval("SELECT pg_backend_pid()") == first  # pooled
        with pytest.raises(asyncpg.PostgresError):
            async with statement_connection(engine) as connection:
                await connection.execute("SELECT * FROM no_such_table")
        async with statement_connection(engine) as connection:
            assert await connection.fetchval("SELECT pg_backend_pid()") != first
    finally:
        await engine.dispose()
