"""Listings: creation, edits with optimistic concurrency, the reviewed lifecycle, the audit
history, and the change event of every state change. Never commits."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy.ext.asyncio import AsyncSession

from services.listing.assets import service as assets
from services.listing.assets.rules import is_holder
from services.listing.feed import events
from services.listing.financing import repository as financing
from services.listing.financing.rules import CONSENT_TYPES, check_pledgee_consent
from services.listing.listings.documents import (
    TERMS_COLUMNS,
    OfferState,
    asset_json,
    document_data,
    terms_columns,
    terms_json,
)
from services.listing.listings.repository import ListingRepository
from services.listing.listings.rules import (
    EDITABLE,
    VISIBLE,
    Action,
    check_publishable,
    check_terms,
    next_status,
)
from services.listing.listings.schemas import (
    HistoryEntry,
    ListingCreate,
    ListingUpdate,
)
from services.listing.models import Asset, Listing, ListingHistory, Organization
from services.listing.offers.rules import ensure_our_offer
from services.listing.open_licences import repository as open_licences
from services.listing.open_licences.rules import EXCLUSIVE_TYPES
from shared.auth import Principal
from shared.contracts.catalogue import (
    OUR_EXCHANGE,
    ListingStatus,
    TransactionTerms,
    offer_id,
)
from shared.contracts.events import EventType
from shared.contracts.listings import ListingPublic
from shared.db import utcnow
from shared.errors import (
    Conflict,
    FieldError,
    Forbidden,
    NotFound,
    UnprocessableEntity,
)
from shared.etags import check_version
from shared.schemas import (
    Page,
    created_after,
    created_position,
    cut_page,
    page_position,
    token_int,
)

EVENT_OF_ACTION: dict[Action, EventType] = {
    "submit": "listing.submitted",
    "approve": "listing.published",
    "reject": "listing.rejected",
    "withdraw": "listing.withdrawn",
    "negotiate": "listing.negotiation",
    "reopen": "listing.reopened",
    "close": "listing.closed",
    "expire": "listing.expired",
}
SELLER_ACTIONS: frozenset[Action] = frozenset({"submit", "withdraw", "reopen"})
OPERATOR_ACTIONS: frozenset[Action] = frozenset({"approve", "reject", "expire"})


@dataclass(frozen=True)
class Context:
    """Who acts, on which day, and where the public catalogue lives (for documents' URLs)."""

    session: AsyncSession
    principal: Principal
    organization: Organization | None
    today: date
    catalogue_url: str


def terms_of(listing: Listing) -> TransactionTerms:
    return TransactionTerms.model_validate(
        terms_json({name: getattr(listing, name) for name in (*TERMS_COLUMNS, "open_license")})
    )


def document(
    listing: Listing, asset: Asset, seller: Organization, catalogue_url: str
) -> dict[str, Any]:
    """The catalogue document of a listing (what the feed carries), as JSON data."""
    return document_data(OfferState.of(listing, seller.name), asset_json(asset), catalogue_url)


def to_public(
    listing: Listing | Mapping[str, Any], asset: Asset | Mapping[str, Any], seller: Organization
) -> ListingPublic:
    """From stored rows, or a listing's and an asset's row values."""
    v = listing if isinstance(listing, Mapping) else listing.model_dump()
    return ListingPublic(
        id=v["id"],
        offer_id=offer_id(v["exchange"], v["external_id"]),
        asset_id=v["asset_id"],
        seller_id=v["seller_id"],
        seller_name=v["seller_name"] or seller.name,
        exchange=v["exchange"],
        source_url=v["source_url"],
        status=v["status"],
        version=v["version"],
        transaction=TransactionTerms.model_validate(terms_json(v)),
        pledge_disclosed=v["pledge_disclosed"],
        rejection_reason=v["rejection_reason"],
        published_at=v["published_at"],
        created_at=v["created_at"],
        updated_at=v["updated_at"],
        asset=assets.to_public(asset),
    )


def emit(
    ctx_session: AsyncSession,
    type: EventType,
    listing: Listing,
    asset: Asset,
    seller: Organization,
    catalogue_url: str,
) -> None:
    events.record(
        ctx_session,
        type=type,
        entity_id=listing.id,
        version=listing.version,
        data=document(listing, asset, seller, catalogue_url),
        asset_id=asset.id,
        seller_id=listing.seller_id,
    )


def audit(
    ctx: Context, listing: Listing, action: str, changes: dict[str, Any], reason: str | None = None
) -> None:
    ctx.session.add(
        ListingHistory(
            listing_id=listing.id,
            version=listing.version,
            action=action,
            actor_organization_id=ctx.principal.organization_id,
            actor_key_id=ctx.principal.key_id,
            actor_roles=sorted(ctx.principal.roles),
            changes=changes,
            reason=reason,
        )
    )


def _raise_if(errors: list[FieldError], *, conflict: bool = False) -> None:
    if not errors:
        return
    detail = "; ".join(e.message for e in errors)
    if conflict:
        raise Conflict(
            detail, errors=errors, slug="not-publishable", title="This listing cannot be published"
        )
    raise UnprocessableEntity(detail, errors=errors)


async def _publishable(ctx: Context, listing: Listing, asset: Asset) -> None:
    terms = terms_of(listing)
    other = await ListingRepository(ctx.session).other_active_exclusive(asset.id, listing.id)
    offered: set[str] = set()
    in_force: set[str] = set()
    if terms.type in EXCLUSIVE_TYPES or terms.open_license is not None:
        offered = await open_licences.offered_types(ctx.session, asset.id, listing.id)
    if terms.open_license is not None:
        in_force = await open_licences.licences_in_force(
            ctx.session, asset.id, EXCLUSIVE_TYPES, ctx.today
        )
    unconsenting: list[str] = []
    if terms.type in CONSENT_TYPES:
        unconsenting = await financing.pledgees_without_consent(ctx.session, asset.id, terms.type)
    _raise_if(
        check_publishable(
            legal_status=asset.legal_status,
            expires_on=asset.expires_on,
            encumbrances=asset.encumbrances,
            terms=terms,
            pledge_disclosed=listing.pledge_disclosed,
            other_exclusive_listing=other,
            today=ctx.today,
            offered_types=offered,
            licences_in_force=in_force,
        )
        + check_pledgee_consent(terms.type, unconsenting),
        conflict=True,
    )


def _no_typed_open_licence(terms: TransactionTerms) -> list[FieldError]:
    """Typed open licence terms are a declaration's, made (with its rules) through
    POST /v1/open-licences."""
    if terms.open_license is None:
        return []
    return [
        FieldError(
            field="transaction.open_license",
            rule="declared_through_open_licences",
            message="declare an open licence with POST /v1/open-licences",
        )
    ]


async def create(
    ctx: Context, data: ListingCreate, *, open_license: dict[str, Any] | None = None
) -> ListingPublic:
    """A draft listing, its history entry and its `listing.created` event, written without ORM
    objects (this is the hottest write path); returns the listing as the API shows it."""
    if ctx.organization is None:
        raise Forbidden("listings are created with an organisation's key")
    _raise_if(check_terms(data.transaction) + _no_typed_open_licence(data.transaction))
    asset: dict[str, Any]
    if data.asset is not None:
        registered = await assets.register(
            ctx.session, ctx.principal, ctx.organization, data.asset, today=ctx.today
        )
        asset, asset_public = registered.row, registered.public
    else:
        assert data.asset_id is not None
        stored = await assets.get(ctx.session, data.asset_id)
        asset, asset_public = stored.model_dump(), assets.to_public(stored)
    if not is_holder(asset["holders"], ctx.organization.name, ctx.organization.uscc):
        raise Forbidden(
            "this right is registered to another holder",
            errors=[
                FieldError(
                    field="asset_id",
                    rule="not_a_holder",
                    message="the seller must be one of the holders",
                )
            ],
        )
    now = utcnow()
    listing_id = uuid4()
    listing: dict[str, Any] = {
        "id": listing_id,
        "asset_id": asset["id"],
        "seller_id": ctx.organization.id,
        "exchange": OUR_EXCHANGE,
        "external_id": str(listing_id),
        "source_url": None,
        "source_version": None,
        "source_updated_at": None,
        "seller_name": None,
        **terms_columns(data.transaction),
        "pledge_disclosed": data.pledge_disclosed,
        "status": "draft",
        "rejection_reason": None,
        "version": 1,
        "published_at": None,
        "created_at": now,
        "updated_at": now,
    }
    if open_license is not None:  # a declaration (open_licences.service.declare)
        listing["open_license"] = json.dumps(open_license)
    doc = document_data(
        OfferState.of(listing, ctx.organization.name), asset_json(asset), ctx.catalogue_url
    )
    await ListingRepository(ctx.session).insert_created(
        listing,
        history={
            "version": 1,
            "action": "created",
            "actor_organization_id": ctx.principal.organization_id,
            "actor_key_id": ctx.principal.key_id,
            "actor_roles": sorted(ctx.principal.roles),
            "changes": {"transaction": data.transaction.model_dump(mode="json")},
            "at": now,
        },
        event={
            "entity": "listing",
            "type": "listing.created",
            "version": 1,
            # As events.record writes it.
            "payload": {
                "data": doc,
                "asset_id": str(asset["id"]),
                "seller_id": str(listing["seller_id"]),
            },
            "occurred_at": now,
        },
    )
    # Built from values already validated (the request's terms, the asset's public form):
    # validating them again cost as much as the insert. Same fields as to_public.
    return ListingPublic.model_construct(
        id=listing_id,
        offer_id=offer_id(OUR_EXCHANGE, listing["external_id"]),
        asset_id=asset["id"],
        seller_id=ctx.organization.id,
        seller_name=ctx.organization.name,
        exchange=OUR_EXCHANGE,
        source_url=None,
        status="draft",
        version=1,
        transaction=data.transaction,
        pledge_disclosed=data.pledge_disclosed,
        rejection_reason=None,
        published_at=None,
        created_at=now,
        updated_at=now,
        asset=asset_public,
    )


async def _locked(
    ctx: Context, listing_id: UUID, *, on_behalf: bool = False
) -> tuple[Listing, Asset, Organization]:
    """The listing, row-locked. A draft or a listing in review is 404 to anyone but its seller
    and operators, as on reads: a 403 would tell an outsider that it exists."""
    repo = ListingRepository(ctx.session)
    listing = await repo.get(listing_id, lock=True)
    if listing is None or (
        not on_behalf
        and listing.status not in VISIBLE
        and not may_see_everything(ctx.principal, listing)
    ):
        raise NotFound(f"no listing {listing_id}")
    found = await repo.with_asset(listing_id)
    assert found is not None
    return found


def _ensure_seller(ctx: Context, listing: Listing) -> None:
    if ctx.principal.is_operator:
        return
    if ctx.principal.organization_id != listing.seller_id:
        raise Forbidden("this listing is not the caller's")


async def update(
    ctx: Context, listing_id: UUID, data: ListingUpdate, if_match: int | None
) -> tuple[Listing, Asset, Organization]:
    listing, asset, seller = await _locked(ctx, listing_id)
    _ensure_seller(ctx, listing)
    ensure_our_offer(listing, "an edit")  # the partner's next version would undo it
    expected = if_match if if_match is not None else data.version
    check_version("listing", listing.version, expected)
    if listing.status not in EDITABLE:
        raise Conflict(
            f"a listing that is {listing.status} cannot be edited",
            slug="invalid-transition",
            extra={"current_status": listing.status},
        )
    changes: dict[str, Any] = {}
    if data.transaction is not None and listing.open_license is not None:
        raise Conflict(
            "a declaration's terms are not edited: withdraw it and declare again",
            errors=[
                FieldError(
                    field="transaction",
                    rule="open_license_terms_fixed",
                    message="licences are taken on the declared terms; they do not change",
                )
            ],
            slug="not-editable",
            title="This listing's terms cannot be edited",
        )
    if data.transaction is not None:
        _raise_if(check_terms(data.transaction) + _no_typed_open_licence(data.transaction))
        before = terms_of(listing).model_dump(mode="json")
        after = data.transaction.model_dump(mode="json")
        changes.update({k: [before[k], after[k]] for k in after if before[k] != after[k]})
        for column, value in terms_columns(data.transaction).items():
            setattr(listing, column, value)
    if data.pledge_disclosed is not None and data.pledge_disclosed != listing.pledge_disclosed:
        changes["pledge_disclosed"] = [listing.pledge_disclosed, data.pledge_disclosed]
        listing.pledge_disclosed = data.pledge_disclosed
    if not changes:
        return listing, asset, seller
    if listing.status != "draft":  # a live offer stays lawful after an edit
        await _publishable(ctx, listing, asset)
    listing.version += 1
    listing.updated_at = datetime.now(UTC)
    audit(ctx, listing, "updated", changes)
    emit(ctx.session, "listing.updated", listing, asset, seller, ctx.catalogue_url)
    await ctx.session.flush()
    return listing, asset, seller


async def transition(
    ctx: Context,
    listing_id: UUID,
    action: Action,
    *,
    reason: str | None = None,
    expected_version: int | None = None,
    on_behalf: bool = False,
) -> tuple[Listing, Asset, Organization]:
    """Move a listing along its lifecycle. `on_behalf`: the service itself acts (an offer opens
    negotiation, a deal closes the listing), after its own permission checks."""
    listing, asset, seller = await _locked(ctx, listing_id, on_behalf=on_behalf)
    if not on_behalf:
        if action in OPERATOR_ACTIONS and not ctx.principal.is_operator:
            raise Forbidden(f"only an exchange operator may {action} a listing")
        if action in SELLER_ACTIONS:
            _ensure_seller(ctx, listing)
            ensure_our_offer(listing, f"a transition ({action})")  # the seller does it there
    check_version("listing", listing.version, expected_version, required=False)
    current: ListingStatus = listing.status  # type: ignore[assignment]
    target = next_status(action, current)
    if action == "submit" and not seller.verified:
        raise Forbidden(
            "the seller's organisation is not verified yet: an operator verifies it",
            errors=[
                FieldError(
                    field="seller",
                    rule="organization_not_verified",
                    message="only verified organisations submit",
                )
            ],
        )
    if action == "reject" and not reason:
        raise UnprocessableEntity.single("reason", "missing", "a rejection needs its reason")
    if action in ("submit", "approve", "reopen"):
        await _publishable(ctx, listing, asset)
    listing.status = target
    listing.version += 1
    listing.updated_at = datetime.now(UTC)
    listing.rejection_reason = reason if action == "reject" else None
    if target == "published" and listing.published_at is None:
        listing.published_at = listing.updated_at
    audit(ctx, listing, action, {"status": [current, target]}, reason)
    emit(ctx.session, EVENT_OF_ACTION[action], listing, asset, seller, ctx.catalogue_url)
    await ctx.session.flush()
    return listing, asset, seller


def may_see_everything(principal: Principal | None, listing: Listing) -> bool:
    return principal is not None and (
        principal.is_operator
        or principal.is_service
        or principal.organization_id == listing.seller_id
    )


async def read(
    session: AsyncSession, principal: Principal | None, listing_id: UUID
) -> tuple[Listing, Asset, Organization]:
    """Published (and closed, withdrawn, expired) listings are public; drafts and listings in
    review only to their seller and operators (404 to others: their existence is private)."""
    found = await ListingRepository(session).with_asset(listing_id)
    if found is None or (
        found[0].status not in VISIBLE and not may_see_everything(principal, found[0])
    ):
        raise NotFound(f"no listing {listing_id}")
    return found


async def history(
    session: AsyncSession,
    principal: Principal,
    listing_id: UUID,
    *,
    page_size: int,
    page_token: str,
) -> Page[HistoryEntry]:
    """Oldest first."""
    listing = await ListingRepository(session).get(listing_id)
    if listing is None or not may_see_everything(principal, listing):
        raise NotFound(f"no listing {listing_id}")
    position = page_position(page_token, id=token_int)
    rows = await ListingRepository(session).history(
        listing_id, position["id"] if position else None, page_size + 1
    )
    entries, token = cut_page(rows, page_size, lambda entry: {"id": entry.id})
    return Page(
        items=[HistoryEntry.model_validate(e, from_attributes=True) for e in entries],
        next_page_token=token,
    )


async def list_page(
    session: AsyncSession,
    principal: Principal,
    *,
    status: str | None,
    seller: UUID | None,
    page_size: int,
    page_token: str,
) -> Page[ListingPublic]:
    """Members see their own organisation's listings; operators any seller's (the review queue
    is `status=pending_review`)."""
    if not principal.is_operator:
        if seller is not None and seller != principal.organization_id:
            raise Forbidden("members list their own organisation's listings")
        seller = principal.organization_id
    rows, token = cut_page(
        await ListingRepository(session).page(
            seller_id=seller, status=status, after=created_after(page_token), limit=page_size + 1
        ),
        page_size,
        lambda row: created_position(row[0]),
    )
    return Page(items=[to_public(*row) for row in rows], next_page_token=token)
