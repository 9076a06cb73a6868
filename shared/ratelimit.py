"""Rate limiting as ASGI middleware: a token bucket per API key (by its hash) or, for anonymous
callers, per client IP, on the paths given. Answers carry the IETF `RateLimit-Policy` and
`RateLimit` headers; a refusal is a 429 problem with `Retry-After`.

With a BucketStore on `app.state.rate_buckets` (the gateway's, in PostgreSQL) every replica
takes from one bucket per client: a replica takes a share of the client's limit at a time
(1/GRANT_SHARE of it) and spends it locally, so most requests cost no round trip and N replicas
never give a client more than its limit (they may refuse it up to N shares early: tokens a
replica took and has not spent). When the store fails, each replica falls back to a bucket of
its own until it answers again. Without a store, buckets live in the process.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import ProblemResponse, TooManyRequests

__all__ = ["BucketStore", "RateLimitMiddleware"]

logger = logging.getLogger("ipx.ratelimit")

WINDOW_SECONDS = 60
MAX_BUCKETS = 100_000
GRANT_SHARE = 50  # a replica takes 1/50 of a client's limit from the shared bucket at a time
STORE_DOWN_LOG_SECONDS = 60.0  # at most one warning this often while the store fails


class BucketStore(Protocol):
    async def grant(
        self, client: str, limit: int, per_second: float, want: int
    ) -> tuple[int, float]:
        """Take up to `want` whole tokens from the client's shared bucket (full at `limit`,
        refilled at `per_second`): (tokens taken, tokens left in the bucket)."""
        ...


@dataclass
class Bucket:
    tokens: float
    updated: float


@dataclass
class Share:
    """Tokens this replica took from a shared bucket and has not spent yet."""

    tokens: int
    left: float  # what the shared bucket held after the grant
    taken: float  # when; a share older than the window lapses


class RateLimitMiddleware:
    def __init__(
        self, app: ASGIApp, *, paths: Sequence[str], anonymous_per_minute: int, key_per_minute: int
    ) -> None:
        self.app = app
        self.paths = tuple(paths)
        self.limits = {"ip": anonymous_per_minute, "key": key_per_minute}
        self.buckets: OrderedDict[str, Bucket] = OrderedDict()
        self.shares: OrderedDict[str, Share] = OrderedDict()
        self.grant_share = GRANT_SHARE
        self.store_failed = 0.0

    def _client(self, scope: Scope) -> tuple[str, str]:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                return "key", "k:" + hashlib.sha256(value).hexdigest()[:32]
        client = scope.get("client")
        return "ip", "i:" + (client[0] if client else "unknown")

    def take(self, kind: str, key: str, now: float) -> tuple[bool, int, int]:
        """(allowed, remaining, seconds until a token is back)."""
        limit = self.limits[kind]
        rate = limit / WINDOW_SECONDS
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = Bucket(tokens=float(limit), updated=now)
            self.buckets[key] = bucket
            if len(self.buckets) > MAX_BUCKETS:
                self.buckets.popitem(last=False)
        else:
            self.buckets.move_to_end(key)
            bucket.tokens = min(limit, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return True, int(bucket.tokens), math.ceil((limit - bucket.tokens) / rate)
        return False, 0, math.ceil((1 - bucket.tokens) / rate)

    async def take_shared(
        self, store: BucketStore, kind: str, key: str, now: float
    ) -> tuple[bool, int, int]:
        """`take` from the shared bucket, a share at a time (the process's own bucket while
        the store fails)."""
        limit = self.limits[kind]
        rate = limit / WINDOW_SECONDS
        share = self.shares.get(key)
        if share is not None and share.tokens >= 1 and now - share.taken < WINDOW_SECONDS:
            share.tokens -= 1
            remaining = share.tokens + int(share.left)
            return True, remaining, math.ceil((limit - remaining) / rate)
        try:
            taken, left = await store.grant(key, limit, rate, max(1, limit // self.grant_share))
        except Exception as exc:  # PostgreSQL away: limit per replica meanwhile
            if now - self.store_failed > STORE_DOWN_LOG_SECONDS:
                self.store_failed = now
                logger.warning("shared rate limits unavailable (%s): per replica", exc)
            return self.take(kind, key, now)
        if taken < 1:
            self.shares.pop(key, None)
            return False, 0, math.ceil((1 - left) / rate)
        self.shares[key] = Share(tokens=taken - 1, left=left, taken=now)
        self.shares.move_to_end(key)
        if len(self.shares) > MAX_BUCKETS:
            self.shares.popitem(last=False)
        remaining = taken - 1 + int(left)
        return True, remaining, math.ceil((limit - remaining) / rate)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.paths):
            await self.app(scope, receive, send)
            return
        kind, key = self._client(scope)
        store: BucketStore | None = getattr(scope["app"].state, "rate_buckets", None)
        now = time.monotonic()
        allowed, remaining, reset = (
            await self.take_shared(store, kind, key, now)
            if store is not None
            else self.take(kind, key, now)
        )
        limit = self.limits[kind]
        headers = {
            "RateLimit-Policy": f'"{kind}";q={limit};w={WINDOW_SECONDS}',
            "RateLimit": f'"{kind}";r={remaining};t={reset}',
        }
        if not allowed:
            error = TooManyRequests(
                f"over {limit} requests a minute: retry in {reset} s",
                headers={**headers, "Retry-After": str(reset)},
            )
            response = ProblemResponse(
                error.to_problem(scope["path"]), status_code=429, headers=error.headers
            )
            await response(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    *((k.lower().encode(), v.encode()) for k, v in headers.items()),
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)
