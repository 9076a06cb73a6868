"""Finding matches in both directions, in batches:

- a demand is created or changed: one catalogue search with its text and hard filters;
- listings become searchable: one multi-search of the demands index per 20 listings (the
  listing's title against every active demand), never every demand against every listing.

Matches are upserted (a listing found again is re-scored); a new match writes a `match.created`
event in the same transaction (the outbox the gateway turns into webhooks).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.matching.demands.index import SETTINGS, demand_document, demands_index
from services.matching.demands.scoring import (
    MAX_MATCHES_PER_DEMAND,
    MIN_RELEVANCE,
    DemandTerms,
    matched_terms,
    score,
)
from services.matching.meili import MeiliClient, MeiliTaskFailed
from services.matching.models import Demand, Match, MatchEvent
from shared.search import quote

CJK = re.compile(r"[\u3400-\u9fff]")
# Patent-title boilerplate. Meilisearch drops query words from the end until documents match,
# so a query must lead with what the invention is about, not with "一种基于…".
TITLE_BOILERPLATE = re.compile(
    r"一种|一类|基于|用于|应用于|以及|及其|及|和|与|或|的|方法|装置|系统|设备|结构|组件|"
    r"模块|单元|其|中|该|所述|实现|进行|通过|[，、,.;；:：()（）]"
)
ENGLISH_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "apparatus",
        "based",
        "device",
        "for",
        "method",
        "methods",
        "of",
        "on",
        "system",
        "systems",
        "the",
        "thereof",
        "to",
        "using",
        "with",
    ]
)


def salient_query(title: str) -> str:
    """The words of a listing title that say what it is about, in order."""
    words = [
        w for w in TITLE_BOILERPLATE.sub(" ", title).split() if w.lower() not in ENGLISH_STOPWORDS
    ]
    return " ".join(words[:10])


# Listings per multi-search. Each query runs against every active demand: at 10,000 demands
# 100 queries took ~4 s on 2 busy cores, near the client's timeout, and a timed-out page is
# retried whole by the indexer, which then never got past it. 20 keep each request short.
MULTI_SEARCH_BATCH = 20
# Rows per INSERT of matches and their events. A page of 1,000 new listings against 10,000
# demands finds tens of thousands of matches: in one statement that is more bind parameters
# than PostgreSQL's protocol allows (32,767), the page failed on every retry and the indexer
# stalled for good. 1,000 rows (8,000 parameters) also compile once and hit the SQL cache.
STORE_BATCH = 1000
LISTING_FIELDS = [
    "listing_id",
    "asset_id",
    "offer_id",
    "exchange",
    "kind",
    "identifier",
    "title_zh",
    "title_en",
    "abstract_zh",
    "region",
    "transaction_type",
    "price_mode",
    "amount",
    "amount_text",
    "seller",
    "seller_id",
    "version",
]


def terms_of(demand: Demand) -> DemandTerms:
    return DemandTerms(
        kinds=tuple(demand.kinds),
        transaction_types=tuple(demand.transaction_types),
        regions=tuple(demand.regions),
        budget_max=demand.budget_max,
    )


def _any(attribute: str, values: Sequence[str]) -> str:
    return f"{attribute} IN [{', '.join(quote(v) for v in values)}]"


def listing_summary(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "listing_id": doc["listing_id"],
        "asset_id": doc["asset_id"],
        "offer_id": doc["offer_id"],
        "exchange": doc["exchange"],
        "kind": doc["kind"],
        "identifier": doc["identifier"],
        "title": {"zh": doc.get("title_zh"), "en": doc.get("title_en")},
        "region": doc.get("region"),
        "transaction_type": doc["transaction_type"],
        "price_mode": doc.get("price_mode"),
        "amount": doc.get("amount_text"),
        "seller": doc.get("seller"),
    }


class Matcher:
    def __init__(self, meili: MeiliClient, catalogue_uid: str) -> None:
        self.meili = meili
        self.catalogue_uid = catalogue_uid
        self.demands_uid = demands_index(catalogue_uid)
        self._ready = False

    async def ensure_index(self) -> None:
        """Create the demands index with its settings (once per process; a document added to
        a missing index would create one without its filterable attributes)."""
        if self._ready:
            return
        if not await self.meili.index_exists(self.demands_uid):
            try:
                await self.meili.wait_task(await self.meili.create_index(self.demands_uid, "id"))
            except MeiliTaskFailed as exc:
                # The indexer's matching and a request (or a replica) race to create it first.
                if exc.code != "index_already_exists":
                    raise
        await self.meili.wait_task(await self.meili.update_settings(self.demands_uid, SETTINGS))
        self._ready = True

    async def index_demand(self, demand: Demand) -> None:
        await self.ensure_index()
        if demand.status == "active":
            task = await self.meili.add_documents(self.demands_uid, [demand_document(demand)])
        else:
            task = await self.meili.delete_documents(self.demands_uid, [str(demand.id)])
        await self.meili.wait_task(task)

    # A demand against the catalogue ------------------------------------------------------

    async def match_demand(self, session: AsyncSession, demand: Demand) -> int:
        query = f"{demand.title} {demand.text[:200]}"
        filters = [
            'status IN ["published", "under_negotiation"]',
            f"seller_id != {quote(str(demand.organization_id))}",
        ]
        if demand.kinds:
            filters.append(_any("kind", demand.kinds))
        if demand.transaction_types:
            filters.append(_any("transaction_type", demand.transaction_types))
        if demand.ipc_prefixes:
            filters.append(_any("ipc_prefixes", demand.ipc_prefixes))
        body: dict[str, Any] = {
            "q": query,
            "filter": filters,
            "limit": 100,
            "showRankingScore": True,
            "showMatchesPosition": True,
            "attributesToRetrieve": LISTING_FIELDS,
        }
        if CJK.search(query):
            body["locales"] = ["cmn"]
        result = await self.meili.search(self.catalogue_uid, body)
        terms = terms_of(demand)
        scored = []
        for doc in result["hits"]:
            relevance = float(doc.get("_rankingScore") or 0)
            if relevance < MIN_RELEVANCE:
                continue
            total, reasons = score(terms, doc, relevance, matched_terms(doc))
            scored.append((demand, doc, total, reasons))
        scored.sort(key=lambda item: -item[2])
        return await self.store(session, scored[:MAX_MATCHES_PER_DEMAND])

    # New listings against the demands ----------------------------------------------------

    def _demand_query(self, doc: dict[str, Any]) -> dict[str, Any]:
        title = salient_query(doc.get("title_zh") or doc.get("title_en") or "")
        filters = [
            'status = "active"',
            f"(kinds IS EMPTY OR kinds = {quote(doc['kind'])})",
            f"(transaction_types IS EMPTY OR transaction_types = {quote(doc['transaction_type'])})",
        ]
        if doc.get("ipc_prefixes"):
            filters.append(
                f"(ipc_prefixes IS EMPTY OR {_any('ipc_prefixes', doc['ipc_prefixes'])})"
            )
        if doc.get("seller_id"):
            filters.append(f"organization_id != {quote(doc['seller_id'])}")
        query: dict[str, Any] = {
            "indexUid": self.demands_uid,
            "q": title,
            "filter": filters,
            "limit": 50,
            "showRankingScore": True,
            "showMatchesPosition": True,
            "attributesToRetrieve": ["id", "title", "text"],
        }
        if CJK.search(title):
            query["locales"] = ["cmn"]
        return query

    async def match_listings(self, session: AsyncSession, docs: list[dict[str, Any]]) -> int:
        await self.ensure_index()
        candidates: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for start in range(0, len(docs), MULTI_SEARCH_BATCH):
            batch = docs[start : start + MULTI_SEARCH_BATCH]
            results = await self.meili.multi_search([self._demand_query(d) for d in batch])
            for doc, result in zip(batch, results, strict=True):
                candidates += [
                    (doc, hit)
                    for hit in result["hits"]
                    if float(hit.get("_rankingScore") or 0) >= MIN_RELEVANCE
                ]
        if not candidates:
            return 0
        ids = {UUID(hit["id"]) for _, hit in candidates}
        rows = await session.execute(
            select(Demand).where(col(Demand.id).in_(ids), col(Demand.status) == "active")
        )
        demands = {d.id: d for d in rows.scalars()}
        scored = []
        for doc, hit in candidates:
            demand = demands.get(UUID(hit["id"]))
            if demand is None:
                continue  # closed meanwhile
            relevance = float(hit["_rankingScore"])
            total, reasons = score(terms_of(demand), doc, relevance, matched_terms(hit))
            scored.append((demand, doc, total, reasons))
        return await self.store(session, scored)

    async def store(
        self,
        session: AsyncSession,
        scored: list[tuple[Demand, dict[str, Any], float, list[dict[str, Any]]]],
    ) -> int:
        """Upsert matches; a new one writes its event. Returns how many were new."""
        if not scored:
            return 0
        now = datetime.now(UTC)
        values = [
            {
                "demand_id": demand.id,
                "listing_id": UUID(doc["listing_id"]),
                "asset_id": UUID(doc["asset_id"]),
                "listing_version": int(doc["version"]),
                "score": total,
                "reasons": reasons,
                "created_at": now,
                "updated_at": now,
            }
            for demand, doc, total, reasons in scored
        ]
        inserted: set[tuple[UUID, UUID]] = set()
        for start in range(0, len(values), STORE_BATCH):
            stmt = insert(Match).values(values[start : start + STORE_BATCH])
            upsert = stmt.on_conflict_do_update(
                index_elements=["demand_id", "listing_id"],
                set_={
                    "score": stmt.excluded.score,
                    "reasons": stmt.excluded.reasons,
                    "listing_version": stmt.excluded.listing_version,
                    "updated_at": now,
                },
            ).returning(col(Match.demand_id), col(Match.listing_id), text("(xmax = 0) AS inserted"))
            inserted |= {(r[0], r[1]) for r in await session.execute(upsert) if r[2]}
        events = []
        for demand, doc, total, reasons in scored:
            if (demand.id, UUID(doc["listing_id"])) not in inserted:
                continue
            events.append(
                {
                    "demand_id": demand.id,
                    "organization_id": demand.organization_id,
                    "listing_id": UUID(doc["listing_id"]),
                    "type": "match.created",
                    "occurred_at": now,
                    "payload": {
                        "demand_id": str(demand.id),
                        "demand_title": demand.title,
                        "score": total,
                        "reasons": reasons,
                        "listing": listing_summary(doc),
                    },
                }
            )
        for start in range(0, len(events), STORE_BATCH):
            await session.execute(insert(MatchEvent).values(events[start : start + STORE_BATCH]))
        return len(events)
