"""Catalogue search, in one place for the two services that run it: matching serves
GET /v1/search with it, and the gateway queries Meilisearch directly with it (a read-only key
that matching provisions; NOTES.md "Search hop"). From typed parameters to Meilisearch queries,
and from Meilisearch's answer to the public result.

Filters are built here from typed, validated values (never from a client's filter string), so
a hostile parameter cannot inject into Meilisearch's filter language. The caller brings the
I/O: a `CatalogueIndex` that sends a body to the catalogue index's search or document fetch.
"""

from __future__ import annotations

import asyncio
import hashlib
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
from shared.schemas import PageToken, encode_page_token, page_position, token_int, token_str

__all__ = [
    "EXACT_COUNT_BUDGET",
    "MAX_HITS",
    "CatalogueIndex",
    "MeiliError",
    "MeiliUnavailable",
    "SearchParams",
    "catalogue_search",
    "count_body",
    "next_page_token",
    "normalize_ipc_prefix",
    "offer_summary",
    "offers_body",
    "quote",
    "read_total",
    "region_filter_errors",
    "search_body",
    "search_hit",
    "search_params",
]

logger = logging.getLogger("ipx.search")

SortOrder = Literal["relevance", "price_asc", "price_desc", "newest", "oldest", "filed"]
# How `total` relates to the true number of results: equal, an estimate (never below it), or a
# floor (the count stops at MAX_HITS).
TotalRelation = Literal["eq", "about", "gte"]
# Why the total is what it is: estimated (the default), counted exactly (asked for, or the
# last page was reached), or not counted although asked: too broad, or over the time budget.
Count = Literal["estimated", "exact", "too_broad", "over_budget"]
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
    snippet: bool = False
    group_by_asset: bool = True
    page: int = 1
    page_size: int = 20
    offset: int = 0  # the first result's position: (page - 1) x page_size, or a page token's
    exact_total: bool = False


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


def _query(params: SearchParams) -> tuple[str, tuple[str, str] | None]:
    """The text Meilisearch searches for, and the identifier the query is, if it is one (then
    the text is empty and a filter matches the identifier exactly)."""
    identifier = looks_like_identifier(params.q) if params.q else None
    return ("" if identifier else params.q), identifier


def search_body(params: SearchParams) -> dict[str, Any]:
    """The Meilisearch search request for these parameters: a page by offset and limit, which
    counts hits by estimate. `page`/`hitsPerPage` would make Meilisearch group every matching
    offer by asset to count them exactly, 9x the cost of a page at 100,000 listings
    (docs/DECISIONS.md, "Search at scale"); count_body() does that when asked."""
    q, identifier = _query(params)
    body: dict[str, Any] = {
        "q": q,
        "filter": filters(params, identifier),
        "offset": params.offset,
        "limit": params.page_size,
        "attributesToRetrieve": RETRIEVED,
        "showRankingScore": True,
    }
    if SORTS[params.sort]:
        body["sort"] = SORTS[params.sort]
    if params.facets:
        body["facets"] = list(FACETS)
    if (params.highlight or params.snippet) and q:
        # Titles by default; the abstract's snippet on request: cropping it around the matches
        # is the dearest part of a default search (DECISIONS, "Search at scale").
        body["attributesToHighlight"] = list(highlighted(params))
        if params.snippet:
            body["attributesToCrop"] = list(ABSTRACTS)
            body["cropLength"] = 60
        body["highlightPreTag"] = "<em>"
        body["highlightPostTag"] = "</em>"
    if params.group_by_asset:
        body["distinct"] = "asset_id"
    if CJK.search(q):
        body["locales"] = ["cmn"]
    return body


def highlighted(params: SearchParams) -> tuple[str, ...]:
    """The attributes a hit's `highlight` shows."""
    return (TITLES if params.highlight else ()) + (ABSTRACTS if params.snippet else ())


def count_body(params: SearchParams) -> dict[str, Any]:
    """The exhaustive count of what search_body() finds (no hits): its total and facet counts
    group offers by asset over every match, up to MAX_HITS results."""
    q, identifier = _query(params)
    body: dict[str, Any] = {
        "q": q,
        "filter": filters(params, identifier),
        "page": 1,
        "hitsPerPage": 0,
    }
    if params.facets:
        body["facets"] = list(FACETS)
    if params.group_by_asset:
        body["distinct"] = "asset_id"
    if CJK.search(q):
        body["locales"] = ["cmn"]
    return body


def read_total(
    offset: int, page_size: int, returned: int, estimate: int
) -> tuple[int, TotalRelation]:
    """The total a page of results shows. A page shorter than asked for ends the results, so
    its end is the exact total; otherwise Meilisearch's estimate, which counts matching offers
    before grouping them by asset (never fewer than the assets), stopping at MAX_HITS.
    An empty page past the end has no total of its own: the caller counts it."""
    if returned < page_size and (returned or offset == 0):
        return offset + returned, "eq"
    if estimate >= MAX_HITS:
        return MAX_HITS, "gte"
    return max(estimate, offset + returned), "about"


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


# No result past this position is served, and counts stop here (the index's
# pagination.maxTotalHits): a frontend pages through the first 10,000 results; a consumer that
# wants every listing reads the change feed.
MAX_HITS = 10_000
# The longest an exact count asked for may take before the answer falls back to the estimate.
# Counting stops at MAX_HITS, so it costs at most ~150 ms at 100,000 listings on one core, and
# broader queries (estimate at MAX_HITS) are not counted at all (DECISIONS, "Search at scale").
EXACT_COUNT_BUDGET = 0.5


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
    highlight: Annotated[
        bool, Query(description="matches in the titles in <em>", examples=[True])
    ] = True,
    snippet: Annotated[
        bool,
        Query(
            description="the abstracts cropped to about 60 words around the matches, in <em> "
            "(costs a third more per search)",
            examples=[False],
        ),
    ] = False,
    group: Annotated[
        bool, Query(description="one result per asset, with its offers", examples=[True])
    ] = True,
    page: Annotated[
        int,
        Query(ge=1, le=500, description="page × page_size may not pass 10,000", examples=[1]),
    ] = 1,
    page_size: Annotated[int, Query(ge=1, le=100, examples=[20])] = 20,
    page_token: PageToken = "",
    exact_total: Annotated[
        bool,
        Query(
            description="count every result exactly (slower; counts stop at 10,000, and a "
            "query with more is answered with total_relation `gte`)",
            examples=[False],
        ),
    ] = False,
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
    if errors:
        raise UnprocessableEntity("; ".join(e.message for e in errors), errors=errors)
    params = SearchParams(
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
        snippet=snippet,
        group_by_asset=group,
        page=page,
        page_size=page_size,
        offset=(page - 1) * page_size,
        exact_total=exact_total,
    )
    if page_token:
        if page != 1:
            raise UnprocessableEntity.single(
                "page_token", "page_or_token", "give page or page_token, not both"
            )
        params.offset = _token_offset(page_token, params)
        params.page = params.offset // page_size + 1
    if params.offset + page_size > MAX_HITS:
        field = "page_token" if page_token else "page"
        raise UnprocessableEntity.single(
            field,
            "max_hits",
            f"results past the first {MAX_HITS} are not served (page × page_size may not pass "
            f"{MAX_HITS}): narrow the search, or read the change feed for every listing",
        )
    return params


def _fingerprint(params: SearchParams) -> str:
    """What a page token is tied to: the query, its filters and its order (a token used with
    another search would land at an arbitrary position of it)."""
    q, identifier = _query(params)
    parts = [q, *filters(params, identifier), params.sort, str(params.group_by_asset)]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def next_page_token(params: SearchParams, returned: int, total: int) -> str:
    """The token of the page after this one: empty at the end of the results, and at the last
    page served (MAX_HITS)."""
    following = params.offset + returned
    if returned < params.page_size or following >= total or following >= MAX_HITS:
        return ""
    return encode_page_token({"offset": following, "query": _fingerprint(params)})


def _token_offset(token: str, params: SearchParams) -> int:
    position = page_position(token, offset=token_int, query=token_str)
    assert position is not None  # a non-empty token
    if position["query"] != _fingerprint(params):
        raise UnprocessableEntity.single(
            "page_token",
            "page_token_query",
            "page_token belongs to another search: keep q, the filters and sort as they were",
        )
    offset: int = position["offset"]
    return offset


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
TITLES = ("title_zh", "title_en")
ABSTRACTS = ("abstract_zh", "abstract_en")


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


def search_hit(doc: dict[str, Any], shown: tuple[str, ...] = ()) -> dict[str, Any]:
    """A SearchHit (shared/contracts/search.py) as a dict; `shown`: the highlighted
    attributes (Meilisearch formats every retrieved one)."""
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
        "highlight": {k: formatted[k] for k in shown if formatted.get(k)},
        "offers": [],
    }


async def catalogue_search(
    index: CatalogueIndex, params: SearchParams, count_budget: float = EXACT_COUNT_BUDGET
) -> bytes:
    """The search result (SearchResult in shared/contracts/search.py) as JSON bytes: the page
    of hits and, when grouped by asset, every searchable offer on each hit's asset (one document
    fetch more, for the whole page). Serialised here, once: both services answer these bytes.

    The total is Meilisearch's estimate unless the page ends the results; an exact count
    (count_body) runs when asked for and the estimate is under MAX_HITS, within
    `count_budget` seconds, and for an empty page past the end, whose total must not be a
    guess."""
    try:
        result = await index.search(search_body(params))
        docs: list[dict[str, Any]] = result["hits"]
        shown = highlighted(params)
        hits = [search_hit(doc, shown) for doc in docs]
        if params.group_by_asset and hits:
            found = await index.fetch(offers_body([hit["asset_id"] for hit in hits]))
            by_asset: dict[str, list[dict[str, Any]]] = {}
            for doc in found["results"]:
                by_asset.setdefault(doc["asset_id"], []).append(offer_summary(doc))
            for hit, doc in zip(hits, docs, strict=True):
                # An offer that left the index between the two queries leaves the hit its own.
                hit["offers"] = by_asset.get(hit["asset_id"]) or [offer_summary(doc)]
        estimate = int(result.get("estimatedTotalHits", 0))
        total, relation = read_total(params.offset, params.page_size, len(hits), estimate)
        facets = result.get("facetDistribution") or {}
        facets_exact = False
        count: Count = "exact" if relation == "eq" else "estimated"
        past_the_end = not hits and params.offset > 0
        # Asked for, an exact count runs on a short page too: its facets are estimates.
        if (params.exact_total and relation != "gte") or past_the_end:
            try:
                async with asyncio.timeout(count_budget):
                    counted = await index.search(count_body(params))
            except TimeoutError:
                count = "over_budget"
            else:
                total = int(counted.get("totalHits", 0))
                relation = "gte" if total >= MAX_HITS else "eq"
                count = "exact" if relation == "eq" else "too_broad"
                facets, facets_exact = counted.get("facetDistribution") or {}, True
        elif params.exact_total and relation == "gte":
            count = "too_broad"
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
    _, identifier = _query(params)
    answer = {
        "items": hits,
        "total": total,
        "total_is_exact": relation == "eq",
        "total_relation": relation,
        "page": params.page,
        "page_size": params.page_size,
        "total_pages": -(-min(total, MAX_HITS) // params.page_size),
        "next_page_token": next_page_token(params, len(hits), total),
        "facets": facets,
        "facets_are_exact": facets_exact,
        "query": {
            "identifier": identifier[1] if identifier else None,
            "sort": params.sort,
            "grouped": params.group_by_asset,
            "count": count,
        },
    }
    return to_json(answer)
