"""The public API as the web catalogue asks it: in process, through the gateway's own ASGI app.

Each call is a GET on a public path (`/v1/catalogue/...`) that passes every middleware a
browser's own request would (the rate limit, counted against the browser's address; parameter
checks; caching headers), with no Authorization header: the pages can show nothing the public
API would not answer to anyone (docs/DECISIONS.md, "Web catalogue"). In process, not over the
network: no socket, no second server, and the page waits only for the API's own work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from asgi_correlation_id import correlation_id
from fastapi import Request
from pydantic_core import from_json

__all__ = ["ApiAnswer", "PublicApi"]

PUBLIC_PREFIX = "/v1/catalogue/"


@dataclass
class ApiAnswer:
    status: int
    body: Any  # the JSON answer: a result, or a problem (RFC 9457) when status >= 400
    retry_after: str | None = None  # on a 429 or 503: when to come back

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass
class PublicApi:
    """The public catalogue API for one page request. `elapsed`: seconds spent in the API."""

    request: Request
    elapsed: float = 0.0
    calls: list[str] = field(default_factory=list)

    async def get(self, path: str, params: list[tuple[str, str]] | None = None) -> ApiAnswer:
        assert path.startswith(PUBLIC_PREFIX), "the pages read the public catalogue only"
        client = self.request.scope.get("client") or ("127.0.0.1", 0)
        transport = httpx.ASGITransport(
            app=self.request.app, raise_app_exceptions=False, client=(client[0], client[1])
        )
        headers = {"Accept": "application/json"}
        if request_id := correlation_id.get():
            headers["X-Request-ID"] = request_id  # one id for the page and its API calls
        url = httpx.URL("http://gateway.internal" + path, params=params or [])
        started = time.perf_counter()
        response = await transport.handle_async_request(httpx.Request("GET", url, headers=headers))
        content = await response.aread()
        self.elapsed += time.perf_counter() - started
        self.calls.append(str(url.raw_path, "ascii"))
        try:
            body = from_json(content) if content else {}
        except ValueError:
            body = {"detail": content.decode("utf-8", "replace")[:500]}
        return ApiAnswer(response.status_code, body, response.headers.get("retry-after"))
