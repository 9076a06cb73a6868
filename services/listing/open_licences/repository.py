"""SQL of open licence declarations and the licences taken on them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from uuid import UUID

from sqlalchemy import and_, func, not_, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, or_, select

from services.listing.listings.rules import ACTIVE
from services.listing.models import (
    Asset,
    Listing,
    OpenLicence,
    OpenLicenceDeclaration,
    Organization,
)

# A deal's licence runs `term_months` from the day it closed; without a term, until the right
# ends. (PostgreSQL: date + interval.)
_LICENCES_IN_FORCE = text(
    "SELECT DISTINCT d.transaction_type FROM listing.deals AS d"
    " JOIN listing.listings AS l ON l.id = d.listing_id"
    " WHERE l.asset_id = :asset_id AND d.transaction_type = ANY(:types)"
    " AND (l.term_months IS NULL"
    "      OR d.closed_on + make_interval(months => l.term_months) > :today)"
)


async def offered_types(
    session: AsyncSession, asset_id: UUID, listing_id: UUID | None = None
) -> set[str]:
    """The transaction types of the asset's live offers (in review or on the market, on any
    exchange), but `listing_id`'s."""
    query = select(col(Listing.transaction_type)).where(
        col(Listing.asset_id) == asset_id, col(Listing.status).in_(ACTIVE)
    )
    if listing_id is not None:
        query = query.where(col(Listing.id) != listing_id)
    return set((await session.execute(query.distinct())).scalars())


async def licences_in_force(
    session: AsyncSession, asset_id: UUID, types: frozenset[str], today: date
) -> set[str]:
    """The types (of `types`) of the licences granted on the asset by deals whose term runs."""
    rows = await session.execute(
        _LICENCES_IN_FORCE, {"asset_id": asset_id, "types": sorted(types), "today": today}
    )
    return set(rows.scalars())


async def lock_asset(session: AsyncSession, asset_id: UUID) -> None:
    """Declarations of one patent queue here until the transaction ends, so two at once cannot
    both find the patent free."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"open-licence:{asset_id}"},
    )


async def live_declaration(session: AsyncSession, asset_id: UUID) -> UUID | None:
    """Our declaration on the asset that is a draft, in review or published, if any."""
    query = (
        select(col(Listing.id))
        .join(OpenLicenceDeclaration, col(OpenLicenceDeclaration.listing_id) == col(Listing.id))
        .where(
            col(OpenLicenceDeclaration.asset_id) == asset_id,
            col(Listing.status).in_(("draft", *ACTIVE)),
        )
        .limit(1)
    )
    return (await session.execute(query)).scalar_one_or_none()


async def declaration(session: AsyncSession, listing_id: UUID) -> OpenLicenceDeclaration | None:
    return await session.get(OpenLicenceDeclaration, listing_id)


async def declarations_page(
    session: AsyncSession,
    *,
    seller_id: UUID | None,
    status: str | None,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[tuple[Listing, Asset, Organization, OpenLicenceDeclaration]]:
    query = (
        select(Listing, Asset, Organization, OpenLicenceDeclaration)
        .join(Asset, col(Asset.id) == col(Listing.asset_id))
        .join(Organization, col(Organization.id) == col(Listing.seller_id))
        .join(OpenLicenceDeclaration, col(OpenLicenceDeclaration.listing_id) == col(Listing.id))
        .order_by(col(Listing.created_at), col(Listing.id))
        .limit(limit)
    )
    if seller_id is not None:
        query = query.where(col(Listing.seller_id) == seller_id)
    if status is not None:
        query = query.where(col(Listing.status) == status)
    if after is not None:
        query = query.where(tuple_(col(Listing.created_at), col(Listing.id)) > after)
    return [(r[0], r[1], r[2], r[3]) for r in await session.execute(query)]


async def licence(
    session: AsyncSession, licence_id: UUID, *, lock: bool = False
) -> OpenLicence | None:
    query = select(OpenLicence).where(col(OpenLicence.id) == licence_id)
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def licence_of(
    session: AsyncSession, declaration_id: UUID, licensee_id: UUID
) -> OpenLicence | None:
    """The licensee's licence on this declaration, if it took one."""
    query = select(OpenLicence).where(
        col(OpenLicence.declaration_id) == declaration_id,
        col(OpenLicence.licensee_id) == licensee_id,
    )
    return (await session.execute(query.limit(1))).scalar_one_or_none()


async def count_licences(session: AsyncSession, declaration_id: UUID) -> int:
    query = select(func.count()).where(col(OpenLicence.declaration_id) == declaration_id)
    return int(await session.scalar(query) or 0)


async def licences_page(
    session: AsyncSession,
    *,
    organization_id: UUID | None,
    declaration_id: UUID | None,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[OpenLicence]:
    """As licensor or licensee (`organization_id`; None: all), oldest first."""
    query = (
        select(OpenLicence).order_by(col(OpenLicence.created_at), col(OpenLicence.id)).limit(limit)
    )
    if organization_id is not None:
        query = query.where(
            or_(
                col(OpenLicence.licensor_id) == organization_id,
                col(OpenLicence.licensee_id) == organization_id,
            )
        )
    if declaration_id is not None:
        query = query.where(col(OpenLicence.declaration_id) == declaration_id)
    if after is not None:
        query = query.where(tuple_(col(OpenLicence.created_at), col(OpenLicence.id)) > after)
    return list((await session.execute(query)).scalars())


async def awaiting_reminder(
    session: AsyncSession, today: date, reminder_days: Sequence[int], limit: int
) -> list[OpenLicence]:
    """Licences awaiting recordal with a reminder day reached and not sent yet, most urgent
    first, row-locked; rows another replica holds are skipped (it is reminding of them)."""
    due = [
        and_(
            col(OpenLicence.recordal_due_on) <= today + timedelta(days=day),
            not_(col(OpenLicence.reminders_sent).contains([day])),
        )
        for day in reminder_days
    ]
    query = (
        select(OpenLicence)
        .where(col(OpenLicence.status) == "awaiting_recordal", or_(*due))
        .order_by(col(OpenLicence.recordal_due_on), col(OpenLicence.id))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await session.execute(query)).scalars())


_ENDED_DECLARATIONS = text(
    "SELECT id FROM listing.listings WHERE open_license IS NOT NULL"
    " AND status IN ('draft', 'pending_review', 'published', 'under_negotiation')"
    " AND (open_license->>'ends_on')::date < :today ORDER BY id LIMIT :limit"
)


async def ended_declarations(session: AsyncSession, today: date, limit: int) -> list[UUID]:
    """Live declarations (ours, partners', the gazette's) whose declared term has ended."""
    rows = await session.execute(_ENDED_DECLARATIONS, {"today": today, "limit": limit})
    return list(rows.scalars())
