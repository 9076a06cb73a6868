"""Indexing N listings from the feed, next to Meilisearch's own time for the same documents.

    .venv/bin/python tests/perf/bench_index.py --rows 100000

Builds N published listings from the real records (scaled copies get synthesised identifiers)
through listing's import API (not timed), then starts matching as a real process on an empty
index and times the indexer from start to caught-up. Baseline in the same run: the same search
documents added straight to another Meilisearch index in batches of the same size (1,000),
waiting for the last task. Finally prints five Chinese and English queries with their top hits.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from datasets import import_csv  # tests/perf is this script's folder

from infra.meili import start_meilisearch
from infra.migrations import upgrade_all
from infra.postgres import start_postgres
from infra.processes import start_service, wait_ready

HOLDER = "北京航空航天大学"
QUERIES = [
    "虚拟现实 头戴显示",
    "神经网络 处理器",
    "语音识别",
    "augmented reality",
    "speech recognition neural network",
]


def wait_caught_up(matching: str, key: str, rows: int, timeout: float = 3600) -> float:
    began = time.perf_counter()
    while time.perf_counter() - began < timeout:
        status = httpx.get(
            f"{matching}/v1/index/status", headers={"Authorization": f"Bearer {key}"}, timeout=10
        ).json()
        if status.get("lag_events") == 0 and (status.get("documents") or 0) >= rows:
            return time.perf_counter() - began
        time.sleep(0.2)
    raise RuntimeError("the index did not catch up")


async def baseline(meili_url: str, master_key: str, documents: list[dict[str, Any]]) -> float:
    from services.matching.catalogue import SETTINGS
    from services.matching.meili import MeiliClient

    async with httpx.AsyncClient(headers={"Accept-Encoding": "identity"}, timeout=60) as client:
        meili = MeiliClient(client, meili_url, master_key)
        await meili.wait_task(await meili.create_index("baseline", "id"))
        await meili.wait_task(await meili.update_settings("baseline", SETTINGS))
        began = time.perf_counter()
        tasks = [
            await meili.add_documents("baseline", documents[i : i + 1000])
            for i in range(0, len(documents), 1000)
        ]
        for task in tasks:
            await meili.wait_task(task, seconds=3600)
        return time.perf_counter() - began


async def all_documents(meili_url: str, master_key: str, uid: str) -> list[dict[str, Any]]:
    from services.matching.meili import MeiliClient

    async with httpx.AsyncClient(timeout=60) as client:
        meili = MeiliClient(client, meili_url, master_key)
        found: list[dict[str, Any]] = []
        while page := await meili.fetch_documents(uid, None, len(found), 10_000):
            found += page
        return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ipx-bench-", dir="/tmp"))
    root.chmod(0o755)
    master = "bench-meili-master-key-000"
    pg = start_postgres(root, port=55450, durable=True)
    meili = start_meilisearch(root / "meili", port=57700, master_key=master)
    services = []
    try:
        url = pg.url("ipx")
        upgrade_all(url)
        env = {
            "IPX_DATABASE_URL": url,
            "IPX_OPERATOR_KEY": "bench-operator-key-000000",
            "IPX_SERVICE_KEY": "bench-service-key-0000000",
            "IPX_LOG_LEVEL": "WARNING",
            "IPX_ACCESS_LOG": "false",
            "IPX_MEILI_URL": meili.url,
            "IPX_MEILI_MASTER_KEY": master,
            "IPX_LISTING_URL": "http://127.0.0.1:58011",
            "IPX_MATCHING_URL": "http://127.0.0.1:58012",
        }
        operator = {"Authorization": f"Bearer {env['IPX_OPERATOR_KEY']}"}
        listing = start_service("listing", port=58011, env=env, log_path=root / "listing.log")
        services.append(listing)
        wait_ready(listing)
        org = httpx.post(
            f"{listing.url}/v1/organizations",
            json={"name": HOLDER, "kind": "university", "region": "110108"},
        ).json()
        began = time.perf_counter()
        report = httpx.post(
            f"{listing.url}/v1/imports",
            content=import_csv(args.rows, HOLDER),
            params={"mode": "publish", "seller_id": org["organization"]["id"]},
            headers={**operator, "Content-Type": "text/csv"},
            timeout=httpx.Timeout(30, read=3600),
        ).json()
        print(
            f"listings published through the import: {report['created']} "
            f"({time.perf_counter() - began:.0f} s, not part of the measure)"
        )

        matching = start_service("matching", port=58012, env=env, log_path=root / "matching.log")
        services.append(matching)
        wait_ready(matching)
        indexed = wait_caught_up(matching.url, env["IPX_OPERATOR_KEY"], report["created"])
        docs = asyncio.run(all_documents(meili.url, master, "catalogue"))
        raw = asyncio.run(baseline(meili.url, master, docs))
        n = len(docs)
        print(
            f"indexer, feed to searchable: {n:,} documents in {indexed:.1f} s = "
            f"{n / indexed:,.0f} docs/s (includes reading the feed and recording versions)"
        )
        print(
            f"Meilisearch directly, same documents, batches of 1,000: {raw:.1f} s = "
            f"{n / raw:,.0f} docs/s; indexer/raw throughput ratio {raw / indexed:.2f}"
        )
        for q in QUERIES:
            hits = httpx.get(
                f"{matching.url}/v1/search", params={"q": q, "page_size": 3, "facets": "false"}
            ).json()
            print(f"\nq={q!r}: {hits['total']} results")
            for hit in hits["items"]:
                title = hit["title"]["zh"] or hit["title"]["en"]
                print(f"  {hit['score']:.3f}  {hit['identifier']}  {title}")
    finally:
        for service in services:
            service.stop()
        meili.stop()
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
