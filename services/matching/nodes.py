"""The Meilisearch nodes the catalogue index lives on (issue 21, item 2). Meilisearch's community
edition replicates nothing, so read replicas are built on the change feed: besides the primary
(IPX_MEILI_URL, whose indexer keeps the versions indexed and queues listings for matching), each
node of IPX_MEILI_REPLICA_URLS has an indexer of its own, with its own cursor and lease, that
applies the feed in order. A node added later starts from the feed's beginning and catches up.

Searches may use the primary and every replica whose last indexed event is within
IPX_MEILI_REPLICA_MAX_LAG_SECONDS of the primary's (`node_states`); a node that falls behind
leaves the rotation until it catches up, and the searcher skips a node that does not answer.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.matching import repository
from services.matching.indexer import Indexer
from services.matching.meili import IndexReader, MeiliClient
from shared.search import MeiliUnavailable
from shared.settings import Settings

__all__ = ["Node", "NodePool", "NodeState", "node_states", "replica_nodes"]

ROTATION_SECONDS = 5.0  # how long the nodes in the rotation are kept before they are read again


@dataclass(frozen=True)
class Node:
    name: str  # host:port, stable across restarts: it names the node's cursor and lease
    url: str
    indexer: Indexer


@dataclass(frozen=True)
class NodeState:
    name: str
    url: str
    cursor: str | None
    last_event_at: datetime | None
    lag_seconds: float | None  # behind the primary's last indexed event; None: not started
    in_rotation: bool


def replica_nodes(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
) -> list[Node]:
    """An indexer per replica node (no match queue, no versions kept)."""
    master = settings.meili_master_key.get_secret_value()
    nodes = []
    for url in settings.meili_replica_urls:
        name = urlsplit(url).netloc
        indexer = Indexer(
            settings=settings,
            sessionmaker=sessionmaker,
            http=http,
            meili=MeiliClient(http, url, master),
            index_uid=settings.meili_index,
            node=name,
        )
        nodes.append(Node(name, url, indexer))
    return nodes


async def node_states(
    session: AsyncSession, primary: Indexer, nodes: list[Node], max_lag_seconds: float
) -> list[NodeState]:
    """Each replica node's place in the feed against the primary's (one read of the states)."""
    found = await repository.indexer_states(
        session, [primary.state_key, *(node.indexer.state_key for node in nodes)]
    )
    reference = found.get(primary.state_key)
    states = []
    for node in nodes:
        state = found.get(node.indexer.state_key)
        lag: float | None = None
        if state is not None:
            if reference is None or reference.last_event_at is None:
                lag = 0.0
            elif state.last_event_at is not None:
                lag = max(0.0, (reference.last_event_at - state.last_event_at).total_seconds())
        states.append(
            NodeState(
                name=node.name,
                url=node.url,
                cursor=state.cursor if state else None,
                last_event_at=state.last_event_at if state else None,
                lag_seconds=lag,
                in_rotation=lag is not None and lag <= max_lag_seconds,
            )
        )
    return states


class NodePool:
    """The catalogue index on the nodes in the rotation, read as shared.search.CatalogueIndex:
    matching's own searches go round them (the primary and the caught-up replicas, read again
    every ROTATION_SECONDS) and a node that does not answer is left for the next one."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        primary: Indexer,
        replicas: list[Node],
        max_lag_seconds: float,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.primary = primary
        self.replicas = replicas
        self.max_lag_seconds = max_lag_seconds
        self.readers = [primary.meili.index(primary.index_uid)]
        self.read_at = float("-inf") if replicas else float("inf")
        self.turn = itertools.count()

    async def _rotation(self) -> list[IndexReader]:
        if time.monotonic() - self.read_at >= ROTATION_SECONDS:
            async with self.sessionmaker() as session:
                states = await node_states(
                    session, self.primary, self.replicas, self.max_lag_seconds
                )
            caught_up = {state.name for state in states if state.in_rotation}
            self.readers = [self.primary.meili.index(self.primary.index_uid)] + [
                node.indexer.meili.index(node.indexer.index_uid)
                for node in self.replicas
                if node.name in caught_up
            ]
            self.read_at = time.monotonic()
        start = next(self.turn) % len(self.readers)
        return self.readers[start:] + self.readers[:start]

    async def _first_answer(
        self, read: Callable[[IndexReader], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        failed: MeiliUnavailable | None = None
        for reader in await self._rotation():
            try:
                return await read(reader)
            except MeiliUnavailable as exc:
                failed = exc
        assert failed is not None
        raise failed

    async def search(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._first_answer(lambda reader: reader.search(body))

    async def fetch(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._first_answer(lambda reader: reader.fetch(body))
