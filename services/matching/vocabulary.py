"""How rare each piece of text is in the catalogue: the document frequency of every Chinese
character, character pair and Latin word in the listings' titles and abstracts, from which
matching weighs a demand's terms (a rare piece says more than 方法 or 装置).

The counts live in a fixed array of hashed buckets, so memory is the same (4 MiB) at 1,000
listings or 1,000,000; two pieces sharing a bucket add up, which only makes a rare piece look a
little less rare. The table is built from the catalogue index itself (a sample of at most
SAMPLE_LIMIT documents, spread over the index) and built again as the catalogue grows.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
import zlib
from array import array
from collections.abc import Iterable, Iterator, Mapping
from typing import Final, Protocol

from shared.search import MeiliError, MeiliUnavailable

logger = logging.getLogger("ipx.matching.vocabulary")

BUCKETS: Final = 1 << 21
_MASK: Final = BUCKETS - 1
CJK_RUN: Final = re.compile(r"[\u3400-\u9fff]+")
LATIN_WORD: Final = re.compile(r"[a-z0-9]+(?:[.+-][a-z0-9]+)*")
SAMPLE_LIMIT: Final = 20_000
PAGE: Final = 1_000
FIELDS: Final = ["asset_id", "title_zh", "title_en", "abstract_zh", "abstract_en"]
# Look at the catalogue's size at most this often (a stats request); build again when it grew
# or shrank by this factor (from 1,000 to 100,000 listings: 12 builds of at most SAMPLE_LIMIT
# documents each).
CHECK_SECONDS: Final = 2.0
GROWTH: Final = 1.5
MIN_IDF: Final = 0.1
IDF_TABLE: Final = 4096
KNOWN_LIMIT: Final = 50_000
CHARACTER_SHARE: Final = 0.5


def units(text: str) -> Iterator[str]:
    """The pieces text is compared by (lower case in): each Chinese character and each pair of
    adjacent ones, and each Latin word or number."""
    for run in CJK_RUN.findall(text):
        yield from run
        for i in range(len(run) - 1):
            yield run[i : i + 2]
    yield from LATIN_WORD.findall(CJK_RUN.sub(" ", text))


def bucket(unit: str) -> int:
    return zlib.crc32(unit.encode()) & _MASK


class DocumentSource(Protocol):
    async def document_count(self, uid: str) -> int: ...

    async def fetch_documents(
        self, uid: str, fields: list[str] | None, offset: int, limit: int
    ) -> list[dict[str, object]]: ...


class Vocabulary:
    """Document frequencies of the catalogue's pieces; `idf` weighs one."""

    def __init__(self) -> None:
        # Two bytes a bucket: a sample of SAMPLE_LIMIT documents cannot count past 65,535.
        self.counts = array("H", bytes(2 * BUCKETS))
        self.documents = 0
        self._idf_of_df: list[float] = []  # idf by document frequency, up to IDF_TABLE
        # The weights of units already asked for: a batch of listings weighs the same characters
        # and pairs of thousands of demands (docs/DECISIONS.md, Matching, "Matching's speed").
        self._known: dict[str, float] = {}

    def add(self, text: str) -> None:
        """Count one document (its pieces once each)."""
        self.documents += 1
        counts = self.counts
        for unit in set(units(text.lower())):
            index = bucket(unit)
            if counts[index] < 65_535:
                counts[index] += 1

    def document_frequency(self, unit: str) -> int:
        return int(self.counts[bucket(unit)])

    def idf(self, unit: str) -> float:
        df = self.counts[bucket(unit)]
        return self._idf_of_df[df] if df < len(self._idf_of_df) else self._idf(df)

    def weight(self, unit: str) -> float:
        """How much a unit counts: its idf, and a lone Chinese character at CHARACTER_SHARE
        (难度 and 难易, 试题 and 题目 share one: the weakest sign of the same subject)."""
        known = self._known.get(unit)
        if known is not None:
            return known
        value = self.idf(unit)
        if len(unit) == 1 and unit >= "\u3400":
            value *= CHARACTER_SHARE
        if self._idf_of_df and len(self._known) < KNOWN_LIMIT:  # frozen, and bounded
            self._known[unit] = value
        return value

    def _idf(self, df: int) -> float:
        return max(MIN_IDF, math.log((self.documents + 1) / (df + 0.5)))

    def freeze(self) -> Vocabulary:
        """Done counting: the idf of common frequencies is looked up, not computed (scoring
        weighs every piece of every demand a batch of listings finds)."""
        self._idf_of_df = [self._idf(df) for df in range(min(self.documents, IDF_TABLE) + 1)]
        return self

    @classmethod
    def of(cls, texts: Iterable[str]) -> Vocabulary:
        vocabulary = cls()
        for text in texts:
            vocabulary.add(text)
        return vocabulary.freeze()


def changed(built_from: int, count: int) -> bool:
    """The catalogue has changed enough since a table was built from `built_from` documents."""
    if built_from == 0 or count == 0:
        return built_from != count
    return count > built_from * GROWTH or count * GROWTH < built_from


def document_text(doc: Mapping[str, object]) -> str:
    return "\n".join(str(doc.get(f) or "") for f in FIELDS[1:])


class CatalogueVocabulary:
    """The vocabulary of one catalogue index, built on first use and again as it grows (a
    request or the match worker keeps the table it had while a new one is built)."""

    def __init__(self, source: DocumentSource, index_uid: str) -> None:
        self.source = source
        self.index_uid = index_uid
        self.current: Vocabulary | None = None
        self.built_from = 0
        self.checked_at = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> Vocabulary:
        if self.current is not None and (
            time.monotonic() - self.checked_at < CHECK_SECONDS or self._lock.locked()
        ):
            return self.current  # fresh, or being built again: the table at hand will do
        async with self._lock:
            if self.current is not None and time.monotonic() - self.checked_at < CHECK_SECONDS:
                return self.current
            try:
                count = await self.source.document_count(self.index_uid)
            except MeiliUnavailable:
                if self.current is None:
                    raise
                return self.current  # the catalogue is unreachable: the last table will do
            except MeiliError as exc:
                if exc.code != "index_not_found":
                    raise
                count = 0  # no catalogue yet: every word is as rare as any other
            self.checked_at = time.monotonic()
            if self.current is None or changed(self.built_from, count):
                self.current = await self.build(count)
                self.built_from = count
            return self.current

    async def build(self, count: int) -> Vocabulary:
        started = time.perf_counter()
        vocabulary = Vocabulary()
        if count == 0:
            return vocabulary.freeze()
        seen: set[object] = set()
        # A sample spread over the whole index: every step-th page.
        pages = max(1, math.ceil(count / PAGE))
        wanted = max(1, math.ceil(min(count, SAMPLE_LIMIT) / PAGE))
        step = max(1, pages // wanted)
        for page in range(0, pages, step):
            docs = await self.source.fetch_documents(self.index_uid, FIELDS, page * PAGE, PAGE)
            for doc in docs:
                asset = doc.get("asset_id")
                if asset in seen:
                    continue  # one asset offered on several exchanges counts once
                seen.add(asset)
                vocabulary.add(document_text(doc))
            await asyncio.sleep(0)
        vocabulary.freeze()
        logger.info(
            "vocabulary built",
            extra={
                "documents": vocabulary.documents,
                "catalogue": count,
                "seconds": round(time.perf_counter() - started, 3),
            },
        )
        return vocabulary
