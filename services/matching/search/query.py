"""From search parameters to a Meilisearch query: plain functions, no I/O.

Filters are built here from typed, validated values (never from a client's filter string), so
a hostile parameter cannot inject into Meilisearch's filter language.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from shared.identifiers import looks_like_identifier

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
