"""Webhook delivery as its history grows (issue 21, item 0): deliveries/s from the gateway's
delivery worker to a local subscriber, once the deliveries table holds `--history` delivered
rows, against what the same subscriber takes straight from a load generator in the same run.

    .venv/bin/python tests/perf/bench_deliveries.py --history 0 --history 100000 --history 1000000

On one stack (real listing, matching and gateway processes): an organisation with
SUBSCRIPTIONS subscriptions to one subscriber process (tests/perf/subscriber.py, allow-listed
by the operator as a user would); for each history size, in increasing order, delivered rows
(and their attempts) are added until the table holds that many, then PENDING due deliveries
over KEYS ordering keys (a few per key, so the claim's ordering decides) are inserted in one
transaction and announced with the NOTIFY the fan-out sends; measured: the time until none is
pending. The history is vacuumed and analyzed once loaded, as autovacuum keeps a table in
use (measured right after a bulk load, the rounds ran beside autovacuum's first pass over it).
The baseline: the same signed bodies from the search benchmark's raw load generator over
CONCURRENCY connections (the delivery worker's own limit).
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
from bench_search import load_window  # tests/perf is this script's folder
from stack import Infra, Stack, signup

from infra.blocking import run_blocking
from services.gateway.webhooks.workers import CONCURRENCY, DELIVERY_CHANNEL
from shared.webhooks import signed_headers
from support import allowed_target, bearer, free_port

PERF = Path(__file__).resolve().parent
SUBSCRIPTIONS = 10
PENDING = 5000
FLOOR_PER_S = 500  # issue 21: what the subscriber takes, at least 500/s on this machine
KEYS = 2000
# A listing event's size on the wire (a catalogue document is about this long).
PAYLOAD = (
    "jsonb_build_object('type', 'listing.updated', 'timestamp', now(), 'data', "
    "jsonb_build_object('listing_id', 'L' || (n % {keys}), 'offer_id', 'jjj:L' || n, "
    "'title', repeat('一种基于深度学习的图像识别方法', 8), 'status', 'published'))"
)
HISTORY = f"""
WITH subs AS (SELECT array_agg(id ORDER BY id) AS ids FROM gateway.subscriptions),
added AS (
    INSERT INTO gateway.deliveries (id, subscription_id, event_id, event_type, ordering_key,
        payload, status, attempts, next_attempt_at, created_at, delivered_at,
        last_status_code)
    SELECT gen_random_uuid(), subs.ids[1 + n % cardinality(subs.ids)], 'evt_history_' || n,
        'listing.updated', 'L' || (n % {KEYS}), {PAYLOAD.format(keys=KEYS)}, 'delivered', 1,
        now(), now(), now(), 204
    FROM generate_series(CAST($1 AS bigint), CAST($2 AS bigint)) AS n, subs
    RETURNING id
)
INSERT INTO gateway.delivery_attempts (delivery_id, at, status_code, latency_ms)
SELECT id, now(), 204, 3.0 FROM added
"""
PENDING_ROWS = f"""
WITH subs AS (SELECT array_agg(id ORDER BY id) AS ids FROM gateway.subscriptions)
INSERT INTO gateway.deliveries (id, subscription_id, event_id, event_type, ordering_key,
    payload, status, attempts, next_attempt_at, created_at)
SELECT gen_random_uuid(), subs.ids[1 + n % cardinality(subs.ids)], $1 || n, 'listing.updated',
    'L' || (n % {KEYS}), {PAYLOAD.format(keys=KEYS)}, 'pending', 0, now(), now()
FROM generate_series(1, CAST($2 AS bigint)) AS n, subs
"""


def start_subscriber() -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(PERF / "subscriber.py"), str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        raise RuntimeError("the subscriber did not start")
    return process, f"http://127.0.0.1:{port}/hooks/ipx"


def subscribe(stack: Stack, url: str) -> list[str]:
    """The organisation's subscriptions to `url` (allow-listed for it first): their secrets."""
    org_id, key = signup(stack)
    gateway = stack.url("gateway")
    httpx.post(
        f"{gateway}/v1/webhook-targets",
        json=allowed_target(url, organization_id=org_id),
        headers=stack.operator,
        timeout=30,
    ).raise_for_status()
    secrets = []
    for _ in range(SUBSCRIPTIONS):
        created = httpx.post(
            f"{gateway}/v1/subscriptions",
            json={"url": url, "event_types": ["listing.updated"]},
            headers=bearer(key),
            timeout=30,
        )
        created.raise_for_status()
        secrets.append(created.json()["secret"])
    return secrets


async def _execute(stack: Stack, *statements: tuple[str, tuple[Any, ...]]) -> None:
    conn = await asyncpg.connect(**stack.connect_kwargs())
    try:
        async with conn.transaction():
            for sql, args in statements:
                await conn.execute(sql, *args)
    finally:
        await conn.close()


async def _vacuum(stack: Stack) -> None:
    conn = await asyncpg.connect(**stack.connect_kwargs())
    try:
        await conn.execute("VACUUM (ANALYZE) gateway.deliveries, gateway.delivery_attempts")
    finally:
        await conn.close()


async def _fetchval(stack: Stack, sql: str) -> Any:
    conn = await asyncpg.connect(**stack.connect_kwargs())
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def grow_history(stack: Stack, have: int, want: int, chunk: int = 200_000) -> float:
    """Delivered rows (with their attempts) from `have` up to `want`; the seconds it took."""
    began = time.perf_counter()
    for first in range(have + 1, want + 1, chunk):
        rows = (HISTORY, (first, min(want, first + chunk - 1)))
        run_blocking(functools.partial(_execute, stack, rows))
    if want > have:  # the table as autovacuum keeps it, not mid-way through its first pass
        run_blocking(functools.partial(_vacuum, stack))
    return time.perf_counter() - began


def drain(stack: Stack, round_name: str, pending: int, timeout: float = 1800) -> dict[str, Any]:
    """Queue `pending` due deliveries at once and time them until none is pending."""
    run_blocking(
        lambda: _execute(
            stack,
            (PENDING_ROWS, (f"evt_{round_name}_", pending)),
            (f"NOTIFY {DELIVERY_CHANNEL}", ()),
        )
    )
    began = time.perf_counter()
    while True:
        left = int(
            run_blocking(
                lambda: _fetchval(
                    stack, "SELECT count(*) FROM gateway.deliveries WHERE status = 'pending'"
                )
            )
        )
        if not left:
            break
        if time.perf_counter() - began > timeout:
            raise RuntimeError(f"{left} deliveries still pending after {timeout:.0f} s")
        time.sleep(0.05)
    elapsed = time.perf_counter() - began
    failed = int(
        run_blocking(
            lambda: _fetchval(
                stack, "SELECT count(*) FROM gateway.deliveries WHERE status <> 'delivered'"
            )
        )
    )
    return {"seconds": round(elapsed, 2), "per_s": round(pending / elapsed, 1), "failed": failed}


def baseline(url: str, secret: str, seconds: float = 5.0) -> dict[str, Any]:
    """The subscriber's ceiling: signed bodies of the same size from the search benchmark's
    raw load generator over CONCURRENCY keep-alive connections (the worker's own limit)."""
    parts = urlsplit(url)
    body = json.dumps(
        {"type": "listing.updated", "data": {"title": "一种基于深度学习的图像识别方法" * 8}},
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()
    requests = []
    for n in range(64):
        headers = signed_headers(secret, f"evt_raw_{n}", body)
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        requests.append(
            f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n{head}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
    window = load_window(url, requests, connections=CONCURRENCY, warmup=1.0, seconds=seconds)
    return {
        "per_s": round(len(window["latencies"]) / seconds, 1),
        "errors": window["errors"],
        "generator_busy": round(window["busy"], 2),
    }


def run(stack: Stack, histories: list[int], pending: int = PENDING) -> dict[str, Any]:
    subscriber, url = start_subscriber()
    try:
        secrets = subscribe(stack, url)
        warm = drain(stack, "warmup", 500)  # connections and caches, not counted
        rounds = []
        have = 0
        for history in sorted(histories):
            loaded = grow_history(stack, have, history)
            have = max(have, history)
            rows = int(
                run_blocking(lambda: _fetchval(stack, "SELECT count(*) FROM gateway.deliveries"))
            )
            raw = baseline(url, secrets[0])
            measured = drain(stack, f"h{history}", pending)
            ratio = round(measured["per_s"] / raw["per_s"], 3) if raw["per_s"] else None
            rounds.append(
                {
                    "history": history,
                    "rows": rows,
                    "load_s": round(loaded, 1),
                    "gateway": measured,
                    "subscriber": raw,
                    "ratio": ratio,
                }
            )
            print(
                f"  history {history:>9,} ({rows:,} rows): {measured['per_s']:,.0f} deliveries/s"
                f" ({pending:,} in {measured['seconds']} s, {measured['failed']} not delivered);"
                f" subscriber {raw['per_s']:,.0f}/s: {ratio}x",
                flush=True,
            )
        return {"pending": pending, "warmup": warm, "rounds": rounds}
    finally:
        subscriber.terminate()
        subscriber.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, action="append", help="repeatable")
    parser.add_argument("--pending", type=int, default=PENDING)
    args = parser.parse_args()
    histories = args.history or [0, 100_000]
    with Infra.start() as infra, infra.stack(("listing", "matching", "gateway")) as stack:
        result = run(stack, histories, args.pending)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
