"""A thin async Meilisearch client on the service's httpx client (identity encoding: compressed
responses cost far more than they save on this hop). Only what matching uses."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic_core import from_json, to_json

from shared.search import MeiliError, MeiliUnavailable

__all__ = ["MeiliClient", "MeiliError", "MeiliTaskFailed", "MeiliUnavailable"]

JSON_CONTENT = {"Content-Type": "application/json"}
# The gateway's catalogue search: a search, then a fetch of the page's offers (shared/search.py).
SEARCH_KEY_ACTIONS = ["search", "documents.get"]


class MeiliTaskFailed(MeiliError):
    """An enqueued task ended in failure."""


class MeiliClient:
    def __init__(self, client: httpx.AsyncClient, url: str, api_key: str) -> None:
        self.client = client
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    async def request(
        self, method: str, path: str, json: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        # Encoded by pydantic-core: several times faster than the json module on a page of
        # documents, and the indexer's CPU is taken from Meilisearch's on a small machine.
        content = None if json is None else to_json(json)
        headers = self.headers if content is None else {**self.headers, **JSON_CONTENT}
        try:
            response = await self.client.request(
                method, f"{self.url}{path}", content=content, params=params, headers=headers
            )
        except httpx.HTTPError as exc:
            raise MeiliUnavailable(type(exc).__name__) from exc
        if response.status_code >= 500:
            raise MeiliUnavailable(f"HTTP {response.status_code}")
        if response.status_code >= 400:
            body = from_json(response.content) if response.content else {}
            raise MeiliError(
                response.status_code,
                body.get("code", "unknown"),
                body.get("message", response.text),
            )
        # Decoded by pydantic-core too (about twice as fast as the json module on a search
        # answer); both return plain dicts, lists, strings and numbers.
        return from_json(response.content) if response.content else None

    # Indexes and tasks ---------------------------------------------------------------------

    async def create_index(self, uid: str, primary_key: str) -> int:
        task = await self.request("POST", "/indexes", {"uid": uid, "primaryKey": primary_key})
        return int(task["taskUid"])

    async def index_exists(self, uid: str) -> bool:
        try:
            await self.request("GET", f"/indexes/{uid}")
        except MeiliError as exc:
            if exc.code == "index_not_found":
                return False
            raise
        return True

    async def update_settings(self, uid: str, settings: dict[str, Any]) -> int:
        return int((await self.request("PATCH", f"/indexes/{uid}/settings", settings))["taskUid"])

    async def get_settings(self, uid: str) -> dict[str, Any]:
        settings: dict[str, Any] = await self.request("GET", f"/indexes/{uid}/settings")
        return settings

    async def add_documents(self, uid: str, documents: Sequence[dict[str, Any]]) -> int:
        task = await self.request(
            "POST", f"/indexes/{uid}/documents", list(documents), params={"primaryKey": "id"}
        )
        return int(task["taskUid"])

    async def delete_documents(self, uid: str, ids: Sequence[str]) -> int:
        task = await self.request("POST", f"/indexes/{uid}/documents/delete-batch", list(ids))
        return int(task["taskUid"])

    async def swap_indexes(self, a: str, b: str) -> int:
        return int((await self.request("POST", "/swap-indexes", [{"indexes": [a, b]}]))["taskUid"])

    async def delete_index(self, uid: str) -> int:
        return int((await self.request("DELETE", f"/indexes/{uid}"))["taskUid"])

    async def wait_task(self, task_uid: int, seconds: float = 120.0) -> dict[str, Any]:
        """Until the task ends; MeiliTaskFailed when it failed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        delay = 0.005
        while True:
            task: dict[str, Any] = await self.request("GET", f"/tasks/{task_uid}")
            if task["status"] == "succeeded":
                return task
            if task["status"] in ("failed", "canceled"):
                error = task.get("error") or {}
                raise MeiliTaskFailed(
                    400,
                    error.get("code", task["status"]),
                    error.get("message", f"task {task_uid} {task['status']}"),
                )
            if loop.time() > deadline:
                raise MeiliUnavailable(f"task {task_uid} still {task['status']}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)

    async def task_statuses(self, task_uids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Several tasks in one request (`GET /tasks?uids=`), by uid."""
        if not task_uids:
            return {}
        result = await self.request(
            "GET",
            "/tasks",
            params={"uids": ",".join(str(u) for u in task_uids), "limit": len(task_uids)},
        )
        return {int(task["uid"]): task for task in result["results"]}

    async def wait_tasks(
        self, task_uids: Sequence[int], seconds: float = 120.0, poll_cap: float = 0.05
    ) -> None:
        """Until every task ends, polling them together (`poll_cap`: the longest pause between
        two polls, so a finished task is noticed soon); MeiliTaskFailed when one failed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        delay = 0.005
        waiting = list(task_uids)
        while waiting:
            tasks = await self.task_statuses(waiting)
            for uid in list(waiting):
                task = tasks.get(uid)
                if task is None:
                    continue  # not visible yet (never expected): ask again
                if task["status"] in ("failed", "canceled"):
                    error = task.get("error") or {}
                    raise MeiliTaskFailed(
                        400,
                        error.get("code", task["status"]),
                        error.get("message", f"task {uid} {task['status']}"),
                    )
                if task["status"] == "succeeded":
                    waiting.remove(uid)
            if not waiting:
                return
            if loop.time() > deadline:
                raise MeiliUnavailable(f"tasks {waiting} still running")
            await asyncio.sleep(delay)
            delay = min(delay * 2, poll_cap)

    # Keys ---------------------------------------------------------------------------------

    async def search_key(self, index_uid: str) -> str:
        """A key that may only read `index_uid` (search it, fetch its documents), created on
        first use. Its uid is derived from the index name and the key's actions, so every
        replica (and every restart) finds the same key instead of adding one, and a change of
        actions makes a new key (Meilisearch cannot change a key's actions); Meilisearch
        derives the key itself from the master key and the uid."""
        if not self.headers:
            return ""  # no master key: Meilisearch asks no key of anyone
        seed = f"ipx-search:{index_uid}:{','.join(SEARCH_KEY_ACTIONS)}"
        uid = str(uuid.UUID(bytes=hashlib.sha256(seed.encode()).digest()[:16], version=4))
        try:
            created = await self.request(
                "POST",
                "/keys",
                {
                    "uid": uid,
                    "name": f"ipx search {index_uid}",
                    "description": "read only, for the gateway's catalogue search",
                    "actions": SEARCH_KEY_ACTIONS,
                    "indexes": [index_uid],
                    "expiresAt": None,
                },
            )
        except MeiliError as exc:
            if exc.code != "api_key_already_exists":
                raise
            created = await self.request("GET", f"/keys/{uid}")
        return str(created["key"])

    # Reading ------------------------------------------------------------------------------

    async def search(self, uid: str, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", f"/indexes/{uid}/search", body)
        return result

    async def multi_search(self, queries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        result = await self.request("POST", "/multi-search", {"queries": queries})
        return list(result["results"])

    async def document_count(self, uid: str) -> int:
        return int((await self.request("GET", f"/indexes/{uid}/stats"))["numberOfDocuments"])

    async def fetch(self, uid: str, body: dict[str, Any]) -> dict[str, Any]:
        """Stored documents, as Meilisearch answers a document fetch (`results`, `total`)."""
        result: dict[str, Any] = await self.request("POST", f"/indexes/{uid}/documents/fetch", body)
        return result

    async def fetch_documents(
        self, uid: str, fields: list[str] | None, offset: int, limit: int
    ) -> list[dict[str, Any]]:
        """A page of stored documents (`fields` None: every field)."""
        body: dict[str, Any] = {"offset": offset, "limit": limit}
        if fields is not None:
            body["fields"] = fields
        return list((await self.fetch(uid, body))["results"])

    def index(self, uid: str) -> IndexReader:
        """One index, read as shared.search.CatalogueIndex."""
        return IndexReader(self, uid)


@dataclass(frozen=True)
class IndexReader:
    meili: MeiliClient
    uid: str

    async def search(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.meili.search(self.uid, body)

    async def fetch(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.meili.fetch(self.uid, body)
