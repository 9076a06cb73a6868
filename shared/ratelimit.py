"""Rate limiting as ASGI middleware: a token bucket per API key (by its hash) or, for anonymous
callers, per client IP, on the paths given. Answers carry the IETF `RateLimit-Policy` and
`RateLimit` headers; a refusal is a 429 problem with `Retry-After`.

Buckets live in the process: with N replicas behind a balancer a client gets up to N times the
limit (a shared store such as Redis would be the next step; documented).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import ProblemResponse, TooManyRequests

__all__ = ["RateLimitMiddleware"]

WINDOW_SECONDS = 60
MAX_BUCKETS = 100_000


@dataclass
class Bucket:
    tokens: float
    updated: float


class RateLimitMiddleware:
    def __init__(
        self, app: ASGIApp, *, paths: Sequence[str], anonymous_per_minute: int, key_per_minute: int
    ) -> None:
        self.app = app
        self.paths = tuple(paths)
        self.limits = {"ip": anonymous_per_minute, "key": key_per_minute}
        self.buckets: OrderedDict[str, Bucket] = OrderedDict()

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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.paths):
            await self.app(scope, receive, send)
            return
        kind, key = self._client(scope)
        allowed, remaining, reset = self.take(kind, key, time.monotonic())
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
