"""New listings against active demands: the time until matching has produced every match.

    .venv/bin/python tests/perf/bench_matches.py --demands 10000 --listings 1000

Buyers post demands: the real technology demands of tests/data/tech_demands.jsonl, scaled by
varying the budget and the preferred regions (never the text). The first ones go through
matching's API (16 concurrent clients from a separate process; their rate is reported: each
create waits for Meilisearch to index the demand, so it is slow); the rest, up to D, are set up
in bulk with the service's own row model and index document (the Demand table model and
`demand_document`, added to the demands index in batches of 1,000), which is not timed.
Then a seller publishes L listings (the operator's publishing import of real records) and the
clock runs from the import request until

- the indexer's cursor has passed the last listing event and the match queue is empty (the
  indexer queues a page's new listings in the transaction that moves the cursor; the match
  worker stores a batch's matches in the transaction that removes it from the queue, so every
  match of those listings is committed), and
- the match feed (/v1/matches/changes) has been read to its end and stays quiet.

The RSS of each service process is sampled all along (the "steady state under load" figure).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from datasets import import_csv  # tests/perf is this script's folder
from loadgen import Request, drive
from stack import (
    HOLDER,
    Infra,
    RssSampler,
    Stack,
    index_status,
    publish_import,
    signup,
    wait_caught_up,
)

from infra.seed.records import load_records

DEMANDS = Path(__file__).resolve().parents[1] / "data" / "tech_demands.jsonl"
BUYERS = 20
REGIONS: list[list[str]] = [[], ["11"], ["12"], ["13"], ["11", "13"], ["12", "13"]]
MB = 1e6  # the issue states memory targets in MB
QUIET_S = 1.0  # the match feed is "quiet" when it has nothing new for this long


def real_demands() -> list[dict[str, str]]:
    with DEMANDS.open() as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return [
        {"title": r["title"][:300], "text": r["content"].replace("\\n", "\n")[:5000]}
        for r in rows
        if r.get("title") and r.get("content")
    ]


def buyer_names(count: int) -> list[str]:
    """Buyers are companies named in the real records (holders other than our seller)."""
    names: list[str] = []
    for record in load_records():
        for holder in record.asset.holders:
            if holder.name != HOLDER and holder.name not in names and "公司" in holder.name:
                names.append(holder.name)
                if len(names) == count:
                    return names
    raise RuntimeError(f"only {len(names)} company holders in the records")


def demand_requests(stack: Stack, keys: list[str], count: int) -> list[Request]:
    demands = real_demands()
    requests: list[Request] = []
    for i in range(count):
        demand = demands[i % len(demands)]
        copy = i // len(demands)  # the n-th copy of a real demand: another budget and region
        requests.append(
            {
                "method": "POST",
                "url": f"{stack.url('matching')}/v1/demands",
                "headers": {"Authorization": f"Bearer {keys[i % len(keys)]}"},
                "json": {
                    **demand,
                    "regions": REGIONS[copy % len(REGIONS)],
                    "budget_max": f"{200_000 + 100_000 * (copy % 48)}.00",
                },
            }
        )
    return requests


async def bulk_demands(stack: Stack, requests: list[Request], owners: list[str]) -> None:
    """The demands of `requests` written the way matching writes them, in bulk: rows in
    matching.demands and their documents in the demands index."""
    from decimal import Decimal

    from services.matching.demands.index import demand_document, demands_index
    from services.matching.demands.reading import read_demand
    from services.matching.meili import MeiliClient
    from services.matching.models import Demand

    demands = [
        Demand(
            organization_id=uuid.UUID(owners[i % len(owners)]),
            title=r["json"]["title"],
            text=r["json"]["text"],
            regions=r["json"]["regions"],
            budget_max=Decimal(r["json"]["budget_max"]),
            reading=read_demand(r["json"]["title"], r["json"]["text"]).to_json(),
        )
        for i, r in enumerate(requests)
    ]
    conn = await asyncpg.connect(**stack.connect_kwargs())
    try:
        await conn.copy_records_to_table(
            "demands",
            schema_name="matching",
            columns=[
                "id",
                "organization_id",
                "title",
                "text",
                "kinds",
                "ipc_prefixes",
                "transaction_types",
                "regions",
                "budget_max",
                "reading",
                "status",
                "version",
                "created_at",
                "updated_at",
            ],
            records=[
                (
                    d.id,
                    d.organization_id,
                    d.title,
                    d.text,
                    d.kinds,
                    d.ipc_prefixes,
                    d.transaction_types,
                    d.regions,
                    d.budget_max,
                    json.dumps(d.reading, ensure_ascii=False),
                    d.status,
                    d.version,
                    d.created_at,
                    d.updated_at,
                )
                for d in demands
            ],
        )
    finally:
        await conn.close()
    async with httpx.AsyncClient(headers={"Accept-Encoding": "identity"}, timeout=60) as http:
        meili = MeiliClient(http, stack.meili_url, stack.master_key)
        uid = demands_index(stack.index)
        tasks = [
            await meili.add_documents(uid, [demand_document(d) for d in demands[i : i + 1000]])
            for i in range(0, len(demands), 1000)
        ]
        for task in tasks:
            await meili.wait_task(task, seconds=1800)


def read_feed(stack: Stack, after: str) -> tuple[list[dict[str, Any]], str]:
    response = httpx.get(
        f"{stack.url('matching')}/v1/matches/changes",
        params={"after": after, "limit": 1000},
        headers=stack.service,
        timeout=30,
    )
    response.raise_for_status()
    page = response.json()
    return page["events"], page["next_cursor"]


def run(
    stack: Stack, demands: int, listings: int, through_api: int = 160, timeout: float = 600
) -> tuple[dict[str, Any], RssSampler]:
    """Needs listing and matching running on `stack` (gateway too, for the RSS figure).
    `through_api` of the demands are posted through the API (a tenth of them as warm-up)."""
    seller, _ = signup(stack, HOLDER)
    buyers = [signup(stack, name, verified=False) for name in buyer_names(BUYERS)]
    requests = demand_requests(stack, [key for _, key in buyers], demands)
    through_api = min(through_api, demands)
    body = import_csv(listings, HOLDER)
    pids: dict[str, int] = {name: stack.pid(name) for name in stack.services}
    with RssSampler(pids, interval=0.2) as rss:
        posted = drive(requests[:through_api], concurrency=16, warmup=through_api // 10)
        if posted.errors:
            raise RuntimeError(f"demands refused: {posted.statuses}")
        asyncio.run(bulk_demands(stack, requests[through_api:], [org for org, _ in buyers]))
        wait_caught_up(stack, 0)
        # Matches the demands found among listings already there: none (empty catalogue).
        before, cursor = read_feed(stack, "0.0")

        began = time.perf_counter()
        report, import_s = publish_import(stack, body, seller)
        if report["created"] < listings * 0.99:  # the records hold a few rights twice
            raise RuntimeError(f"the import published {report['created']} of {listings}")
        head = index_status(stack)["feed_head"]  # the last listing event is at or before this
        events: list[dict[str, Any]] = []
        caught_up_at = last_event_at = 0.0
        quiet_since = None
        deadline = began + timeout
        while time.perf_counter() < deadline:
            page, cursor = read_feed(stack, cursor)
            now = time.perf_counter()
            if page:
                events += page
                last_event_at = now
                quiet_since = None
                continue
            if not caught_up_at:
                status = index_status(stack)
                if (
                    status["lag_events"] == 0
                    and _at_or_after(status["cursor"], head)
                    and status["matches_pending"] == 0
                ):
                    caught_up_at = time.perf_counter()
            if caught_up_at:
                quiet_since = quiet_since or now
                if now - quiet_since >= QUIET_S:
                    break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"matches not complete after {timeout:.0f} s")
    matched_listings = {e["listing_id"] for e in events}
    all_matches = max(caught_up_at, last_event_at) - began
    return {
        "demands": demands,
        "demands_through_api": posted.summary(),
        "listings": report["created"],
        "publish_import_s": round(import_s, 3),
        "seconds_to_all_matches": round(all_matches, 3),
        "matches": len(events),
        "matches_before_listings": len(before),
        "listings_matched": len(matched_listings),
        "rss_peak_mb": {name: round(rss.peak(name) / MB, 1) for name in pids},
    }, rss


def _at_or_after(cursor: str, head: str) -> bool:
    return tuple(map(int, cursor.split("."))) >= tuple(map(int, head.split(".")))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--demands", type=int, default=10_000)
    parser.add_argument("--listings", type=int, default=1000)
    args = parser.parse_args()
    with Infra.start() as infra, infra.stack() as stack:
        result, _ = run(stack, args.demands, args.listings)
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
