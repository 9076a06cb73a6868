"""How far behind a streaming replica reads: commit one row at a time on a primary, poll the
standby until the row is there, print the median, p99 and max, and what a refused connect to
a stopped standby costs (the read fallback's price). Not part of `make test`.

    .venv/bin/python tests/perf/replica_lag.py [--rows 200] [--not-durable]

`--not-durable` runs the primary as the test suite does (fsync and synchronous commit off).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infra.postgres import PostgresHandle, start_postgres, start_replica
from support import free_port


async def measure(primary: PostgresHandle, standby: PostgresHandle, rows: int) -> None:
    writer = await asyncpg.connect(database="postgres", **primary.connect_kwargs())
    reader = await asyncpg.connect(database="postgres", **standby.connect_kwargs())
    await writer.execute("CREATE TABLE lag (id int PRIMARY KEY)")
    for _ in range(1000):  # until the standby has the table (10 s at most)
        if await reader.fetchval("SELECT to_regclass('lag') IS NOT NULL"):
            break
        await asyncio.sleep(0.01)
    lags = []
    for i in range(rows):
        await writer.execute("INSERT INTO lag VALUES ($1)", i)
        started = time.perf_counter()
        while not await reader.fetchval("SELECT EXISTS (SELECT 1 FROM lag WHERE id = $1)", i):
            pass
        lags.append((time.perf_counter() - started) * 1000)
    lags.sort()
    print(
        f"visible on the standby after commit ({rows} rows): median "
        f"{statistics.median(lags):.2f} ms, p99 {lags[int(rows * 0.99) - 1]:.2f} ms, "
        f"max {lags[-1]:.2f} ms"
    )
    await reader.close()
    await writer.close()
    standby.stop()
    started = time.perf_counter()
    try:
        await asyncpg.connect(database="postgres", timeout=2, **standby.connect_kwargs())
    except OSError:
        refused = (time.perf_counter() - started) * 1000
        print(f"a connect to the stopped standby refused in {refused:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--not-durable", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ipx-lag-", dir="/tmp"))
    root.chmod(0o755)
    durable = not args.not_durable
    primary = start_postgres(root / "pg", port=free_port(), database="postgres", durable=durable)
    try:
        standby = start_replica(primary, root / "replica", port=free_port(), durable=durable)
        try:
            asyncio.run(measure(primary, standby, args.rows))
        finally:
            standby.stop()
    finally:
        primary.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
