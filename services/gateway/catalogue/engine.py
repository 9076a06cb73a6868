"""The gateway's direct line to the catalogue index (NOTES.md "Search hop"): public searches go
straight to Meilisearch with the read-only key matching provisions, instead of through
matching's API (one Python hop less on the hottest path). Matching still owns the index, its
settings and every write; the query itself is built by shared/search.py for both services.

The key, the index and Meilisearch's address are asked of matching on first use and kept; when
Meilisearch refuses the key (rotated, index rebuilt elsewhere), they are asked again once.

The hop uses aiohttp, not the service's httpx client, and pydantic-core's JSON, not the json
module, as in matching's Meilisearch client: each costs the gateway less CPU a search
(docs/DECISIONS.md, Gateway, "Catalogue search"). httpx still reaches matching.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Target:
    index_url: str
    headers: dict[str, str]


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
        if self.target is not None:
            return self.target
        async with self._lock:  # one request to matching, however many searches wait
            if self.target is None:
                try:
                    response = await self.http.get(
                        f"{self.settings.matching_url}/v1/index/search-key",
                        headers={
                            "Authorization": "Bearer "
                            + self.settings.service_key.get_secret_value()
                        },
                    )
                except httpx.HTTPError as exc:
                    raise MeiliUnavailable("matching is unreachable") from exc
                if response.status_code != 200:
                    raise MeiliUnavailable(f"matching answered {response.status_code}")
                found = response.json()
                headers = dict(IDENTITY)
                if found["key"]:
                    headers["Authorization"] = f"Bearer {found['key']}"
                self.target = Target(
                    f"{found['url'].rstrip('/')}/indexes/{found['index']}", headers
                )
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
            status, answer = await self._post(f"{target.index_url}/{route}", target, content)
            if status in (401, 403):
                if self.target is target:
                    self.target = None  # the key or the index changed: ask matching again
                continue
            if status >= 500:
                raise MeiliUnavailable(f"HTTP {status}")
            if status >= 400:
                error = from_json(answer) if answer else {}
                raise MeiliError(
                    status, error.get("code", "unknown"), error.get("message", "refused")
                )
            result: dict[str, Any] = from_json(answer)
            return result
        raise MeiliUnavailable("Meilisearch refused the search key matching provided")
