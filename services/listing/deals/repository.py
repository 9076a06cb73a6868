"""SQL of inquiries, their messages, deals and deal statistics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import (
    ColumnElement,
    Numeric,
    cast,
    false,
    func,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.listing.models import Asset, Deal, Inquiry, InquiryMessage, Listing, Organization


@dataclass(frozen=True)
class DealFilters:
    """`region_prefix`: the leading digits a deal's region code must start with."""

    region_prefix: str | None = None
    kind: str | None = None
    transaction_type: str | None = None
    since: date | None = None
    until: date | None = None
    asset_id: UUID | None = None


@dataclass(frozen=True)
class DealRow:
    deal: Deal
    listing: Listing
    asset: Asset
    seller: Organization


@dataclass(frozen=True)
class InquiryRow:
    inquiry: Inquiry
    buyer_name: str
    message_count: int
    latest_offer_amount: Decimal | None


@dataclass(frozen=True)
class GroupRow:
    group: str
    deal_count: int
    disclosed_count: int
    disclosed_total: Decimal
    disclosed_median: Decimal | None


# Statistics are published only for groups of at least this many deals.
MIN_GROUP = 3


def _deal_conditions(filters: DealFilters) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if filters.region_prefix:
        conditions.append(col(Deal.region).startswith(filters.region_prefix, autoescape=True))
    if filters.kind:
        conditions.append(col(Deal.asset_kind) == filters.kind)
    if filters.transaction_type:
        conditions.append(col(Deal.transaction_type) == filters.transaction_type)
    if filters.since:
        conditions.append(col(Deal.closed_on) >= filters.since)
    if filters.until:
        conditions.append(col(Deal.closed_on) <= filters.until)
    if filters.asset_id:
        on_asset = select(col(Listing.id)).where(col(Listing.asset_id) == filters.asset_id)
        conditions.append(col(Deal.listing_id).in_(on_asset))
    return conditions


class DealRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # Inquiries ---------------------------------------------------------------------------

    async def inquiry_id_for(self, listing_id: UUID, buyer_id: UUID) -> UUID:
        """The buyer's thread on the listing, opened if it has none (one per pair)."""
        opened = await self.session.execute(
            insert(Inquiry)
            .values(**Inquiry(listing_id=listing_id, buyer_id=buyer_id).model_dump())
            .on_conflict_do_nothing(index_elements=["listing_id", "buyer_id"])
            .returning(col(Inquiry.id))
        )
        new_id = opened.scalar_one_or_none()
        if new_id is not None:
            return new_id
        existing = await self.session.scalar(
            select(col(Inquiry.id)).where(
                col(Inquiry.listing_id) == listing_id, col(Inquiry.buyer_id) == buyer_id
            )
        )
        assert existing is not None
        return existing

    async def listing_id_of(self, inquiry_id: UUID) -> UUID | None:
        return await self.session.scalar(
            select(col(Inquiry.listing_id)).where(col(Inquiry.id) == inquiry_id)
        )

    async def inquiry_with_parties(
        self, inquiry_id: UUID
    ) -> tuple[Inquiry, Listing, Organization] | None:
        """The thread, its listing and its buyer's organisation."""
        row = (
            await self.session.execute(
                select(Inquiry, Listing, Organization)
                .join(Listing, col(Listing.id) == col(Inquiry.listing_id))
                .join(Organization, col(Organization.id) == col(Inquiry.buyer_id))
                .where(col(Inquiry.id) == inquiry_id)
            )
        ).first()
        return (row[0], row[1], row[2]) if row else None

    async def messages(self, inquiry_id: UUID) -> list[InquiryMessage]:
        rows = await self.session.execute(
            select(InquiryMessage)
            .where(col(InquiryMessage.inquiry_id) == inquiry_id)
            .order_by(col(InquiryMessage.created_at), col(InquiryMessage.id))
        )
        return list(rows.scalars())

    async def close_other_inquiries(self, listing_id: UUID, accepted: UUID | None) -> None:
        """When a deal closes a listing: its inquiry is accepted, every other open one closed."""
        now = func.now()
        others = [col(Inquiry.listing_id) == listing_id, col(Inquiry.status) == "open"]
        if accepted is not None:
            await self.session.execute(
                update(Inquiry)
                .where(col(Inquiry.id) == accepted)
                .values(status="accepted", updated_at=now)
            )
            others.append(col(Inquiry.id) != accepted)
        await self.session.execute(
            update(Inquiry).where(*others).values(status="closed", updated_at=now)
        )

    async def inquiry_page(
        self,
        *,
        listing_id: UUID | None,
        buyer_or_seller: UUID | None,
        buyer_id: UUID | None,
        after: tuple[datetime, UUID] | None,
        limit: int,
    ) -> list[InquiryRow]:
        """Threads in (created_at, id) order. `buyer_or_seller`: only threads the organisation
        is a party to; `buyer_id`: only that buyer's."""
        message_count = (
            select(func.count())
            .where(col(InquiryMessage.inquiry_id) == col(Inquiry.id))
            .correlate(Inquiry)
            .scalar_subquery()
        )
        latest_offer = (
            select(col(InquiryMessage.offer_amount))
            .where(
                col(InquiryMessage.inquiry_id) == col(Inquiry.id),
                col(InquiryMessage.offer_amount).is_not(None),
            )
            .order_by(col(InquiryMessage.created_at).desc(), col(InquiryMessage.id).desc())
            .limit(1)
            .correlate(Inquiry)
            .scalar_subquery()
        )
        query = (
            select(Inquiry, col(Organization.name), message_count, latest_offer)
            .join(Organization, col(Organization.id) == col(Inquiry.buyer_id))
            .join(Listing, col(Listing.id) == col(Inquiry.listing_id))
            .order_by(col(Inquiry.created_at), col(Inquiry.id))
            .limit(limit)
        )
        if listing_id is not None:
            query = query.where(col(Inquiry.listing_id) == listing_id)
        if buyer_or_seller is not None:
            query = query.where(
                or_(
                    col(Inquiry.buyer_id) == buyer_or_seller,
                    col(Listing.seller_id) == buyer_or_seller,
                )
            )
        if buyer_id is not None:
            query = query.where(col(Inquiry.buyer_id) == buyer_id)
        if after is not None:
            query = query.where(tuple_(col(Inquiry.created_at), col(Inquiry.id)) > after)
        return [
            InquiryRow(inquiry=r[0], buyer_name=r[1], message_count=r[2], latest_offer_amount=r[3])
            for r in await self.session.execute(query)
        ]

    # Deals -------------------------------------------------------------------------------

    async def deal_on(self, listing_id: UUID) -> UUID | None:
        return await self.session.scalar(
            select(col(Deal.id)).where(col(Deal.listing_id) == listing_id)
        )

    async def organization(self, organization_id: UUID) -> Organization | None:
        return await self.session.get(Organization, organization_id)

    def _deal_query(self) -> Any:
        return (
            select(Deal, Listing, Asset, Organization)
            .join(Listing, col(Listing.id) == col(Deal.listing_id))
            .join(Asset, col(Asset.id) == col(Listing.asset_id))
            .join(Organization, col(Organization.id) == col(Deal.seller_id))
        )

    async def deal(self, deal_id: UUID) -> DealRow | None:
        row = (
            await self.session.execute(self._deal_query().where(col(Deal.id) == deal_id))
        ).first()
        return DealRow(row[0], row[1], row[2], row[3]) if row else None

    async def deal_page(
        self, filters: DealFilters, *, after: tuple[date, UUID] | None, limit: int
    ) -> list[DealRow]:
        """Newest first by (closed_on, id)."""
        query = (
            self._deal_query()
            .where(*_deal_conditions(filters))
            .order_by(col(Deal.closed_on).desc(), col(Deal.id).desc())
            .limit(limit)
        )
        if after is not None:
            query = query.where(tuple_(col(Deal.closed_on), col(Deal.id)) < after)
        return [DealRow(r[0], r[1], r[2], r[3]) for r in await self.session.execute(query)]

    async def stats(self, group_by: str, filters: DealFilters) -> list[GroupRow]:
        """Per group: deals, disclosed deals, their total and median amount. Groups of fewer
        than MIN_GROUP deals are left out entirely."""
        key: Any  # a column or an SQL expression
        if group_by == "region":
            key = func.substr(col(Deal.region), 1, 2).concat("0000")
        elif group_by == "kind":
            key = col(Deal.asset_kind)
        else:
            key = func.to_char(col(Deal.closed_on), "YYYY-MM")
        disclosed = (col(Deal.confidential) == false()) & col(Deal.amount).is_not(None)
        # percentile_cont computes in double precision (exact to the cent below ~9e13 CNY);
        # rounded back to money.
        median = func.round(
            cast(
                func.percentile_cont(0.5).within_group(col(Deal.amount)).filter(disclosed),
                Numeric,
            ),
            2,
        )
        grouped = key.label("group")
        query = (
            select(
                grouped,
                func.count().label("deal_count"),
                func.count().filter(disclosed).label("disclosed_count"),
                func.coalesce(func.sum(col(Deal.amount)).filter(disclosed), 0).label(
                    "disclosed_total"
                ),
                median.label("disclosed_median"),
            )
            .where(*_deal_conditions(filters))
            .group_by(grouped)
            .having(func.count() >= MIN_GROUP)
            .order_by(grouped)
        )
        return [
            GroupRow(
                group=r.group,
                deal_count=r.deal_count,
                disclosed_count=r.disclosed_count,
                disclosed_total=Decimal(r.disclosed_total).quantize(Decimal("0.01")),
                disclosed_median=r.disclosed_median,
            )
            for r in await self.session.execute(query)
        ]
