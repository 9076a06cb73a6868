"""Partner push to searchable: the time from a signed push to the gateway until the listing is
found in the catalogue, over N pushes at a given rate (real processes).

    .venv/bin/python tests/perf/bench_freshness.py --pushes 3000 --rate 50

(the issue's figure: 50 pushes a second for 60 s).

Each pushed listing is a real record's title and abstract under a synthesised identifier (valid
check digit); one poller asks the catalogue index for every pushed identifier not yet found,
every 20 ms (the resolution of the figures).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from datasets import synthetic_identifier  # tests/perf is this script's folder
from loadgen import percentile
from stack import Infra, Stack

from infra.seed.records import load_records
from shared.webhooks import signed_headers


def document(n: int, record: Any) -> tuple[str, dict[str, Any]]:
    identifier = synthetic_identifier("invention_patent", 2020, 8_000_000 + n)
    now = datetime.now(UTC).isoformat()
    return identifier, {
        "schema": "ipx.catalogue/v1",
        "offer_id": f"tjipe:L{n}",
        "source": {
            "exchange": "tjipe",
            "listing_id": f"L{n}",
            "url": None,
            "updated_at": now,
            "version": 1,
        },
        "asset": {
            "kind": "invention_patent",
            "identifier": identifier,
            "title": {"zh": record.asset.title.zh, "en": record.asset.title.en},
            "abstract": {"zh": record.asset.abstract.zh},
            "classifications": {"ipc": record.asset.classifications.ipc},
            "holders": [{"name": "天津大学", "region": "120104"}],
            "filed_on": "2020-01-15",
            "legal_status": "granted",
        },
        "transaction": {
            "type": "nonexclusive_license",
            "price": {"mode": "fixed", "amount": "300000.00"},
        },
        "status": "published",
        "published_at": now,
        "seller": "天津大学",
    }


async def push(http: httpx.AsyncClient, gateway: str, secret: str, n: int, record: Any) -> str:
    identifier, doc = document(n, record)
    body = json.dumps(doc, ensure_ascii=False).encode()
    pushed = await http.post(
        f"{gateway}/v1/inbound/tjipe",
        content=body,
        headers=signed_headers(secret, f"msg_{n}", body),
    )
    if pushed.status_code != 202:
        raise RuntimeError(f"push {n} refused: {pushed.status_code} {pushed.text[:300]}")
    return identifier


async def watch(
    http: httpx.AsyncClient,
    stack: Stack,
    pushed_at: dict[str, float],
    found_at: dict[str, float],
    done: asyncio.Event,
) -> None:
    """One poller for every push in flight: a filtered search of the catalogue index every
    20 ms (one poll per push would itself load the services it measures)."""
    url = f"{stack.meili_url}/indexes/{stack.index}/search"
    headers = {"Authorization": f"Bearer {stack.master_key}", "Accept-Encoding": "identity"}
    while not (done.is_set() and len(found_at) == len(pushed_at)):
        waiting = [i for i in pushed_at if i not in found_at]
        if waiting:
            quoted = ", ".join(f'"{i}"' for i in waiting)
            result = await http.post(
                url,
                json={
                    "q": "",
                    "filter": f"identifier IN [{quoted}]",
                    "limit": len(waiting),
                    "attributesToRetrieve": ["identifier"],
                },
                headers=headers,
            )
            result.raise_for_status()
            now = time.perf_counter()
            for hit in result.json()["hits"]:
                found_at.setdefault(hit["identifier"], now)
            stale = [i for i in waiting if i not in found_at and now - pushed_at[i] > 60]
            if stale:
                raise RuntimeError(f"{stale[0]} not searchable 60 s after its push")
        await asyncio.sleep(0.02)


async def push_all(stack: Stack, pushes: int, rate: float) -> list[float]:
    """Pushes at `rate` a second; each one's seconds from push to searchable, in push order."""
    records = [r for r in load_records() if r.asset.title.zh][:pushes]
    gateway = stack.url("gateway")
    async with httpx.AsyncClient(timeout=30) as http:
        partner = await http.post(
            f"{gateway}/v1/partners",
            headers=stack.operator,
            json={
                "code": "tjipe",
                "name": "天津知识产权交易中心",
                "region": "120000",
                "adapter": "canonical",
            },
        )
        partner.raise_for_status()
        secret = partner.json()["inbound_secret"]
        pushed_at: dict[str, float] = {}
        found_at: dict[str, float] = {}
        done = asyncio.Event()
        watcher = asyncio.create_task(watch(http, stack, pushed_at, found_at, done))

        async def one(n: int) -> None:
            identifier, _ = document(n, records[n % len(records)])
            pushed_at[identifier] = time.perf_counter()
            await push(http, gateway, secret, n, records[n % len(records)])

        tasks = []
        began = time.perf_counter()
        for n in range(pushes):
            tasks.append(asyncio.create_task(one(n)))
            # On a schedule, not after a fixed sleep: the rate holds however long a push takes.
            await asyncio.sleep(max(0.0, began + (n + 1) / rate - time.perf_counter()))
            if watcher.done():
                break  # it failed: its exception is raised below
        await asyncio.gather(*tasks)
        done.set()
        await asyncio.wait_for(watcher, timeout=90)
        order = [document(n, records[n % len(records)])[0] for n in range(pushes)]
        return [found_at[i] - pushed_at[i] for i in order]


def run(stack: Stack, pushes: int, rate: float) -> dict[str, Any]:
    """Needs the three services on `stack`. The first tenth of the pushes warms up (not
    counted)."""
    times = asyncio.run(push_all(stack, pushes, rate))
    ms = [t * 1000 for t in times[pushes // 10 :]]
    return {
        "pushes": pushes,
        "measured": len(ms),
        "rate": rate,
        "p50_ms": round(percentile(ms, 50), 1),
        "p95_ms": round(percentile(ms, 95), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "max_ms": round(max(ms), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pushes", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=50.0, help="pushes a second")
    args = parser.parse_args()
    with Infra.start() as infra, infra.stack() as stack:
        result = run(stack, args.pushes, args.rate)
    print(
        f"push to searchable over {result['measured']} pushes at {args.rate:g}/s: "
        f"median {result['p50_ms']:.0f} ms, p95 {result['p95_ms']:.0f} ms, "
        f"max {result['max_ms']:.0f} ms"
    )


if __name__ == "__main__":
    main()
