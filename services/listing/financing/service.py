"""IP-backed financing: requests checked against CNIPA's pledge rules before anything is
stored, offers from verified banks, the holder's acceptance (one offer wins), and the pledge in
the registry's states, audited, announced on the change feed and carried as an encumbrance on
its rights. Never commits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from services.listing.assets.repository import AssetRepository
from services.listing.assets.rules import is_holder
from services.listing.feed import events
from services.listing.financing import repository
from services.listing.financing.rules import (
    CONSENT_TYPES,
    IN_EFFECT,
    LIVE_PLEDGE,
    FinancingPolicy,
    PledgeAction,
    check_cancellation,
    check_fee_stated,
    check_forfeiture,
    check_parties,
    check_pledgeable,
    check_pledgors_are_holders,
    check_registration,
    check_term,
    check_valuations,
    next_pledge_status,
    pledge_ends_on,
)
from services.listing.financing.schemas import (
    ConsentCreate,
    FinancingRequestCreate,
    FinancingRequestPublic,
    HoldCreate,
    HoldLift,
    HoldPublic,
    OfferCreate,
    OfferPublic,
    OrganizationRef,
    PartyRef,
    PledgeCancellation,
    PledgeChange,
    PledgeHistoryEntry,
    PledgePublic,
    RegistrationEntry,
    RightSummary,
    ValuationPublic,
)
from services.listing.listings import service as listings
from services.listing.listings.repository import serialize_writers
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
from services.listing.organizations.service import region_prefix
from shared.auth import Principal
from shared.contracts.events import EventType
from shared.db import utcnow
from shared.errors import Conflict, FieldError, Forbidden, NotFound, UnprocessableEntity
from shared.schemas import (
    Page,
    created_after,
    created_position,
    cut_page,
    page_position,
    token_int,
)


def _refuse(errors: list[FieldError], *, conflict: bool, what: str = "pledged") -> None:
    if not errors:
        return
    detail = "; ".join(e.message for e in errors)
    if conflict:
        raise Conflict(
            detail,
            errors=errors,
            slug="not-pledgeable",
            title=f"The registry would refuse this: the right cannot be {what} now",
        )
    raise UnprocessableEntity(detail, errors=errors)


def _ref(organization: Organization) -> OrganizationRef:
    return OrganizationRef(id=organization.id, name=organization.name)


def is_verified_bank(organization: Organization | None) -> bool:
    return organization is not None and organization.kind == "bank" and organization.verified


def _right(link: FinancingRequestAsset, asset: Asset) -> RightSummary:
    return RightSummary(
        asset_id=asset.id,
        kind=asset.kind,
        identifier=asset.identifier,
        title=asset.title_zh or asset.title_en,
        legal_status=asset.legal_status,
        expires_on=asset.expires_on,
        annual_fee_due_on=link.annual_fee_due_on,
    )


# ----------------------------------------------------------------------------- requests


async def create_request(
    ctx: listings.Context, data: FinancingRequestCreate, policy: FinancingPolicy
) -> UUID:
    """A financing request, checked first against every ground on which CNIPA refuses to
    register a pledge: 422 for what the request says wrong, 409 for what the rights do not allow
    now; a refusal stores nothing."""
    borrower = ctx.organization
    if borrower is None:
        raise Forbidden("a financing request is made with the holder's key")
    asset_ids = [right.asset_id for right in data.assets]
    errors: list[FieldError] = []
    if len(asset_ids) > policy.max_assets:
        errors.append(
            FieldError(
                field="assets",
                rule="too_many_assets",
                message=f"a request pledges at most {policy.max_assets} rights",
            )
        )
    seen: set[UUID] = set()
    for i, asset_id in enumerate(asset_ids):
        if asset_id in seen:
            errors.append(
                FieldError(
                    field=f"assets[{i}].asset_id",
                    rule="duplicate_asset",
                    message="each right is named once",
                )
            )
        seen.add(asset_id)
    found = await repository.assets(ctx.session, asset_ids)
    for i, asset_id in enumerate(asset_ids):
        if asset_id not in found:
            errors.append(
                FieldError(
                    field=f"assets[{i}].asset_id",
                    rule="asset_not_found",
                    message=f"no registered right {asset_id}",
                )
            )
    _refuse(errors, conflict=False)
    for i, asset_id in enumerate(asset_ids):
        if not is_holder(found[asset_id].holders, borrower.name, borrower.uscc):
            raise Forbidden(
                "only a holder of the rights asks for financing against them",
                errors=[
                    FieldError(
                        field=f"assets[{i}].asset_id",
                        rule="not_a_holder",
                        message="the borrower must be one of the right's holders",
                    )
                ],
            )
    await repository.lock_assets(ctx.session, asset_ids)
    starts_on = data.starts_on or ctx.today
    pledgors = [p.model_dump() for p in data.pledgors]
    if starts_on < ctx.today:
        errors.append(
            FieldError(
                field="starts_on",
                rule="starts_in_past",
                message="the loan starts today or later",
            )
        )
    for i, right in enumerate(data.assets):
        asset = found[right.asset_id]
        where = f"assets[{i}]"
        errors += check_parties(asset.holders, borrower.name, borrower.uscc, pledgors, where)
        errors += check_term(
            starts_on,
            data.term_months,
            asset.expires_on,
            max_term_months=policy.max_term_months,
            field=f"{where}.asset_id",
        )
        errors += check_fee_stated(
            asset.kind, right.annual_fee_due_on, f"{where}.annual_fee_due_on"
        )
    errors += check_pledgors_are_holders([found[a].holders for a in asset_ids], pledgors)
    errors += check_forfeiture(data.forfeiture_clause)
    errors += check_valuations(
        [v.model_dump() for v in data.valuations],
        asset_ids,
        today=ctx.today,
        max_age_days=policy.valuation_max_age_days,
    )
    errors += await _agencies(ctx.session, data)
    _refuse(_unique(errors), conflict=False)
    _refuse(
        await _pledgeable(
            ctx.session,
            [(right.asset_id, right.annual_fee_due_on) for right in data.assets],
            found,
            ctx.today,
            policy,
            but=None,
        ),
        conflict=True,
    )
    now = utcnow()
    request = FinancingRequest(
        borrower_id=borrower.id,
        amount=data.amount,
        term_months=data.term_months,
        starts_on=starts_on,
        ends_on=pledge_ends_on(starts_on, data.term_months),
        purpose=data.purpose,
        pledgors=pledgors,
        created_at=now,
        updated_at=now,
    )
    ctx.session.add(request)
    await ctx.session.flush()
    for position, right in enumerate(data.assets):
        ctx.session.add(
            FinancingRequestAsset(
                request_id=request.id,
                asset_id=right.asset_id,
                position=position,
                annual_fee_due_on=right.annual_fee_due_on,
            )
        )
    for report in data.valuations:
        ctx.session.add(ValuationReport(request_id=request.id, **report.model_dump()))
    await ctx.session.flush()
    return request.id


def _unique(errors: list[FieldError]) -> list[FieldError]:
    """The same error once (a term past two rights' expiry is two errors, by field)."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for error in errors:
        if (error.field, error.rule) not in seen:
            seen.add((error.field, error.rule))
            kept.append(error)
    return kept


async def _agencies(session: AsyncSession, data: FinancingRequestCreate) -> list[FieldError]:
    """A valuation naming an agency here names an organisation of kind valuation_agency."""
    errors = []
    for i, report in enumerate(data.valuations):
        if report.agency_id is None:
            continue
        agency = await session.get(Organization, report.agency_id)
        if agency is None or agency.kind != "valuation_agency":
            errors.append(
                FieldError(
                    field=f"valuations[{i}].agency_id",
                    rule="not_a_valuation_agency",
                    message="agency_id names an organisation of kind valuation_agency",
                )
            )
    return errors


async def _pledgeable(
    session: AsyncSession,
    rights: Sequence[tuple[UUID, date | None]],
    found: dict[UUID, Asset],
    today: date,
    policy: FinancingPolicy,
    *,
    but: UUID | None,
) -> list[FieldError]:
    ids = [asset_id for asset_id, _ in rights]
    pledged = await repository.pledged_assets(session, ids)
    requested = await repository.requested_assets(session, ids, but=but)
    holds = await repository.holds_on(session, ids)
    errors = []
    for i, (asset_id, fee_due_on) in enumerate(rights):
        asset = found[asset_id]
        errors += check_pledgeable(
            kind=asset.kind,
            legal_status=asset.legal_status,
            expires_on=asset.expires_on,
            annual_fee_due_on=fee_due_on,
            encumbrances=asset.encumbrances,
            pledged=asset_id in pledged,
            requested=asset_id in requested,
            holds=holds.get(asset_id, set()),
            today=today,
            grace_months=policy.annual_fee_grace_months,
            field=f"assets[{i}]",
        )
    return errors


def _may_read_request(
    principal: Principal, organization: Organization | None, request: FinancingRequest
) -> bool:
    """The borrower, operators, and verified banks while it is open."""
    return (
        principal.is_operator
        or principal.organization_id == request.borrower_id
        or (request.status == "open" and is_verified_bank(organization))
    )


async def _visible_request(
    session: AsyncSession,
    principal: Principal,
    organization: Organization | None,
    request_id: UUID,
    *,
    lock: bool = False,
) -> FinancingRequest:
    request = await repository.request(session, request_id, lock=lock)
    if request is None or not _may_read_request(principal, organization, request):
        raise NotFound(f"no financing request {request_id}")
    return request


async def request_public(
    session: AsyncSession, principal: Principal, request: FinancingRequest
) -> FinancingRequestPublic:
    borrower = await repository.organization(session, request.borrower_id)
    rights = await repository.request_assets(session, request.id)
    sees_offers = principal.is_operator or principal.organization_id == request.borrower_id
    return FinancingRequestPublic(
        id=request.id,
        status=request.status,
        version=request.version,
        borrower=_ref(borrower),
        region=borrower.region,
        assets=[_right(link, asset) for link, asset in rights],
        amount=request.amount,
        term_months=request.term_months,
        starts_on=request.starts_on,
        ends_on=request.ends_on,
        purpose=request.purpose,
        pledgors=[PartyRef.model_validate(p) for p in request.pledgors],
        valuations=[
            ValuationPublic.model_validate(v, from_attributes=True)
            for v in await repository.valuations(session, request.id)
        ],
        offers=await repository.count_offers(session, request.id) if sees_offers else 0,
        created_at=request.created_at,
        updated_at=request.updated_at,
    )


async def read_request(
    session: AsyncSession,
    principal: Principal,
    organization: Organization | None,
    request_id: UUID,
) -> FinancingRequestPublic:
    request = await _visible_request(session, principal, organization, request_id)
    return await request_public(session, principal, request)


async def requests_page(
    session: AsyncSession,
    principal: Principal,
    organization: Organization | None,
    *,
    status: str | None,
    kind: str | None,
    region: str | None = None,
    page_size: int,
    page_token: str,
) -> Page[FinancingRequestPublic]:
    """Operators: every request; a verified bank: the open ones (the market it lends on);
    anyone else: its own."""
    borrower: UUID | None = None
    if is_verified_bank(organization) and not principal.is_operator:
        if status not in (None, "open"):
            return Page(items=[], next_page_token="")
        status = "open"
    elif not principal.is_operator:
        if principal.organization_id is None:
            raise Forbidden("financing requests are read with an organisation's key")
        borrower = principal.organization_id
    rows, token = cut_page(
        await repository.requests_page(
            session,
            borrower_id=borrower,
            status=status,
            kind=kind,
            region_prefix=region_prefix(region) if region else None,
            after=created_after(page_token),
            limit=page_size + 1,
        ),
        page_size,
        created_position,
    )
    return Page(
        items=[await request_public(session, principal, row) for row in rows],
        next_page_token=token,
    )


async def withdraw_request(ctx: listings.Context, request_id: UUID) -> FinancingRequestPublic:
    """The borrower withdraws an open request; its open offers are closed."""
    request = await _visible_request(
        ctx.session, ctx.principal, ctx.organization, request_id, lock=True
    )
    if ctx.principal.organization_id != request.borrower_id:
        raise Forbidden("only the borrower withdraws its request")
    if request.status != "open":
        raise _not_open(request)
    now = utcnow()
    request.status = "withdrawn"
    request.version += 1
    request.updated_at = now
    await repository.close_competing(ctx.session, request.id, request.id, now)
    await ctx.session.flush()
    return await request_public(ctx.session, ctx.principal, request)


def _not_open(request: FinancingRequest) -> Conflict:
    return Conflict(
        f"the financing request is {request.status}",
        errors=[
            FieldError(
                field="request_id",
                rule="request_not_open",
                message=f"the financing request is {request.status}: offers are made and "
                "accepted on an open request",
            )
        ],
        slug="invalid-transition",
        title="This transition is not allowed from the current state",
        extra={"current_status": request.status},
    )


# ----------------------------------------------------------------------------- offers


def offer_public(offer: FinancingOffer, bank: Organization) -> OfferPublic:
    return OfferPublic(
        id=offer.id,
        request_id=offer.request_id,
        bank=_ref(bank),
        status=offer.status,
        amount=offer.amount,
        rate=offer.rate,
        term_months=offer.term_months,
        conditions=offer.conditions,
        version=offer.version,
        created_at=offer.created_at,
        updated_at=offer.updated_at,
    )


async def make_offer(
    ctx: listings.Context, request_id: UUID, data: OfferCreate, policy: FinancingPolicy
) -> OfferPublic:
    bank = ctx.organization
    if not is_verified_bank(bank):
        raise Forbidden(
            "offers are made by verified banks",
            errors=[
                FieldError(
                    field="bank",
                    rule="not_a_verified_bank",
                    message="the caller's organisation is not a verified bank",
                )
            ],
        )
    assert bank is not None
    request = await _visible_request(ctx.session, ctx.principal, bank, request_id, lock=True)
    if request.status != "open":
        raise _not_open(request)
    errors = check_forfeiture(data.forfeiture_clause)
    for i, (_, asset) in enumerate(await repository.request_assets(ctx.session, request.id)):
        errors += check_term(
            request.starts_on,
            data.term_months,
            asset.expires_on,
            max_term_months=policy.max_term_months,
            field=f"term_months (assets[{i}])",
        )
    _refuse(_unique(errors), conflict=False)
    if any(
        o.status == "open" for o in await repository.offers_of(ctx.session, request.id, bank.id)
    ):
        raise Conflict(
            "this bank has an open offer on the request already",
            errors=[
                FieldError(
                    field="request_id",
                    rule="offer_already_made",
                    message="one open offer per bank and request",
                )
            ],
        )
    now = utcnow()
    offer = FinancingOffer(
        request_id=request.id,
        bank_id=bank.id,
        amount=data.amount,
        rate=data.rate,
        term_months=data.term_months,
        conditions=data.conditions,
        created_at=now,
        updated_at=now,
    )
    ctx.session.add(offer)
    await ctx.session.flush()
    return offer_public(offer, bank)


async def offers_page(
    session: AsyncSession,
    principal: Principal,
    organization: Organization | None,
    request_id: UUID,
    *,
    page_size: int,
    page_token: str,
) -> Page[OfferPublic]:
    """The borrower and operators: every offer; a bank: its own (a competitor's figures are
    not its to see)."""
    request = await _visible_request(session, principal, organization, request_id)
    everyone = principal.is_operator or principal.organization_id == request.borrower_id
    bank_id = None if everyone else principal.organization_id
    rows, token = cut_page(
        await repository.offers_of(
            session, request.id, bank_id, after=created_after(page_token), limit=page_size + 1
        ),
        page_size,
        created_position,
    )
    return Page(
        items=[offer_public(o, await repository.organization(session, o.bank_id)) for o in rows],
        next_page_token=token,
    )


async def read_offer(session: AsyncSession, principal: Principal, offer_id: UUID) -> OfferPublic:
    offer, _ = await _offer_and_request(session, principal, offer_id)
    return offer_public(offer, await repository.organization(session, offer.bank_id))


async def _offer_and_request(
    session: AsyncSession, principal: Principal, offer_id: UUID, *, lock: bool = False
) -> tuple[FinancingOffer, FinancingRequest]:
    """The offer and its request, for the borrower, the bank and operators (404 otherwise).
    `lock`: the request row first, then the offer's, both read again."""
    offer = await repository.offer(session, offer_id)
    if offer is None:
        raise NotFound(f"no offer {offer_id}")
    request = await repository.request(session, offer.request_id, lock=lock)
    assert request is not None
    if lock:
        offer = await repository.offer(session, offer_id, lock=True)
        assert offer is not None
    if not (
        principal.is_operator or principal.organization_id in (request.borrower_id, offer.bank_id)
    ):
        raise NotFound(f"no offer {offer_id}")
    return offer, request


async def withdraw_offer(ctx: listings.Context, offer_id: UUID) -> OfferPublic:
    """The bank withdraws its open offer."""
    offer, _ = await _offer_and_request(ctx.session, ctx.principal, offer_id, lock=True)
    if ctx.principal.organization_id != offer.bank_id:
        raise Forbidden("only the bank that made it withdraws an offer")
    if offer.status != "open":
        raise _offer_not_open(offer)
    offer.status = "withdrawn"
    offer.version += 1
    offer.updated_at = utcnow()
    await ctx.session.flush()
    return offer_public(offer, await repository.organization(ctx.session, offer.bank_id))


def _offer_not_open(offer: FinancingOffer) -> Conflict:
    return Conflict(
        f"the offer is {offer.status}",
        errors=[
            FieldError(
                field="offer_id",
                rule="offer_not_open",
                message=f"the offer is {offer.status}",
            )
        ],
        slug="invalid-transition",
        title="This transition is not allowed from the current state",
        extra={"current_status": offer.status},
    )


async def accept(ctx: listings.Context, offer_id: UUID, policy: FinancingPolicy) -> PledgePublic:
    """The borrower accepts one offer: it wins, every other is closed, the request is
    accepted, and the pledge is filed with the registry (the exchange files the parties' joint
    application). Acceptances of one request queue on its row lock, so a second one finds it
    accepted (409); the partial unique index on accepted offers is the last word."""
    offer, request = await _offer_and_request(ctx.session, ctx.principal, offer_id, lock=True)
    if ctx.principal.organization_id != request.borrower_id:
        raise Forbidden("only the borrower accepts an offer")
    if request.status != "open":
        raise _not_open(request)
    if offer.status != "open":
        raise _offer_not_open(offer)
    rights = await repository.request_assets(ctx.session, request.id)
    await repository.lock_assets(ctx.session, [asset.id for _, asset in rights])
    # The market may have changed since the request (a hold, a lapse, a pledge elsewhere), and
    # a loan starting later than asked must still end within every right's term.
    starts_on = max(request.starts_on, ctx.today)
    late: list[FieldError] = []
    for i, (_, asset) in enumerate(rights):
        late += check_term(
            starts_on,
            offer.term_months,
            asset.expires_on,
            max_term_months=offer.term_months,
            field=f"assets[{i}].asset_id",
        )
    _refuse(
        await _pledgeable(
            ctx.session,
            [(link.asset_id, link.annual_fee_due_on) for link, _ in rights],
            {asset.id: asset for _, asset in rights},
            ctx.today,
            policy,
            but=request.id,
        )
        + late,
        conflict=True,
    )
    now = utcnow()
    offer.status = "accepted"
    offer.version += 1
    offer.updated_at = now
    request.status = "accepted"
    request.version += 1
    request.updated_at = now
    await ctx.session.flush()
    await repository.close_competing(ctx.session, request.id, offer.id, now)
    pledge = Pledge(
        request_id=request.id,
        offer_id=offer.id,
        pledgor_id=request.borrower_id,
        pledgee_id=offer.bank_id,
        amount=offer.amount,
        rate=offer.rate,
        term_months=offer.term_months,
        starts_on=starts_on,
        ends_on=pledge_ends_on(starts_on, offer.term_months),
        filed_on=ctx.today,
        created_at=now,
        updated_at=now,
    )
    ctx.session.add(pledge)
    await ctx.session.flush()
    _audit(ctx, pledge, "file", {"offer_id": str(offer.id)})
    view = await pledge_public(ctx.session, pledge)
    _emit(ctx.session, "pledge.filed", pledge, view)
    return view


# ----------------------------------------------------------------------------- pledges


async def pledge_public(session: AsyncSession, pledge: Pledge) -> PledgePublic:
    request = await repository.request(session, pledge.request_id)
    assert request is not None
    return PledgePublic(
        id=pledge.id,
        request_id=pledge.request_id,
        offer_id=pledge.offer_id,
        status=pledge.status,
        version=pledge.version,
        pledgor=_ref(await repository.organization(session, pledge.pledgor_id)),
        pledgee=_ref(await repository.organization(session, pledge.pledgee_id)),
        co_pledgors=[PartyRef.model_validate(p) for p in request.pledgors],
        assets=[
            _right(link, asset)
            for link, asset in await repository.request_assets(session, pledge.request_id)
        ],
        amount=pledge.amount,
        rate=pledge.rate,
        term_months=pledge.term_months,
        starts_on=pledge.starts_on,
        ends_on=pledge.ends_on,
        filed_on=pledge.filed_on,
        registration_number=pledge.registration_number,
        registered_on=pledge.registered_on,
        cancelled_on=pledge.cancelled_on,
        cancellation_reason=pledge.cancellation_reason,
        interest_paid=pledge.interest_paid,
        consents=await repository.consents(session, pledge.id),
        created_at=pledge.created_at,
        updated_at=pledge.updated_at,
    )


def _audit(ctx: listings.Context, pledge: Pledge, action: str, changes: dict[str, Any]) -> None:
    ctx.session.add(
        PledgeHistory(
            pledge_id=pledge.id,
            version=pledge.version,
            action=action,
            actor_organization_id=ctx.principal.organization_id,
            actor_key_id=ctx.principal.key_id,
            actor_roles=sorted(ctx.principal.roles),
            changes=changes,
        )
    )


def _emit(
    session: AsyncSession,
    type: EventType,
    pledge: Pledge,
    view: PledgePublic,
    *,
    audience: Sequence[UUID] | None = None,
    **extra: Any,
) -> None:
    """A `pledge.*` event: the registry's facts (no figures: the amount and the rate stay the
    parties'), for the feed's readers and, as webhooks, for the two parties only (or
    `audience`)."""
    parties = audience if audience is not None else (pledge.pledgor_id, pledge.pledgee_id)
    events.record(
        session,
        type=type,
        entity_id=pledge.id,
        version=pledge.version,
        data={
            "id": str(view.id),
            "status": view.status,
            "pledgor": view.pledgor.model_dump(mode="json"),
            "pledgee": view.pledgee.model_dump(mode="json"),
            "assets": [
                {"id": str(a.asset_id), "kind": a.kind, "identifier": a.identifier}
                for a in view.assets
            ],
            "asset": {"kind": view.assets[0].kind},
            "transaction_type": "pledge_financing",
            "starts_on": view.starts_on.isoformat(),
            "ends_on": view.ends_on.isoformat(),
            "filed_on": view.filed_on.isoformat(),
            "registration_number": view.registration_number,
            "registered_on": view.registered_on.isoformat() if view.registered_on else None,
            "cancelled_on": view.cancelled_on.isoformat() if view.cancelled_on else None,
            "cancellation_reason": view.cancellation_reason,
            "parties": [str(p) for p in parties],
            **extra,
        },
        asset_id=view.assets[0].asset_id,
        seller_id=pledge.pledgor_id,
    )


def _may_see_pledge(principal: Principal, pledge: Pledge) -> bool:
    return (
        principal.is_operator
        or principal.is_service
        or principal.organization_id in (pledge.pledgor_id, pledge.pledgee_id)
    )


async def read_pledge(session: AsyncSession, principal: Principal, pledge_id: UUID) -> PledgePublic:
    pledge = await repository.pledge(session, pledge_id)
    if pledge is None or not _may_see_pledge(principal, pledge):
        raise NotFound(f"no pledge {pledge_id}")
    return await pledge_public(session, pledge)


async def pledge_history(
    session: AsyncSession,
    principal: Principal,
    pledge_id: UUID,
    *,
    page_size: int,
    page_token: str,
) -> Page[PledgeHistoryEntry]:
    """The pledge's audit trail, oldest first: its parties and operators."""
    pledge = await repository.pledge(session, pledge_id)
    if pledge is None or not _may_see_pledge(principal, pledge):
        raise NotFound(f"no pledge {pledge_id}")
    position = page_position(page_token, id=token_int)
    rows = await repository.history(
        session, pledge_id, position["id"] if position else None, page_size + 1
    )
    entries, token = cut_page(rows, page_size, lambda entry: {"id": entry.id})
    return Page(
        items=[PledgeHistoryEntry.model_validate(e, from_attributes=True) for e in entries],
        next_page_token=token,
    )


async def pledges_page(
    session: AsyncSession,
    principal: Principal,
    *,
    status: str | None,
    page_size: int,
    page_token: str,
) -> Page[PledgePublic]:
    """The caller's pledges, as pledgor or pledgee; operators: all."""
    organization = None if principal.is_operator else principal.organization_id
    if organization is None and not principal.is_operator:
        raise Forbidden("pledges are read with a party's key")
    rows, token = cut_page(
        await repository.pledges_page(
            session,
            organization_id=organization,
            status=status,
            after=created_after(page_token),
            limit=page_size + 1,
        ),
        page_size,
        created_position,
    )
    return Page(items=[await pledge_public(session, row) for row in rows], next_page_token=token)


async def _writable_pledge(
    ctx: listings.Context, pledge_id: UUID, *, pledgee_only: bool = False
) -> tuple[Pledge, list[Asset]]:
    """The pledge, row-locked and read again, for its parties (the pledgee only, when told)
    and operators; 404 to anyone else. The writers of every listing on its rights are queued
    behind first (as every writer of a listing does, before its first write)."""
    pledge = await repository.pledge(ctx.session, pledge_id)
    if pledge is None or not (
        ctx.principal.is_operator
        or ctx.principal.organization_id in (pledge.pledgor_id, pledge.pledgee_id)
    ):
        raise NotFound(f"no pledge {pledge_id}")
    if pledgee_only and not (
        ctx.principal.is_operator or ctx.principal.organization_id == pledge.pledgee_id
    ):
        raise Forbidden("this is the pledgee's to do")
    rights = [asset for _, asset in await repository.request_assets(ctx.session, pledge.request_id)]
    assets = AssetRepository(ctx.session)
    for asset in rights:
        for listing_id in await assets.listing_ids(asset.id):
            await serialize_writers(ctx.session, listing_id)
    locked = await repository.pledge(ctx.session, pledge_id, lock=True)
    assert locked is not None
    return locked, rights


def _encumbrance(pledge: Pledge, pledgee: Organization) -> dict[str, Any]:
    return {"type": "pledge", "holder": pledgee.name, "until": pledge.ends_on.isoformat()}


async def _encumber(
    ctx: listings.Context,
    rights: list[Asset],
    *,
    add: dict[str, Any] | None,
    remove: dict[str, Any] | None,
    action: str,
) -> None:
    """Put the pledge's encumbrance on its rights (or take it off): each right gets a new
    version and every listing on it a `listing.updated` with its new document, so the search
    index, the catalogue, partner exchanges and webhooks carry it."""
    repo = AssetRepository(ctx.session)
    now = utcnow()
    for right in rights:
        asset = await repo.locked(right.id)
        assert asset is not None
        encumbrances = list(asset.encumbrances)
        if remove is not None and remove in encumbrances:
            encumbrances.remove(remove)
        if add is not None:
            encumbrances.append(add)
        before = list(asset.encumbrances)
        asset.encumbrances = encumbrances
        asset.version += 1
        asset.updated_at = now
        changes = {"asset.encumbrances": [before, encumbrances]}
        for listing, seller in await repo.lock_listings(await repo.listing_ids(asset.id)):
            listing.version += 1
            listing.updated_at = now
            listings.audit(ctx, listing, action, changes)
            listings.emit(ctx.session, "listing.updated", listing, asset, seller, ctx.catalogue_url)
    await ctx.session.flush()


def _transition(pledge: Pledge, action: PledgeAction) -> None:
    pledge.status = next_pledge_status(action, pledge.status)
    pledge.version += 1
    pledge.updated_at = utcnow()


async def register(ctx: listings.Context, pledge_id: UUID, data: RegistrationEntry) -> PledgePublic:
    """The registry registered the pledge (a party or an operator enters its number and day):
    it is in effect, and its rights carry it as an encumbrance."""
    pledge, rights = await _writable_pledge(ctx, pledge_id)
    next_pledge_status("register", pledge.status)
    _refuse(check_registration(data.registered_on, pledge.filed_on, ctx.today), conflict=False)
    _transition(pledge, "register")
    pledge.registration_number = data.registration_number
    pledge.registered_on = data.registered_on
    _audit(ctx, pledge, "register", data.model_dump(mode="json"))
    pledgee = await repository.organization(ctx.session, pledge.pledgee_id)
    await _encumber(
        ctx, rights, add=_encumbrance(pledge, pledgee), remove=None, action="pledge_registered"
    )
    view = await pledge_public(ctx.session, pledge)
    _emit(ctx.session, "pledge.registered", pledge, view)
    return view


async def change(
    ctx: listings.Context, pledge_id: UUID, data: PledgeChange, policy: FinancingPolicy
) -> PledgePublic:
    """A registered change (amount, rate, term); a new term stays within the rights' terms."""
    pledge, rights = await _writable_pledge(ctx, pledge_id)
    next_pledge_status("change", pledge.status)
    stated = {k: v for k, v in data.model_dump(exclude={"reason"}).items() if v is not None}
    changes = {k: [getattr(pledge, k), v] for k, v in stated.items() if getattr(pledge, k) != v}
    if not changes:
        raise UnprocessableEntity.single(
            "body", "nothing_changed", "a change states a new amount, rate or term"
        )
    errors: list[FieldError] = []
    if "term_months" in changes:
        for i, asset in enumerate(rights):
            errors += check_term(
                pledge.starts_on,
                stated["term_months"],
                asset.expires_on,
                max_term_months=policy.max_term_months,
                field=f"term_months (assets[{i}])",
            )
    _refuse(_unique(errors), conflict=False)
    pledgee = await repository.organization(ctx.session, pledge.pledgee_id)
    before = _encumbrance(pledge, pledgee)
    _transition(pledge, "change")
    for key, (_, new) in changes.items():
        setattr(pledge, key, new)
    pledge.ends_on = pledge_ends_on(pledge.starts_on, pledge.term_months)
    _audit(
        ctx,
        pledge,
        "change",
        {**{k: [str(a), str(b)] for k, (a, b) in changes.items()}, "reason": data.reason},
    )
    after = _encumbrance(pledge, pledgee)
    if after != before:
        await _encumber(ctx, rights, add=after, remove=before, action="pledge_changed")
    view = await pledge_public(ctx.session, pledge)
    _emit(ctx.session, "pledge.changed", pledge, view)
    return view


async def cancel(ctx: listings.Context, pledge_id: UUID, data: PledgeCancellation) -> PledgePublic:
    """The registry cancelled the pledge (the pledgee or an operator enters it): repaid,
    enforced, released or void; its encumbrance leaves its rights."""
    pledge, rights = await _writable_pledge(ctx, pledge_id, pledgee_only=True)
    next_pledge_status("cancel", pledge.status)
    since = pledge.registered_on or pledge.filed_on
    errors = check_cancellation(pledge.status, data.reason, data.cancelled_on, since, ctx.today)
    if data.interest_paid is not None and data.reason != "repaid":
        errors.append(
            FieldError(
                field="interest_paid",
                rule="interest_only_when_repaid",
                message="the interest paid is entered with a repayment",
            )
        )
    _refuse(errors, conflict=False)
    was_in_effect = pledge.status in IN_EFFECT
    pledgee = await repository.organization(ctx.session, pledge.pledgee_id)
    encumbrance = _encumbrance(pledge, pledgee)
    _transition(pledge, "cancel")
    pledge.cancelled_on = data.cancelled_on
    pledge.cancellation_reason = data.reason
    pledge.interest_paid = data.interest_paid
    _audit(ctx, pledge, "cancel", data.model_dump(mode="json"))
    if was_in_effect:
        await _encumber(ctx, rights, add=None, remove=encumbrance, action="pledge_cancelled")
    view = await pledge_public(ctx.session, pledge)
    _emit(ctx.session, "pledge.cancelled", pledge, view)
    return view


async def record_consent(
    ctx: listings.Context, pledge_id: UUID, data: ConsentCreate
) -> PledgePublic:
    """The pledgee consents to an assignment or an exclusive licence of the pledged rights
    (Civil Code Art. 444): listings of that type on them may then be published."""
    pledge = await repository.pledge(ctx.session, pledge_id, lock=True)
    if pledge is None or not (
        ctx.principal.is_operator
        or ctx.principal.organization_id in (pledge.pledgor_id, pledge.pledgee_id)
    ):
        raise NotFound(f"no pledge {pledge_id}")
    if ctx.principal.organization_id != pledge.pledgee_id:
        raise Forbidden("the consent is the pledgee's")
    if pledge.status not in LIVE_PLEDGE:
        raise Conflict(
            f"the pledge is {pledge.status}: nothing to consent to",
            errors=[
                FieldError(
                    field="pledge_id",
                    rule="pledge_not_live",
                    message="a cancelled pledge needs no consent",
                )
            ],
        )
    assert data.transaction_type in CONSENT_TYPES
    ctx.session.add(
        PledgeConsent(pledge_id=pledge.id, transaction_type=data.transaction_type, note=data.note)
    )
    pledge.version += 1
    pledge.updated_at = utcnow()
    _audit(ctx, pledge, "consent", data.model_dump(mode="json"))
    await ctx.session.flush()
    return await pledge_public(ctx.session, pledge)


async def right_changed(ctx: listings.Context, asset: Asset, changes: dict[str, list[Any]]) -> int:
    """A correction (PATCH /v1/assets) changed a right: see `rights_changed`."""
    return await rights_changed(
        ctx.session,
        ctx.principal.organization_id,
        ctx.principal.key_id,
        sorted(ctx.principal.roles),
        [(asset.model_dump(), changes)],
    )


async def rights_changed(
    session: AsyncSession,
    actor_organization_id: UUID | None,
    actor_key_id: UUID | None,
    actor_roles: list[str],
    rights: Sequence[tuple[Mapping[str, Any], Mapping[str, list[Any]]]],
) -> int:
    """Corrections (an edit or a re-import) changed rights: where a right's legal status or
    expiry changed and a live pledge holds it, the pledge raises `pledge.at_risk` to its
    pledgee (the collateral may have lapsed, been invalidated or shortened), audited on the
    pledge. `rights`: each right's values after the correction, with what changed. Returns how
    many events."""
    raised = 0
    for asset, changes in rights:
        risk = {k: v for k, v in changes.items() if k in ("legal_status", "expires_on")}
        if not risk:
            continue
        expires_on = asset["expires_on"]
        for pledge in await repository.live_pledges_on(session, asset["id"]):
            session.add(
                PledgeHistory(
                    pledge_id=pledge.id,
                    version=pledge.version,
                    action="at_risk",
                    actor_organization_id=actor_organization_id,
                    actor_key_id=actor_key_id,
                    actor_roles=actor_roles,
                    changes={"asset_id": str(asset["id"]), **risk},
                )
            )
            view = await pledge_public(session, pledge)
            _emit(
                session,
                "pledge.at_risk",
                pledge,
                view,
                audience=[pledge.pledgee_id],
                risk={
                    "asset_id": str(asset["id"]),
                    "identifier": asset["identifier"],
                    "changes": risk,
                    "legal_status": asset["legal_status"],
                    "expires_on": expires_on.isoformat() if expires_on else None,
                },
            )
            raised += 1
    if raised:
        await session.flush()
    return raised


# ----------------------------------------------------------------------------- holds


async def add_hold(ctx: listings.Context, data: HoldCreate) -> HoldPublic:
    """Operators record a preservation or suspension from the registry."""
    if not ctx.principal.is_operator:
        raise Forbidden("holds are recorded by the exchange's operators")
    if await ctx.session.get(Asset, data.asset_id) is None:
        raise NotFound(f"no asset {data.asset_id}")
    if data.since > ctx.today:
        raise UnprocessableEntity.single("since", "not_in_future", "a hold starts today or before")
    hold = AssetHold(**data.model_dump())
    ctx.session.add(hold)
    await ctx.session.flush()
    return HoldPublic.model_validate(hold, from_attributes=True)


async def lift_hold(ctx: listings.Context, hold_id: UUID, data: HoldLift) -> HoldPublic:
    if not ctx.principal.is_operator:
        raise Forbidden("holds are lifted by the exchange's operators")
    hold = await repository.hold(ctx.session, hold_id, lock=True)
    if hold is None:
        raise NotFound(f"no hold {hold_id}")
    if hold.lifted_on is not None:
        raise Conflict(
            f"the hold was lifted on {hold.lifted_on.isoformat()}",
            slug="invalid-transition",
            title="This transition is not allowed from the current state",
        )
    if data.lifted_on > ctx.today or data.lifted_on < hold.since:
        raise UnprocessableEntity.single(
            "lifted_on", "lifted_out_of_range", "a hold is lifted between its start and today"
        )
    hold.lifted_on = data.lifted_on
    await ctx.session.flush()
    return HoldPublic.model_validate(hold, from_attributes=True)
