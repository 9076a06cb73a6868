"""What a rebuild or a check works with: the resources of a matching process and the index."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.matching.indexer import lease_key
from services.matching.meili import MeiliClient
from shared.settings import Settings

T = TypeVar("T")


@dataclass
class Context:
    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    http: httpx.AsyncClient
    meili: MeiliClient
    index_uid: str

    def lease_key(self) -> int:
        # The indexer's own key, so a change there cannot leave us holding another lock.
        return lease_key(self.index_uid)


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
