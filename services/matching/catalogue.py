"""The catalogue index: its settings (kept in code, applied at start) and how a catalogue
document becomes a search document. One search document per offer (listing); search groups
them by asset (`distinct` on asset_id) so an asset offered on several exchanges appears once."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from services.matching.synonyms import SYNONYMS
from shared.contracts.catalogue import OUR_EXCHANGE, money_text
from shared.identifiers import ipc_prefixes

SEARCHABLE = {"published", "under_negotiation"}

SETTINGS: dict[str, Any] = {
    "searchableAttributes": [
        "identifier",
        "publication_number",
        "title_zh",
        "title_en",
        "abstract_zh",
        "abstract_en",
        "holders",
        "ipc",
    ],
    "filterableAttributes": [
        "kind",
        "transaction_type",
        "ipc_prefixes",
        "nice",
        "province",
        "region",
        "amount",
        "legal_status",
        "exchange",
        "status",
        "asset_id",
        "identifier",
        "publication_number",
        "price_mode",
        "listing_id",
        "seller_id",
    ],
    "sortableAttributes": ["amount", "published_at", "filed_on"],
    "displayedAttributes": ["*"],
    "synonyms": SYNONYMS,
    # A patent number must match exactly; "2024" must not match "2025".
    "typoTolerance": {
        "disableOnAttributes": ["identifier", "publication_number"],
        "disableOnNumbers": True,
    },
    # Chinese-only queries can be detected as Japanese; tell the tokenizer what it reads.
    "localizedAttributes": [
        {"attributePatterns": ["*_zh", "holders"], "locales": ["cmn"]},
        {"attributePatterns": ["*_en"], "locales": ["eng"]},
    ],
    "pagination": {"maxTotalHits": 10000},
    "faceting": {"maxValuesPerFacet": 100, "sortFacetValuesBy": {"*": "count"}},
    # Indexing cost, paid by every batch (a partner push waits for one): word-pair proximity
    # per attribute instead of per word position, and no facet-value search (the API has no
    # facet search; facet counts on search do not need it): docs/DECISIONS.md, Matching,
    # "Indexer".
    "proximityPrecision": "byAttribute",
    "facetSearch": False,
}


def document_id(listing_id: str) -> str:
    """Meilisearch ids allow [A-Za-z0-9_-]: a listing's UUID qualifies as it is."""
    return listing_id


def _timestamp(value: str | None) -> int | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value) if "T" in value else None
    if parsed is not None:
        return int(parsed.timestamp())
    return int(datetime.combine(date.fromisoformat(value), datetime.min.time()).timestamp())


def search_document(
    listing_id: str,
    asset_id: str,
    version: int,
    doc: dict[str, Any],
    *,
    seller_id: str | None = None,
) -> dict[str, Any]:
    """A catalogue document (the feed's `data`) as a search document."""
    asset = doc["asset"]
    terms = doc["transaction"]
    holders = asset.get("holders") or []
    regions = [h["region"] for h in holders if h.get("region")]
    region = regions[0] if regions else None
    ipc = asset.get("classifications", {}).get("ipc", [])
    amount = terms.get("price", {}).get("amount")
    return {
        "id": document_id(listing_id),
        "listing_id": listing_id,
        "asset_id": asset_id,
        "seller_id": seller_id,
        "version": version,
        "offer_id": doc["offer_id"],
        "exchange": doc.get("source", {}).get("exchange", OUR_EXCHANGE),
        "source_url": doc.get("source", {}).get("url"),
        "status": doc["status"],
        "kind": asset["kind"],
        "identifier": asset["identifier"],
        "publication_number": asset.get("publication_number"),
        "title_zh": asset.get("title", {}).get("zh"),
        "title_en": asset.get("title", {}).get("en"),
        "abstract_zh": asset.get("abstract", {}).get("zh"),
        "abstract_en": asset.get("abstract", {}).get("en"),
        "holders": [h["name"] for h in holders],
        "region": region,
        "province": region[:2] if region else None,
        "ipc": ipc,
        "ipc_prefixes": sorted({p for code in ipc for p in ipc_prefixes(code)}),
        "nice": asset.get("classifications", {}).get("nice", []),
        "locarno": asset.get("classifications", {}).get("locarno", []),
        "legal_status": asset.get("legal_status"),
        "filed_on": _timestamp(asset.get("filed_on")),
        "expires_on": asset.get("expires_on"),
        "transaction_type": terms["type"],
        "price_mode": terms.get("price", {}).get("mode"),
        "amount": float(amount) if amount is not None else None,
        "amount_text": money_text(amount),
        "royalty_rate": terms.get("royalty_rate"),
        "published_at": _timestamp(doc.get("published_at")),
        "seller": doc.get("seller"),
    }
