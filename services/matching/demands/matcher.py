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
from sqlalchemy.ext.asyncio import AsyncSession

from services.matching import repository as index_records
from services.matching.demands import repository
from services.matching.demands.index import SETTINGS, demand_document, demands_index
from services.matching.demands.reading import Reading, stored_reading
from services.matching.demands.scoring import (
    MAX_MATCHES_PER_DEMAND,
    MIN_RELEVANCE,
    DemandTerms,
    TextFit,
    compile_reading,
    listing_text,
    salient_query,
    score,
    term_weights,
    text_fit,
)
from services.matching.meili import MeiliClient, MeiliTaskFailed
from services.matching.models import Demand
from services.matching.vocabulary import CatalogueVocabulary, Vocabulary, units
from shared.search import RETRIEVED, offer_summary, offers_body, quote, search_hit

CJK = re.compile(r"[\u3400-\u9fff]")
# A demand's catalogue queries (catalogue_queries): phrases and single pieces, hits of each.
PHRASE_QUERIES = 2
HITS_PER_PHRASE = 30
PIECE_QUERIES = 10
HITS_PER_PIECE = 20
SYNONYM_QUERIES = 6
# A new listing's searches of the demands index: its salient title and its rarest title pairs.
LISTING_PIECE_QUERIES = 3
DEMANDS_PER_TITLE = 30
DEMANDS_PER_PIECE = 10


# Listings per multi-search. Each query runs against every active demand, so a multi-search
# is kept short, far from the client's timeout (docs/DECISIONS.md, Matching, "Matches").
MULTI_SEARCH_BATCH = 20
# The fields of a listing's search document matching reads: the public hit (shared.search
# RETRIEVED), the amount the budget is compared with and the seller (a buyer never matches its
# own listings).
LISTING_FIELDS = [*RETRIEVED, "amount", "seller_id"]
# The fields the match queue keeps: those and the IPC prefixes the demands are filtered by.
QUEUED_FIELDS = [*LISTING_FIELDS, "ipc_prefixes"]


@dataclass(frozen=True, slots=True)
class DemandRef:
    """What a stored match and its event say of the demand."""

    id: UUID
    organization_id: UUID
    title: str


# (demand, the asset's best offer for it (a search document), score, reasons)
Scored = tuple[Demand | DemandRef, dict[str, Any], float, list[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class ListingHits:
    """What `find_demands` found for a batch of listings: per listing the demands its title
    finds, and every searchable offer on their assets (a match is per asset: its best offer)."""

    demands: list[list[UUID]]
    offers: dict[str, list[dict[str, Any]]]


def allowed(doc: dict[str, Any], kinds: Sequence[str], types: Sequence[str], buyer: str) -> bool:
    """An offer the buyer's own fields let through (they filter; the prose only scores)."""
    return (
        (not kinds or doc["kind"] in kinds)
        and (not types or doc["transaction_type"] in types)
        and doc.get("seller_id") != buyer
    )


def best_offer(
    demand: DemandTerms, offers: Sequence[dict[str, Any]], fit: TextFit
) -> tuple[dict[str, Any], float, list[dict[str, Any]]]:
    """The offer on an asset that fits the demand best (ties: the smaller listing id, so the
    choice never depends on which offer was seen first), its score and reasons."""
    ranked = [(doc, *score(demand, doc, fit)) for doc in offers]
    return min(ranked, key=lambda r: (-r[1], r[0]["listing_id"]))


def public_listing(doc: dict[str, Any], offers: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A matched offer as the catalogue shows it (shared/contracts/search.py SearchHit), with
    every searchable offer on its asset."""
    hit = search_hit(doc)
    hit["offers"] = [offer_summary(o) for o in offers] or [offer_summary(doc)]
    return hit


def catalogue_queries(reading: Reading, vocabulary: Vocabulary) -> list[dict[str, Any]]:
    """Short queries that together find what a demand asks for (Meilisearch keeps at most ten
    query words and drops words until something matches, so a whole sentence finds little):
    the title's terms, the two weightiest terms, each of the demand's rarest pieces that the
    catalogue holds on its own (a one-word query also matches the words it begins, so 防撞
    finds 防撞击), and the other names of its words. The local scoring then ranks the union.
    Measured in docs/DECISIONS.md."""
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
                weight = term.weight * vocabulary.weight(unit)
                pieces[unit] = max(pieces.get(unit, 0.0), weight)
    rarest = sorted(pieces, key=lambda u: -pieces[u])[:PIECE_QUERIES]
    # The other names of the demand's words (瞳距 for 双眼间距): the catalogue may use only those.
    names = [name for term in ranked for piece in term.pieces for name in piece[1:]]
    queries = [
        {"q": q, "limit": HITS_PER_PHRASE, "matchingStrategy": "frequency"}
        for q in dict.fromkeys(p for p in phrases if p.strip())
    ]
    queries += [{"q": u, "limit": HITS_PER_PIECE, "matchingStrategy": "last"} for u in rarest]
    queries += [
        {"q": name, "limit": HITS_PER_PIECE, "matchingStrategy": "last"}
        for name in list(dict.fromkeys(names))[:SYNONYM_QUERIES]
    ]
    return queries


def _any(attribute: str, values: Sequence[str]) -> str:
    return f"{attribute} IN [{', '.join(quote(v) for v in values)}]"


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
        # One match per asset: its text is scored once, then its best offer is chosen among
        # every offer on it (the searches may have returned only some of them).
        by_asset: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for doc in candidates.values():
            by_asset[doc["asset_id"]].append(doc)
        fits = {
            asset: fit
            for asset, docs in by_asset.items()
            if (fit := text_fit(compiled, listing_text(docs[0], vocabulary))).fit >= MIN_RELEVANCE
        }
        kept = sorted(
            fits,
            key=lambda asset: -best_offer(terms, by_asset[asset], fits[asset])[1],
        )[:MAX_MATCHES_PER_DEMAND]
        offers = await self.offers_of(kept, filters) if kept else {}
        scored: list[Scored] = []
        for asset in kept:
            doc, total, reasons = best_offer(
                terms, offers.get(asset) or by_asset[asset], fits[asset]
            )
            scored.append((demand, doc, total, reasons))
        scored.sort(key=lambda item: (-item[2], item[1]["listing_id"]))
        return await self.store(session, scored, offers)

    async def offers_of(
        self, asset_ids: Sequence[str], filters: Sequence[str] = ()
    ) -> dict[str, list[dict[str, Any]]]:
        """Every searchable offer on these assets (that `filters` let through), by asset."""
        body = offers_body(list(asset_ids), LISTING_FIELDS)
        if filters:
            body["filter"] = " AND ".join([body["filter"], *filters])
        found: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for doc in (await self.meili.fetch(self.catalogue_uid, body))["results"]:
            found[doc["asset_id"]].append(doc)
        return found

    # New listings against the demands ----------------------------------------------------

    def _demand_queries(self, doc: dict[str, Any], vocabulary: Vocabulary) -> list[dict[str, Any]]:
        """The searches of the demands index for a new listing: its salient title, and each of
        its title's rarest character pairs alone (a demand paraphrasing the title may share a
        word or two of it, not the whole: 标点 finds 标点符号误用检测). Measured in
        docs/DECISIONS.md (Matching)."""
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
        common: dict[str, Any] = {
            "indexUid": self.demands_uid,
            "filter": filters,
            "attributesToRetrieve": ["id"],
        }
        if CJK.search(title):
            common["locales"] = ["cmn"]
        pairs = {
            unit
            for unit in units(title.lower())
            if len(unit) == 2 and CJK.match(unit) and vocabulary.document_frequency(unit)
        }
        rarest = sorted(pairs, key=lambda u: (-vocabulary.idf(u), u))[:LISTING_PIECE_QUERIES]
        return [
            {**common, "q": title, "limit": DEMANDS_PER_TITLE, "matchingStrategy": "frequency"},
            *(
                {**common, "q": u, "limit": DEMANDS_PER_PIECE, "matchingStrategy": "last"}
                for u in rarest
            ),
        ]

    async def find_demands(self, docs: list[dict[str, Any]]) -> ListingHits:
        """Per listing document, the active demands it finds (one multi-search per
        MULTI_SEARCH_BATCH listings), and every searchable offer on their assets."""
        await self.ensure_index()
        vocabulary = await self.vocabulary.get()
        found: list[list[UUID]] = []
        for start in range(0, len(docs), MULTI_SEARCH_BATCH):
            batch = docs[start : start + MULTI_SEARCH_BATCH]
            queries = [self._demand_queries(d, vocabulary) for d in batch]
            results = iter(await self.meili.multi_search([q for qs in queries for q in qs]))
            for listing_queries in queries:
                hits: dict[str, None] = {}  # the demands the listing's searches found, once each
                for _ in listing_queries:
                    hits.update(dict.fromkeys(h["id"] for h in next(results)["hits"]))
                found.append([UUID(i) for i in hits])
        assets = [d["asset_id"] for d, hits in zip(docs, found, strict=True) if hits]
        assets = list(dict.fromkeys(assets))
        return ListingHits(found, await self.offers_of(assets) if assets else {})

    async def store_listing_matches(
        self, session: AsyncSession, docs: list[dict[str, Any]], found: ListingHits
    ) -> int:
        """Score what `find_demands` found for `docs` against the demands as they are now
        (closed ones are skipped) and store the matches, one per demand and asset (its best
        offer). Returns how many were new."""
        # A listing closed, withdrawn or sold since it was queued is matched no more.
        live = await index_records.searchable_among(session, [UUID(d["listing_id"]) for d in docs])
        # The listings each demand was found by: a demand is read, compiled, scored against its
        # listings and let go (a batch finds thousands of demands; compiled all at once, they
        # held tens of MB).
        wanted: dict[UUID, list[int]] = defaultdict(list)
        for i, (doc, hits) in enumerate(zip(docs, found.demands, strict=True)):
            if UUID(doc["listing_id"]) in live:
                for demand_id in hits:
                    wanted[demand_id].append(i)
        if not wanted:
            return 0
        vocabulary = await self.vocabulary.get()
        texts = {i: listing_text(docs[i], vocabulary) for i in set(chain(*wanted.values()))}
        # Each asset's offers: the queued version of a listing, the index's of the others.
        offers: dict[str, list[dict[str, Any]]] = {}
        for i in texts:
            doc = docs[i]
            others = [
                o
                for o in found.offers.get(doc["asset_id"], [])
                if o["listing_id"] != doc["listing_id"]
            ]
            offers[doc["asset_id"]] = [*offers.get(doc["asset_id"], others), doc]
        best: dict[tuple[UUID, str], Scored] = {}
        async for r in repository.active_demands(session, list(wanted)):  # closed: not among them
            reading = stored_reading(r[2], r[3], from_json(r[8]))
            compiled = compile_reading(reading, vocabulary)
            demand_terms = DemandTerms.of(reading, r[4], r[5], r[6], r[7])
            ref = DemandRef(r[0], r[1], r[2])
            for i in wanted[r[0]]:
                asset = docs[i]["asset_id"]
                if (r[0], asset) in best:
                    continue  # two offers of one asset in the batch: scored once, all offers
                fit = text_fit(compiled, texts[i])
                if fit.fit < MIN_RELEVANCE:
                    continue
                candidates = [o for o in offers[asset] if allowed(o, r[4], r[5], str(r[1]))]
                if candidates:
                    doc, total, reasons = best_offer(demand_terms, candidates, fit)
                    best[(r[0], asset)] = (ref, doc, total, reasons)
        return await self.store(session, list(best.values()), offers)

    async def store(
        self,
        session: AsyncSession,
        scored: list[Scored],
        offers: dict[str, list[dict[str, Any]]],
    ) -> int:
        """Upsert matches, one per demand and asset; a new one writes its event (the listing as
        the catalogue shows it, with every offer on the asset). Returns how many were new."""
        if not scored:
            return 0
        now = datetime.now(UTC)
        inserted = await repository.upsert_matches(
            session,
            demand_ids=[demand.id for demand, _, _, _ in scored],
            listing_ids=[UUID(doc["listing_id"]) for _, doc, _, _ in scored],
            asset_ids=[UUID(doc["asset_id"]) for _, doc, _, _ in scored],
            versions=[int(doc["version"]) for _, doc, _, _ in scored],
            scores=[total for _, _, total, _ in scored],
            # pydantic-core's encoder, as the match queue's, faster than the json module's
            # (docs/DECISIONS.md, Matching, "Matching's speed"); both cast to jsonb.
            reasons=[to_json(r).decode() for _, _, _, r in scored],
            now=now,
        )
        new = [
            (demand, doc, total, reasons)
            for demand, doc, total, reasons in scored
            if (demand.id, UUID(doc["asset_id"])) in inserted
        ]
        if new:
            await repository.insert_match_events(
                session,
                demand_ids=[demand.id for demand, _, _, _ in new],
                organization_ids=[demand.organization_id for demand, _, _, _ in new],
                listing_ids=[UUID(doc["listing_id"]) for _, doc, _, _ in new],
                payloads=[
                    to_json(
                        {
                            "demand_id": str(demand.id),
                            "demand_title": demand.title,
                            "asset_id": doc["asset_id"],
                            "score": total,
                            "reasons": reasons,
                            "listing": public_listing(doc, offers.get(doc["asset_id"], [])),
                        }
                    ).decode()
                    for demand, doc, total, reasons in new
                ],
                now=now,
            )
        return len(new)
