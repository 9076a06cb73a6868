"""Partner push to searchable: the time from a signed push to the gateway until the listing is
found in the catalogue, over N pushes at a given rate (real processes).

    .venv/bin/python tests/perf/bench_freshness.py --pushes 1000 --rate 20

Each pushed listing is a real record's title and abstract under a synthesised identifier (valid
check digit); after its push, a poller asks the catalogue search for its identifier every 10 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from datasets import synthetic_identifier  # tests/perf is this script's folder

from infra.meili import start_meilisearch
from infra.migrations import upgrade_all
from infra.postgres import start_postgres
from infra.processes import start_service, wait_ready
from infra.seed.records import load_records
from shared.settings import ServiceName
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


async def push_and_wait(
    http: httpx.AsyncClient, gateway: str, matching: str, secret: str, n: int, record: Any
) -> float:
    identifier, doc = document(n, record)
    body = json.dumps(doc, ensure_ascii=False).encode()
    began = time.perf_counter()
    pushed = await http.post(
        f"{gateway}/v1/inbound/tjipe",
        content=body,
        headers=signed_headers(secret, f"msg_{n}", body),
    )
    assert pushed.status_code == 202, pushed.text
    while True:
        found = await http.get(
            f"{matching}/v1/search", params={"q": identifier, "facets": "false", "page_size": 1}
        )
        if found.status_code == 200 and found.json()["items"]:
            return time.perf_counter() - began
        if time.perf_counter() - began > 60:
            raise RuntimeError(f"{identifier} not searchable after 60 s")
        await asyncio.sleep(0.01)


async def run(gateway: str, matching: str, operator: str, pushes: int, rate: float) -> list[float]:
    records = [r for r in load_records() if r.asset.title.zh][:pushes]
    async with httpx.AsyncClient(timeout=30) as http:
        partner = await http.post(
            f"{gateway}/v1/partners",
            headers={"Authorization": f"Bearer {operator}"},
            json={
                "code": "tjipe",
                "name": "天津知识产权交易中心",
                "region": "120000",
                "adapter": "canonical",
            },
        )
        secret = partner.json()["inbound_secret"]
        tasks = []
        for n in range(pushes):
            tasks.append(
                asyncio.create_task(
                    push_and_wait(http, gateway, matching, secret, n, records[n % len(records)])
                )
            )
            await asyncio.sleep(1 / rate)
        return list(await asyncio.gather(*tasks))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pushes", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="pushes a second")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ipx-bench-", dir="/tmp"))
    root.chmod(0o755)
    master = "bench-meili-master-key-000"
    pg = start_postgres(root, port=55451, durable=True)
    meili = start_meilisearch(root / "meili", port=57701, master_key=master)
    services = []
    try:
        url = pg.url("ipx")
        upgrade_all(url)
        ports: dict[ServiceName, int] = {"listing": 58021, "matching": 58022, "gateway": 58023}
        env = {
            "IPX_DATABASE_URL": url,
            "IPX_OPERATOR_KEY": "bench-operator-key-000000",
            "IPX_SERVICE_KEY": "bench-service-key-0000000",
            "IPX_LOG_LEVEL": "WARNING",
            "IPX_ACCESS_LOG": "false",
            "IPX_MEILI_URL": meili.url,
            "IPX_MEILI_MASTER_KEY": master,
            "IPX_RATE_LIMIT_KEY_PER_MINUTE": "1000000",
            "IPX_RATE_LIMIT_ANONYMOUS_PER_MINUTE": "1000000",
            **{f"IPX_{s.upper()}_URL": f"http://127.0.0.1:{p}" for s, p in ports.items()},
        }
        for name, port in ports.items():
            services.append(
                start_service(
                    name,
                    port=port,
                    env=env,
                    log_path=root / f"{name}.log",
                )
            )
        for service in services:
            wait_ready(service)
        times = asyncio.run(
            run(
                "http://127.0.0.1:58023",
                "http://127.0.0.1:58022",
                env["IPX_OPERATOR_KEY"],
                args.pushes,
                args.rate,
            )
        )
        ms = sorted(t * 1000 for t in times)
        p95 = ms[int(len(ms) * 0.95) - 1]
        print(
            f"push to searchable over {len(ms)} pushes at {args.rate:g}/s: "
            f"median {statistics.median(ms):.0f} ms, p95 {p95:.0f} ms, max {ms[-1]:.0f} ms"
        )
    finally:
        for service in services:
            service.stop()
        meili.stop()
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
