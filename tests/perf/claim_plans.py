"""How long one claim of the gateway's queues takes as their history grows (issue 21, item 0):
EXPLAIN ANALYZE of the webhook delivery claim and of the partner inbox claim, each in a
transaction rolled back, over a history of delivered deliveries / applied inbox events.

    .venv/bin/python tests/perf/claim_plans.py --rows 100000 --rows 1000000
    .venv/bin/python tests/perf/claim_plans.py --rows 100000 --before 0006 --git-rev HEAD~1

For each history size: a fresh PostgreSQL database migrated to the gateway's `--before`
revision (default: head), with the claims' SQL of `--git-rev` (default: the working tree);
`SUBSCRIPTIONS` subscriptions over `KEYS` ordering keys (one partner over `KEYS` offers) with
`--rows` finished rows, then `PENDING` due rows on `HOT_KEYS` of the same keys (several per
key: the ordering decides). Two rounds: statistics taken on the empty tables (the trap of
issue 21: autovacuum off, so they stay stale) and fresh ones (ANALYZE after the load). Prints
the median execution time of `RUNS` claims per round and the plan's scans.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:  # run as a script: tests/support.py is a sibling package
    sys.path.insert(0, str(TESTS))

from sqlalchemy import text  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from infra.migrations import alembic_config  # noqa: E402
from infra.postgres import start_postgres  # noqa: E402
from support import free_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SUBSCRIPTIONS = 10
KEYS = 1000
HOT_KEYS = 100
PENDING = 500
RUNS = 3
CEILING = "300s"  # a "before" claim that runs longer is reported as this

LOAD = [
    "ALTER TABLE gateway.deliveries SET (autovacuum_enabled = false)",
    "ALTER TABLE gateway.inbound_events SET (autovacuum_enabled = false)",
    """INSERT INTO gateway.subscriptions (id, organization_id, url, event_types, filter, secret,
           status, created_at)
       SELECT gen_random_uuid(), gen_random_uuid(), 'https://hooks.example/' || n,
              ARRAY['listing.updated'], '{}', 's', 'active', now()
       FROM generate_series(1, CAST(:subscriptions AS integer)) AS n""",
    """INSERT INTO gateway.partners (code, name, region, status, inbound_secret, adapter,
           pull_interval_seconds, pull_failures, created_at, updated_at)
       VALUES ('tjipe', '天津', '120000', 'active', 's', 'canonical', 60, 0, now(), now())""",
    # Key k belongs to subscription k % SUBSCRIPTIONS: history and pending agree.
    """INSERT INTO gateway.deliveries (id, subscription_id, event_id, event_type, ordering_key,
           payload, status, attempts, next_attempt_at, created_at, delivered_at)
       SELECT gen_random_uuid(), (ARRAY(SELECT id FROM gateway.subscriptions ORDER BY url))
                  [1 + (n % :keys) % :subscriptions],
              'evt_' || n, 'listing.updated', 'L' || (n % :keys),
              jsonb_build_object('listing_id', 'L' || (n % :keys), 'title', repeat('专利', 40)),
              CAST(:status AS varchar), 1, now() - interval '1 day', now() - interval '1 day',
              CASE WHEN CAST(:status AS varchar) = 'delivered' THEN now() END
       FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS n""",
    """INSERT INTO gateway.inbound_events (partner_code, event_id, source, received_at,
           source_version, offer_key, document, status, attempts, next_attempt_at, processed_at)
       SELECT 'tjipe', 'evt_' || n, 'push', now() - interval '1 day', n,
              'tjipe:' || (n % :keys), jsonb_build_object('title', repeat('专利', 40)),
              CAST(:status AS varchar), 0, now() - interval '1 day',
              CASE WHEN CAST(:status AS varchar) = 'applied' THEN now() END
       FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS n""",
]


def claims_of(git_rev: str | None) -> tuple[str, str, str]:
    """(webhook CLAIM, its CLAIM_SETTINGS or "", inbox CLAIM) of the working tree or a commit."""
    found: list[str] = []
    for path in (
        "services/gateway/webhooks/repository.py",
        "services/gateway/partners/repository.py",
    ):
        source = (
            (ROOT / path).read_text()
            if git_rev is None
            else subprocess.run(
                ["git", "show", f"{git_rev}:{path}"],
                cwd=ROOT,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        module = types.ModuleType(f"claims_{len(found)}")
        sys.modules[module.__name__] = module  # dataclasses look their module up
        namespace = module.__dict__
        exec(compile(source, path, "exec"), namespace)
        claim = namespace["CLAIM"]
        found.append(claim if isinstance(claim, str) else claim.text)
        if len(found) == 1:
            settings = namespace.get("CLAIM_SETTINGS")
            found.append(settings.text if settings is not None else "")
    webhook, settings, inbox = found
    return webhook, settings, inbox


def scans(plan: dict[str, Any]) -> list[str]:
    """Every scan node of a plan: '<node> on <relation> [using <index>]'."""
    out = []
    if "Relation Name" in plan or "Index Name" in plan:
        where = plan.get("Relation Name", "?")
        using = f" using {plan['Index Name']}" if "Index Name" in plan else ""
        out.append(f"{plan['Node Type']} on {where}{using}")
    for child in plan.get("Plans", []):
        out.extend(scans(child))
    return out


async def explain(conn: AsyncConnection, sql: str, params: Any, settings: str) -> tuple[float, Any]:
    async with conn.begin() as transaction:
        await conn.execute(text(f"SET LOCAL statement_timeout = '{CEILING}'"))
        if settings:
            await conn.execute(text(settings), {"timeout": CEILING})
        try:
            if isinstance(params, dict):
                result = await conn.execute(
                    text("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql), params
                )
                plan = result.scalar_one()
            else:
                raw = await conn.get_raw_connection()
                plan = await raw.driver_connection.fetchval(  # type: ignore[union-attr]
                    "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, *params
                )
        except Exception as exc:  # the ceiling
            await transaction.rollback()
            print(f"      cancelled: {type(exc).__name__}", flush=True)
            return float("inf"), None
        await transaction.rollback()
    top = json.loads(plan)[0] if isinstance(plan, str) else plan[0]
    return top["Execution Time"], top["Plan"]


async def measure(url: str, rows: int, revision: str, git_rev: str | None) -> None:
    from datetime import UTC, datetime, timedelta

    from alembic import command

    webhook, settings, inbox = claims_of(git_rev)
    engine = create_async_engine(url, poolclass=NullPool)

    def upgrade(connection: Any) -> None:
        config = alembic_config("gateway")
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with engine.begin() as conn:
        await conn.run_sync(upgrade)
    async with engine.connect() as conn:
        await conn.execute(text("COMMIT"))
        for table in ("deliveries", "inbound_events", "subscriptions", "partners"):
            await conn.execute(text(f"ANALYZE gateway.{table}"))  # empty: the trap
    async with engine.begin() as conn:
        params = {"subscriptions": SUBSCRIPTIONS, "keys": KEYS}
        for sql in LOAD[:4]:
            await conn.execute(text(sql), params)
        for status, first, last, keys in (
            ("delivered", 1, rows, KEYS),
            ("pending", rows + 1, rows + PENDING, HOT_KEYS),
        ):
            for sql in LOAD[4:]:
                load = {**params, "keys": keys, "first": first, "last": last}
                done = "applied" if "inbound_events" in sql and status == "delivered" else status
                await conn.execute(text(sql), {**load, "status": done})
    async with engine.connect() as conn:
        await conn.execute(text("COMMIT"))
        await conn.execute(text("VACUUM gateway.deliveries, gateway.inbound_events"))
    # VACUUM refreshed reltuples, not the column statistics: still those of the empty tables.
    for stats in ("stale (analyzed empty)", "fresh (ANALYZE after load)"):
        if stats.startswith("fresh"):
            async with engine.connect() as conn:
                await conn.execute(text("COMMIT"))
                await conn.execute(text("ANALYZE gateway.deliveries, gateway.inbound_events"))
        async with engine.connect() as conn:
            for name, sql, args, extra in (
                (
                    "webhook claim",
                    webhook,
                    {"limit": 32, "per_subscription": 8, "lease_seconds": 60},
                    settings,
                ),
                (
                    "inbox claim",
                    inbox,
                    (datetime.now(UTC), 32, datetime.now(UTC) + timedelta(seconds=60)),
                    "",
                ),
            ):
                times = []
                plan = None
                for _ in range(RUNS):
                    elapsed, plan = await explain(conn, sql, args, extra)
                    times.append(elapsed)
                    if elapsed == float("inf"):
                        break
                median = statistics.median(times)
                shown = f">{CEILING}" if median == float("inf") else f"{median:.1f} ms"
                print(f"  {rows:>9,} rows, {stats}: {name} {shown}", flush=True)
                if plan is not None:
                    for scan in scans(plan):
                        print(f"      {scan}")
    await engine.dispose()


async def create_database(admin_url: str, database: str) -> None:
    admin = create_async_engine(admin_url, poolclass=NullPool)
    async with admin.connect() as conn:
        await conn.execute(text("COMMIT"))
        await conn.execute(text(f"CREATE DATABASE {database}"))
    await admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, action="append", help="finished rows (repeatable)")
    parser.add_argument("--before", default="head", help="gateway revision to migrate to")
    parser.add_argument("--git-rev", default=None, help="take the claims' SQL from this commit")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ipx-claims-", dir="/tmp") as folder:
        pg = start_postgres(
            Path(folder) / "pg", port=free_port(), database="postgres", durable=False
        )
        try:
            for n, rows in enumerate(args.rows or [100_000]):
                database = f"claims_{n}"

                asyncio.run(create_database(pg.url("postgres"), database))
                print(f"gateway {args.before}, claims of {args.git_rev or 'the working tree'}:")
                asyncio.run(measure(pg.url(database), rows, args.before, args.git_rev))
        finally:
            pg.stop()


if __name__ == "__main__":
    main()
