"""Catalogue search, in one place for the two services that run it: matching serves
GET /v1/search with it, and the gateway queries Meilisearch directly with it (a read-only key
that matching provisions; NOTES.md "Search hop"). From typed parameters to Meilisearch queries,
and from Meilisearch's answer to the public result.

Filters are built here from typed, validated values (never from a client's filter string), so
a hostile parameter cannot inject into Meilisearch's filter language. The caller brings the
I/O: a `CatalogueIndex` that sends a body to the catalogue index's search or document fetch.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any, Literal, Protocol

from fastapi import Query
from pydantic_core import to_json

from shared.contracts.catalogue import (
    CURRENCY,
    EXCHANGE_CODE_PATTERN,
    AssetKind,
    LegalStatus,
    TransactionType,
    money_text,
)
from shared.errors import FieldError, ServiceUnavailable, UnprocessableEntity
from shared.identifiers import PROVINCE_CODES, looks_like_identifier

__all__ = [
    "MAX_HITS",
    "CatalogueIndex",
    "MeiliError",
    "MeiliUnavailable",
    "SearchParams",
    "catalogue_search",
    "normalize_ipc_prefix",
    "offer_summary",
    "offers_body",
    "quote",
    "region_filter_errors",
    "search_body",
    "search_hit",
    "search_params",
]

logger = logging.getLogger("ipx.search")

SortOrder = Literal["relevance", "price_asc", "price_desc", "newest", "oldest", "filed"]
FACETS = ("kind", "transaction_type", "province", "legal_status", "exchange", "nice", "price_mode")
SORTS: dict[str, list[str]] = {
    "relevance": [],
    "price_asc": ["amount:asc"],
    "price_desc": ["amount:desc"],
    "newest": ["published_at:desc"],
    "oldest": ["published_at:asc"],
    "filed": ["filed_on:desc"],
}
IPC_PREFIX = re.compile(r"^[A-H](\d{2}([A-Z](\s?\d{1,4}(/\d{2,6})?)?)?)?$")
CJK = re.compile(r"[\u3400-\u9fff]")
RETRIEVED = [
    "listing_id",
    "asset_id",
    "offer_id",
    "exchange",
    "source_url",
    "status",
    "kind",
    "identifier",
    "publication_number",
    "title_zh",
    "title_en",
    "abstract_zh",
    "abstract_en",
    "holders",
    "region",
    "ipc",
    "nice",
    "legal_status",
    "transaction_type",
    "price_mode",
    "amount_text",
    "royalty_rate",
    "published_at",
    "seller",
    "version",
]


@dataclass
class SearchParams:
    q: str = ""
    kinds: list[str] = field(default_factory=list)
    transaction_types: list[str] = field(default_factory=list)
    ipc: list[str] = field(default_factory=list)
    nice: list[int] = field(default_factory=list)
    regions: list[str] = field(default_factory=list)
    legal_statuses: list[str] = field(default_factory=list)
    exchanges: list[str] = field(default_factory=list)
    price_min: Decimal | None = None
    price_max: Decimal | None = None
    sort: SortOrder = "relevance"
    facets: bool = True
    highlight: bool = True
    group_by_asset: bool = True
    page: int = 1
    page_size: int = 20


def quote(value: str) -> str:
    """A filter string literal (Meilisearch escapes with backslashes)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def normalize_ipc_prefix(raw: str) -> str:
    """`H01M`, `H01M10/0525`, `h01m 10/0525` -> the form indexed in ipc_prefixes."""
    compact = raw.strip().upper()
    if not IPC_PREFIX.match(compact):
        raise ValueError(raw)
    match = re.match(r"^([A-H]\d{2}[A-Z])\s?(\d.*)$", compact)
    return f"{match.group(1)} {match.group(2)}" if match else compact


def _any_of(attribute: str, values: list[str]) -> str:
    return f"{attribute} IN [{', '.join(quote(v) for v in values)}]"


def filters(params: SearchParams, identifier: tuple[str, str] | None) -> list[str]:
    clauses = ['status IN ["published", "under_negotiation"]']
    if identifier is not None:
        value = quote(identifier[1])
        clauses.append(f"(identifier = {value} OR publication_number = {value})")
    if params.kinds:
        clauses.append(_any_of("kind", params.kinds))
    if params.transaction_types:
        clauses.append(_any_of("transaction_type", params.transaction_types))
    if params.ipc:
        clauses.append(_any_of("ipc_prefixes", [normalize_ipc_prefix(p) for p in params.ipc]))
    if params.nice:
        clauses.append(f"nice IN [{', '.join(str(int(n)) for n in params.nice)}]")
    if params.regions:
        provinces = [r for r in params.regions if len(r) == 2]
        regions = [r for r in params.regions if len(r) == 6]
        parts = ([_any_of("province", provinces)] if provinces else []) + (
            [_any_of("region", regions)] if regions else []
        )
        clauses.append("(" + " OR ".join(parts) + ")")
    if params.legal_statuses:
        clauses.append(_any_of("legal_status", params.legal_statuses))
    if params.exchanges:
        clauses.append(_any_of("exchange", params.exchanges))
    if params.price_min is not None:
        clauses.append(f"amount >= {float(params.price_min)}")
    if params.price_max is not None:
        clauses.append(f"amount <= {float(params.price_max)}")
    return clauses


def search_body(params: SearchParams) -> dict[str, Any]:
    """The Meilisearch search request for these parameters."""
    identifier = looks_like_identifier(params.q) if params.q else None
    q = "" if identifier else params.q
    body: dict[str, Any] = {
        "q": q,
        "filter": filters(params, identifier),
        "page": params.page,
        "hitsPerPage": params.page_size,
        "attributesToRetrieve": RETRIEVED,
        "showRankingScore": True,
    }
    if SORTS[params.sort]:
        body["sort"] = SORTS[params.sort]
    if params.facets:
        body["facets"] = list(FACETS)
    if params.highlight and q:
        body["attributesToHighlight"] = ["title_zh", "title_en", "abstract_zh", "abstract_en"]
        body["attributesToCrop"] = ["abstract_zh", "abstract_en"]
        body["cropLength"] = 60
        body["highlightPreTag"] = "<em>"
        body["highlightPostTag"] = "</em>"
    if params.group_by_asset:
        body["distinct"] = "asset_id"
    if CJK.search(q):
        body["locales"] = ["cmn"]
    return body


# Parameters --------------------------------------------------------------------------------

EXCHANGE_CODE = re.compile(EXCHANGE_CODE_PATTERN)


def region_filter_errors(field: str, codes: list[str]) -> list[FieldError]:
    """Regions a search or a demand may filter on: a province (`13`) or a GB/T 2260 code
    (`130100`), each starting with a real province-level code."""
    errors = []
    for i, code in enumerate(codes):
        valid = code.isdigit() and len(code) in (2, 6) and code[:2] in PROVINCE_CODES
        if not valid:
            errors.append(
                FieldError(
                    field=f"{field}[{i}]",
                    rule="region_code",
                    message=f"{code!r} is not a province (2 digits, 11-82) or GB/T 2260 code "
                    "(6 digits)",
                )
            )
    return errors


# page x page_size may not pass this (the index's pagination.maxTotalHits).
MAX_HITS = 10_000


async def search_params(
    q: Annotated[
        str,
        Query(
            max_length=500,
            description="text, a patent number, a name",
            examples=["锂电池隔膜", "ZL 2017 1 0601862.3"],
        ),
    ] = "",
    kind: Annotated[list[AssetKind], Query(max_length=9, examples=[["invention_patent"]])] = [],  # noqa: B006
    transaction_type: Annotated[
        list[TransactionType], Query(max_length=7, examples=[["exclusive_license"]])
    ] = [],  # noqa: B006
    ipc: Annotated[
        list[str],
        Query(max_length=10, description="IPC prefixes: H01M, H01M 10/0525", examples=[["H01M"]]),
    ] = [],  # noqa: B006
    nice: Annotated[list[int], Query(max_length=45, examples=[[9, 42]])] = [],  # noqa: B006
    region: Annotated[
        list[str],
        Query(
            max_length=20,
            description="province (11) or region code (110108)",
            examples=[["13", "110108"]],
        ),
    ] = [],  # noqa: B006
    legal_status: Annotated[list[LegalStatus], Query(max_length=7, examples=[["granted"]])] = [],  # noqa: B006
    exchange: Annotated[
        list[str], Query(max_length=20, description="exchange codes", examples=[["jjj", "tipei"]])
    ] = [],  # noqa: B006
    price_min: Annotated[
        Decimal | None, Query(ge=0, le=Decimal("1e14"), description="CNY", examples=["100000"])
    ] = None,
    price_max: Annotated[
        Decimal | None, Query(ge=0, le=Decimal("1e14"), description="CNY", examples=["2000000"])
    ] = None,
    sort: Annotated[SortOrder, Query(examples=["price_asc"])] = "relevance",
    facets: Annotated[bool, Query(description="facet counts", examples=[True])] = True,
    highlight: Annotated[bool, Query(description="matches in <em>", examples=[True])] = True,
    group: Annotated[
        bool, Query(description="one result per asset, with its offers", examples=[True])
    ] = True,
    page: Annotated[int, Query(ge=1, le=500, examples=[1])] = 1,
    page_size: Annotated[int, Query(ge=1, le=100, examples=[20])] = 20,
) -> SearchParams:
    """The search's query parameters, checked (a FastAPI dependency: one definition for both
    services' endpoints and their OpenAPI). Async only so that FastAPI runs it inline: a sync
    dependency goes through the thread pool, which cost more than the checks themselves."""
    errors: list[FieldError] = []
    for i, prefix in enumerate(ipc):
        try:
            normalize_ipc_prefix(prefix)
        except ValueError:
            errors.append(
                FieldError(
                    field=f"ipc[{i}]",
                    rule="ipc_prefix",
                    message=f"{prefix!r} is not an IPC prefix (H, H01, H01M, H01M 10/0525)",
                )
            )
    for i, number in enumerate(nice):
        if not 1 <= number <= 45:
            errors.append(
                FieldError(field=f"nice[{i}]", rule="nice_class", message="a Nice class is 1-45")
            )
    errors += region_filter_errors("region", region)
    for i, name in enumerate(exchange):
        if not EXCHANGE_CODE.fullmatch(name):
            errors.append(
                FieldError(
                    field=f"exchange[{i}]",
                    rule="exchange_code",
                    message=f"{name!r} is not an exchange code (lower case: jjj, tipei)",
                )
            )
    if price_min is not None and price_max is not None and price_min > price_max:
        errors.append(
            FieldError(
                field="price_min", rule="price_range", message="price_min is above price_max"
            )
        )
    if page * page_size > MAX_HITS:
        errors.append(
            FieldError(
                field="page",
                rule="max_hits",
                message=f"page × page_size may not pass {MAX_HITS}: narrow the search",
            )
        )
    if errors:
        raise UnprocessableEntity("; ".join(e.message for e in errors), errors=errors)
    return SearchParams(
        q=q.strip(),
        kinds=list(kind),
        transaction_types=list(transaction_type),
        ipc=ipc,
        nice=nice,
        regions=region,
        legal_statuses=list(legal_status),
        exchanges=exchange,
        price_min=price_min,
        price_max=price_max,
        sort=sort,
        facets=facets,
        highlight=highlight,
        group_by_asset=group,
        page=page,
        page_size=page_size,
    )


# Running it --------------------------------------------------------------------------------


class MeiliUnavailable(Exception):
    """Meilisearch cannot be reached (or timed out)."""


class MeiliError(Exception):
    """Meilisearch refused a request; `code` is its error code (e.g. invalid_search_filter)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.message = status, code, message


class CatalogueIndex(Protocol):
    """The catalogue index, as each service reaches it: a body in, Meilisearch's answer out
    (raising MeiliUnavailable or MeiliError)."""

    async def search(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /indexes/{uid}/search."""
        ...

    async def fetch(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /indexes/{uid}/documents/fetch."""
        ...


SEARCHABLE_FILTER = 'status IN ["published", "under_negotiation"]'
OFFER_FIELDS = [
    "listing_id",
    "asset_id",
    "offer_id",
    "exchange",
    "transaction_type",
    "price_mode",
    "amount_text",
    "status",
    "source_url",
]
HIGHLIGHTED = ("title_zh", "title_en", "abstract_zh", "abstract_en")


def offers_body(asset_ids: list[str], fields: list[str] = OFFER_FIELDS) -> dict[str, Any]:
    """A document fetch of every searchable offer on these assets (a page's worth; an asset
    rarely has more than a few offers, one per exchange). A fetch, not a search: Meilisearch
    runs one search per core and queues the rest, picking the next at random, so a second
    search would wait in that queue a second time; a filtered fetch does not queue (and needs
    no ranking). Measured in tests/perf/bench_search.py (DECISIONS, "Catalogue search")."""
    return {
        "limit": 1000,
        "filter": f"{_any_of('asset_id', asset_ids)} AND {SEARCHABLE_FILTER}",
        "fields": fields,
    }


def offer_summary(doc: dict[str, Any]) -> dict[str, Any]:
    """An OfferSummary (shared/contracts/search.py) as a dict."""
    return {
        "listing_id": doc["listing_id"],
        "offer_id": doc["offer_id"],
        "exchange": doc["exchange"],
        "transaction_type": doc["transaction_type"],
        "price_mode": doc.get("price_mode"),
        "amount": money_text(doc.get("amount_text")),
        "currency": CURRENCY,
        "status": doc["status"],
        "source_url": doc.get("source_url"),
    }


def search_hit(doc: dict[str, Any]) -> dict[str, Any]:
    """A SearchHit (shared/contracts/search.py) as a dict."""
    formatted = doc.get("_formatted") or {}
    return {
        "asset_id": doc["asset_id"],
        "listing_id": doc["listing_id"],
        "offer_id": doc["offer_id"],
        "kind": doc["kind"],
        "identifier": doc["identifier"],
        "publication_number": doc.get("publication_number"),
        "title": {"zh": doc.get("title_zh"), "en": doc.get("title_en")},
        "abstract": {"zh": doc.get("abstract_zh"), "en": doc.get("abstract_en")},
        "holders": doc.get("holders") or [],
        "region": doc.get("region"),
        "ipc": doc.get("ipc") or [],
        "legal_status": doc.get("legal_status"),
        "transaction_type": doc["transaction_type"],
        "price_mode": doc.get("price_mode"),
        "amount": money_text(doc.get("amount_text")),
        "currency": CURRENCY,
        "status": doc["status"],
        "exchange": doc["exchange"],
        "seller": doc.get("seller"),
        "score": doc.get("_rankingScore"),
        "highlight": {k: v for k, v in formatted.items() if k in HIGHLIGHTED and v},
        "offers": [],
    }


async def catalogue_search(index: CatalogueIndex, params: SearchParams) -> bytes:
    """The search result (SearchResult in shared/contracts/search.py) as JSON bytes: the page
    of hits and, when grouped by asset, every searchable offer on each hit's asset (one document
    fetch more, for the whole page). Serialised here, once: both services answer these bytes."""
    try:
        result = await index.search(search_body(params))
        docs: list[dict[str, Any]] = result["hits"]
        hits = [search_hit(doc) for doc in docs]
        if params.group_by_asset and hits:
            found = await index.fetch(offers_body([hit["asset_id"] for hit in hits]))
            by_asset: dict[str, list[dict[str, Any]]] = {}
            for doc in found["results"]:
                by_asset.setdefault(doc["asset_id"], []).append(offer_summary(doc))
            for hit, doc in zip(hits, docs, strict=True):
                # An offer that left the index between the two queries leaves the hit its own.
                hit["offers"] = by_asset.get(hit["asset_id"]) or [offer_summary(doc)]
    except MeiliUnavailable as exc:
        # The client sees a 503 with Retry-After; the log says which hop failed.
        logger.warning("catalogue search unavailable: %s", exc)
        raise ServiceUnavailable(
            "search is unavailable, retry shortly", headers={"Retry-After": "2"}
        ) from exc
    except MeiliError as exc:  # our query was refused: say so without leaking internals
        raise UnprocessableEntity.single(
            "q", "search_refused", "the search engine refused this query"
        ) from exc
    identifier = looks_like_identifier(params.q) if params.q else None
    answer = {
        "items": hits,
        "total": int(result.get("totalHits", 0)),
        "page": params.page,
        "page_size": params.page_size,
        "total_pages": int(result.get("totalPages", 0)),
        "facets": result.get("facetDistribution") or {},
        "query": {
            "identifier": identifier[1] if identifier else None,
            "sort": params.sort,
            "grouped": params.group_by_asset,
        },
    }
    return to_json(answer)
