"""SQL of financing requests, offers, pledges, consents and holds."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

from sqlalchemy import func, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, or_, select

from services.listing.financing.rules import IN_EFFECT, LIVE_PLEDGE
from services.listing.models import (
    Asset,
    AssetHold,
    FinancingOffer,
    FinancingRequest,
    FinancingRequestAsset,
    Organization,
    Pledge,
    PledgeConsent,
    PledgeHistory,
    ValuationReport,
)


async def lock_assets(session: AsyncSession, asset_ids: Iterable[UUID]) -> None:
    """Requests and acceptances pledging these rights queue here until the transaction ends
    (in id order, so two portfolios never wait on each other)."""
    for asset_id in sorted(set(asset_ids)):
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": f"pledge:{asset_id}"},
        )


async def assets(session: AsyncSession, asset_ids: Iterable[UUID]) -> dict[UUID, Asset]:
    ids = list(set(asset_ids))
    rows = await session.execute(select(Asset).where(col(Asset.id).in_(ids)))
    return {a.id: a for a in rows.scalars()}


async def pledged_assets(session: AsyncSession, asset_ids: Iterable[UUID]) -> set[UUID]:
    """Of these rights, those a live pledge here holds (filed, registered or changed)."""
    query = (
        select(col(FinancingRequestAsset.asset_id))
        .join(Pledge, col(Pledge.request_id) == col(FinancingRequestAsset.request_id))
        .where(
            col(FinancingRequestAsset.asset_id).in_(list(asset_ids)),
            col(Pledge.status).in_(sorted(LIVE_PLEDGE)),
        )
    )
    return set((await session.execute(query)).scalars())


async def requested_assets(
    session: AsyncSession, asset_ids: Iterable[UUID], but: UUID | None = None
) -> set[UUID]:
    """Of these rights, those an open financing request (but `but`) pledges."""
    query = (
        select(col(FinancingRequestAsset.asset_id))
        .join(FinancingRequest, col(FinancingRequest.id) == col(FinancingRequestAsset.request_id))
        .where(
            col(FinancingRequestAsset.asset_id).in_(list(asset_ids)),
            col(FinancingRequest.status) == "open",
        )
    )
    if but is not None:
        query = query.where(col(FinancingRequest.id) != but)
    return set((await session.execute(query)).scalars())


async def holds_on(session: AsyncSession, asset_ids: Iterable[UUID]) -> dict[UUID, set[str]]:
    """The holds in force (not lifted) on these rights, by right."""
    query = select(col(AssetHold.asset_id), col(AssetHold.type)).where(
        col(AssetHold.asset_id).in_(list(asset_ids)), col(AssetHold.lifted_on).is_(None)
    )
    found: dict[UUID, set[str]] = {}
    for asset_id, kind in await session.execute(query):
        found.setdefault(asset_id, set()).add(kind)
    return found


async def request(
    session: AsyncSession, request_id: UUID, *, lock: bool = False
) -> FinancingRequest | None:
    query = select(FinancingRequest).where(col(FinancingRequest.id) == request_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(query)).scalar_one_or_none()


async def request_assets(
    session: AsyncSession, request_id: UUID
) -> list[tuple[FinancingRequestAsset, Asset]]:
    query = (
        select(FinancingRequestAsset, Asset)
        .join(Asset, col(Asset.id) == col(FinancingRequestAsset.asset_id))
        .where(col(FinancingRequestAsset.request_id) == request_id)
        .order_by(col(FinancingRequestAsset.position))
    )
    return [(r[0], r[1]) for r in await session.execute(query)]


async def valuations(session: AsyncSession, request_id: UUID) -> list[ValuationReport]:
    query = (
        select(ValuationReport)
        .where(col(ValuationReport.request_id) == request_id)
        .order_by(col(ValuationReport.created_at), col(ValuationReport.id))
    )
    return list((await session.execute(query)).scalars())


async def count_offers(session: AsyncSession, request_id: UUID) -> int:
    query = select(func.count()).where(col(FinancingOffer.request_id) == request_id)
    return int(await session.scalar(query) or 0)


async def requests_page(
    session: AsyncSession,
    *,
    borrower_id: UUID | None,
    status: str | None,
    kind: str | None,
    after: tuple[datetime, UUID] | None,
    limit: int,
    region_prefix: str | None = None,
) -> list[FinancingRequest]:
    query = (
        select(FinancingRequest)
        .order_by(col(FinancingRequest.created_at), col(FinancingRequest.id))
        .limit(limit)
    )
    if borrower_id is not None:
        query = query.where(col(FinancingRequest.borrower_id) == borrower_id)
    if status is not None:
        query = query.where(col(FinancingRequest.status) == status)
    if kind is not None:
        pledging = (
            select(col(FinancingRequestAsset.request_id))
            .join(Asset, col(Asset.id) == col(FinancingRequestAsset.asset_id))
            .where(col(Asset.kind) == kind)
        )
        query = query.where(col(FinancingRequest.id).in_(pledging))
    if region_prefix is not None:
        seated = select(col(Organization.id)).where(
            col(Organization.region).startswith(region_prefix)
        )
        query = query.where(col(FinancingRequest.borrower_id).in_(seated))
    if after is not None:
        query = query.where(
            tuple_(col(FinancingRequest.created_at), col(FinancingRequest.id)) > after
        )
    return list((await session.execute(query)).scalars())


async def offer(
    session: AsyncSession, offer_id: UUID, *, lock: bool = False
) -> FinancingOffer | None:
    query = select(FinancingOffer).where(col(FinancingOffer.id) == offer_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(query)).scalar_one_or_none()


async def offers_of(
    session: AsyncSession,
    request_id: UUID,
    bank_id: UUID | None = None,
    *,
    after: tuple[datetime, UUID] | None = None,
    limit: int | None = None,
) -> list[FinancingOffer]:
    query = (
        select(FinancingOffer)
        .where(col(FinancingOffer.request_id) == request_id)
        .order_by(col(FinancingOffer.created_at), col(FinancingOffer.id))
        .limit(limit)
    )
    if bank_id is not None:
        query = query.where(col(FinancingOffer.bank_id) == bank_id)
    if after is not None:
        query = query.where(tuple_(col(FinancingOffer.created_at), col(FinancingOffer.id)) > after)
    return list((await session.execute(query)).scalars())


async def close_competing(
    session: AsyncSession, request_id: UUID, accepted_id: UUID, at: datetime
) -> None:
    """Every other open offer on the request is closed."""
    await session.execute(
        update(FinancingOffer)
        .where(
            col(FinancingOffer.request_id) == request_id,
            col(FinancingOffer.id) != accepted_id,
            col(FinancingOffer.status) == "open",
        )
        .values(
            status="closed",
            version=col(FinancingOffer.version) + 1,
            updated_at=at,
        )
    )


async def pledge(session: AsyncSession, pledge_id: UUID, *, lock: bool = False) -> Pledge | None:
    query = select(Pledge).where(col(Pledge.id) == pledge_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(query)).scalar_one_or_none()


async def pledges_page(
    session: AsyncSession,
    *,
    organization_id: UUID | None,
    status: str | None,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[Pledge]:
    """As pledgor or pledgee (`organization_id`; None: all), oldest first."""
    query = select(Pledge).order_by(col(Pledge.created_at), col(Pledge.id)).limit(limit)
    if organization_id is not None:
        query = query.where(
            or_(
                col(Pledge.pledgor_id) == organization_id,
                col(Pledge.pledgee_id) == organization_id,
            )
        )
    if status is not None:
        query = query.where(col(Pledge.status) == status)
    if after is not None:
        query = query.where(tuple_(col(Pledge.created_at), col(Pledge.id)) > after)
    return list((await session.execute(query)).scalars())


async def consents(session: AsyncSession, pledge_id: UUID) -> list[str]:
    query = (
        select(col(PledgeConsent.transaction_type))
        .where(col(PledgeConsent.pledge_id) == pledge_id)
        .distinct()
    )
    return sorted((await session.execute(query)).scalars())


async def pledgees_without_consent(
    session: AsyncSession, asset_id: UUID, transaction_type: str
) -> list[str]:
    """The pledgees (names) of the pledges in effect on the right that have not consented to
    a `transaction_type` of it."""
    consented = select(col(PledgeConsent.pledge_id)).where(
        col(PledgeConsent.transaction_type) == transaction_type
    )
    query = (
        select(col(Organization.name))
        .select_from(Pledge)
        .join(
            FinancingRequestAsset, col(FinancingRequestAsset.request_id) == col(Pledge.request_id)
        )
        .join(Organization, col(Organization.id) == col(Pledge.pledgee_id))
        .where(
            col(FinancingRequestAsset.asset_id) == asset_id,
            col(Pledge.status).in_(sorted(IN_EFFECT)),
            col(Pledge.id).not_in(consented),
        )
    )
    return sorted(set((await session.execute(query)).scalars()))


async def hold(session: AsyncSession, hold_id: UUID, *, lock: bool = False) -> AssetHold | None:
    query = select(AssetHold).where(col(AssetHold.id) == hold_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(query)).scalar_one_or_none()


async def organization(session: AsyncSession, organization_id: UUID) -> Organization:
    found = await session.get(Organization, organization_id)
    assert found is not None  # organisations are never deleted
    return found


async def live_pledges_on(session: AsyncSession, asset_id: UUID) -> list[Pledge]:
    """The pledges here that hold the right (filed, registered or changed)."""
    query = (
        select(Pledge)
        .join(
            FinancingRequestAsset,
            col(FinancingRequestAsset.request_id) == col(Pledge.request_id),
        )
        .where(
            col(FinancingRequestAsset.asset_id) == asset_id,
            col(Pledge.status).in_(sorted(LIVE_PLEDGE)),
        )
        .order_by(col(Pledge.created_at), col(Pledge.id))
    )
    return list((await session.execute(query)).scalars())


async def history(
    session: AsyncSession, pledge_id: UUID, after_id: int | None, limit: int
) -> list[PledgeHistory]:
    query = select(PledgeHistory).where(col(PledgeHistory.pledge_id) == pledge_id)
    if after_id is not None:
        query = query.where(col(PledgeHistory.id) > after_id)
    rows = await session.execute(query.order_by(col(PledgeHistory.id)).limit(limit))
    return list(rows.scalars())
