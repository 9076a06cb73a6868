"""Finding matches in both directions, in batches:

- a demand is created or changed: one catalogue search with its text and hard filters;
- listings become searchable: the indexer queues them (demands/queue.py) and the match worker
  runs one multi-search of the demands index per 20 listings (the listing's title against every
  active demand), never every demand against every listing.

Matches are upserted (a listing found again is re-scored); a new match writes a `match.created`
event in the same transaction (the outbox the gateway turns into webhooks).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from typing import Any
from uuid import UUID

from pydantic_core import from_json, to_json
from sqlalchemy import ARRAY, DateTime, Float, Integer, Text, Uuid, bindparam, cast, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.matching.demands.index import SETTINGS, demand_document, demands_index
from services.matching.demands.reading import Reading, stored_reading
from services.matching.demands.scoring import (
    MAX_MATCHES_PER_DEMAND,
    MIN_RELEVANCE,
    DemandTerms,
    compile_reading,
    listing_text,
    salient_query,
    score,
    term_weights,
    text_fit,
)
from services.matching.meili import MeiliClient, MeiliTaskFailed
from services.matching.models import Demand, IndexedListing
from services.matching.vocabulary import CatalogueVocabulary, Vocabulary, units
from shared.search import quote

CJK = re.compile(r"[\u3400-\u9fff]")
# A demand's catalogue queries (catalogue_queries): phrases and single pieces, hits of each.
PHRASE_QUERIES = 2
HITS_PER_PHRASE = 30
PIECE_QUERIES = 10
HITS_PER_PIECE = 20


# Listings per multi-search. Each query runs against every active demand: at 10,000 demands
# 100 queries took ~4 s on 2 busy cores, near the client's timeout, and a timed-out page is
# retried whole by the indexer, which then never got past it. 20 keep each request short.
MULTI_SEARCH_BATCH = 20
# Demands read per round trip while scoring a batch of listings.
DEMANDS_PER_FETCH = 200
# Matches and their events are written with one statement each whatever the rows: the columns
# as arrays, unnested. A page of 1,000 new listings against 10,000 demands finds tens of
# thousands of matches; as multi-row VALUES that was more bind parameters than PostgreSQL's
# protocol allows (32,767) and the indexer stalled for good; in pages, every row count was
# another statement to compile (half the worker's time) and to keep prepared on each pooled
# connection (the service's memory grew by tens of MB over 1,000 listings).
UPSERT_MATCHES = text(
    """
    INSERT INTO matching.matches AS m
        (id, demand_id, listing_id, asset_id, listing_version, score, reasons,
         created_at, updated_at)
    SELECT gen_random_uuid(), d, l, a, v, s, r::jsonb, :now, :now
    FROM unnest(
        CAST(:demand_ids AS uuid[]), CAST(:listing_ids AS uuid[]), CAST(:asset_ids AS uuid[]),
        CAST(:versions AS integer[]), CAST(:scores AS float8[]), CAST(:reasons AS text[])
    ) AS t(d, l, a, v, s, r)
    ON CONFLICT (demand_id, listing_id) DO UPDATE SET
        score = excluded.score,
        reasons = excluded.reasons,
        listing_version = excluded.listing_version,
        updated_at = excluded.updated_at
    -- Two workers may match two versions of one listing at once (it was re-published while
    -- queued): the older never overwrites the newer.
    WHERE m.listing_version <= excluded.listing_version
    RETURNING m.demand_id, m.listing_id, (m.xmax = 0) AS inserted
    """
).bindparams(
    bindparam("demand_ids", type_=ARRAY(Uuid())),
    bindparam("listing_ids", type_=ARRAY(Uuid())),
    bindparam("asset_ids", type_=ARRAY(Uuid())),
    bindparam("versions", type_=ARRAY(Integer())),
    bindparam("scores", type_=ARRAY(Float())),
    # JSON as text: a list of lists would bind as a two-dimensional array.
    bindparam("reasons", type_=ARRAY(Text())),
    bindparam("now", type_=DateTime(timezone=True)),
)
INSERT_EVENTS = text(
    """
    INSERT INTO matching.match_events
        (demand_id, organization_id, listing_id, type, occurred_at, payload)
    SELECT d, o, l, 'match.created', :now, p::jsonb
    FROM unnest(
        CAST(:demand_ids AS uuid[]), CAST(:organization_ids AS uuid[]),
        CAST(:listing_ids AS uuid[]), CAST(:payloads AS text[])
    ) AS t(d, o, l, p)
    """
).bindparams(
    bindparam("demand_ids", type_=ARRAY(Uuid())),
    bindparam("organization_ids", type_=ARRAY(Uuid())),
    bindparam("listing_ids", type_=ARRAY(Uuid())),
    bindparam("payloads", type_=ARRAY(Text())),
    bindparam("now", type_=DateTime(timezone=True)),
)
LISTING_FIELDS = [
    "listing_id",
    "abstract_en",
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
# The fields of a listing's search document the match queue keeps: the demand query (title,
# kind, type, IPC, seller), the scoring and the summary in the match event.
QUEUED_FIELDS = [*LISTING_FIELDS, "ipc_prefixes"]


@dataclass(frozen=True, slots=True)
class DemandRef:
    """What a stored match and its event say of the demand."""

    id: UUID
    organization_id: UUID
    title: str


# (demand, listing search document, score, reasons)
Scored = tuple[Demand | DemandRef, dict[str, Any], float, list[dict[str, Any]]]


def terms_of(demand: Demand) -> DemandTerms:
    return DemandTerms.of(
        stored_reading(demand.title, demand.text, demand.reading),
        demand.kinds,
        demand.transaction_types,
        demand.regions,
        demand.budget_max,
    )


def catalogue_queries(reading: Reading, vocabulary: Vocabulary) -> list[dict[str, Any]]:
    """Short queries that together find what a demand asks for (Meilisearch keeps at most ten
    query words and drops words until something matches, so a whole sentence finds little):
    the title's terms, the two weightiest terms, and each of the demand's rarest pieces that
    the catalogue holds on its own (a one-word query also matches the words it begins, so 防撞
    finds 防撞击). The local scoring then ranks the union. Measured in docs/DECISIONS.md."""
    weights = term_weights(reading, vocabulary)
    ranked = [t for _, t in sorted(zip(weights, reading.terms, strict=True), key=lambda p: -p[0])]
    phrases = [
        " ".join(t.text for t in reading.terms if t.source == "title"),
        *(t.text for t in ranked[:PHRASE_QUERIES]),
    ]
    pieces: dict[str, float] = {}
    for term in reading.terms:
        for unit in units(term.text):
            if len(unit) > 1 and vocabulary.document_frequency(unit):
                weight = term.weight * vocabulary.idf(unit)
                pieces[unit] = max(pieces.get(unit, 0.0), weight)
    rarest = sorted(pieces, key=lambda u: -pieces[u])[:PIECE_QUERIES]
    queries = [
        {"q": q, "limit": HITS_PER_PHRASE, "matchingStrategy": "frequency"}
        for q in dict.fromkeys(p for p in phrases if p.strip())
    ]
    queries += [{"q": u, "limit": HITS_PER_PIECE, "matchingStrategy": "last"} for u in rarest]
    return queries


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
        self.vocabulary = CatalogueVocabulary(meili, catalogue_uid)
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
        reading = stored_reading(demand.title, demand.text, demand.reading)
        vocabulary = await self.vocabulary.get()
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
        queries = [
            {
                **query,
                "indexUid": self.catalogue_uid,
                "filter": filters,
                "attributesToRetrieve": LISTING_FIELDS,
                **({"locales": ["cmn"]} if CJK.search(query["q"]) else {}),
            }
            for query in catalogue_queries(reading, vocabulary)
        ]
        candidates: dict[str, dict[str, Any]] = {}
        for result in await self.meili.multi_search(queries) if queries else []:
            for doc in result["hits"]:
                candidates.setdefault(doc["listing_id"], doc)
        compiled = compile_reading(reading, vocabulary)
        terms = DemandTerms.of(
            reading, demand.kinds, demand.transaction_types, demand.regions, demand.budget_max
        )
        # One match per asset: its best offer (the text is the asset's, the terms the offer's).
        best: dict[str, Scored] = {}
        for doc in candidates.values():
            fit = text_fit(compiled, listing_text(doc, vocabulary))
            if fit.fit < MIN_RELEVANCE:
                continue
            total, reasons = score(terms, doc, fit)
            kept = best.get(doc["asset_id"])
            if kept is None or (total, doc["listing_id"]) > (kept[2], kept[1]["listing_id"]):
                best[doc["asset_id"]] = (demand, doc, total, reasons)
        scored = sorted(best.values(), key=lambda item: (-item[2], item[1]["listing_id"]))
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
        # Ids only: the demand's reading comes from PostgreSQL and the score from text_fit,
        # the same function the demand's own search uses.
        query: dict[str, Any] = {
            "indexUid": self.demands_uid,
            "q": title,
            "filter": filters,
            "limit": 50,
            "matchingStrategy": "frequency",
            "attributesToRetrieve": ["id"],
        }
        if CJK.search(title):
            query["locales"] = ["cmn"]
        return query

    async def find_demands(self, docs: list[dict[str, Any]]) -> list[list[UUID]]:
        """Per listing document, the active demands its title finds; one multi-search per
        MULTI_SEARCH_BATCH listings."""
        await self.ensure_index()
        found: list[list[UUID]] = []
        for start in range(0, len(docs), MULTI_SEARCH_BATCH):
            batch = docs[start : start + MULTI_SEARCH_BATCH]
            results = await self.meili.multi_search([self._demand_query(d) for d in batch])
            found += [[UUID(h["id"]) for h in result["hits"]] for result in results]
        return found

    async def store_listing_matches(
        self,
        session: AsyncSession,
        docs: list[dict[str, Any]],
        found: list[list[UUID]],
    ) -> int:
        """Score what `find_demands` found for `docs` against the demands as they are now
        (closed ones are skipped) and store the matches. Returns how many were new."""
        # A listing closed, withdrawn or sold since it was queued is matched no more.
        live = set(
            (
                await session.execute(
                    select(col(IndexedListing.listing_id)).where(
                        col(IndexedListing.listing_id).in_([UUID(d["listing_id"]) for d in docs]),
                        col(IndexedListing.searchable),
                    )
                )
            ).scalars()
        )
        # The listings each demand was found by: a demand is read, compiled, scored against its
        # listings and let go (a batch finds thousands of demands; compiled all at once, they
        # held tens of MB).
        wanted: dict[UUID, list[int]] = defaultdict(list)
        for i, (doc, hits) in enumerate(zip(docs, found, strict=True)):
            if UUID(doc["listing_id"]) in live:
                for demand_id in hits:
                    wanted[demand_id].append(i)
        if not wanted:
            return 0
        vocabulary = await self.vocabulary.get()
        texts = {i: listing_text(docs[i], vocabulary) for i in set(chain(*wanted.values()))}
        rows = await session.stream(
            select(
                col(Demand.id),
                col(Demand.organization_id),
                col(Demand.title),
                col(Demand.text),
                col(Demand.kinds),
                col(Demand.transaction_types),
                col(Demand.regions),
                col(Demand.budget_max),
                # As text, decoded by pydantic-core: the json module took 6 % of the worker.
                cast(col(Demand.reading), Text),
            )
            .where(col(Demand.id).in_(wanted), col(Demand.status) == "active")
            .execution_options(yield_per=DEMANDS_PER_FETCH)
        )
        scored: list[Scored] = []
        async for r in rows:  # closed meanwhile: not among them
            reading = stored_reading(r[2], r[3], from_json(r[8]))
            compiled = compile_reading(reading, vocabulary)
            demand_terms = DemandTerms.of(reading, r[4], r[5], r[6], r[7])
            ref = DemandRef(r[0], r[1], r[2])
            for i in wanted[r[0]]:
                fit = text_fit(compiled, texts[i])
                if fit.fit >= MIN_RELEVANCE:
                    total, reasons = score(demand_terms, docs[i], fit)
                    scored.append((ref, docs[i], total, reasons))
        return await self.store(session, scored)

    async def store(
        self,
        session: AsyncSession,
        scored: list[Scored],
    ) -> int:
        """Upsert matches; a new one writes its event. Returns how many were new."""
        if not scored:
            return 0
        now = datetime.now(UTC)
        rows = await session.execute(
            UPSERT_MATCHES,
            {
                "demand_ids": [demand.id for demand, _, _, _ in scored],
                "listing_ids": [UUID(doc["listing_id"]) for _, doc, _, _ in scored],
                "asset_ids": [UUID(doc["asset_id"]) for _, doc, _, _ in scored],
                "versions": [int(doc["version"]) for _, doc, _, _ in scored],
                "scores": [total for _, _, total, _ in scored],
                # pydantic-core's encoder, as the match queue's: the json module's took 15 % of
                # the match worker's CPU in tests/perf/bench_matches.py (both cast to jsonb).
                "reasons": [to_json(r).decode() for _, _, _, r in scored],
                "now": now,
            },
        )
        inserted = {(r[0], r[1]) for r in rows if r[2]}
        new = [
            (demand, doc, total, reasons)
            for demand, doc, total, reasons in scored
            if (demand.id, UUID(doc["listing_id"])) in inserted
        ]
        if new:
            await session.execute(
                INSERT_EVENTS,
                {
                    "demand_ids": [demand.id for demand, _, _, _ in new],
                    "organization_ids": [demand.organization_id for demand, _, _, _ in new],
                    "listing_ids": [UUID(doc["listing_id"]) for _, doc, _, _ in new],
                    "payloads": [
                        to_json(
                            {
                                "demand_id": str(demand.id),
                                "demand_title": demand.title,
                                "score": total,
                                "reasons": reasons,
                                "listing": listing_summary(doc),
                            }
                        ).decode()
                        for demand, doc, total, reasons in new
                    ],
                    "now": now,
                },
            )
        return len(new)
