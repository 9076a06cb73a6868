"""What shared rate limits cost a request (issue 21, item 1): the middleware's decision for one
client, per process (no store) against the shared bucket in PostgreSQL (the gateway's
SharedBuckets on a migrated database), with a share of the limit taken at a time (the default,
1/GRANT_SHARE) and with one token at a time (a round trip every request: the worst case).

    .venv/bin/python tests/perf/bench_ratelimit.py --requests 20000

Prints the median of five rounds of microseconds per decision, sequential, in one process.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from sqlalchemy.ext.asyncio import create_async_engine
from stack import Infra  # tests/perf is this script's folder

from services.gateway.repository import SharedBuckets
from shared.ratelimit import GRANT_SHARE, RateLimitMiddleware

ROUNDS = 5


def limiter(per_minute: int) -> RateLimitMiddleware:
    async def app(scope: Any, receive: Any, send: Any) -> None: ...

    return RateLimitMiddleware(
        app, paths=["/v1"], anonymous_per_minute=per_minute, key_per_minute=per_minute
    )


async def per_decision(requests: int, store: SharedBuckets | None, share: int) -> float:
    """Microseconds per decision over `requests` decisions of one client whose limit is never
    reached, the shared bucket handing out `share` tokens a grant."""
    limit = 10**9
    middleware = limiter(limit)
    middleware.grant_share = limit // share
    rounds = []
    for n in range(ROUNDS):
        client = f"i:bench-{share}-{n}-{time.monotonic()}"
        began = time.perf_counter()
        for _ in range(requests):
            if store is None:
                middleware.take("ip", client, time.monotonic())
            else:
                allowed, _, _ = await middleware.take_shared(store, "ip", client, time.monotonic())
                assert allowed
        rounds.append((time.perf_counter() - began) / requests * 1e6)
    return statistics.median(rounds)


async def measure(url: str, requests: int) -> None:
    engine = create_async_engine(url, pool_size=5)
    store = SharedBuckets(engine, 60)
    try:
        local = await per_decision(requests, None, GRANT_SHARE)
        print(f"per process (no store):            {local:8.1f} us a decision")
        for share, what in ((12, "default share (600/min: 12 tokens)"), (1, "a token a time")):
            shared = await per_decision(requests, store, share)
            print(f"shared, {what:<28} {shared:8.1f} us a decision")
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args()
    with Infra.start() as infra, infra.stack(()) as stack:
        asyncio.run(measure(stack.database_url, args.requests))


if __name__ == "__main__":
    main()
