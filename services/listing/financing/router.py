"""IP-backed financing endpoints: requests, banks' offers, the holder's acceptance, the pledge
in the registry's states, the pledgee's consents, and the holds operators record."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request, status

from services.listing.dependencies import CallerOrganizationDep, MemberDep, TodayDep
from services.listing.financing import service
from services.listing.financing.rules import FinancingPolicy, PledgeStatus
from services.listing.financing.schemas import (
    ConsentCreate,
    FinancingRequestCreate,
    FinancingRequestPublic,
    HoldCreate,
    HoldLift,
    HoldPublic,
    OfferCreate,
    OfferPublic,
    PledgeCancellation,
    PledgeChange,
    PledgeHistoryEntry,
    PledgePublic,
    RegistrationEntry,
    RequestStatus,
)
from services.listing.listings.router import context
from shared.auth import CallerDep
from shared.contracts.catalogue import AssetKind
from shared.db import SessionDep
from shared.errors import problem_responses
from shared.schemas import Page, PageSize, PageToken

router = APIRouter(prefix="/v1/financing", tags=["financing"])
pledges_router = APIRouter(prefix="/v1/pledges", tags=["financing"])


def _policy(request: Request) -> FinancingPolicy:
    return FinancingPolicy.of(request.app.state.settings)


@router.post(
    "/requests",
    status_code=status.HTTP_201_CREATED,
    response_model=FinancingRequestPublic,
    responses=problem_responses(401, 403, 409, 422),
)
async def create_financing_request(
    data: FinancingRequestCreate,
    request: Request,
    session: SessionDep,
    principal: MemberDep,
    organization: CallerOrganizationDep,
    today: TodayDep,
) -> FinancingRequestPublic:
    """A holder asks for a pledge loan against one right or a portfolio, with a valuation
    report of each right. Checked first against what CNIPA's pledge registration refuses, with
    nothing stored on a refusal: a co-holder who is not a party (422 `co_holder_not_party`), a
    term past a right's expiry (422 `term_past_expiry`), a forfeiture clause (422
    `forfeiture_clause`), a patent without its annual fee's due day, a missing, future or stale
    valuation (422); a right not granted or not in force, its annual fee in the grace period,
    pledged already or asked for in another open request, under preservation or suspension
    (409)."""
    ctx = context(request, session, principal, organization, today)
    created = await service.create_request(ctx, data, _policy(request))
    return await service.read_request(session, principal, organization, created)


@router.get(
    "/requests",
    response_model=Page[FinancingRequestPublic],
    responses=problem_responses(401, 403, 422),
)
async def list_financing_requests(
    session: SessionDep,
    principal: MemberDep,
    organization: CallerOrganizationDep,
    status_: Annotated[RequestStatus | None, Query(alias="status", examples=["open"])] = None,
    kind: Annotated[AssetKind | None, Query(examples=["invention_patent"])] = None,
    region: Annotated[
        str | None,
        Query(
            pattern=r"^[0-9]{2}([0-9]{4})?$",
            description="the borrower's seat: a province's two digits (13) or a six-digit "
            "GB/T 2260 code (130000: all of Hebei; 130600: all of Baoding; 130102: one district)",
            examples=["13"],
        ),
    ] = None,
    page_size: PageSize = 50,
    page_token: PageToken = "",
) -> Page[FinancingRequestPublic]:
    """A verified bank: the open requests it may lend on (`kind`: those pledging a right of
    that kind; `region`: of borrowers seated there); operators: all; anyone else: its own."""
    return await service.requests_page(
        session,
        principal,
        organization,
        status=status_,
        kind=kind,
        region=region,
        page_size=page_size,
        page_token=page_token,
    )


@router.get(
    "/requests/{request_id}",
    response_model=FinancingRequestPublic,
    responses=problem_responses(401, 403, 404, 422),
)
async def read_financing_request(
    request_id: UUID,
    session: SessionDep,
    principal: MemberDep,
    organization: CallerOrganizationDep,
) -> FinancingRequestPublic:
    """The borrower, operators, and verified banks while it is open."""
    return await service.read_request(session, principal, organization, request_id)


@router.post(
    "/requests/{request_id}/withdraw",
    response_model=FinancingRequestPublic,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def withdraw_financing_request(
    request_id: UUID,
    request: Request,
    session: SessionDep,
    principal: MemberDep,
    organization: CallerOrganizationDep,
    today: TodayDep,
) -> FinancingRequestPublic:
    """The borrower withdraws an open request; its open offers are closed."""
    ctx = context(request, session, principal, organization, today)
    return await service.withdraw_request(ctx, request_id)


@router.post(
    "/requests/{request_id}/offers",
    status_code=status.HTTP_201_CREATED,
    response_model=OfferPublic,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def make_financing_offer(
    request_id: UUID,
    data: OfferCreate,
    request: Request,
    session: SessionDep,
    principal: MemberDep,
    organization: CallerOrganizationDep,
    today: TodayDep,
) -> OfferPublic:
    """A verified bank offers a loan on an open request (403 `not_a_verified_bank` otherwise):
    amount, annual rate, term (within every right's term), conditions; no forfeiture clause.
    One open offer per bank and request (409 `offer_already_made`)."""
    ctx = context(request, session, principal, organization, today)
    return await service.make_offer(ctx, request_id, data, _policy(request))


@router.get(
    "/requests/{request_id}/offers",
    response_model=Page[OfferPublic],
    responses=problem_responses(401, 403, 404, 422),
)
async def list_financing_offers(
    request_id: UUID,
    session: SessionDep,
    principal: MemberDep,
    organization: CallerOrganizationDep,
    page_size: PageSize = 50,
    page_token: PageToken = "",
) -> Page[OfferPublic]:
    """The borrower and operators see every offer; a bank its own."""
    return await service.offers_page(
        session,
        principal,
        organization,
        request_id,
        page_size=page_size,
        page_token=page_token,
    )


@router.get(
    "/offers/{offer_id}",
    response_model=OfferPublic,
    responses=problem_responses(401, 403, 404, 422),
)
async def read_financing_offer(
    offer_id: UUID, session: SessionDep, principal: MemberDep
) -> OfferPublic:
    """The borrower, the bank that made it, operators."""
    return await service.read_offer(session, principal, offer_id)


@router.post(
    "/offers/{offer_id}/withdraw",
    response_model=OfferPublic,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def withdraw_financing_offer(
    offer_id: UUID,
    request: Request,
    session: SessionDep,
    principal: MemberDep,
    organization: CallerOrganizationDep,
    today: TodayDep,
) -> OfferPublic:
    """The bank withdraws its open offer."""
    ctx = context(request, session, principal, organization, today)
    return await service.withdraw_offer(ctx, offer_id)


@router.post(
    "/offers/{offer_id}/accept",
    status_code=status.HTTP_201_CREATED,
    response_model=PledgePublic,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def accept_financing_offer(
    offer_id: UUID,
    request: Request,
    session: SessionDep,
    principal: MemberDep,
    organization: CallerOrganizationDep,
    today: TodayDep,
) -> PledgePublic:
    """The borrower accepts one offer: every other offer is closed, and the pledge is filed
    with the registry (`pledge.filed` to both parties). Two accepts at once: one wins, the
    other is 409 `request_not_open`. The rights are checked again (409 as for a request)."""
    ctx = context(request, session, principal, organization, today)
    return await service.accept(ctx, offer_id, _policy(request))


@router.post(
    "/holds",
    status_code=status.HTTP_201_CREATED,
    response_model=HoldPublic,
    responses=problem_responses(401, 403, 404, 422),
)
async def record_asset_hold(
    data: HoldCreate,
    request: Request,
    session: SessionDep,
    principal: MemberDep,
    today: TodayDep,
) -> HoldPublic:
    """Operators record a hold from the registry: a court's preservation of a right or the
    suspension of its procedures. No pledge of the right while it stands."""
    ctx = context(request, session, principal, None, today)
    return await service.add_hold(ctx, data)


@router.post(
    "/holds/{hold_id}/lift",
    response_model=HoldPublic,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def lift_asset_hold(
    hold_id: UUID,
    data: HoldLift,
    request: Request,
    session: SessionDep,
    principal: MemberDep,
    today: TodayDep,
) -> HoldPublic:
    """Operators record that a hold was lifted."""
    ctx = context(request, session, principal, None, today)
    return await service.lift_hold(ctx, hold_id, data)


@pledges_router.get(
    "", response_model=Page[PledgePublic], responses=problem_responses(401, 403, 422)
)
async def list_pledges(
    session: SessionDep,
    principal: CallerDep,
    status_: Annotated[PledgeStatus | None, Query(alias="status", examples=["registered"])] = None,
    page_size: PageSize = 50,
    page_token: PageToken = "",
) -> Page[PledgePublic]:
    """The caller's pledges, as pledgor or pledgee (operators: all), oldest first."""
    return await service.pledges_page(
        session, principal, status=status_, page_size=page_size, page_token=page_token
    )


@pledges_router.get(
    "/{pledge_id}", response_model=PledgePublic, responses=problem_responses(401, 404, 422)
)
async def read_pledge(pledge_id: UUID, session: SessionDep, principal: CallerDep) -> PledgePublic:
    """The pledge with its figures: its two parties and operators."""
    return await service.read_pledge(session, principal, pledge_id)


@pledges_router.get(
    "/{pledge_id}/history",
    response_model=Page[PledgeHistoryEntry],
    responses=problem_responses(401, 404, 422),
)
async def pledge_history(
    pledge_id: UUID,
    session: SessionDep,
    principal: CallerDep,
    page_size: PageSize = 50,
    page_token: PageToken = "",
) -> Page[PledgeHistoryEntry]:
    """The pledge's audit trail (filed, registered, consents, changes, risks, cancelled):
    who made each transition, when, and what changed. Its parties and operators."""
    return await service.pledge_history(
        session, principal, pledge_id, page_size=page_size, page_token=page_token
    )


@pledges_router.post(
    "/{pledge_id}/registration",
    response_model=PledgePublic,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def register_pledge(
    pledge_id: UUID,
    data: RegistrationEntry,
    request: Request,
    session: SessionDep,
    principal: MemberDep,
    organization: CallerOrganizationDep,
    today: TodayDep,
) -> PledgePublic:
    """A party or an operator enters the registration (number, day): filed -> registered. The
    rights carry the pledge as an encumbrance from now on (on the asset, in the catalogue and
    to partner exchanges), and an assignment or exclusive licence of them needs the pledgee's
    recorded consent."""
    ctx = context(request, session, principal, organization, today)
    return await service.register(ctx, pledge_id, data)


@pledges_router.post(
    "/{pledge_id}/changes",
    response_model=PledgePublic,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def change_pledge(
    pledge_id: UUID,
    data: PledgeChange,
    request: Request,
    session: SessionDep,
    principal: MemberDep,
    organization: CallerOrganizationDep,
    today: TodayDep,
) -> PledgePublic:
    """A registered change (amount, rate, term within the rights' terms): -> changed."""
    ctx = context(request, session, principal, organization, today)
    return await service.change(ctx, pledge_id, data, _policy(request))


@pledges_router.post(
    "/{pledge_id}/cancellation",
    response_model=PledgePublic,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def cancel_pledge(
    pledge_id: UUID,
    data: PledgeCancellation,
    request: Request,
    session: SessionDep,
    principal: MemberDep,
    organization: CallerOrganizationDep,
    today: TodayDep,
) -> PledgePublic:
    """The pledgee or an operator enters the cancellation: repaid (with the interest paid),
    enforced, released or void (a pledge never registered: void or released only). The
    encumbrance leaves the rights."""
    ctx = context(request, session, principal, organization, today)
    return await service.cancel(ctx, pledge_id, data)


@pledges_router.post(
    "/{pledge_id}/consents",
    status_code=status.HTTP_201_CREATED,
    response_model=PledgePublic,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def consent_to_transfer(
    pledge_id: UUID,
    data: ConsentCreate,
    request: Request,
    session: SessionDep,
    principal: MemberDep,
    organization: CallerOrganizationDep,
    today: TodayDep,
) -> PledgePublic:
    """The pledgee records its consent to an assignment or an exclusive licence of the pledged
    rights (Civil Code Art. 444); listings of that type may then be published."""
    ctx = context(request, session, principal, organization, today)
    return await service.record_consent(ctx, pledge_id, data)
