"""The rate limiter's shares of a shared bucket, and its fallback when the store is away."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import create_async_engine

from services.gateway.repository import SharedBuckets
from shared.ratelimit import GRANT_SHARE, RateLimitMiddleware
from support import free_port


class CountingStore:
    """A bucket store kept in memory (as one PostgreSQL row would be), counting its grants."""

    def __init__(self) -> None:
        self.tokens: dict[str, float] = {}
        self.grants = 0

    async def grant(
        self, client: str, limit: int, per_second: float, want: int
    ) -> tuple[int, float]:
        self.grants += 1
        have = self.tokens.get(client, float(limit))
        taken = min(want, int(have))
        self.tokens[client] = have - taken
        return taken, have - taken


def limiter(per_minute: int) -> RateLimitMiddleware:
    async def app(scope: object, receive: object, send: object) -> None: ...

    return RateLimitMiddleware(
        app, paths=["/v1"], anonymous_per_minute=per_minute, key_per_minute=per_minute
    )


async def test_a_replica_spends_a_share_before_asking_again() -> None:
    store, middleware = CountingStore(), limiter(600)
    answers = [await middleware.take_shared(store, "ip", "i:1", 0.0) for _ in range(600)]
    assert all(allowed for allowed, _, _ in answers)
    assert store.grants == 600 // (600 // GRANT_SHARE)  # one round trip per share
    allowed, remaining, reset = await middleware.take_shared(store, "ip", "i:1", 0.0)
    assert (allowed, remaining) == (False, 0) and reset >= 1


async def test_replicas_together_never_pass_the_limit() -> None:
    store = CountingStore()
    replicas = [limiter(100), limiter(100), limiter(100)]
    allowed = 0
    for n in range(300):
        ok, _, _ = await replicas[n % 3].take_shared(store, "ip", "i:2", 0.0)
        allowed += ok
    assert allowed == 100


async def test_without_its_store_a_replica_limits_on_its_own() -> None:
    """PostgreSQL unreachable (nothing listens on the port): the replica's own bucket."""
    engine = create_async_engine(f"postgresql+asyncpg://ipx@127.0.0.1:{free_port()}/ipx")
    store, middleware = SharedBuckets(engine, 60), limiter(3)
    try:
        answers = [await middleware.take_shared(store, "ip", "i:3", 0.0) for _ in range(4)]
    finally:
        await engine.dispose()
    assert [allowed for allowed, _, _ in answers] == [True, True, True, False]
