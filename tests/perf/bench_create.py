"""Create listing through the API (POST /v1/listings with an Idempotency-Key and a member's key,
16 concurrent clients), next to a bare FastAPI endpoint doing the same inserts with asyncpg
(tests/perf/bare_create.py, its own uvicorn process) against the same database.

    .venv/bin/python tests/perf/bench_create.py --requests 2000

Every request registers a new right (a real record's title, abstract and IPC codes under a
synthesised identifier) with its listing. The two are run in alternating halves (service,
bare, service, bare) so that noise from the shared machine falls on both alike.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from datasets import market_records, synthetic_identifier  # tests/perf is this script's folder
from loadgen import LoadResult, Request, drive
from stack import Infra, Stack

from infra.processes import stop_process
from infra.seed.demo import demo_terms
from support import bearer, free_port

HOLDER = "北京航空航天大学"
PERF = Path(__file__).resolve().parent


def bodies(n: int, serial_base: int) -> list[dict[str, Any]]:
    records = market_records()
    out = []
    for i in range(n):
        asset = records[i % len(records)].asset
        year = max(asset.filed_on.year if asset.filed_on else 2020, 2004)
        identifier = synthetic_identifier(asset.kind, year, serial_base + i)
        out.append(
            {
                "asset": {
                    "kind": asset.kind,
                    "identifier": identifier,
                    "title": {"zh": asset.title.zh, "en": asset.title.en},
                    "abstract": {"zh": (asset.abstract.zh or "")[:500] or None},
                    "classifications": {"ipc": asset.classifications.ipc},
                    "holders": [{"name": HOLDER, "region": "110108"}],
                    "filed_on": asset.filed_on.isoformat() if asset.filed_on else None,
                    "granted_on": asset.granted_on.isoformat() if asset.granted_on else None,
                    "legal_status": asset.legal_status,
                },
                "transaction": demo_terms(identifier),
            }
        )
    return out


def requests_for(url: str, key: str, items: list[dict[str, Any]]) -> list[Request]:
    return [
        {
            "method": "POST",
            "url": f"{url}/v1/listings",
            "headers": {**bearer(key), "Idempotency-Key": str(uuid.uuid4())},
            "json": body,
        }
        for body in items
    ]


def start_bare(stack: Stack, seller: str) -> tuple[subprocess.Popen[bytes], str]:
    pg = stack.infra.pg
    port = free_port()
    log = stack.log("bare-create").open("ab")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bare_create:app",
            "--app-dir",
            str(PERF),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env={
            "BENCH_PG": f"{pg.host}:{pg.port}:{pg.user}:{stack.database}",
            "BENCH_SELLER": seller,
            "PATH": "/usr/bin:/bin",
        },
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the bare create endpoint did not start")
        try:
            httpx.get(f"{url}/docs", timeout=1)
            return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    stop_process(process)
    raise RuntimeError("the bare create endpoint did not answer in 30 s")


def combine(parts: list[LoadResult]) -> LoadResult:
    statuses: dict[str, int] = {}
    for part in parts:
        for status, count in part.statuses.items():
            statuses[status] = statuses.get(status, 0) + count
    return LoadResult(
        [ms for part in parts for ms in part.latencies_ms],
        sum(part.elapsed for part in parts),
        sum(part.errors for part in parts),
        statuses,
    )


def run(stack: Stack, requests: int, concurrency: int = 16) -> dict[str, Any]:
    """`requests` creates through each endpoint (plus a tenth as warm-up, not counted)."""
    listing = stack.url("listing")
    signup = httpx.post(
        f"{listing}/v1/organizations",
        json={"name": HOLDER, "kind": "university", "region": "110108"},
        timeout=30,
    )
    signup.raise_for_status()
    seller, key = signup.json()["organization"]["id"], signup.json()["api_key"]["key"]
    warmup = max(concurrency, requests // 10)
    half = requests // 2
    service_bodies = bodies(2 * (warmup + half), 9_500_000)
    bare_bodies = bodies(2 * (warmup + half), 9_700_000)
    bare, bare_url = start_bare(stack, seller)
    try:
        service_parts, bare_parts = [], []
        for round_ in range(2):
            chunk = slice(round_ * (warmup + half), (round_ + 1) * (warmup + half))
            service_parts.append(
                drive(
                    requests_for(listing, key, service_bodies[chunk]),
                    concurrency=concurrency,
                    warmup=warmup,
                )
            )
            bare_parts.append(
                drive(
                    requests_for(bare_url, key, bare_bodies[chunk]),
                    concurrency=concurrency,
                    warmup=warmup,
                )
            )
    finally:
        stop_process(bare)
    service, baseline = combine(service_parts), combine(bare_parts)
    if service.errors or baseline.errors:
        raise RuntimeError(f"create failed: service {service.statuses}, bare {baseline.statuses}")
    return {
        "service": service.summary(),
        "baseline": baseline.summary(),
        "ratio": round(service.throughput / baseline.throughput, 3),
        "concurrency": concurrency,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    with Infra.start() as infra, infra.stack(("listing",)) as stack:
        result = run(stack, args.requests)
    for side in ("service", "baseline"):
        s = result[side]
        print(
            f"{side}: {s['throughput']:.0f} creates/s, p50 {s['p50_ms']:.1f} ms, "
            f"p99 {s['p99_ms']:.1f} ms over {s['requests']} requests"
        )
    print(f"throughput ratio service/bare: {result['ratio']:.2f} (target >= 0.7)")


if __name__ == "__main__":
    main()
