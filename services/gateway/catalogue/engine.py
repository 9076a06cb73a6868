"""The gateway's direct line to the catalogue index (NOTES.md "Search hop"): public searches go
straight to Meilisearch with the read-only key matching provisions, instead of through
matching's API (one Python hop less on the hottest path). Matching still owns the index, its
settings and every write; the query itself is built by shared/search.py for both services.

The key, the index and the Meilisearch nodes searches may use (the primary and the read
replicas that are caught up: services/matching/nodes.py) are asked of matching on first use and
again every TARGET_SECONDS; searches go round the nodes, and a node that does not answer is
skipped for DOWN_SECONDS while the next one answers (issue 21). When Meilisearch refuses the key
(rotated, index rebuilt elsewhere), they are asked again once.

The hop uses aiohttp, not the service's httpx client, and pydantic-core's JSON, not the json
module, as in matching's Meilisearch client: each costs the gateway less CPU a search
(docs/DECISIONS.md, Gateway, "Catalogue search"). httpx still reaches matching.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiohttp
import httpx
from pydantic_core import from_json, to_json

from shared.search import MeiliError, MeiliUnavailable
from shared.settings import Settings

__all__ = ["CatalogueEngine"]

# Compressed answers cost far more CPU than they save on a loopback or LAN hop.
IDENTITY = {"Accept-Encoding": "identity", "Content-Type": "application/json"}


TARGET_SECONDS = 5.0  # how often the nodes in the rotation are asked of matching again
DOWN_SECONDS = 2.0  # a node that did not answer is skipped this long


@dataclass
class Target:
    index_urls: list[str]  # one per node, the primary first
    headers: dict[str, str]
    fetched: float = field(default_factory=time.monotonic)
    down: dict[str, float] = field(default_factory=dict)  # index url -> skipped until
    turn: itertools.count[int] = field(default_factory=itertools.count)

    def order(self) -> list[str]:
        """The nodes to try for one request: the next in turn first, those down last."""
        start = next(self.turn) % len(self.index_urls)
        turns = self.index_urls[start:] + self.index_urls[:start]
        now = time.monotonic()
        return [u for u in turns if self.down.get(u, 0) <= now] + [
            u for u in turns if self.down.get(u, 0) > now
        ]


class CatalogueEngine:
    """The catalogue index as the gateway reaches it (shared.search.CatalogueIndex)."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self.http = http  # for matching
        self.session: aiohttp.ClientSession | None = None
        self.target: Target | None = None
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> CatalogueEngine:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=100, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=self.settings.upstream_timeout_seconds),
            headers=IDENTITY,
            auto_decompress=False,
            skip_auto_headers=("User-Agent",),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.session is not None:
            await self.session.close()

    async def _target(self) -> Target:
        target = self.target
        if target is not None and time.monotonic() - target.fetched < TARGET_SECONDS:
            return target
        if target is not None and self._lock.locked():
            return target  # another search is asking matching: this one goes on meanwhile
        async with self._lock:  # one request to matching, however many searches wait
            if self.target is None or time.monotonic() - self.target.fetched >= TARGET_SECONDS:
                try:
                    response = await self.http.get(
                        f"{self.settings.matching_url}/v1/index/search-key",
                        headers={
                            "Authorization": "Bearer "
                            + self.settings.service_key.get_secret_value()
                        },
                    )
                except httpx.HTTPError as exc:
                    return self._known(MeiliUnavailable("matching is unreachable"), exc)
                if response.status_code != 200:
                    failed = MeiliUnavailable(f"matching answered {response.status_code}")
                    return self._known(failed, None)
                found = response.json()
                headers = dict(IDENTITY)
                if found["key"]:
                    headers["Authorization"] = f"Bearer {found['key']}"
                urls = found.get("urls") or [found["url"]]
                previous = self.target
                self.target = Target(
                    [f"{url.rstrip('/')}/indexes/{found['index']}" for url in urls], headers
                )
                if previous is not None:  # a node found down stays skipped a while
                    self.target.down = {
                        u: t for u, t in previous.down.items() if u in self.target.index_urls
                    }
            return self.target

    def _known(self, failed: MeiliUnavailable, cause: BaseException | None) -> Target:
        """Matching cannot say which nodes to use now: the nodes known, for another while."""
        if self.target is None:
            raise failed from cause
        self.target.fetched = time.monotonic()
        return self.target

    async def _post(self, url: str, target: Target, content: bytes) -> tuple[int, bytes]:
        assert self.session is not None, "use the engine as an async context manager"
        try:
            async with self.session.post(url, data=content, headers=target.headers) as response:
                if response.status in (401, 403):
                    # Meilisearch refuses before reading the body; that connection would
                    # hang the next request.
                    response.close()
                    return response.status, b""
                return response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise MeiliUnavailable(type(exc).__name__) from exc

    async def search(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._send("search", body)

    async def fetch(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._send("documents/fetch", body)

    async def _send(self, route: str, body: dict[str, Any]) -> dict[str, Any]:
        content = to_json(body)
        for _attempt in (1, 2):  # a refused key is asked for again once
            target = await self._target()
            refused = False
            unavailable: MeiliUnavailable | None = None
            for index_url in target.order():
                try:
                    status, answer = await self._post(f"{index_url}/{route}", target, content)
                except MeiliUnavailable as exc:  # the next node, if any
                    target.down[index_url] = time.monotonic() + DOWN_SECONDS
                    unavailable = exc
                    continue
                if status in (401, 403):
                    refused = True
                    break
                if status >= 500:
                    target.down[index_url] = time.monotonic() + DOWN_SECONDS
                    unavailable = MeiliUnavailable(f"HTTP {status}")
                    continue
                if status >= 400:
                    error = from_json(answer) if answer else {}
                    raise MeiliError(
                        status, error.get("code", "unknown"), error.get("message", "refused")
                    )
                result: dict[str, Any] = from_json(answer)
                return result
            if not refused:
                raise unavailable or MeiliUnavailable("no Meilisearch node to search")
            if self.target is target:
                self.target = None  # the key or the index changed: ask matching again
        raise MeiliUnavailable("Meilisearch refused the search key matching provided")
