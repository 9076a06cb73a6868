"""Reads from a PostgreSQL streaming replica (issue 21, item 3): a real standby of the test
cluster (`infra.postgres.start_replica`, pg_basebackup as the `postgres` user), started for this
module only. Replay is paused on the standby to show which reads lag (the anonymous catalogue,
the incentives report) and which read their own writes (a caller with a key); then the standby
is stopped and every read is answered by the primary."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from infra.postgres import PostgresHandle, start_replica
from services.listing.dependencies import today_in_china
from shared.reads import ReadSessions
from shared.settings import Settings
from support import (
    bearer,
    eventually,
    free_port,
    new_organization,
    patent,
    publish_listing,
    real_application_numbers,
    terms,
)

SELLER = "北京化工大学"
NUMBERS = real_application_numbers("invention_patent")


@pytest.fixture(scope="module")
def replica(postgres: PostgresHandle, test_root: Path) -> Iterator[PostgresHandle]:
    handle = start_replica(
        postgres, test_root / f"replica-{uuid.uuid4().hex[:8]}", port=free_port(), durable=False
    )
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def settings(settings: Settings, replica: PostgresHandle) -> Settings:
    """The suite's settings, with the module's database on the standby as the read URL (and
    room for a loaded machine's lag: the lag test lowers the bound itself)."""
    database = make_url(settings.database_url).database
    assert database is not None
    return settings.model_copy(
        update={"database_read_url": replica.url(database), "database_read_max_lag_seconds": 60}
    )


@pytest.fixture(scope="module")
async def standby(replica: PostgresHandle) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database="postgres", **replica.connect_kwargs())
    yield connection
    await connection.close()


@pytest.fixture(scope="module")
async def primary(postgres: PostgresHandle) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database="postgres", **postgres.connect_kwargs())
    yield connection
    await connection.close()


@pytest.fixture(scope="module")
async def seller(listing: httpx.AsyncClient, operator_key: str) -> tuple[str, str]:
    return await new_organization(listing, operator_key, name=SELLER)


async def caught_up(primary: asyncpg.Connection, standby: asyncpg.Connection) -> None:
    """Until the standby has replayed everything the primary has written so far."""
    target = await primary.fetchval("SELECT pg_current_wal_lsn()")

    async def replayed() -> bool:
        return bool(await standby.fetchval("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", target))

    await eventually(replayed, "the standby to replay the primary's WAL", seconds=20)


async def pause_replay(standby: asyncpg.Connection) -> None:
    await standby.execute("SELECT pg_wal_replay_pause()")

    async def paused() -> bool:
        state = await standby.fetchval("SELECT pg_get_wal_replay_pause_state()")
        return bool(state == "paused")

    await eventually(paused, "replay to pause", seconds=10)


async def new_published(listing: httpx.AsyncClient, seller_key: str, operator_key: str) -> str:
    body = {"asset": patent(SELLER, next(NUMBERS)), "transaction": terms()}
    return await publish_listing(listing, seller_key, operator_key, body)


def metric(body: str, name: str, labels: str = "") -> float:
    """A sample of /metrics' text (0 when absent)."""
    pattern = rf"^{re.escape(name)}{re.escape(labels)} (\S+)$"
    found = re.search(pattern, body, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def test_a_read_session_runs_on_the_standby_and_never_writes(listing_app: FastAPI) -> None:
    reads: ReadSessions = listing_app.state.reads
    assert reads.configured
    async with reads.replica() as session:
        assert await session.scalar(text("SELECT pg_is_in_recovery()")) is True
    async with reads.primary() as session:
        assert await session.scalar(text("SELECT pg_is_in_recovery()")) is False
        # Read only on the primary too: a route moved onto a read session that writes fails
        # in every test, replica or not.
        with pytest.raises(DBAPIError, match="read-only transaction"):
            await session.execute(text("CREATE TEMPORARY TABLE written (id int)"))


async def test_anonymous_catalogue_reads_lag_and_keyed_reads_see_their_writes(
    listing: httpx.AsyncClient,
    seller: tuple[str, str],
    operator_key: str,
    primary: asyncpg.Connection,
    standby: asyncpg.Connection,
) -> None:
    _, seller_key = seller
    withdrawn_id = await new_published(listing, seller_key, operator_key)
    sold_id = await new_published(listing, seller_key, operator_key)
    own = await listing.get(f"/v1/listings/{withdrawn_id}", headers=bearer(seller_key))
    asset_id = own.json()["asset"]["id"]
    closed_on = today_in_china() - timedelta(days=1)
    year = {"year": closed_on.year}
    await caught_up(primary, standby)
    report_before = await listing.get("/v1/incentives", params=year, headers=bearer(operator_key))
    assert report_before.status_code == 200, report_before.text
    deals_before = report_before.json()["totals"]["deal_count"]

    await pause_replay(standby)
    try:
        # Writes go to the primary while the standby stands still.
        withdrawn = await listing.post(
            f"/v1/listings/{withdrawn_id}/withdraw", headers=bearer(seller_key)
        )
        assert withdrawn.status_code == 200, withdrawn.text
        deal = await listing.post(
            "/v1/deals",
            json={
                "listing_id": sold_id,
                "closed_on": closed_on.isoformat(),
                "buyer_name": "场外买方有限公司",
                "amount": "250000.00",
            },
            headers=bearer(seller_key),
        )
        assert deal.status_code == 201, deal.text
        deal_id = deal.json()["id"]

        # The seller reads its own writes (primary) ...
        own = await listing.get(f"/v1/listings/{withdrawn_id}", headers=bearer(seller_key))
        assert own.json()["status"] == "withdrawn"
        own_deals = await listing.get("/v1/deals", headers=bearer(seller_key))
        assert deal_id in [d["id"] for d in own_deals.json()["items"]]
        # ... the public catalogue shows the standby's state, a moment behind.
        public = await listing.get(f"/v1/listings/{withdrawn_id}")
        assert public.status_code == 200, public.text
        assert public.json()["status"] == "published"
        offers = await listing.get(f"/v1/assets/{asset_id}/offers")
        assert withdrawn_id in [o["listing_id"] for o in offers.json()["items"]], offers.text
        public_deals = await listing.get("/v1/deals")
        assert deal_id not in [d["id"] for d in public_deals.json()["items"]]
        # The operators' report tolerates the lag whoever asks.
        report = await listing.get("/v1/incentives", params=year, headers=bearer(operator_key))
        assert report.json()["totals"]["deal_count"] == deals_before
    finally:
        await standby.execute("SELECT pg_wal_replay_resume()")

    await caught_up(primary, standby)
    public = await listing.get(f"/v1/listings/{withdrawn_id}")
    assert public.json()["status"] == "withdrawn"
    public_deals = await listing.get("/v1/deals")
    assert deal_id in [d["id"] for d in public_deals.json()["items"]]
    offers = await listing.get(f"/v1/assets/{asset_id}/offers")
    assert withdrawn_id not in [o["listing_id"] for o in offers.json()["items"]]
    report = await listing.get("/v1/incentives", params=year, headers=bearer(operator_key))
    assert report.json()["totals"]["deal_count"] == deals_before + 1


async def test_a_standby_too_far_behind_is_left_for_the_primary(
    listing: httpx.AsyncClient,
    listing_app: FastAPI,
    seller: tuple[str, str],
    operator_key: str,
    primary: asyncpg.Connection,
    standby: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, seller_key = seller
    listing_id = await new_published(listing, seller_key, operator_key)
    await caught_up(primary, standby)
    reads: ReadSessions = listing_app.state.reads
    monkeypatch.setattr(reads, "max_lag_seconds", 0.5)
    monkeypatch.setattr(reads, "lag_check_seconds", 0.0)

    await pause_replay(standby)
    try:
        withdrawn = await listing.post(
            f"/v1/listings/{listing_id}/withdraw", headers=bearer(seller_key)
        )
        assert withdrawn.status_code == 200, withdrawn.text

        # Only the primary has the withdrawal: an anonymous read that shows it left the
        # standby, once the standby is more than 0.5 s behind.
        async def from_the_primary() -> bool:
            page = await listing.get(f"/v1/listings/{listing_id}")
            assert page.status_code == 200, page.text
            return bool(page.json()["status"] == "withdrawn")

        await eventually(from_the_primary, "reads to leave the lagging standby", seconds=20)
        metrics = (await listing.get("/metrics")).text
        assert metric(metrics, "ipx_db_read_fallbacks_total", '{reason="behind"}') >= 1
        assert metric(metrics, "ipx_db_replica_lag_seconds") > 0.5
        ready = await listing.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert "behind" in ready.json()["checks"]["database_replica"]
    finally:
        await standby.execute("SELECT pg_wal_replay_resume()")

    await caught_up(primary, standby)
    metrics = (await listing.get("/metrics")).text
    before = metric(metrics, "ipx_db_reads_total", '{server="replica"}')
    page = await listing.get(f"/v1/listings/{listing_id}")
    assert page.json()["status"] == "withdrawn"
    metrics = (await listing.get("/metrics")).text
    assert metric(metrics, "ipx_db_reads_total", '{server="replica"}') == before + 1
    assert metric(metrics, "ipx_db_replica_lag_seconds") <= 0.5


async def test_reads_fall_back_to_the_primary_while_the_standby_is_down(
    listing: httpx.AsyncClient,
    listing_app: FastAPI,
    seller: tuple[str, str],
    operator_key: str,
    replica: PostgresHandle,
    postgres: PostgresHandle,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, seller_key = seller
    listing_id = await new_published(listing, seller_key, operator_key)
    ready = await listing.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["database_replica"] == "ok"

    # Tried again 0.1 s after each failure (5 s in service), so the restart below is seen soon.
    reads: ReadSessions = listing_app.state.reads
    monkeypatch.setattr(reads, "retry_seconds", 0.1)
    replica.stop()
    restarted: PostgresHandle | None = None
    try:
        # Pooled connections to the standby are now closed: every read still answers, from
        # the primary, and the fallback is counted.
        for _ in range(3):
            page = await listing.get(f"/v1/listings/{listing_id}")
            assert page.status_code == 200, page.text
            deals = await listing.get("/v1/deals/stats", params={"group_by": "kind"})
            assert deals.status_code == 200, deals.text
        metrics = (await listing.get("/metrics")).text
        assert metric(metrics, "ipx_db_read_fallbacks_total", '{reason="unreachable"}') >= 6
        assert metric(metrics, "ipx_db_replica_up") == 0
        # Ready still (reads have the primary), and says why the standby is not used.
        ready = await listing.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert "unreachable" in ready.json()["checks"]["database_replica"]

        # Restarted (on its data and port), the standby takes its reads back at the next try.
        restarted = await asyncio.to_thread(
            start_replica, postgres, replica.data_dir.parent, port=replica.port, durable=False
        )
        before = metric(metrics, "ipx_db_reads_total", '{server="replica"}')

        async def on_replica_again() -> bool:
            await listing.get(f"/v1/listings/{listing_id}")
            body = (await listing.get("/metrics")).text
            return metric(body, "ipx_db_reads_total", '{server="replica"}') > before

        await eventually(on_replica_again, "reads to return to the standby", seconds=20)
        ready = await listing.get("/readyz")
        assert ready.json()["checks"]["database_replica"] == "ok"
    finally:
        if restarted is not None:
            restarted.stop()
