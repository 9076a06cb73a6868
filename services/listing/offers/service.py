"""Partner offers: the gateway upserts each partner exchange's offer here, attached to the asset
with the same kind and normalised identifier (the one place where offers are deduplicated), and
anyone reads an asset's offers across exchanges. Never commits."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from services.listing.assets import service as assets
from services.listing.assets.repository import AssetRepository
from services.listing.assets.rules import normalize_asset
from services.listing.listings.documents import TERMS_COLUMNS, terms_columns
from services.listing.listings.rules import VISIBLE, check_publishable, check_terms
from services.listing.listings.service import Context, audit, document, emit
from services.listing.models import Asset, Listing, Organization
from services.listing.offers.repository import OfferRepository
from shared.contracts.catalogue import (
    OUR_EXCHANGE,
    CatalogueDocument,
    ListingStatus,
    TransactionTerms,
    offer_id,
)
from shared.contracts.events import EventType
from shared.contracts.offers import OfferUpsertResult
from shared.errors import Conflict, FieldError, UnprocessableEntity
from shared.identifiers import IdentifierError, validate_region_code
from shared.schemas import Page, decode_page_token, encode_page_token

# What a partner may send: offers it has reviewed, in any later state.
PARTNER_STATUSES: frozenset[str] = frozenset(
    {"published", "under_negotiation", "withdrawn", "closed", "expired"}
)
# On the market: shown in the catalogue and searchable.
PUBLIC: frozenset[str] = frozenset({"published", "under_negotiation"})
ENDED_EVENT: dict[str, EventType] = {
    "withdrawn": "listing.withdrawn",
    "closed": "listing.closed",
    "expired": "listing.expired",
}
# The columns a partner's document sets (the rest are ours: id, version, timestamps).
PARTNER_COLUMNS = (
    "asset_id",
    "seller_id",
    "seller_name",
    "source_url",
    "source_version",
    "source_updated_at",
    "status",
    "published_at",
    *TERMS_COLUMNS,
)


class AssetOffer(BaseModel):
    """One offer on an asset, on any exchange."""

    listing_id: UUID
    status: ListingStatus = Field(examples=["published"])
    document: dict[str, Any] = Field(
        description="the offer's catalogue document (ipx.catalogue/v1), its asset inline",
    )


def _check_request(exchange: str, listing_id: str, doc: CatalogueDocument) -> None:
    """Every way the request itself is wrong, in one 422."""
    errors: list[FieldError] = []
    if exchange == OUR_EXCHANGE:
        errors.append(
            FieldError(
                field="exchange",
                rule="own_exchange",
                message=f"'{OUR_EXCHANGE}' is this exchange: its offers are not upserted here",
            )
        )
    if doc.source.exchange != exchange:
        errors.append(
            FieldError(
                field="source.exchange",
                rule="path_mismatch",
                message=f"source.exchange is {doc.source.exchange!r}, the path says {exchange!r}",
            )
        )
    if doc.source.listing_id != listing_id:
        errors.append(
            FieldError(
                field="source.listing_id",
                rule="path_mismatch",
                message=f"source.listing_id is {doc.source.listing_id!r}, "
                f"the path says {listing_id!r}",
            )
        )
    expected = offer_id(doc.source.exchange, doc.source.listing_id)
    if doc.offer_id != expected:
        errors.append(
            FieldError(
                field="offer_id",
                rule="offer_id_mismatch",
                message=f"offer_id must be '<exchange>:<listing id>', here {expected!r}",
            )
        )
    if doc.status not in PARTNER_STATUSES:
        errors.append(
            FieldError(
                field="status",
                rule="partner_status_not_reviewed",
                message=f"a partner sends only reviewed offers: {doc.status} is not one "
                f"(send one of {', '.join(sorted(PARTNER_STATUSES))})",
            )
        )
    errors += check_terms(doc.transaction)
    if errors:
        raise UnprocessableEntity("; ".join(e.message for e in errors), errors=errors)


def _refuse_if_ended(
    status: str,
    legal_status: str,
    expires_on: date | None,
    encumbrances: list[dict[str, Any]],
    terms: TransactionTerms,
    today: date,
) -> None:
    """A right that has ended cannot be offered: 409 with the rule.

    Only that rule of `check_publishable` applies to partner offers. In particular there is no
    "no second exclusive licence" check across exchanges: each exchange reviewed its own offer,
    and an exclusive licence offered on two exchanges is theirs (and the operators') to settle.
    """
    if status not in PUBLIC:
        return
    errors = [
        e
        for e in check_publishable(
            legal_status=legal_status,
            expires_on=expires_on,
            encumbrances=encumbrances,
            terms=terms,
            pledge_disclosed=True,
            other_exclusive_listing=False,
            today=today,
        )
        if e.rule == "right_not_in_force"
    ]
    if errors:
        raise Conflict(
            "; ".join(e.message for e in errors),
            errors=errors,
            slug="not-publishable",
            title="This listing cannot be published",
        )


def _exchange_region(region: str | None) -> str | None:
    if region is None:
        return None
    try:
        return validate_region_code(region)
    except IdentifierError as exc:
        raise UnprocessableEntity.single("exchange_region", exc.rule, exc.message) from exc


def _missing_exchange(code: str, name: str | None, region: str | None) -> UnprocessableEntity:
    errors = [
        FieldError(
            field=field,
            rule="required_for_new_exchange",
            message=f"the exchange {code!r} is new here: send its {field}",
        )
        for field, value in (("exchange_name", name), ("exchange_region", region))
        if value is None
    ]
    return UnprocessableEntity("; ".join(e.message for e in errors), errors=errors)


def _stale(listing: Listing, doc: CatalogueDocument) -> bool:
    return listing.source_version is not None and listing.source_version >= doc.source.version


def _columns(
    doc: CatalogueDocument,
    asset: Asset,
    seller: Organization,
    published_before: datetime | None,
    now: datetime,
) -> dict[str, Any]:
    published_at = doc.published_at or published_before
    if published_at is None and doc.status in PUBLIC:
        published_at = now
    return {
        "asset_id": asset.id,
        "seller_id": seller.id,
        "seller_name": doc.seller,
        "source_url": doc.source.url,
        "source_version": doc.source.version,
        "source_updated_at": doc.source.updated_at,
        "status": doc.status,
        "published_at": published_at,
        **terms_columns(doc.transaction),
    }


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (Decimal, UUID)):
        return str(value)
    return value


def _event_type(before: str | None, after: str) -> EventType:
    if after in PUBLIC and before not in PUBLIC:
        return "listing.published"
    if after in ENDED_EVENT and after != before:
        return ENDED_EVENT[after]
    return "listing.updated"


def _result(listing: Listing, asset: Asset, applied: bool) -> OfferUpsertResult:
    assert listing.source_version is not None
    return OfferUpsertResult(
        listing_id=listing.id,
        asset_id=asset.id,
        version=listing.version,
        source_version=listing.source_version,
        applied=applied,
        needs_review=asset.needs_review,
    )


async def _unchanged(ctx: Context, listing: Listing) -> OfferUpsertResult:
    return _result(listing, await assets.get(ctx.session, listing.asset_id), applied=False)


async def upsert(
    ctx: Context,
    exchange: str,
    listing_id: str,
    doc: CatalogueDocument,
    *,
    exchange_name: str | None,
    exchange_region: str | None,
) -> OfferUpsertResult:
    """Create or update a partner exchange's offer from its catalogue document.

    - The exchange is an organisation of kind `exchange` (created, verified, the first time its
      code is seen; its name and region come from the query then). It is the offer's seller;
      the original seller's name is kept as text.
    - The asset is the one with the same kind and normalised identifier, registered (by the
      exchange) when new. Our asset data is never overwritten by a partner's; when the
      partner's holder names differ from ours the asset is flagged `needs_review`. Partner
      offers skip the "seller must be a holder" check.
    - No review: the partner reviewed its offer, so it arrives in its own state. A `source.version`
      as old as the stored one (or older) changes nothing (`applied` false). Concurrent calls
      for one offer queue on an advisory lock taken before any write (so the feed lists their
      events in version order); the first insert wins the unique constraint.
    - An ended right is refused (409, `right_not_in_force`) when offered as published; the
      exclusive-licence rule is not applied across exchanges (see `_refuse_if_ended`).
    """
    _check_request(exchange, listing_id, doc)
    region = _exchange_region(exchange_region)
    asset_doc = normalize_asset(doc.asset, today=ctx.today)
    _refuse_if_ended(
        doc.status,
        asset_doc.legal_status,
        asset_doc.expires_on,
        [e.model_dump(mode="json") for e in asset_doc.encumbrances],
        doc.transaction,
        ctx.today,
    )
    offers = OfferRepository(ctx.session)
    # First, before any write: a transaction takes its id at its first write, and the change
    # feed is ordered by transaction id, so writers of one offer must queue before they write or
    # a later version could precede an earlier one in the feed.
    await offers.serialize(exchange, listing_id)
    stored: Listing | None = None
    seller = await offers.exchange(exchange)
    if seller is None:
        if exchange_name is None or region is None:
            raise _missing_exchange(exchange, exchange_name, region)
        seller = await offers.insert_exchange(
            Organization(
                name=exchange_name, kind="exchange", region=region, code=exchange, verified=True
            )
        )
    else:
        stored = await offers.offer(exchange, listing_id, lock=True)
        if stored is not None and _stale(stored, doc):
            return await _unchanged(ctx, stored)

    asset, created_asset = await AssetRepository(ctx.session).insert_or_get(
        Asset(**assets.row_values(asset_doc), registered_by=seller.id)
    )
    now = datetime.now(UTC)
    inserted = False
    if stored is None:
        fresh = Listing(
            exchange=exchange,
            external_id=listing_id,
            created_at=now,
            updated_at=now,
            **_columns(doc, asset, seller, None, now),
        )
        inserted = await offers.insert_offer(fresh)
        stored = await offers.offer(exchange, listing_id, lock=True)
        assert stored is not None
        if not inserted and _stale(stored, doc):
            return await _unchanged(ctx, stored)
    listing = stored

    if not created_asset:
        _refuse_if_ended(
            doc.status,
            asset.legal_status,
            asset.expires_on,
            asset.encumbrances,
            doc.transaction,
            ctx.today,
        )
        theirs = {h.name for h in asset_doc.holders}
        ours = {str(h.get("name")) for h in asset.holders}
        if theirs != ours and not asset.needs_review:
            asset.needs_review = True
            asset.updated_at = now

    before_status: str | None
    if inserted:
        before_status = None
        changes = {
            name: [None, _json(getattr(listing, name))]
            for name in PARTNER_COLUMNS
            if getattr(listing, name) is not None
        }
    else:
        before_status = listing.status
        changes = {}
        for name, value in _columns(doc, asset, seller, listing.published_at, now).items():
            old = getattr(listing, name)
            if old != value:
                changes[name] = [_json(old), _json(value)]
                setattr(listing, name, value)
        listing.version += 1
        listing.updated_at = now
        listing.rejection_reason = None
    audit(ctx, listing, "partner_upsert", changes)
    emit(
        ctx.session,
        _event_type(before_status, listing.status),
        listing,
        asset,
        seller,
        ctx.catalogue_url,
    )
    await ctx.session.flush()
    return _result(listing, asset, applied=True)


async def asset_offers(
    session: AsyncSession,
    catalogue_url: str,
    asset_id: UUID,
    *,
    include_closed: bool,
    page_size: int,
    page_token: str,
) -> Page[AssetOffer]:
    """The asset's offers on every exchange that are on the market (with `include_closed`, also
    the closed, withdrawn and expired ones); never drafts or offers in review."""
    await assets.get(session, asset_id)  # 404 for an unknown asset
    statuses = VISIBLE if include_closed else PUBLIC
    position = decode_page_token(page_token, "created_at", "id")
    after = None
    if position:
        try:
            after = (datetime.fromisoformat(position["created_at"]), UUID(position["id"]))
        except (TypeError, ValueError) as exc:
            raise UnprocessableEntity.single(
                "page_token", "page_token_invalid", "page_token is not one this API issued"
            ) from exc
    rows = await OfferRepository(session).of_asset(
        asset_id, statuses, after=after, limit=page_size + 1
    )
    more = len(rows) > page_size
    rows = rows[:page_size]
    items = [
        AssetOffer(
            listing_id=listing.id,
            status=listing.status,
            document=document(listing, asset, seller, catalogue_url),
        )
        for listing, asset, seller in rows
    ]
    token = (
        encode_page_token(
            {"created_at": rows[-1][0].created_at.isoformat(), "id": str(rows[-1][0].id)}
        )
        if more
        else ""
    )
    return Page(items=items, next_page_token=token)
