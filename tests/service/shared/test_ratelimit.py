"""The rate limiter's shares of a shared bucket (shared/ratelimit.py) on the gateway's real
store in PostgreSQL (services/gateway/repository.py's SharedBuckets), and its fallback when the
store is away."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from services.gateway.repository import SharedBuckets
from shared.db import create_engine
from shared.ratelimit import GRANT_SHARE, RateLimitMiddleware
from shared.settings import Settings
from support import free_port


class CountedBuckets(SharedBuckets):
    """The real store, counting its round trips."""

    grants = 0

    async def grant(
        self, client: str, limit: int, per_second: float, want: int
    ) -> tuple[int, float]:
        self.grants += 1
        return await super().grant(client, limit, per_second, want)


@pytest.fixture(scope="module")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings, application_name="test-ratelimit")
    yield engine
    await engine.dispose()


def limiter(per_minute: int) -> RateLimitMiddleware:
    async def app(scope: object, receive: object, send: object) -> None: ...

    return RateLimitMiddleware(
        app, paths=["/v1"], anonymous_per_minute=per_minute, key_per_minute=per_minute
    )


def client() -> str:
    return f"i:{uuid.uuid4().hex}"


async def test_a_replica_spends_a_share_before_asking_again(engine: AsyncEngine) -> None:
    store, middleware, who = CountedBuckets(engine, 60), limiter(600), client()
    answers = [await middleware.take_shared(store, "ip", who, 0.0) for _ in range(600)]
    assert all(allowed for allowed, _, _ in answers)
    assert store.grants == 600 // (600 // GRANT_SHARE)  # one round trip per share
    allowed, remaining, reset = await middleware.take_shared(store, "ip", who, 0.0)
    assert (allowed, remaining) == (False, 0) and reset >= 1


async def test_replicas_together_never_pass_the_limit(engine: AsyncEngine) -> None:
    store, who = SharedBuckets(engine, 60), client()
    replicas = [limiter(100), limiter(100), limiter(100)]
    allowed = 0
    for n in range(300):
        ok, _, _ = await replicas[n % 3].take_shared(store, "ip", who, 0.0)
        allowed += ok
    # The bucket refills while the test runs (100 a minute): a token or two at most.
    assert 100 <= allowed <= 102


async def test_without_its_store_a_replica_limits_on_its_own() -> None:
    """PostgreSQL unreachable (nothing listens on the port): the replica's own bucket."""
    unreachable = create_async_engine(f"postgresql+asyncpg://ipx@127.0.0.1:{free_port()}/ipx")
    store, middleware = SharedBuckets(unreachable, 60), limiter(3)
    try:
        who = client()
        answers = [await middleware.take_shared(store, "ip", who, 0.0) for _ in range(4)]
    finally:
        await unreachable.dispose()
    assert [allowed for allowed, _, _ in answers] == [True, True, True, False]
