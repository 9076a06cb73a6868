"""Partner offers: the gateway upserts each partner exchange's offer here, attached to the asset
with the same kind and normalised identifier (the one place where offers are deduplicated), and
anyone reads an asset's offers across exchanges. Never commits."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy.ext.asyncio import AsyncSession

from services.listing.assets import service as assets
from services.listing.assets.repository import AssetRepository
from services.listing.assets.rules import normalize_asset
from services.listing.listings.documents import (
    TERMS_COLUMNS,
    OfferState,
    asset_json,
    document_data,
    terms_columns,
)
from services.listing.listings.rules import VISIBLE, check_publishable, check_terms
from services.listing.listings.service import Context, document
from services.listing.models import Organization
from services.listing.offers.repository import OfferRepository, OfferWriter
from shared.contracts.catalogue import (
    OUR_EXCHANGE,
    AssetDocument,
    AssetOffer,
    CatalogueDocument,
    TransactionTerms,
    offer_id,
)
from shared.contracts.events import EventType
from shared.contracts.offers import OfferUpsertResult
from shared.errors import Conflict, FieldError, UnprocessableEntity
from shared.identifiers import IdentifierError, validate_region_code
from shared.schemas import (
    Page,
    created_after,
    created_position,
    cut_page,
)

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


def _stale(source_version: int | None, doc: CatalogueDocument) -> bool:
    return source_version is not None and source_version >= doc.source.version


def _columns(
    doc: CatalogueDocument,
    asset_id: UUID,
    seller_id: UUID,
    published_before: datetime | None,
    now: datetime,
) -> dict[str, Any]:
    published_at = doc.published_at or published_before
    if published_at is None and doc.status in PUBLIC:
        published_at = now
    return {
        "asset_id": asset_id,
        "seller_id": seller_id,
        "seller_name": doc.seller,
        "source_url": doc.source.url,
        "source_version": doc.source.version,
        "source_updated_at": doc.source.updated_at,
        "status": doc.status,
        "published_at": published_at,
        **terms_columns(doc.transaction),
        # A partner's (or the gazette's) open licence declaration: its typed terms, as the
        # driver takes JSONB (text).
        "open_license": (
            doc.transaction.open_license.model_dump_json()
            if doc.transaction.open_license is not None
            else None
        ),
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


def _result(listing: dict[str, Any], asset: dict[str, Any], *, applied: bool) -> OfferUpsertResult:
    assert listing["source_version"] is not None
    return OfferUpsertResult(
        listing_id=listing["id"],
        asset_id=asset["id"],
        version=listing["version"],
        source_version=listing["source_version"],
        applied=applied,
        needs_review=asset["needs_review"],
    )


async def _exchange_row(
    ctx: Context, exchange: str, name: str | None, region: str | None
) -> dict[str, Any]:
    """The exchange's organisation, created (verified) the first time its code is seen."""
    if name is None or region is None:
        raise _missing_exchange(exchange, name, region)
    created = await OfferRepository(ctx.session).insert_exchange(
        Organization(name=name, kind="exchange", region=region, code=exchange, verified=True)
    )
    return {"id": created.id, "name": created.name}


async def _asset_row(
    ctx: Context, asset_doc: AssetDocument, seller_id: UUID, now: datetime
) -> tuple[dict[str, Any], bool]:
    """The asset of this right: registered by the exchange when new, else the stored one."""
    return await AssetRepository(ctx.session).insert_or_get_values(
        {
            "id": uuid4(),
            **assets.row_values(asset_doc),
            "registered_by": seller_id,
            "needs_review": False,
            "version": 1,
            "created_at": now,
            "updated_at": now,
        }
    )


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

    Written without ORM objects, straight to the driver (`OfferWriter`): the partner intake
    sends every push here.
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
    writer = OfferWriter(ctx.session)
    # First, before any write: a transaction takes its id at its first write, and the change
    # feed is ordered by transaction id, so writers of one offer must queue before they write or
    # a later version could precede an earlier one in the feed.
    seller = await writer.lock_and_exchange(exchange, listing_id)
    found = None
    if seller is None:
        seller = await _exchange_row(ctx, exchange, exchange_name, region)
    else:
        found = await writer.offer(exchange, listing_id)
        if found is not None and _stale(found[0]["source_version"], doc):
            return _result(*found, applied=False)

    now = datetime.now(UTC)
    if found is not None and (found[1]["kind"], found[1]["identifier"]) == (
        asset_doc.kind,
        asset_doc.identifier,
    ):
        # The offer's own asset: registering it again would only find it.
        asset, created_asset = found[1], False
    else:
        asset, created_asset = await _asset_row(ctx, asset_doc, seller["id"], now)
    if not created_asset:
        _refuse_if_ended(
            doc.status,
            asset["legal_status"],
            asset["expires_on"],
            asset["encumbrances"],
            doc.transaction,
            ctx.today,
        )
        theirs = {h.name for h in asset_doc.holders}
        ours = {str(h.get("name")) for h in asset["holders"]}
        if theirs != ours and not asset["needs_review"]:
            await writer.flag_asset(asset["id"], now)
            asset = {**asset, "needs_review": True, "updated_at": now}

    history = {
        "action": "partner_upsert",
        "actor_organization_id": ctx.principal.organization_id,
        "actor_key_id": ctx.principal.key_id,
        "actor_roles": sorted(ctx.principal.roles),
        "reason": None,
        "at": now,
    }
    if found is None:
        new_id = uuid4()
        columns = _columns(doc, asset["id"], seller["id"], None, now)
        listing = {
            "id": new_id,
            "exchange": exchange,
            "external_id": listing_id,
            **columns,
            "pledge_disclosed": False,
            "rejection_reason": None,
            "version": 1,
            "created_at": now,
            "updated_at": now,
        }
        changes = {
            name: [None, _json(columns[name])]
            for name in PARTNER_COLUMNS
            if columns[name] is not None
        }
        event_type = _event_type(None, listing["status"])
        inserted = await writer.insert(
            listing,
            history={**history, "version": 1, "changes": changes},
            event=_event(event_type, listing, asset, seller["name"], ctx.catalogue_url, now),
        )
        if inserted:
            return _result(listing, asset, applied=True)
        # Inserted meanwhile by a writer that did not queue: update it as any stored offer.
        found = await writer.offer(exchange, listing_id)
        assert found is not None
        if _stale(found[0]["source_version"], doc):
            return _result(*found, applied=False)

    stored = found[0]
    changed: dict[str, Any] = {}
    changes = {}
    for name, value in _columns(
        doc, asset["id"], seller["id"], stored["published_at"], now
    ).items():
        if stored[name] != value:
            changes[name] = [_json(stored[name]), _json(value)]
            changed[name] = value
    changed |= {"version": stored["version"] + 1, "updated_at": now, "rejection_reason": None}
    listing = {**stored, **changed}
    await writer.update(
        stored["id"],
        changed,
        history={**history, "version": listing["version"], "changes": changes},
        event=_event(
            _event_type(stored["status"], listing["status"]),
            listing,
            asset,
            seller["name"],
            ctx.catalogue_url,
            now,
        ),
    )
    return _result(listing, asset, applied=True)


def _event(
    type: EventType,
    listing: dict[str, Any],
    asset: dict[str, Any],
    seller_name: str,
    catalogue_url: str,
    now: datetime,
) -> dict[str, Any]:
    """The outbox row of a change (without its `entity_id`), as `events.record` writes it."""
    return {
        "entity": "listing",
        "type": type,
        "version": listing["version"],
        "payload": {
            "data": document_data(
                OfferState.of(listing, seller_name), asset_json(asset), catalogue_url
            ),
            "asset_id": str(asset["id"]),
            "seller_id": str(listing["seller_id"]),
        },
        "occurred_at": now,
    }


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
    rows, token = cut_page(
        await OfferRepository(session).of_asset(
            asset_id, statuses, after=created_after(page_token), limit=page_size + 1
        ),
        page_size,
        lambda row: created_position(row[0]),
    )
    items = [
        AssetOffer(
            listing_id=listing.id,
            status=listing.status,
            document=document(listing, asset, seller, catalogue_url),
        )
        for listing, asset, seller in rows
    ]
    return Page(items=items, next_page_token=token)
