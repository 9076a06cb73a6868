"""The search benchmark's load generator, run as a process of its own (never in a service's
process): raw HTTP/1.1 over keep-alive connections on asyncio (uvloop when installed), each
connection sending the prepared requests in turn and timing each answer. Light on purpose (no
HTTP client library, nothing imported but the standard library): it must not be what limits
the throughput measured.

    python tests/perf/rawload.py SPEC.json   (written by bench_search.load_window)
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit


@dataclass
class Load:
    """What one generator process measured: latencies (s) of the requests that started after
    the warm-up and ended before the deadline."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    # Share of one core the generator itself used in the window: near 1, it is the bottleneck.
    busy: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lowered = head.lower()
    at = lowered.find(b"\r\ncontent-length:")
    if at >= 0:
        end = lowered.index(b"\r\n", at + 2)
        await reader.readexactly(int(lowered[at + 17 : end]))
    elif b"transfer-encoding: chunked" in lowered:
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


async def _connection(
    host: str, port: int, requests: list[bytes], first: int, record: float, end: float, out: Load
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    i = first
    try:
        while (began := time.perf_counter()) < end:
            writer.write(requests[i % len(requests)])
            i += 1
            status = await _read_response(reader)
            done = time.perf_counter()
            if began >= record and done <= end:
                out.latencies.append(done - began)
                out.statuses[status] = out.statuses.get(status, 0) + 1
                if status != 200:
                    out.errors += 1
    finally:
        writer.close()


async def _generate(
    *,
    url: str,
    requests: list[bytes],
    connections: int,
    offset: int,
    start: float,
    warmup: float,
    seconds: float,
) -> Load:
    parts = urlsplit(url)
    # The wall-clock start shared by every generator process, on this process's clock.
    t0 = time.perf_counter() + (start - time.time())
    if time.perf_counter() > t0 + warmup:
        raise SystemExit("the generator started after its warm-up had ended: start it earlier")
    await asyncio.sleep(max(0.0, t0 - time.perf_counter()))
    out = Load()

    async def own_cpu() -> None:
        await asyncio.sleep(max(0.0, t0 + warmup - time.perf_counter()))
        before = time.process_time()
        await asyncio.sleep(seconds)
        out.busy = (time.process_time() - before) / seconds

    await asyncio.gather(
        own_cpu(),
        *(
            _connection(
                parts.hostname or "127.0.0.1",
                parts.port or 80,
                requests,
                (offset + c) * 7,  # each connection starts elsewhere in the query list
                t0 + warmup,
                t0 + warmup + seconds,
                out,
            )
            for c in range(connections)
        ),
    )
    return out


def main(spec_path: str) -> None:
    """The generator process: a spec file in, what it measured (JSON) on stdout."""
    spec = json.loads(Path(spec_path).read_text())
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # the generator only gets slower
        pass
    requests = [r.encode("latin-1") for r in spec.pop("requests")]
    print(json.dumps(asdict(asyncio.run(_generate(requests=requests, **spec)))))


if __name__ == "__main__":
    main(sys.argv[1])
