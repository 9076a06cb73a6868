"""The indexer as a worker: one replica at a time holds its lease, the same lock a rebuild or
a check takes (`indexer.lease_key`)."""

from __future__ import annotations

from fastapi import FastAPI

from services.matching.indexer import CursorMoved, Indexer, ensure_index
from services.matching.meili import MeiliError, MeiliUnavailable
from services.matching.nodes import Node
from shared.workers import Worker

__all__ = ["FEED_WAIT_SECONDS", "indexer_workers"]

FEED_WAIT_SECONDS = 10.0  # how long a read of listing's feed waits for new events


def indexer_workers(app: FastAPI) -> list[Worker]:
    """The primary node's indexer (`indexer`) and one per read replica (`indexer@host:port`),
    each with a lease of its own."""
    replicas: list[Node] = getattr(app.state, "replica_nodes", [])
    indexers: list[Indexer] = [app.state.indexer, *(node.indexer for node in replicas)]
    return [_worker(indexer) for indexer in indexers]


def _worker(indexer: Indexer) -> Worker:
    async def step() -> int:
        await ensure_index(indexer.meili, indexer.index_uid)
        await indexer.pipeline(FEED_WAIT_SECONDS)  # returns only by raising
        return 0

    return Worker(
        "indexer" if indexer.node is None else f"indexer@{indexer.node}",
        step,
        interval=0.0,
        exclusive=True,
        lease=indexer.lease_key,
        # Another writer moved the cursor: a lost lease, not a bug; the next run starts there.
        outages=(MeiliUnavailable, MeiliError, CursorMoved),
        interruptible=True,
    )
