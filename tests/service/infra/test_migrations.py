"""The three Alembic trees: they match the table models, are idempotent, and gate readiness."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel import SQLModel

import services.gateway.models
import services.listing.models
import services.matching.models  # noqa: F401  (registers every table)
from conftest import janitor
from infra.migrations import SCHEMAS, alembic_config, head_revision, upgrade, upgrade_all
from infra.migrations.env_common import _include_object_in
from infra.postgres import PostgresHandle
from shared.db import ClaimTimedOut, create_sessionmaker
from shared.settings import Settings
from shared.workers import OUTAGES
from support import assert_problem, serve_in_process


def _diff(connection: Connection, schema: str) -> list[object]:
    context = MigrationContext.configure(
        connection,
        opts={
            "include_schemas": True,
            "include_object": _include_object_in(schema),
            "version_table_schema": schema,
            "compare_type": True,
        },
    )
    return list(compare_metadata(context, SQLModel.metadata))


@pytest.mark.parametrize("schema", SCHEMAS)
async def test_models_and_migrations_agree(database_url: str, schema: str) -> None:
    engine = create_async_engine(database_url)
    async with engine.connect() as conn:
        diff = await conn.run_sync(_diff, schema)
    await engine.dispose()
    assert diff == []


@pytest.fixture
def empty_database(postgres: PostgresHandle) -> Iterator[str]:
    name = f"ipx_empty_{uuid.uuid4().hex[:8]}"
    database = janitor(postgres, name)
    database.init()
    yield postgres.url(name)
    database.drop()


async def test_readiness_needs_migrations_and_they_run_twice_harmlessly(
    empty_database: str, settings: Settings
) -> None:
    from services.listing.app import create_app

    unmigrated = settings.model_copy(update={"database_url": empty_database})
    async with serve_in_process(create_app(unmigrated), "http://listing.test") as client:
        body = assert_problem(await client.get("/readyz"), 503)
        assert "run the migrations" in str(body["checks"])
        upgrade_all(empty_database)
        upgrade_all(empty_database)
        ready = await client.get("/readyz")
        assert ready.status_code == 200
    assert head_revision("listing") == "0005"


async def test_unscoped_allow_list_entries_are_carried_to_the_tenants_using_them(
    empty_database: str,
) -> None:
    """Gateway 0006: an old entry becomes one entry per (tenant, port) that used it."""
    org, other = uuid.uuid4(), uuid.uuid4()

    def to(revision: str) -> Callable[[Connection], None]:
        def run(connection: Connection) -> None:
            config = alembic_config("gateway")
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

        return run

    engine = create_async_engine(empty_database)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(to("0005"))
            await conn.execute(
                text(
                    "INSERT INTO gateway.allowed_targets (pattern, created_at) VALUES "
                    "('127.0.0.1', now()), ('10.0.0.0/8', now()), ('*.corp.example', now()), "
                    "('unused.example', now())"
                )
            )
            for organization, url in (
                (org, "http://127.0.0.1:8123/hook"),
                (org, "https://hooks.corp.example/in"),
                (other, "http://10.1.2.3:9000/"),
                (other, "https://public.example/"),  # public: no entry needed
            ):
                await conn.execute(
                    text(
                        "INSERT INTO gateway.subscriptions (id, organization_id, url, "
                        "event_types, filter, secret, status, created_at) VALUES (:id, :org, "
                        ":url, ARRAY['deal.closed'], '{}', 's', 'active', now())"
                    ),
                    {"id": uuid.uuid4(), "org": organization, "url": url},
                )
            await conn.execute(
                text(
                    "INSERT INTO gateway.partners (code, name, region, status, inbound_secret, "
                    "adapter, pull_url, pull_interval_seconds, pull_failures, created_at, "
                    "updated_at) VALUES ('tjipe', '天津', '120000', 'active', 's', 'canonical', "
                    "'http://127.0.0.1:7001/feed', 60, 0, now(), now())"
                )
            )
            await conn.run_sync(to("head"))
            rows = await conn.execute(
                text(
                    "SELECT organization_id, partner_code, pattern, port "
                    "FROM gateway.allowed_targets"
                )
            )
            carried = {tuple(row) for row in rows}
    finally:
        await engine.dispose()
    assert carried == {
        (org, None, "127.0.0.1", 8123),
        (org, None, "*.corp.example", 443),
        (other, None, "10.0.0.0/8", 9000),
        (None, "tjipe", "127.0.0.1", 7001),
    }


# ----------------------------------------------------------------------------- gateway 0007

HISTORY = 50_000  # finished rows: walking them would show in a plan's row counts and its time
SCAN_NODES = {"Index Scan", "Index Only Scan", "Bitmap Index Scan", "Bitmap Heap Scan"}


def _scans(plan: dict[str, Any], table: str) -> list[tuple[str, str | None, int]]:
    """(node, index, rows read over every loop) of each scan of gateway.`table` in an EXPLAIN
    (ANALYZE, FORMAT JSON) plan."""
    found = []
    if plan["Node Type"] == "ModifyTable":
        pass  # the UPDATE itself: its rows come from the scans below
    elif plan.get("Relation Name") == table or str(plan.get("Index Name", "")).startswith(
        (f"ix_gateway_{table}", f"{table}_pkey")
    ):
        rows = plan.get("Actual Rows", 0) * plan.get("Actual Loops", 1)
        found.append((plan["Node Type"], plan.get("Index Name"), rows))
    for child in plan.get("Plans", []):
        found.extend(_scans(child, table))
    return found


async def _explain_analyze(
    engine: AsyncEngine, sql: str, params: Any, settings: str | None = None
) -> dict[str, Any]:
    """The executed plan of one claim, in a transaction rolled back (nothing stays leased)."""
    async with engine.connect() as conn:
        transaction = await conn.begin()
        if settings is not None:
            await conn.execute(text(settings), {"timeout": "5s"})
        if isinstance(params, dict):
            result = await conn.execute(text(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}"), params)
            plan = result.scalar_one()
        else:
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None
            # The driver's own transaction (a savepoint inside one already begun): through the
            # raw connection, the SQLAlchemy one above may not have begun yet, and EXPLAIN
            # ANALYZE of the claim would then commit what it executed.
            inner = driver.transaction()
            await inner.start()
            plan = await driver.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *params)
            await inner.rollback()
        await transaction.rollback()
    top = json.loads(plan) if isinstance(plan, str) else plan
    return cast(dict[str, Any], top[0]["Plan"])


def _assert_pending_only(plan: dict[str, Any], table: str, indexes: set[str], most: int) -> None:
    """Every read of the table is through one of `indexes` (the partial index of pending rows,
    the primary key, or the status-led (status, next_attempt_at) one, whose status = 'pending'
    range holds pending rows only), none reads more than `most` rows: the pending ones, never
    the HISTORY rows."""
    scans = _scans(plan, table)
    assert scans, plan
    for node, index, rows in scans:
        assert node in SCAN_NODES, scans  # no Seq Scan
        assert index is None or index in indexes, scans
        assert rows <= most, scans


async def _gateway_with_stale_statistics(url: str) -> AsyncEngine:
    """The gateway schema at head, its queue tables analyzed while empty and autovacuum off:
    the statistics say "no rows, nothing pending" whatever is loaded next (issue 21's trap)."""
    engine = create_async_engine(url)
    await upgrade(engine, ("gateway",))
    async with engine.connect() as conn:
        await conn.execute(text("COMMIT"))
        for table in ("deliveries", "inbound_events"):
            await conn.execute(text(f"ALTER TABLE gateway.{table} SET (autovacuum_enabled = off)"))
            await conn.execute(text(f"ANALYZE gateway.{table}"))
    return engine


async def _analyze(engine: AsyncEngine, table: str) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("COMMIT"))
        await conn.execute(text(f"ANALYZE gateway.{table}"))


DELIVERY = (
    "INSERT INTO gateway.deliveries (id, subscription_id, event_id, event_type, ordering_key,"
    " payload, status, attempts, next_attempt_at, created_at, lease_until)"
    " VALUES (gen_random_uuid(), :subscription, :event, 'listing.updated', :key, '{}', :status,"
    " 0, now() + make_interval(secs => CAST(:due_in AS double precision)), now(),"
    " CASE WHEN :leased THEN now() + interval '1 minute' END)"
)


async def test_the_delivery_claim_reads_pending_rows_only_whatever_the_statistics(
    empty_database: str,
) -> None:
    """Gateway 0007: 50,000 delivered rows on the keys that have pending ones, and statistics
    of the empty table: the claim reads the pending rows through the partial index and locks
    by primary key, never reading the history; an earlier pending delivery on a key holds back
    a later one, a delivered or given-up one does not; the same plan with fresh statistics."""
    from services.gateway.webhooks import repository as webhooks

    engine = await _gateway_with_stale_statistics(empty_database)
    one, two = uuid.uuid4(), uuid.uuid4()
    try:
        async with engine.begin() as conn:
            for subscription in (one, two):
                await conn.execute(
                    text(
                        "INSERT INTO gateway.subscriptions (id, url, event_types, filter, secret,"
                        " status, created_at) VALUES (:id, 'https://hooks.example/', "
                        " ARRAY['listing.updated'], '{}', 's', 'active', now())"
                    ),
                    {"id": subscription},
                )
            # The history: delivered, on keys K0..K99 of both subscriptions.
            await conn.execute(
                text(
                    "INSERT INTO gateway.deliveries (id, subscription_id, event_id, event_type,"
                    " ordering_key, payload, status, attempts, next_attempt_at, created_at,"
                    " delivered_at) SELECT gen_random_uuid(),"
                    " CASE WHEN n % 2 = 0 THEN CAST(:one AS uuid) ELSE CAST(:two AS uuid) END,"
                    " 'old' || n, 'listing.updated', 'K' || (n / 2 % 100), '{}',"
                    " 'delivered', 1, now() - interval '1 hour', now() - interval '1 hour', now()"
                    " FROM generate_series(1, :history) AS n"
                ),
                {"one": one, "two": two, "history": HISTORY},
            )
            # Subscription two: three pending on each key; only each key's first may go.
            await conn.execute(
                text(
                    "INSERT INTO gateway.deliveries (id, subscription_id, event_id, event_type,"
                    " ordering_key, payload, status, attempts, next_attempt_at, created_at)"
                    " SELECT gen_random_uuid(), :two, 'p' || n, 'listing.updated',"
                    " 'K' || (n % 100), '{}', 'pending', 0, now(), now()"
                    " FROM generate_series(1, 300) AS n"
                ),
                {"two": two},
            )
            # Subscription one, in seq order: K1 twice (the second waits), K2 once (its history
            # does not block), K3 in flight then waiting, K4 retrying later then waiting, K5
            # given up then pending (a given-up one no longer blocks).
            for event, key, status, due_in, leased in (
                ("k1-first", "K1", "pending", 0, False),
                ("k1-second", "K1", "pending", 0, False),
                ("k2", "K2", "pending", 0, False),
                ("k3-in-flight", "K3", "pending", 0, True),
                ("k3-next", "K3", "pending", 0, False),
                ("k4-later", "K4", "pending", 600.0, False),
                ("k4-next", "K4", "pending", 0, False),
                ("k5-given-up", "K5", "failed", 0, False),
                ("k5", "K5", "pending", 0, False),
            ):
                await conn.execute(
                    text(DELIVERY),
                    {
                        "subscription": one,
                        "event": event,
                        "key": key,
                        "status": status,
                        "due_in": due_in,
                        "leased": leased,
                    },
                )
        # Pending rows, and the index entries a claim's leases leave until vacuum: the bound.
        pending = 2 * (300 + 8)
        params = {"limit": 1000, "per_subscription": 1000, "lease_seconds": 60}
        indexes = {
            "ix_gateway_deliveries_pending",
            "ix_gateway_deliveries_pending_due",
            "ix_gateway_deliveries_leased",
            "deliveries_pkey",
        }

        plan = await _explain_analyze(
            engine, webhooks.CLAIM.text, params, webhooks.CLAIM_SETTINGS.text
        )
        _assert_pending_only(plan, "deliveries", indexes, pending)

        async with create_sessionmaker(engine)() as session, session.begin():
            claimed = await webhooks.claim(session, **params)
        by_subscription = {
            s: {c.event_id for c in claimed if c.subscription_id == s} for s in (one, two)
        }
        assert by_subscription[one] == {"k1-first", "k2", "k5"}
        assert by_subscription[two] == {f"p{n}" for n in range(1, 101)}

        await _analyze(engine, "deliveries")
        plan = await _explain_analyze(
            engine, webhooks.CLAIM.text, params, webhooks.CLAIM_SETTINGS.text
        )
        _assert_pending_only(plan, "deliveries", indexes, pending)
    finally:
        await engine.dispose()


INBOUND = (
    "INSERT INTO gateway.inbound_events (partner_code, event_id, source, received_at,"
    " source_version, offer_key, document, status, attempts, next_attempt_at, lease_until)"
    " VALUES ('tjipe', :event, 'push', now(), :version, :offer, '{}', 'pending', 0,"
    " now() + make_interval(secs => CAST(:due_in AS double precision)),"
    " CASE WHEN :leased THEN now() + interval '1 minute' END)"
)


async def test_the_inbox_claim_reads_pending_rows_only_whatever_the_statistics(
    empty_database: str,
) -> None:
    """Gateway 0007, the partner inbox: 50,000 applied events on the offers that have pending
    ones, statistics of the empty table: the claim reads pending rows through the partial
    index, applied versions through theirs, locks by primary key; per offer, the oldest
    pending version goes and none while one is in flight; an older version than the applied
    one is marked stale."""
    from services.gateway.partners.repository import CLAIM, claim_alone

    engine = await _gateway_with_stale_statistics(empty_database)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO gateway.partners (code, name, region, status, inbound_secret,"
                    " adapter, pull_interval_seconds, pull_failures, created_at, updated_at)"
                    " VALUES ('tjipe', '天津', '120000', 'active', 's', 'canonical', 60, 0,"
                    " now(), now())"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO gateway.inbound_events (partner_code, event_id, source,"
                    " received_at, source_version, offer_key, document, status, attempts,"
                    " next_attempt_at, processed_at) SELECT 'tjipe', 'old' || n, 'push',"
                    " now() - interval '1 hour', n, 'tjipe:O' || (n % 100), '{}', 'applied', 1,"
                    " now() - interval '1 hour', now() - interval '1 hour'"
                    " FROM generate_series(1, :history) AS n"
                ),
                {"history": HISTORY},
            )
            # Three newer versions pending on each of the offers O0..O99: the oldest goes.
            await conn.execute(
                text(
                    "INSERT INTO gateway.inbound_events (partner_code, event_id, source,"
                    " received_at, source_version, offer_key, document, status, attempts,"
                    " next_attempt_at) SELECT 'tjipe', 'p' || n, 'push', now(), :history + n,"
                    " 'tjipe:O' || (n % 100), '{}', 'pending', 0, now()"
                    " FROM generate_series(1, 300) AS n"
                ),
                {"history": HISTORY},
            )
            # A new offer N1 in flight with a later version waiting; N2 retrying later with a
            # later version waiting; O7 receives a version older than the applied one: stale.
            for event, offer, version, due_in, leased in (
                ("n1-in-flight", "tjipe:N1", 1, 0, True),
                ("n1-next", "tjipe:N1", 2, 0, False),
                ("n2-later", "tjipe:N2", 1, 600, False),
                ("n2-next", "tjipe:N2", 2, 0, False),
                ("o7-old", "tjipe:O7", 7, 0, False),
            ):
                await conn.execute(
                    text(INBOUND),
                    {
                        "event": event,
                        "offer": offer,
                        "version": version,
                        "due_in": due_in,
                        "leased": leased,
                    },
                )
        pending = 2 * (300 + 5)
        indexes = {
            "ix_gateway_inbound_events_pending",
            "ix_gateway_inbound_events_applied",
            "ix_gateway_inbound_events_due",
            "inbound_events_pkey",
        }
        now = datetime.now(UTC)
        params = (now, 1000, now + timedelta(seconds=60))

        plan = await _explain_analyze(engine, CLAIM, params)
        _assert_pending_only(plan, "inbound_events", indexes, pending)

        claimed, stale = await claim_alone(engine, now, 1000, timedelta(seconds=60))
        assert stale == 1
        # O7's first pending version (p7) waits behind the stale one, marked in this claim.
        assert {c.event_id for c in claimed} == {f"p{n}" for n in range(1, 101)} - {"p7"}

        await _analyze(engine, "inbound_events")
        plan = await _explain_analyze(engine, CLAIM, params)
        _assert_pending_only(plan, "inbound_events", indexes, pending)
    finally:
        await engine.dispose()


async def test_a_claim_held_up_past_its_timeout_fails_as_an_outage(
    empty_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Either claim, kept waiting (here by a table lock), is cancelled after its timeout and
    raises ClaimTimedOut: a TimeoutError, which a worker logs as an outage and retries after its
    back-off. The next claim, once the table is free, works."""
    from services.gateway.partners import repository as partners
    from services.gateway.webhooks import repository as webhooks

    monkeypatch.setattr(webhooks, "CLAIM_TIMEOUT_SECONDS", 0.3)
    monkeypatch.setattr(partners, "CLAIM_TIMEOUT_SECONDS", 0.3)
    assert issubclass(ClaimTimedOut, OUTAGES)
    engine = create_async_engine(empty_database)
    await upgrade(engine, ("gateway",))
    sessions = create_sessionmaker(engine)
    now = datetime.now(UTC)
    lease = {"limit": 8, "per_subscription": 8, "lease_seconds": 60}
    try:
        async with engine.connect() as locker:
            await locker.begin()
            await locker.execute(
                text("LOCK TABLE gateway.deliveries, gateway.inbound_events IN EXCLUSIVE MODE")
            )
            with pytest.raises(ClaimTimedOut):
                async with sessions() as session, session.begin():
                    await webhooks.claim(session, **lease)
            with pytest.raises(ClaimTimedOut):
                await partners.claim_alone(engine, now, 8, timedelta(seconds=60))
            await locker.rollback()
        async with sessions() as session, session.begin():
            assert await webhooks.claim(session, **lease) == []
        assert await partners.claim_alone(engine, now, 8, timedelta(seconds=60)) == ([], 0)
    finally:
        await engine.dispose()
