"""Bulk import of N rows through the listing service (a real process), with its peak RSS.

    .venv/bin/python tests/perf/bench_import.py --rows 100000

Prints rows/s for the first import and for a re-import of the same file (all unchanged), the
service's RSS before and its peak during the import (sampled every 50 ms), and PostgreSQL's COPY
of the same rows into a bare table as the raw baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import asyncpg
import httpx
import psutil
from datasets import import_csv  # tests/perf is this script's folder

from infra.migrations import upgrade_all
from infra.postgres import start_postgres
from infra.processes import start_service, wait_ready

HOLDER = "北京航空航天大学"


class PeakRss:
    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = self.process.memory_info().rss
            self.samples.append(rss)
            self.peak = max(self.peak, rss)
            time.sleep(0.05)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def copy_baseline(dsn_kwargs: dict[str, object], body: bytes) -> float:
    """PostgreSQL COPY of the same rows into a bare table (no validation, no index)."""
    rows = list(csv.reader(io.StringIO(body.decode())))[1:]
    conn = await asyncpg.connect(database="ipx", **dsn_kwargs)
    try:
        columns = ", ".join(f"c{i} text" for i in range(len(rows[0])))
        await conn.execute(f"CREATE TEMP TABLE raw_import ({columns})")
        began = time.perf_counter()
        await conn.copy_records_to_table("raw_import", records=rows)
        return time.perf_counter() - began
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ipx-bench-", dir="/tmp"))
    root.chmod(0o755)
    pg = start_postgres(root, port=55440, durable=True)
    try:
        url = pg.url("ipx")
        upgrade_all(url)
        env = {
            "IPX_DATABASE_URL": url,
            "IPX_OPERATOR_KEY": "bench-operator-key-000000",
            "IPX_SERVICE_KEY": "bench-service-key-0000000",
            "IPX_LOG_LEVEL": "WARNING",
            "IPX_ACCESS_LOG": "false",
            "IPX_MEILI_URL": "http://127.0.0.1:9",
        }
        service = start_service("listing", port=58001, env=env, log_path=root / "listing.log")
        try:
            wait_ready(service)
            operator = {"Authorization": f"Bearer {env['IPX_OPERATOR_KEY']}"}
            org = httpx.post(
                f"{service.url}/v1/organizations",
                json={"name": HOLDER, "kind": "university", "region": "110108"},
            ).json()
            key = {"Authorization": f"Bearer {org['api_key']['key']}"}
            httpx.patch(
                f"{service.url}/v1/organizations/{org['organization']['id']}",
                json={"verified": True},
                headers=operator,
            )
            body = import_csv(args.rows, HOLDER)
            print(f"file: {args.rows} rows, {len(body) / 1e6:.1f} MB (CSV)")
            idle = psutil.Process(service.process.pid).memory_info().rss
            results = []
            for label in ("first import", "re-import (unchanged)"):
                with PeakRss(service.process.pid) as rss:
                    began = time.perf_counter()
                    report = httpx.post(
                        f"{service.url}/v1/imports",
                        content=body,
                        headers={**key, "Content-Type": "text/csv"},
                        timeout=httpx.Timeout(30, read=3600),
                    ).json()
                    elapsed = time.perf_counter() - began
                results.append((label, elapsed, rss.peak, report))
                print(
                    f"{label}: {args.rows / elapsed:,.0f} rows/s ({elapsed:.1f} s); created "
                    f"{report['created']}, unchanged {report['unchanged']}, rejected "
                    f"{report['rejected']}; RSS idle {idle / 2**20:.0f} MiB, peak "
                    f"{rss.peak / 2**20:.0f} MiB"
                )
            copy_s = asyncio.run(copy_baseline(pg.connect_kwargs(), body))
            print(
                f"baseline COPY of the same rows: {args.rows / copy_s:,.0f} rows/s "
                f"({copy_s:.2f} s); import/COPY throughput ratio "
                f"{(args.rows / results[0][1]) / (args.rows / copy_s):.3f}"
            )
        finally:
            service.stop()
    finally:
        pg.stop()
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
