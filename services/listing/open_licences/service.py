"""Open licences: declarations (listings of type `open_license` with typed terms, reviewed like
every listing), licences taken by written notice with their recordal package and deadline, the
recordal entered, and the deadline reminders. Never commits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from services.listing.assets import service as assets
from services.listing.assets.rules import can_be_offered, is_holder
from services.listing.feed import events
from services.listing.listings import service as listings
from services.listing.listings.repository import ListingRepository
from services.listing.listings.rules import VISIBLE
from services.listing.listings.schemas import ListingCreate
from services.listing.models import (
    Asset,
    Listing,
    OpenLicence,
    OpenLicenceDeclaration,
    Organization,
)
from services.listing.open_licences import repository
from services.listing.open_licences.rules import (
    EXCLUSIVE_TYPES,
    Guidance,
    check_consents,
    check_declarable,
    check_kind,
    check_terms,
    deadline_state,
    guidance_flags,
    recordal_due_on,
    reminder_to_send,
    transaction_terms,
)
from services.listing.open_licences.schemas import (
    Consent,
    DeclarationCreate,
    DeclarationPublic,
    LicencePublic,
    LicenceTake,
    LicensedPatent,
    Party,
    Recordal,
    RecordalEntry,
    RecordalPackage,
)
from shared.auth import Principal
from shared.contracts.catalogue import OpenLicenseTerms, offer_id
from shared.contracts.events import EventType
from shared.db import utcnow
from shared.errors import Conflict, FieldError, Forbidden, NotFound, UnprocessableEntity
from shared.schemas import Page, created_after, created_position, cut_page
from shared.settings import Settings


@dataclass(frozen=True)
class Policy:
    """The settings the open licence rules read."""

    guidance: Guidance
    recordal_months: int
    reminder_days: tuple[int, ...]

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        return cls(
            guidance=Guidance.of(settings),
            recordal_months=settings.open_licence_recordal_months,
            reminder_days=tuple(settings.open_licence_reminder_days),
        )


def _refuse(errors: list[FieldError], *, conflict: bool) -> None:
    if not errors:
        return
    detail = "; ".join(e.message for e in errors)
    if conflict:
        raise Conflict(
            detail,
            errors=errors,
            slug="not-declarable",
            title="This patent cannot be declared for open licence now",
        )
    raise UnprocessableEntity(detail, errors=errors)


# ----------------------------------------------------------------------------- declarations


async def declare(ctx: listings.Context, data: DeclarationCreate, policy: Policy) -> UUID:
    """A draft declaration: its listing and its declaration row; the id of the listing. Every
    rule is checked before the listing is written, and a refusal rolls back the asset a
    registration in the same call wrote (nothing is stored)."""
    organization = ctx.organization
    if organization is None:
        raise Forbidden("a declaration is made with the patentee's key")
    if data.asset is not None:
        registered = await assets.register(
            ctx.session, ctx.principal, organization, data.asset, today=ctx.today
        )
        asset = registered.row
    else:
        assert data.asset_id is not None
        asset = (await assets.get(ctx.session, data.asset_id)).model_dump()
    if not is_holder(asset["holders"], organization.name, organization.uscc):
        raise Forbidden(
            "only a holder of the patent declares an open licence",
            errors=[
                FieldError(
                    field="asset_id",
                    rule="not_a_holder",
                    message="the declarant must be one of the patent's holders",
                )
            ],
        )
    consents = [c.model_dump() for c in data.consents]
    await repository.lock_asset(ctx.session, asset["id"])
    _refuse(
        check_kind(asset["kind"])
        + check_terms(
            data.terms,
            kind=asset["kind"],
            expires_on=asset["expires_on"],
            guidance=policy.guidance,
        )
        + check_consents(asset["holders"], organization.name, organization.uscc, consents),
        conflict=False,
    )
    _refuse(
        check_declarable(
            legal_status=asset["legal_status"],
            expires_on=asset["expires_on"],
            encumbrances=asset["encumbrances"],
            offered_types=await repository.offered_types(ctx.session, asset["id"]),
            licences_in_force=await repository.licences_in_force(
                ctx.session, asset["id"], EXCLUSIVE_TYPES, ctx.today
            ),
            today=ctx.today,
        )
        + await _already_declared(ctx.session, asset["id"]),
        conflict=True,
    )
    terms = transaction_terms(data.terms, territory=data.territory, field_of_use=data.field_of_use)
    created = await listings.create(
        ctx,
        ListingCreate(
            asset_id=asset["id"], transaction=terms.model_copy(update={"open_license": None})
        ),
        open_license=data.terms.model_dump(mode="json"),
    )
    ctx.session.add(
        OpenLicenceDeclaration(
            listing_id=created.id,
            asset_id=asset["id"],
            consents=consents,
            flags=[f.model_dump() for f in guidance_flags(data.terms, policy.guidance)],
        )
    )
    await ctx.session.flush()
    return created.id


async def _already_declared(session: AsyncSession, asset_id: UUID) -> list[FieldError]:
    """One declaration of a patent at a time here: a second would offer other terms for the
    same licence. (Withdraw the first, then declare again.)"""
    existing = await repository.live_declaration(session, asset_id)
    if existing is None:
        return []
    return [
        FieldError(
            field="asset_id",
            rule="already_declared",
            message=f"this patent is declared already ({existing}): withdraw that declaration "
            "first",
        )
    ]


def _may_see(principal: Principal | None, listing: Listing) -> bool:
    return listing.status in VISIBLE or listings.may_see_everything(principal, listing)


async def _declaration_rows(
    session: AsyncSession, principal: Principal | None, listing_id: UUID
) -> tuple[Listing, Asset, Organization, OpenLicenceDeclaration]:
    found = await ListingRepository(session).with_asset(listing_id)
    declaration = await repository.declaration(session, listing_id)
    if found is None or declaration is None or not _may_see(principal, found[0]):
        raise NotFound(f"no open licence declaration {listing_id}")
    return (*found, declaration)


def declaration_public(
    listing: Listing,
    asset: Asset,
    seller: Organization,
    declaration: OpenLicenceDeclaration,
    licences_taken: int = 0,
) -> DeclarationPublic:
    transaction = listings.terms_of(listing)
    assert transaction.open_license is not None
    return DeclarationPublic(
        id=listing.id,
        offer_id=offer_id(listing.exchange, listing.external_id),
        status=listing.status,
        version=listing.version,
        declarant_id=seller.id,
        declarant_name=seller.name,
        asset=assets.to_public(asset),
        terms=transaction.open_license,
        transaction=transaction,
        consents=[Consent.model_validate(c) for c in declaration.consents],
        flags=[FieldError.model_validate(f) for f in declaration.flags],
        licences_taken=licences_taken,
        published_at=listing.published_at,
        created_at=listing.created_at,
        updated_at=listing.updated_at,
    )


async def read_declaration(
    session: AsyncSession, principal: Principal | None, listing_id: UUID
) -> DeclarationPublic:
    listing, asset, seller, declaration = await _declaration_rows(session, principal, listing_id)
    taken = await repository.count_licences(session, listing_id)
    return declaration_public(listing, asset, seller, declaration, taken)


async def declarations_page(
    session: AsyncSession,
    principal: Principal,
    *,
    status: str | None,
    page_size: int,
    page_token: str,
) -> Page[DeclarationPublic]:
    """Members: their organisation's declarations; operators: all (`status=pending_review` is
    the review queue, with each declaration's flags)."""
    seller = None if principal.is_operator else principal.organization_id
    rows, token = cut_page(
        await repository.declarations_page(
            session,
            seller_id=seller,
            status=status,
            after=created_after(page_token),
            limit=page_size + 1,
        ),
        page_size,
        lambda row: created_position(row[0]),
    )
    return Page(items=[declaration_public(*row) for row in rows], next_page_token=token)


# ----------------------------------------------------------------------------- licences


def _party(organization: Organization) -> Party:
    return Party(
        id=organization.id,
        name=organization.name,
        uscc=organization.uscc,
        region=organization.region,
    )


def _package(
    licence: OpenLicence,
    asset: Asset,
    licensor: Organization,
    licensee: Organization,
    territory: str | None,
    field_of_use: str | None,
) -> RecordalPackage:
    return RecordalPackage(
        licence_id=licence.id,
        declaration_id=licence.declaration_id,
        licensor=_party(licensor),
        licensee=_party(licensee),
        patent=LicensedPatent(
            kind=asset.kind,
            identifier=asset.identifier,
            publication_number=asset.publication_number,
            title={"zh": asset.title_zh, "en": asset.title_en},
            holders=asset.holders,
            granted_on=asset.granted_on,
            expires_on=asset.expires_on,
        ),
        terms=OpenLicenseTerms.model_validate(licence.terms),
        territory=territory,
        field_of_use=field_of_use,
        notice=licence.notice,
        noticed_at=licence.noticed_at,
        starts_on=licence.starts_on,
        ends_on=licence.ends_on,
        recordal_due_on=licence.recordal_due_on,
    )


def licence_public(
    licence: OpenLicence, package: RecordalPackage, today: date, policy: Policy
) -> LicencePublic:
    return LicencePublic(
        id=licence.id,
        declaration_id=licence.declaration_id,
        status=licence.status,
        version=licence.version,
        recordal=Recordal(
            due_on=licence.recordal_due_on,
            state=deadline_state(
                licence.status, licence.recordal_due_on, today, policy.reminder_days
            ),
            days_left=(licence.recordal_due_on - today).days,
            reminders_sent=sorted(licence.reminders_sent, reverse=True),
            recordal_number=licence.recordal_number,
            recorded_on=licence.recorded_on,
            recorded_at=licence.recorded_at,
        ),
        package=package,
        created_at=licence.created_at,
    )


async def _licence_view(
    session: AsyncSession, licence: OpenLicence, today: date, policy: Policy
) -> LicencePublic:
    found = await ListingRepository(session).with_asset(licence.declaration_id)
    assert found is not None
    listing, asset, _ = found
    licensor = await session.get(Organization, licence.licensor_id)
    licensee = await session.get(Organization, licence.licensee_id)
    assert licensor is not None and licensee is not None
    package = _package(licence, asset, licensor, licensee, listing.territory, listing.field_of_use)
    return licence_public(licence, package, today, policy)


def _emit(
    session: AsyncSession, type: EventType, licence: OpenLicence, view: LicencePublic, **extra: Any
) -> None:
    """A `licence.*` event: the recordal package and the deadline, for the two parties (the
    gateway delivers it to their webhook subscriptions only)."""
    package = view.package
    events.record(
        session,
        type=type,
        entity_id=view.id,
        version=view.version,
        data={
            **view.model_dump(mode="json"),
            "transaction_type": "open_license",
            "asset": {"kind": package.patent.kind},
            "parties": [str(package.licensor.id), str(package.licensee.id)],
            **extra,
        },
        asset_id=licence.asset_id,
        seller_id=package.licensor.id,
    )


async def take(
    ctx: listings.Context, declaration_id: UUID, data: LicenceTake, policy: Policy
) -> LicencePublic:
    """The licence exists at once, on the declared terms, from the licensee's notice; the
    answer is its recordal package, due within `recordal_months`."""
    licensee = ctx.organization
    if licensee is None:
        raise Forbidden("a licence is taken with the licensee's key")
    listing = await ListingRepository(ctx.session).get(declaration_id, lock=True)
    declaration = await repository.declaration(ctx.session, declaration_id)
    if listing is None or declaration is None or not _may_see(ctx.principal, listing):
        raise NotFound(f"no open licence declaration {declaration_id}")
    found = await ListingRepository(ctx.session).with_asset(declaration_id)
    assert found is not None
    _, asset, licensor = found
    terms = listings.terms_of(listing).open_license
    assert terms is not None
    errors = []
    if listing.status != "published":
        errors.append(
            FieldError(
                field="declaration_id",
                rule="declaration_not_published",
                message=f"the declaration is {listing.status}: licences are taken on a "
                "published declaration",
            )
        )
    if licensee.id == licensor.id:
        errors.append(
            FieldError(
                field="licensee",
                rule="own_declaration",
                message="the patentee does not take a licence on its own declaration",
            )
        )
    if terms.ends_on < ctx.today:
        errors.append(
            FieldError(
                field="declaration_id",
                rule="declaration_term_ended",
                message=f"the declared term ended on {terms.ends_on.isoformat()}",
            )
        )
    ended = can_be_offered(asset.legal_status, asset.expires_on, ctx.today)
    if ended:
        errors.append(
            FieldError(field="asset.legal_status", rule="right_not_in_force", message=ended)
        )
    if not errors and await repository.licence_of(ctx.session, declaration_id, licensee.id):
        errors.append(
            FieldError(
                field="licensee",
                rule="licence_already_taken",
                message="the licensee holds a licence on this declaration already",
            )
        )
    if errors:
        raise Conflict(
            "; ".join(e.message for e in errors),
            errors=errors,
            slug="licence-not-available",
            title="A licence cannot be taken on this declaration",
        )
    now = utcnow()
    licence = OpenLicence(
        declaration_id=declaration_id,
        asset_id=asset.id,
        licensor_id=licensor.id,
        licensee_id=licensee.id,
        notice=data.notice,
        noticed_at=now,
        terms=terms.model_dump(mode="json"),
        starts_on=max(ctx.today, terms.starts_on),
        ends_on=terms.ends_on,
        recordal_due_on=recordal_due_on(ctx.today, policy.recordal_months),
        created_at=now,
        updated_at=now,
    )
    ctx.session.add(licence)
    await ctx.session.flush()
    package = _package(licence, asset, licensor, licensee, listing.territory, listing.field_of_use)
    view = licence_public(licence, package, ctx.today, policy)
    _emit(ctx.session, "licence.taken", licence, view)
    return view


async def _visible_licence(
    session: AsyncSession, principal: Principal, licence_id: UUID, *, write: bool = False
) -> OpenLicence:
    """The licence, for its two parties and operators (services read it too); 404 to anyone
    else. `write`: row-locked, and not for services."""
    licence = await repository.licence(session, licence_id, lock=write)
    if licence is None or not (
        principal.is_operator
        or (principal.is_service and not write)
        or principal.organization_id in (licence.licensor_id, licence.licensee_id)
    ):
        raise NotFound(f"no licence {licence_id}")
    return licence


async def read_licence(
    session: AsyncSession, principal: Principal, licence_id: UUID, today: date, policy: Policy
) -> LicencePublic:
    licence = await _visible_licence(session, principal, licence_id)
    return await _licence_view(session, licence, today, policy)


async def licences_page(
    session: AsyncSession,
    principal: Principal,
    *,
    declaration_id: UUID | None,
    today: date,
    policy: Policy,
    page_size: int,
    page_token: str,
) -> Page[LicencePublic]:
    """The caller's licences, as licensor or licensee; operators': all."""
    organization = None if principal.is_operator else principal.organization_id
    if organization is None and not principal.is_operator:
        raise Forbidden("licences are read with a party's key")
    rows, token = cut_page(
        await repository.licences_page(
            session,
            organization_id=organization,
            declaration_id=declaration_id,
            after=created_after(page_token),
            limit=page_size + 1,
        ),
        page_size,
        created_position,
    )
    return Page(
        items=[await _licence_view(session, row, today, policy) for row in rows],
        next_page_token=token,
    )


async def enter_recordal(
    session: AsyncSession,
    principal: Principal,
    licence_id: UUID,
    data: RecordalEntry,
    today: date,
    policy: Policy,
) -> LicencePublic:
    """Either party (or an operator) enters CNIPA's recordal: the licence is `recorded`."""
    licence = await _visible_licence(session, principal, licence_id, write=True)
    if licence.status == "recorded":
        raise Conflict(
            f"this licence was recorded on {licence.recorded_on}",
            slug="invalid-transition",
            title="This transition is not allowed from the current state",
            extra={"current_status": licence.status},
        )
    if data.recorded_on > today:
        raise UnprocessableEntity.single(
            "recorded_on", "recorded_in_future", "the recordal day is not in the future"
        )
    if data.recorded_on < licence.noticed_at.date():
        raise UnprocessableEntity.single(
            "recorded_on",
            "recorded_before_notice",
            "a licence is recorded after the licensee's notice",
        )
    licence.status = "recorded"
    licence.recordal_number = data.recordal_number
    licence.recorded_on = data.recorded_on
    licence.recorded_at = datetime.now(UTC)
    licence.version += 1
    licence.updated_at = licence.recorded_at
    await session.flush()
    view = await _licence_view(session, licence, today, policy)
    _emit(session, "licence.recorded", licence, view)
    return view


async def send_reminders(
    session: AsyncSession, today: date, policy: Policy, *, limit: int = 500
) -> int:
    """One `licence.recordal_due` event for each licence awaiting recordal whose reminder day
    has come (the most urgent one not sent yet); returns how many."""
    if not policy.reminder_days:
        return 0
    sent = 0
    for licence in await repository.awaiting_reminder(session, today, policy.reminder_days, limit):
        reminder = reminder_to_send(
            licence.recordal_due_on, today, policy.reminder_days, licence.reminders_sent
        )
        if reminder is None:
            continue
        licence.reminders_sent = sorted(
            {*licence.reminders_sent, *(d for d in policy.reminder_days if d >= reminder)}
        )
        licence.version += 1
        licence.updated_at = utcnow()
        await session.flush()
        view = await _licence_view(session, licence, today, policy)
        _emit(session, "licence.recordal_due", licence, view, reminder_days=reminder)
        sent += 1
    return sent
