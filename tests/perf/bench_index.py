"""Indexing N listings from the feed, next to Meilisearch's own time for the same documents.

    .venv/bin/python tests/perf/bench_index.py --rows 100000

Builds N published listings from the real records (scaled copies get synthesised identifiers)
through listing's import API (timed separately: the growth table uses it), then starts matching
as a real process on an empty index and times the indexer from start to caught-up. Baseline in
the same run: the same search documents added straight to another Meilisearch index in batches
of the same size (1,000), waiting for the last task, once the match worker has matched the
listings the indexer queued (it would otherwise run beside the baseline). Also prints matching's
peak RSS while it indexes (sampled every 0.1 s) and how many tasks and documents Meilisearch took
per batch for each index (what bounds the indexer: docs/DECISIONS.md, Matching, "Indexer").
Finally prints five Chinese and English queries with their top hits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import psutil
from datasets import import_csv  # tests/perf is this script's folder
from stack import (
    HOLDER,
    Infra,
    RssSampler,
    Stack,
    publish_import,
    signup,
    wait_caught_up,
    wait_matched,
)

QUERIES = [
    "虚拟现实 头戴显示",
    "神经网络 处理器",
    "语音识别",
    "augmented reality",
    "speech recognition neural network",
]
BATCH = 1000  # the indexer's page size
MB = 1024 * 1024


def cpu_seconds(process: psutil.Process) -> float:
    """CPU time of `process` and its children, ended or running (PostgreSQL's backends)."""
    with process.oneshot():
        times = process.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            child_times = child.cpu_times()
            total += child_times.user + child_times.system
    return float(total)


def postmaster(stack: Stack) -> psutil.Process | None:
    pg = stack.infra.pg
    if pg.process is not None:
        return psutil.Process(pg.process.pid)
    for process in psutil.process_iter(["cmdline"]):
        if str(pg.data_dir) in " ".join(process.info["cmdline"] or []):
            return process
    return None


def cpu_use(stack: Stack) -> dict[str, psutil.Process]:
    """The processes whose CPU time the indexer's run is charged with, by name."""
    processes = {
        "listing": psutil.Process(stack.pid("listing")),
        "matching": psutil.Process(stack.pid("matching")),
        "meilisearch": psutil.Process(stack.infra.meili.process.pid),
    }
    found = postmaster(stack)
    if found is not None:
        processes["postgres"] = found
    return processes


def batch_sizes(meili_url: str, master_key: str, uid: str) -> dict[str, Any]:
    """Meilisearch's document batches of `uid`: how many, and the tasks and documents in each
    (median and largest)."""
    tasks: list[int] = []
    docs: list[int] = []
    params: dict[str, Any] = {"indexUids": uid, "limit": 1000}
    while True:
        response = httpx.get(
            f"{meili_url}/batches",
            params=params,
            headers={"Authorization": f"Bearer {master_key}"},
            timeout=30,
        )
        response.raise_for_status()
        body = response.json()
        for batch in body["results"]:
            stats = batch["stats"]
            if "documentAdditionOrUpdate" in stats.get("types", {}):
                tasks.append(int(stats["totalNbTasks"]))
                docs.append(int(batch["details"].get("receivedDocuments", 0)))
        if body.get("next") is None:
            break
        params["from"] = body["next"]
    return {
        "batches": len(tasks),
        "tasks_median": statistics.median(tasks) if tasks else 0,
        "tasks_max": max(tasks, default=0),
        "docs_median": statistics.median(docs) if docs else 0,
        "docs_max": max(docs, default=0),
    }


async def baseline(
    meili_url: str, master_key: str, documents: list[dict[str, Any]]
) -> tuple[float, dict[str, Any]]:
    from services.matching.catalogue import SETTINGS
    from services.matching.meili import MeiliClient

    async with httpx.AsyncClient(headers={"Accept-Encoding": "identity"}, timeout=60) as client:
        meili = MeiliClient(client, meili_url, master_key)
        uid = f"baseline_{int(time.time() * 1000)}"
        await meili.wait_task(await meili.create_index(uid, "id"))
        await meili.wait_task(await meili.update_settings(uid, SETTINGS))
        began = time.perf_counter()
        tasks = [
            await meili.add_documents(uid, documents[i : i + BATCH])
            for i in range(0, len(documents), BATCH)
        ]
        for task in tasks:
            await meili.wait_task(task, seconds=3600)
        elapsed = time.perf_counter() - began
        batches = batch_sizes(meili_url, master_key, uid)
        await meili.wait_task(await meili.delete_index(uid))
        return elapsed, batches


async def all_documents(meili_url: str, master_key: str, uid: str) -> list[dict[str, Any]]:
    from services.matching.meili import MeiliClient

    async with httpx.AsyncClient(timeout=60) as client:
        meili = MeiliClient(client, meili_url, master_key)
        found: list[dict[str, Any]] = []
        while page := await meili.fetch_documents(uid, None, len(found), 10_000):
            found += page
        return found


def first_addition(stack: Stack) -> float:
    """When Meilisearch enqueued the indexer's first document batch (epoch seconds): the
    indexer's clock starts there, not at the process start (Python start-up is not indexing)."""
    response = httpx.get(
        f"{stack.meili_url}/tasks",
        params={
            "indexUids": stack.index,
            "types": "documentAdditionOrUpdate",
            "reverse": "true",
            "limit": 1,
        },
        headers={"Authorization": f"Bearer {stack.master_key}"},
        timeout=30,
    )
    response.raise_for_status()
    enqueued = response.json()["results"][0]["enqueuedAt"]
    return datetime.fromisoformat(enqueued.replace("Z", "+00:00")).timestamp()


async def last_commit(connect: dict[str, object], uid: str) -> float:
    """When the indexer recorded its last page (epoch seconds): the moment it caught up."""
    conn = await asyncpg.connect(**connect)
    try:
        at = await conn.fetchval(
            "SELECT extract(epoch FROM updated_at) FROM matching.indexer_state "
            "WHERE index_uid = $1",
            uid,
        )
        return float(at)
    finally:
        await conn.close()


def run(stack: Stack, rows: int) -> dict[str, Any]:
    """Needs listing running and matching not yet started on `stack` (it is started here)."""
    seller, _ = signup(stack, HOLDER)
    report, import_s = publish_import(stack, import_csv(rows, HOLDER), seller)
    published = int(report["created"])
    if published < rows * 0.99:  # the records hold a few rights twice (NOTES: data quirks)
        raise RuntimeError(f"the import published {published} of {rows}: {report}")
    launched = time.time()
    stack.start("matching")
    # Polled twice a second, not ten times: each poll is a status request to matching, which
    # asks listing and Meilisearch in turn (8 % of matching's CPU while indexing at 0.1 s). The
    # end is read from the indexer's own record, not from the poll.
    processes = cpu_use(stack)
    cpu_before = {name: cpu_seconds(p) for name, p in processes.items()}
    with RssSampler({"matching": stack.pid("matching")}, interval=0.1) as rss:
        wait_caught_up(stack, published, interval=0.5)
    caught_up = time.time()
    cpu = {name: round(cpu_seconds(p) - cpu_before[name], 1) for name, p in processes.items()}
    batches = batch_sizes(stack.meili_url, stack.master_key, stack.index)
    # The indexer's own time, from its first batch (the rest was the process starting) to its
    # record of the last page.
    indexed = asyncio.run(last_commit(stack.connect_kwargs(), stack.index)) - first_addition(stack)
    # Not timed: the baseline runs on a quiet Meilisearch, not beside the match worker matching
    # the listings just indexed.
    wait_matched(stack)
    docs = asyncio.run(all_documents(stack.meili_url, stack.master_key, stack.index))
    raw, raw_batches = asyncio.run(baseline(stack.meili_url, stack.master_key, docs))
    n = len(docs)
    return {
        "rows": rows,
        "published": published,
        "publish_import_s": round(import_s, 3),
        "launch_to_caught_up_s": round(caught_up - launched, 3),
        "indexer": {
            "seconds": round(indexed, 3),
            "docs_per_s": round(n / indexed, 1),
            "matching_peak_rss_mb": round(rss.peak("matching") / MB, 1),
            "matching_ready_rss_mb": round(rss.samples["matching"][0] / MB, 1),
            # From matching's start to caught up, each process with its children.
            "cpu_seconds": cpu,
            "batches": batches,
        },
        "baseline": {
            "seconds": round(raw, 3),
            "docs_per_s": round(n / raw, 1),
            "batches": raw_batches,
        },
        "documents": n,
        "ratio": round(raw / indexed, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    with Infra.start() as infra, infra.stack(("listing",)) as stack:
        result = run(stack, args.rows)
        print(
            f"listings published through the import: {result['rows']} "
            f"({result['publish_import_s']:.0f} s, not part of the measure)"
        )
        print(
            f"indexer, feed to searchable: {result['documents']:,} documents in "
            f"{result['indexer']['seconds']:.1f} s = {result['indexer']['docs_per_s']:,.0f} "
            "docs/s (includes reading the feed and recording versions)"
        )
        print(
            f"Meilisearch directly, same documents, batches of {BATCH:,}: "
            f"{result['baseline']['seconds']:.1f} s = {result['baseline']['docs_per_s']:,.0f} "
            f"docs/s; indexer/raw throughput ratio {result['ratio']:.2f}"
        )
        print(
            f"matching's peak RSS while indexing: {result['indexer']['matching_peak_rss_mb']} MB "
            f"(ready: {result['indexer']['matching_ready_rss_mb']} MB)"
        )
        cpu = ", ".join(f"{k} {v:.1f}" for k, v in result["indexer"]["cpu_seconds"].items())
        print(f"CPU seconds from matching's start to caught up: {cpu}")
        for name in ("indexer", "baseline"):
            b = result[name]["batches"]
            print(
                f"Meilisearch batches ({name}): {b['batches']}, tasks per batch median "
                f"{b['tasks_median']} max {b['tasks_max']}, documents median {b['docs_median']} "
                f"max {b['docs_max']}"
            )
        for q in QUERIES:
            hits = httpx.get(
                f"{stack.url('matching')}/v1/search",
                params={"q": q, "page_size": 3, "facets": "false"},
            ).json()
            print(f"\nq={q!r}: {hits['total']} results")
            for hit in hits["items"]:
                title = hit["title"]["zh"] or hit["title"]["en"]
                print(f"  {hit['score']:.3f}  {hit['identifier']}  {title}")


if __name__ == "__main__":
    main()
