"""Inquiries and deals. Never commits.

A buyer's organisation has one thread per listing; the first offer on a published listing opens
the negotiation. The seller (or an operator) closes the listing with a deal, announced publicly
in the change feed (`deal.closed`) without its amount when the seller keeps it confidential.
Another exchange's offer takes none of this here (409 `partner-offer`, offers/rules.py): its
inquiries and deals happen on that exchange, at the offer's `source_url`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import TypeVar
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from services.listing.deals.repository import (
    DealFilters,
    DealRepository,
    DealRow,
    InquiryRow,
)
from services.listing.deals.schemas import (
    DealCreate,
    DealGroup,
    DealStats,
    GroupBy,
    InquiryCreate,
    InquiryPublic,
    InquirySummary,
    MessageCreate,
    MessagePublic,
)
from services.listing.feed import events
from services.listing.financing import repository as financing
from services.listing.financing.rules import CONSENT_TYPES, check_pledgee_consent
from services.listing.listings import service as listings
from services.listing.listings.repository import ListingRepository
from services.listing.listings.rules import VISIBLE, next_status
from services.listing.listings.service import Context, may_see_everything
from services.listing.models import Deal, Inquiry, InquiryMessage, Listing, Organization
from services.listing.offers.rules import ensure_our_offer
from services.listing.organizations.service import region_prefix
from shared.auth import Principal
from shared.contracts.catalogue import ListingStatus, offer_id
from shared.contracts.deals import DealPublic
from shared.errors import Conflict, FieldError, Forbidden, NotFound, UnprocessableEntity
from shared.schemas import (
    Page,
    created_position,
    cut_page,
    decode_page_token,
    encode_page_token,
)

__all__ = [
    "OPEN",
    "close_deal",
    "deal_filters",
    "inquire",
    "list_deals",
    "list_inquiries",
    "post_message",
    "read_inquiry",
    "sees_amount",
    "stats",
    "to_public",
]

T = TypeVar("T")

# Listings that take inquiries, offers and deals.
OPEN: frozenset[ListingStatus] = frozenset({"published", "under_negotiation"})


# Inquiries -----------------------------------------------------------------------------------


def _after(page_token: str, key: str, parse: Callable[[str], T]) -> tuple[T, UUID] | None:
    """The (key, id) position of a page token; 422 when the token was not issued here."""
    position = decode_page_token(page_token, key, "id")
    if position is None:
        return None
    try:
        return parse(str(position[key])), UUID(str(position["id"]))
    except ValueError as exc:
        raise UnprocessableEntity.single(
            "page_token", "page_token_invalid", "page_token is not one this API issued"
        ) from exc


def _not_open(listing: Listing, what: str) -> Conflict:
    return Conflict(
        f"a listing that is {listing.status} takes no {what}: "
        "only published listings and listings under negotiation do",
        slug="listing-not-open",
        title="The listing is not open to offers",
        extra={"current_status": listing.status},
    )


async def _visible_listing(ctx: Context, listing_id: UUID) -> Listing:
    """The listing, locked for this transaction; 404 when missing or private to the caller."""
    listing = await ListingRepository(ctx.session).get(listing_id, lock=True)
    if listing is None or (
        listing.status not in VISIBLE and not may_see_everything(ctx.principal, listing)
    ):
        raise NotFound(f"no listing {listing_id}")
    return listing


async def _add_message(
    ctx: Context, inquiry: Inquiry, listing: Listing, author: UUID, data: MessageCreate
) -> None:
    """A message in the thread; an offer on a published listing opens the negotiation."""
    now = datetime.now(UTC)
    ctx.session.add(
        InquiryMessage(
            inquiry_id=inquiry.id,
            author_id=author,
            body=data.message,
            offer_amount=data.offer_amount,
            created_at=now,
        )
    )
    inquiry.updated_at = now
    if data.offer_amount is not None and listing.status == "published":
        await listings.transition(ctx, listing.id, "negotiate", on_behalf=True)
    await ctx.session.flush()


async def _thread(
    session: AsyncSession, inquiry: Inquiry, listing: Listing, buyer_name: str
) -> InquiryPublic:
    messages = await DealRepository(session).messages(inquiry.id)
    return InquiryPublic(
        id=inquiry.id,
        listing_id=inquiry.listing_id,
        seller_id=listing.seller_id,
        buyer_id=inquiry.buyer_id,
        buyer_name=buyer_name,
        status=inquiry.status,
        created_at=inquiry.created_at,
        updated_at=inquiry.updated_at,
        messages=[
            MessagePublic(
                id=m.id,
                author_id=m.author_id,
                author_role="buyer" if m.author_id == inquiry.buyer_id else "seller",
                message=m.body,
                offer_amount=m.offer_amount,
                created_at=m.created_at,
            )
            for m in messages
        ],
    )


async def inquire(ctx: Context, listing_id: UUID, data: InquiryCreate) -> InquiryPublic:
    """Open the caller organisation's thread on a listing, or add to it. Not on another
    exchange's offer (409 `partner-offer`, with its `source_url`): it is inquired about there."""
    buyer = ctx.organization
    if buyer is None:
        raise Forbidden("inquiries are made with an organisation's key")
    listing = await _visible_listing(ctx, listing_id)
    if listing.seller_id == buyer.id:
        raise Forbidden(
            "an organisation cannot inquire on its own listing",
            errors=[
                FieldError(
                    field="listing_id",
                    rule="own_listing",
                    message="the listing is the caller's own",
                )
            ],
        )
    ensure_our_offer(listing, "an inquiry")
    if listing.status not in OPEN:
        raise _not_open(listing, "inquiries")
    repo = DealRepository(ctx.session)
    inquiry_id = await repo.inquiry_id_for(listing.id, buyer.id)
    found = await repo.inquiry_with_parties(inquiry_id)
    assert found is not None
    inquiry = found[0]
    await _add_message(ctx, inquiry, listing, buyer.id, data)
    return await _thread(ctx.session, inquiry, listing, buyer.name)


def _party(principal: Principal, inquiry: Inquiry, listing: Listing) -> bool:
    org = principal.organization_id
    return org is not None and org in (inquiry.buyer_id, listing.seller_id)


async def _readable(
    session: AsyncSession, principal: Principal, inquiry_id: UUID
) -> tuple[Inquiry, Listing, Organization]:
    """The thread for its buyer, the listing's seller and operators; 404 for anyone else."""
    found = await DealRepository(session).inquiry_with_parties(inquiry_id)
    if found is None or not (principal.is_operator or _party(principal, found[0], found[1])):
        raise NotFound(f"no inquiry {inquiry_id}")
    return found


async def read_inquiry(
    session: AsyncSession, principal: Principal, inquiry_id: UUID
) -> InquiryPublic:
    inquiry, listing, buyer = await _readable(session, principal, inquiry_id)
    return await _thread(session, inquiry, listing, buyer.name)


async def post_message(ctx: Context, inquiry_id: UUID, data: MessageCreate) -> InquiryPublic:
    """The buyer or the seller writes in the thread, while the listing is open."""
    listing_id = await DealRepository(ctx.session).listing_id_of(inquiry_id)
    if listing_id is None:
        raise NotFound(f"no inquiry {inquiry_id}")
    # Lock the listing before anything loads it, so its status and version are current.
    await ListingRepository(ctx.session).get(listing_id, lock=True)
    inquiry, listing, buyer = await _readable(ctx.session, ctx.principal, inquiry_id)
    if not _party(ctx.principal, inquiry, listing):
        raise Forbidden("only the buyer and the seller write in an inquiry")
    ensure_our_offer(listing, "a message in an inquiry")
    if listing.status not in OPEN:
        raise _not_open(listing, "messages")
    author = ctx.principal.organization_id
    assert author is not None
    await _add_message(ctx, inquiry, listing, author, data)
    return await _thread(ctx.session, inquiry, listing, buyer.name)


def _summary(row: InquiryRow) -> InquirySummary:
    return InquirySummary(
        id=row.inquiry.id,
        listing_id=row.inquiry.listing_id,
        buyer_id=row.inquiry.buyer_id,
        buyer_name=row.buyer_name,
        status=row.inquiry.status,
        message_count=row.message_count,
        latest_offer_amount=row.latest_offer_amount,
        created_at=row.inquiry.created_at,
        updated_at=row.inquiry.updated_at,
    )


async def list_inquiries(
    session: AsyncSession,
    principal: Principal,
    *,
    listing_id: UUID | None,
    page_size: int,
    page_token: str,
) -> Page[InquirySummary]:
    """With `listing_id`: every thread on it for its seller and operators, the caller's own
    thread for anyone else. Without: the threads the caller's organisation is a party to
    (operators: all)."""
    org = principal.organization_id
    buyer_or_seller = None if principal.is_operator else org
    buyer_id = None
    if listing_id is not None:
        listing = await ListingRepository(session).get(listing_id)
        if listing is None or (
            listing.status not in VISIBLE and not may_see_everything(principal, listing)
        ):
            raise NotFound(f"no listing {listing_id}")
        buyer_or_seller = None
        if not principal.is_operator and org != listing.seller_id:
            buyer_id = org
    if not principal.is_operator and org is None:
        return Page(items=[])
    after = _after(page_token, "created_at", datetime.fromisoformat)
    rows = await DealRepository(session).inquiry_page(
        listing_id=listing_id,
        buyer_or_seller=buyer_or_seller,
        buyer_id=buyer_id,
        after=after,
        limit=page_size + 1,
    )
    rows, token = cut_page(rows, page_size, lambda row: created_position(row.inquiry))
    return Page(items=[_summary(row) for row in rows], next_page_token=token)


# Deals ---------------------------------------------------------------------------------------


def sees_amount(principal: Principal | None, deal: Deal) -> bool:
    """A confidential amount is for the seller, the buyer's organisation and operators only
    (not for service keys: the gateway republishes what it reads)."""
    if not deal.confidential:
        return True
    if principal is None:
        return False
    org = principal.organization_id
    return principal.is_operator or (org is not None and org in (deal.seller_id, deal.buyer_id))


def to_public(row: DealRow, *, show_amount: bool) -> DealPublic:
    deal, listing, asset, seller = row.deal, row.listing, row.asset, row.seller
    return DealPublic.model_validate(
        {
            "id": deal.id,
            "listing_id": deal.listing_id,
            "offer_id": offer_id(listing.exchange, listing.external_id),
            "asset": {
                "kind": asset.kind,
                "identifier": asset.identifier,
                "title": {"zh": asset.title_zh, "en": asset.title_en},
            },
            "transaction_type": deal.transaction_type,
            "amount": deal.amount if show_amount else None,
            "confidential": deal.confidential,
            "seller_name": listing.seller_name or seller.name,
            "buyer_name": deal.buyer_name,
            "closed_on": deal.closed_on,
            "region": deal.region,
        }
    )


async def _pledgee_consented(session: AsyncSession, listing: Listing) -> None:
    """An assignment or exclusive licence of a right pledged since the offer was published
    closes only with the pledgee's recorded consent (issue 22; 409 as at publication)."""
    if listing.transaction_type not in CONSENT_TYPES:
        return
    unconsenting = await financing.pledgees_without_consent(
        session, listing.asset_id, listing.transaction_type
    )
    errors = check_pledgee_consent(listing.transaction_type, unconsenting)
    if errors:
        raise Conflict(
            errors[0].message,
            errors=errors,
            slug="pledgee-consent-required",
            title="The right is pledged: the pledgee has not consented",
        )


async def close_deal(ctx: Context, data: DealCreate) -> DealPublic:
    """Record the deal and close its listing, in one transaction with the `listing.closed` and
    `deal.closed` events. Refused, nothing is written; refused for everyone (operators too) on
    another exchange's offer (409 `partner-offer`): its deal is closed on that exchange."""
    if data.closed_on > ctx.today:
        raise UnprocessableEntity.single(
            "closed_on",
            "not_in_future",
            f"closed_on {data.closed_on} is after today ({ctx.today}, Beijing time)",
        )
    listing = await _visible_listing(ctx, data.listing_id)
    if not ctx.principal.is_operator and ctx.principal.organization_id != listing.seller_id:
        message = "only the seller (or an operator) closes a deal on a listing"
        raise Forbidden(
            message, errors=[FieldError(field="listing_id", rule="not_the_seller", message=message)]
        )
    ensure_our_offer(listing, "a deal")
    repo = DealRepository(ctx.session)
    existing = await repo.deal_on(listing.id)
    if existing is not None:
        raise Conflict(
            f"listing {listing.id} already has its deal",
            slug="deal-exists",
            title="This listing already has a deal",
            extra={"deal_id": str(existing), "current_status": listing.status},
        )
    next_status("close", listing.status)  # type: ignore[arg-type]  # 409 naming the status
    await _pledgee_consented(ctx.session, listing)
    buyer_id: UUID | None = None
    buyer_name = data.buyer_name
    if data.inquiry_id is not None:
        found = await repo.inquiry_with_parties(data.inquiry_id)
        if found is None or found[0].listing_id != listing.id:
            raise UnprocessableEntity.single(
                "inquiry_id",
                "not_on_listing",
                f"no inquiry {data.inquiry_id} on listing {listing.id}",
            )
        buyer_id, buyer_name = found[2].id, found[2].name
    assert buyer_name is not None  # DealCreate requires one of inquiry_id and buyer_name
    listing, asset, seller = await listings.transition(ctx, listing.id, "close", on_behalf=True)
    deal = Deal(
        listing_id=listing.id,
        inquiry_id=data.inquiry_id,
        seller_id=listing.seller_id,
        buyer_id=buyer_id,
        buyer_name=buyer_name,
        transaction_type=listing.transaction_type,
        asset_kind=asset.kind,
        amount=data.amount,
        confidential=data.confidential,
        closed_on=data.closed_on,
        region=asset.region or seller.region,
    )
    ctx.session.add(deal)
    await repo.close_other_inquiries(listing.id, data.inquiry_id)
    row = DealRow(deal, listing, asset, seller)
    events.record(
        ctx.session,
        type="deal.closed",
        entity_id=deal.id,
        version=1,
        data=to_public(row, show_amount=not deal.confidential).model_dump(mode="json"),
        asset_id=asset.id,
        seller_id=listing.seller_id,
    )
    await ctx.session.flush()
    return to_public(row, show_amount=True)


def deal_filters(
    *,
    region: str | None,
    kind: str | None,
    transaction_type: str | None,
    since: date | None,
    until: date | None,
    asset_id: UUID | None = None,
) -> DealFilters:
    """`region`: a province's two digits, or a GB/T 2260 code read hierarchically (`110000` is
    all of Beijing, `130600` all of Baoding, `110108` Haidian only)."""
    if since is not None and until is not None and since > until:
        raise UnprocessableEntity.single("since", "since_after_until", "since is after until")
    return DealFilters(
        region_prefix=region_prefix(region) if region is not None else None,
        kind=kind,
        transaction_type=transaction_type,
        since=since,
        until=until,
        asset_id=asset_id,
    )


async def list_deals(
    session: AsyncSession,
    principal: Principal | None,
    filters: DealFilters,
    *,
    page_size: int,
    page_token: str,
) -> Page[DealPublic]:
    after = _after(page_token, "closed_on", date.fromisoformat)
    rows = await DealRepository(session).deal_page(filters, after=after, limit=page_size + 1)
    more = len(rows) > page_size
    rows = rows[:page_size]
    token = (
        encode_page_token(
            {"closed_on": rows[-1].deal.closed_on.isoformat(), "id": str(rows[-1].deal.id)}
        )
        if more
        else ""
    )
    return Page(
        items=[to_public(r, show_amount=sees_amount(principal, r.deal)) for r in rows],
        next_page_token=token,
    )


async def stats(session: AsyncSession, group_by: GroupBy, filters: DealFilters) -> DealStats:
    rows = await DealRepository(session).stats(group_by, filters)
    return DealStats(
        group_by=group_by,
        groups=[
            DealGroup(
                group=r.group,
                deal_count=r.deal_count,
                disclosed_count=r.disclosed_count,
                disclosed_total=r.disclosed_total,
                disclosed_median=r.disclosed_median,
            )
            for r in rows
        ],
    )
