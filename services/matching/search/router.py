"""GET /v1/search: the catalogue search."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlalchemy import func, select
from sqlmodel import col

from services.matching.meili import MeiliClient, MeiliError, MeiliUnavailable
from services.matching.models import IndexedListing
from services.matching.search.query import (
    SearchParams,
    SortOrder,
    normalize_ipc_prefix,
    search_body,
)
from services.matching.search.schemas import OfferSummary, SearchHit, SearchResult
from shared.contracts.catalogue import AssetKind, LegalStatus, TransactionType
from shared.db import SessionDep
from shared.errors import (
    ServiceUnavailable,
    UnprocessableEntity,
    problem_responses,
)
from shared.identifiers import looks_like_identifier

router = APIRouter(prefix="/v1/search", tags=["search"])
MAX_HITS = 10_000


def _hit(doc: dict[str, Any]) -> SearchHit:
    formatted = doc.get("_formatted") or {}
    return SearchHit(
        asset_id=doc["asset_id"],
        listing_id=doc["listing_id"],
        offer_id=doc["offer_id"],
        kind=doc["kind"],
        identifier=doc["identifier"],
        publication_number=doc.get("publication_number"),
        title={"zh": doc.get("title_zh"), "en": doc.get("title_en")},
        abstract={"zh": doc.get("abstract_zh"), "en": doc.get("abstract_en")},
        holders=doc.get("holders") or [],
        region=doc.get("region"),
        ipc=doc.get("ipc") or [],
        legal_status=doc.get("legal_status"),
        transaction_type=doc["transaction_type"],
        price_mode=doc.get("price_mode"),
        amount=doc.get("amount_text"),
        status=doc["status"],
        exchange=doc["exchange"],
        seller=doc.get("seller"),
        score=doc.get("_rankingScore"),
        highlight={
            k: v
            for k, v in formatted.items()
            if k in ("title_zh", "title_en", "abstract_zh", "abstract_en") and v
        },
    )


def _offer(doc: dict[str, Any]) -> OfferSummary:
    return OfferSummary(
        listing_id=doc["listing_id"],
        offer_id=doc["offer_id"],
        exchange=doc["exchange"],
        transaction_type=doc["transaction_type"],
        price_mode=doc.get("price_mode"),
        amount=doc.get("amount_text"),
        status=doc["status"],
        source_url=doc.get("source_url"),
    )


@router.get("", response_model=SearchResult, responses=problem_responses(422, 503))
async def search(
    request: Request,
    session: SessionDep,
    q: Annotated[str, Query(max_length=500, description="text, a patent number, a name")] = "",
    kind: Annotated[list[AssetKind], Query(max_length=9)] = [],  # noqa: B006
    transaction_type: Annotated[list[TransactionType], Query(max_length=7)] = [],  # noqa: B006
    ipc: Annotated[
        list[str], Query(max_length=10, description="IPC prefixes: H01M, H01M 10/0525")
    ] = [],  # noqa: B006
    nice: Annotated[list[int], Query(max_length=45)] = [],  # noqa: B006
    region: Annotated[
        list[str], Query(max_length=20, description="province (11) or region code (110108)")
    ] = [],  # noqa: B006
    legal_status: Annotated[list[LegalStatus], Query(max_length=7)] = [],  # noqa: B006
    exchange: Annotated[list[str], Query(max_length=20)] = [],  # noqa: B006
    price_min: Annotated[Decimal | None, Query(ge=0, le=Decimal("1e14"))] = None,
    price_max: Annotated[Decimal | None, Query(ge=0, le=Decimal("1e14"))] = None,
    sort: SortOrder = "relevance",
    facets: bool = True,
    highlight: bool = True,
    group: Annotated[bool, Query(description="one result per asset, with its offers")] = True,
    page: Annotated[int, Query(ge=1, le=500)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> SearchResult:
    """Search the catalogue (published listings) in Chinese or English, or by patent number
    (matched exactly), with filters, facets, sorting and pages."""
    errors = []
    for i, prefix in enumerate(ipc):
        try:
            normalize_ipc_prefix(prefix)
        except ValueError:
            errors.append(("ipc", f"ipc[{i}] is not an IPC prefix (H, H01, H01M, H01M 10/0525)"))
    for i, number in enumerate(nice):
        if not 1 <= number <= 45:
            errors.append(("nice", f"nice[{i}] must be a Nice class 1-45"))
    for i, code in enumerate(region):
        if not (code.isdigit() and len(code) in (2, 6)):
            errors.append(
                (
                    "region",
                    f"region[{i}] must be a province (2 digits) or a GB/T 2260 code (6 digits)",
                )
            )
    for i, name in enumerate(exchange):
        if not (
            name.replace("_", "").replace("-", "").isascii()
            and name.replace("_", "").replace("-", "").isalnum()
            and len(name) <= 32
        ):
            errors.append(("exchange", f"exchange[{i}] is not an exchange code"))
    if price_min is not None and price_max is not None and price_min > price_max:
        errors.append(("price_min", "price_min is above price_max"))
    if page * page_size > MAX_HITS:
        errors.append(("page", f"page × page_size may not pass {MAX_HITS}: narrow the search"))
    if errors:
        raise UnprocessableEntity(
            "; ".join(message for _, message in errors),
            errors=[
                {"field": f, "rule": "invalid_value", "message": m}  # type: ignore[misc]
                for f, m in errors
            ],
        )
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
        group_by_asset=group,
        page=page,
        page_size=page_size,
    )
    meili: MeiliClient = request.app.state.meili
    uid: str = request.app.state.index_uid
    body = search_body(params)
    try:
        result = await meili.search(uid, body)
        hits = [_hit(doc) for doc in result["hits"]]
        if group and hits:
            await _attach_offers(session, meili, uid, hits)
    except MeiliUnavailable as exc:
        raise ServiceUnavailable(
            "search is unavailable, retry shortly", headers={"Retry-After": "2"}
        ) from exc
    except MeiliError as exc:  # our query was refused: say so without leaking internals
        raise UnprocessableEntity.single(
            "q", "search_refused", "the search engine refused this query"
        ) from exc
    return SearchResult(
        items=hits,
        total=int(result.get("totalHits", 0)),
        page=page,
        page_size=page_size,
        total_pages=int(result.get("totalPages", 0)),
        facets=result.get("facetDistribution") or {},
        query={
            "identifier": (looks_like_identifier(params.q) or [None, None])[1]
            if params.q
            else None,
            "sort": sort,
            "grouped": group,
        },
    )


async def _attach_offers(session: Any, meili: MeiliClient, uid: str, hits: list[SearchHit]) -> None:
    """Fetch every offer only for assets that have more than one (the usual asset has one)."""
    asset_ids = [hit.asset_id for hit in hits]
    counts = await session.execute(
        select(col(IndexedListing.asset_id), func.count())
        .where(col(IndexedListing.asset_id).in_(asset_ids), col(IndexedListing.searchable))
        .group_by(col(IndexedListing.asset_id))
    )
    several = [str(asset_id) for asset_id, count in counts if count > 1]
    for hit in hits:
        if hit.asset_id not in several:
            hit.offers = [
                OfferSummary(
                    listing_id=hit.listing_id,
                    offer_id=hit.offer_id,
                    exchange=hit.exchange,
                    transaction_type=hit.transaction_type,
                    price_mode=hit.price_mode,
                    amount=hit.amount,
                    status=hit.status,
                    source_url=None,
                )
            ]
    if not several:
        return
    found = await meili.search(
        uid,
        {
            "q": "",
            "limit": 1000,
            "filter": [
                f"asset_id IN [{', '.join(repr(a) for a in several)}]",
                'status IN ["published", "under_negotiation"]',
            ],
            "attributesToRetrieve": [
                "listing_id",
                "asset_id",
                "offer_id",
                "exchange",
                "transaction_type",
                "price_mode",
                "amount_text",
                "status",
                "source_url",
            ],
        },
    )
    by_asset: dict[str, list[OfferSummary]] = {}
    for doc in found["hits"]:
        by_asset.setdefault(doc["asset_id"], []).append(_offer(doc))
    for hit in hits:
        if hit.asset_id in several:
            hit.offers = by_asset.get(hit.asset_id, [])
