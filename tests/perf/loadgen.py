"""A load generator that runs in a process of its own (never in a service's process).

`drive(requests, concurrency=16, warmup=...)` writes the prepared requests to a file, runs this
module as a child process and returns what it measured: `concurrency` clients (one keep-alive
connection each) take the next request from a shared list until it is empty; the first
`warmup` requests are sent and awaited before the clock starts and are not counted.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

Request = dict[str, Any]  # {"method", "url", "headers", "json"}


@dataclass
class LoadResult:
    latencies_ms: list[float]
    elapsed: float
    errors: int
    statuses: dict[str, int]

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.elapsed if self.elapsed else 0.0

    def percentile(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    def summary(self) -> dict[str, Any]:
        return {
            "requests": len(self.latencies_ms),
            "errors": self.errors,
            "statuses": self.statuses,
            "seconds": round(self.elapsed, 3),
            "throughput": round(self.throughput, 1),
            "p50_ms": round(self.percentile(50), 2),
            "p95_ms": round(self.percentile(95), 2),
            "p99_ms": round(self.percentile(99), 2),
        }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    if q == 50:
        return float(statistics.median(values))
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return float(ordered[rank])


def drive(
    requests: list[Request], *, concurrency: int = 16, warmup: int = 0, timeout: float = 600
) -> LoadResult:
    """Send `requests` from a child process; failed requests (4xx, 5xx) are counted as errors."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as spec:
        json.dump(
            {"requests": requests, "concurrency": concurrency, "warmup": warmup}, spec, default=str
        )
    try:
        out = subprocess.run(
            [sys.executable, __file__, spec.name],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    finally:
        Path(spec.name).unlink(missing_ok=True)
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    data = json.loads(out.stdout)
    return LoadResult(data["latencies_ms"], data["elapsed"], data["errors"], data["statuses"])


async def _send(client: httpx.AsyncClient, request: Request) -> tuple[int, float]:
    began = time.perf_counter()
    try:
        response = await client.request(
            request.get("method", "GET"),
            request["url"],
            headers=request.get("headers"),
            json=request.get("json"),
            params=request.get("params"),
        )
        await response.aread()
    except httpx.TransportError as exc:  # counted as an error (status 599), not a crash
        print(f"{request['url']}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 599, (time.perf_counter() - began) * 1000
    return response.status_code, (time.perf_counter() - began) * 1000


async def _run(requests: list[Request], concurrency: int, warmup: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        queue = list(reversed(requests[:warmup]))

        async def worker(out: list[tuple[int, float]]) -> None:
            while queue:
                out.append(await _send(client, queue.pop()))

        warm: list[tuple[int, float]] = []
        await asyncio.gather(*(worker(warm) for _ in range(concurrency)))
        queue = list(reversed(requests[warmup:]))
        measured: list[tuple[int, float]] = []
        began = time.perf_counter()
        await asyncio.gather(*(worker(measured) for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    statuses: dict[str, int] = {}
    for status, _ in measured:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {
        "latencies_ms": [ms for status, ms in measured if status < 400],
        "elapsed": elapsed,
        "errors": sum(1 for status, _ in measured if status >= 400),
        "statuses": statuses,
    }


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    result = asyncio.run(_run(spec["requests"], spec["concurrency"], spec["warmup"]))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
