"""The index side: what a Meilisearch index holds, and waiting for our tasks."""

from __future__ import annotations

from services.matching.meili import MeiliClient, MeiliError, MeiliTaskFailed
from services.matching.repair.context import chunks

MEILI_BATCH = 1000
TASK_WAIT_SECONDS = 1800.0  # the last task of a large rebuild waits for the whole batch queue


async def index_versions(meili: MeiliClient, uid: str) -> dict[str, int] | None:
    """Every document of the index: id -> version (None when there is no such index). Large
    pages: one request reads one consistent state of the index."""
    found: dict[str, int] = {}
    offset, limit = 0, 100_000
    while True:
        try:
            page = await meili.fetch_documents(uid, ["id", "version"], offset, limit)
        except MeiliError as exc:
            if exc.code == "index_not_found":
                return None
            raise
        for document in page:
            version = document.get("version")
            found[str(document["id"])] = version if isinstance(version, int) else 0
        if len(page) < limit:
            return found
        offset += limit


async def wait_all(meili: MeiliClient, tasks: list[int]) -> None:
    """Wait for the last task (an index processes its tasks in order), then make sure none of
    them failed."""
    if not tasks:
        return
    await meili.wait_task(tasks[-1], seconds=TASK_WAIT_SECONDS)
    for chunk in chunks(tasks, 200):
        failed = await meili.request(
            "GET",
            "/tasks",
            params={
                "uids": ",".join(str(t) for t in chunk),
                "statuses": "failed,canceled",
                "limit": len(chunk),
            },
        )
        if failed and failed.get("results"):
            task = failed["results"][0]
            error = task.get("error") or {}
            raise MeiliTaskFailed(
                400,
                error.get("code", task.get("status", "failed")),
                error.get("message", f"task {task.get('uid')} {task.get('status')}"),
            )


async def ensure_exists(meili: MeiliClient, uid: str) -> None:
    """The live index must exist to be swapped (a new Meilisearch may have none yet)."""
    if await meili.index_exists(uid):
        return
    try:
        await meili.wait_task(await meili.create_index(uid, "id"))
    except MeiliTaskFailed as exc:
        if exc.code != "index_already_exists":  # the indexer created it meanwhile
            raise
