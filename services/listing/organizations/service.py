"""Domain logic of organisations and API keys: plain functions over repositories; never commits."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from services.listing.models import ApiKey, Organization
from services.listing.organizations.repository import (
    ApiKeyRepository,
    OrganizationFilters,
    OrganizationRepository,
)
from services.listing.organizations.schemas import (
    ApiKeyCreate,
    ApiKeyPublic,
    OrganizationCreate,
    OrganizationPublic,
    OrganizationUpdate,
)
from shared.auth import (
    KeyMaterial,
    Principal,
    environment_principal,
    generate_api_key,
    hashes_match,
    key_prefix,
)
from shared.contracts.auth import Role
from shared.errors import Conflict, FieldError, Forbidden, NotFound, UnprocessableEntity
from shared.identifiers import IdentifierError, validate_region_code, validate_uscc
from shared.schemas import (
    Page,
    created_after,
    created_position,
    cut_page,
)
from shared.settings import Settings


def checked(field: str, validate: Callable[[str], str], value: str) -> str:
    """Run an identifier rule; its failure becomes a 422 naming our field and the rule. The
    rule's message is said once, in the field error; `detail` sums up, as every other 422
    does ("1 field is invalid: uscc (uscc_check_character)")."""
    try:
        return validate(value)
    except IdentifierError as exc:
        raise UnprocessableEntity(
            f"1 field is invalid: {field} ({exc.rule})",
            errors=[FieldError(field=field, rule=exc.rule, message=exc.message)],
        ) from exc


async def sign_up(
    session: AsyncSession, data: OrganizationCreate
) -> tuple[Organization, ApiKey, KeyMaterial]:
    """A new, unverified organisation and its first admin key (returned once, in plaintext)."""
    region = checked("region", validate_region_code, data.region)
    uscc = checked("uscc", validate_uscc, data.uscc) if data.uscc else None
    organizations = OrganizationRepository(session)
    if uscc and await organizations.by_uscc(uscc):
        raise Conflict(f"an organisation with the credit code {uscc} is already registered")
    organization = await organizations.add(
        Organization(name=data.name, kind=data.kind, region=region, uscc=uscc)
    )
    key, material = await _issue(session, organization.id, "first admin key", ["admin"])
    return organization, key, material


async def update_organization(
    session: AsyncSession, principal: Principal, organization_id: UUID, data: OrganizationUpdate
) -> Organization:
    """Members (admins) edit their organisation; only operators verify or override a credit
    code's check character."""
    ensure_member(principal, organization_id, admin=True)
    if (data.verified is not None or data.uscc_check_override) and not principal.is_operator:
        raise Forbidden(
            "only an exchange operator verifies organisations",
            errors=[
                FieldError(
                    field="verified", rule="operator_only", message="only an operator sets this"
                )
            ],
        )
    organization = await get_organization(session, organization_id)
    if data.name is not None:
        organization.name = data.name
    if data.region is not None:
        organization.region = checked("region", validate_region_code, data.region)
    if data.uscc is not None:
        uscc = checked(
            "uscc", lambda v: validate_uscc(v, allow_bad_check=data.uscc_check_override), data.uscc
        )
        other = await OrganizationRepository(session).by_uscc(uscc)
        if other is not None and other.id != organization.id:
            raise Conflict(f"an organisation with the credit code {uscc} is already registered")
        organization.uscc = uscc
    if data.verified is not None:
        organization.verified = data.verified
    organization.version += 1
    organization.updated_at = datetime.now(UTC)
    await session.flush()
    return organization


async def _issue(
    session: AsyncSession, organization_id: UUID | None, name: str, roles: list[str]
) -> tuple[ApiKey, KeyMaterial]:
    material = generate_api_key()
    key = await ApiKeyRepository(session).add(
        ApiKey(
            organization_id=organization_id,
            name=name,
            prefix=material.prefix,
            key_hash=material.hash,
            roles=sorted(set(roles)),
        )
    )
    return key, material


def region_prefix(region: str) -> str:
    """The leading digits of the region codes that lie in `region` (2 to 6 digits). A six-digit
    GB/T 2260 code is read hierarchically: `110000` is all of Beijing (prefix `11`), `130600`
    all of Baoding (`1306`), `110108` Haidian only. Fewer digits are a prefix as they stand
    (`13`: all of Hebei). The deal announcements' `region` filter reads it the same way."""
    if len(region) == 6:
        return region[:2] if region.endswith("0000") else region.removesuffix("00")
    return region


def organization_filters(
    *, verified: bool | None, kind: str | None, region: str | None, name: str | None
) -> OrganizationFilters:
    return OrganizationFilters(
        verified=verified,
        kind=kind,
        region_prefix=region_prefix(region) if region else None,
        name=name or None,
    )


async def list_organizations(
    session: AsyncSession, filters: OrganizationFilters, *, page_size: int, page_token: str
) -> Page[OrganizationPublic]:
    """A page of the organisations `filters` selects, oldest sign-up first (operators: the
    verification queue is `verified=false`). The token holds the last row's (created_at, id):
    no row is repeated, and organisations that sign up while an operator pages come at the end
    instead of shifting the pages still to come."""
    rows, token = cut_page(
        await OrganizationRepository(session).page(
            filters, after=created_after(page_token), limit=page_size + 1
        ),
        page_size,
        created_position,
    )
    return Page[OrganizationPublic](
        items=[OrganizationPublic.model_validate(row, from_attributes=True) for row in rows],
        next_page_token=token,
    )


async def get_organization(session: AsyncSession, organization_id: UUID) -> Organization:
    organization = await OrganizationRepository(session).get(organization_id)
    if organization is None:
        raise NotFound(f"no organisation {organization_id}")
    return organization


def ensure_member(principal: Principal, organization_id: UUID, *, admin: bool = False) -> None:
    """Operators may act on any organisation; others only on their own (admins where asked)."""
    if principal.is_operator:
        return
    if principal.organization_id != organization_id:
        raise Forbidden("this organisation is not the caller's")
    if admin and not principal.has("admin"):
        raise Forbidden("this needs an admin key of the organisation")


async def issue_key(
    session: AsyncSession, principal: Principal, organization_id: UUID, data: ApiKeyCreate
) -> tuple[ApiKey, KeyMaterial]:
    """Admins issue member and admin keys; partner and operator keys come from operators only,
    partner keys only to partner exchanges."""
    organization = await get_organization(session, organization_id)
    privileged = {"partner", "operator"} & set(data.roles)
    if privileged and not principal.is_operator:
        raise Forbidden(
            f"only an exchange operator issues {', '.join(sorted(privileged))} keys",
            errors=[
                FieldError(
                    field="roles",
                    rule="operator_only",
                    message="partner and operator keys are issued by operators",
                )
            ],
        )
    if "partner" in data.roles and organization.kind != "exchange":
        raise UnprocessableEntity.single(
            "roles",
            "partner_needs_exchange",
            "partner keys belong to organisations of kind exchange",
        )
    return await _issue(session, organization_id, data.name, list(data.roles))


async def rotate_key(
    session: AsyncSession, organization_id: UUID, key_id: UUID
) -> tuple[ApiKey, KeyMaterial]:
    """A new key with the old one's name and roles; the old one is revoked in the same step."""
    keys = ApiKeyRepository(session)
    old = await keys.get(key_id)
    if old is None or old.organization_id != organization_id or old.revoked_at is not None:
        raise NotFound(f"no active key {key_id} in organisation {organization_id}")
    await keys.revoke(key_id, datetime.now(UTC))
    return await _issue(session, organization_id, old.name, list(old.roles))


async def list_keys(
    session: AsyncSession, organization_id: UUID, *, page_size: int, page_token: str
) -> Page[ApiKeyPublic]:
    await get_organization(session, organization_id)
    keys, token = cut_page(
        await ApiKeyRepository(session).of_organization(
            organization_id, created_after(page_token), page_size + 1
        ),
        page_size,
        created_position,
    )
    return Page(
        items=[ApiKeyPublic.model_validate(k, from_attributes=True) for k in keys],
        next_page_token=token,
    )


async def revoke_key(session: AsyncSession, organization_id: UUID, key_id: UUID) -> None:
    keys = ApiKeyRepository(session)
    key = await keys.get(key_id)
    if key is None or key.organization_id != organization_id:
        raise NotFound(f"no key {key_id} in organisation {organization_id}")
    await keys.revoke(key_id, datetime.now(UTC))


async def authenticate(
    session: AsyncSession, settings: Settings, plaintext: str
) -> Principal | None:
    """The caller a key stands for, or None when unknown, revoked or malformed."""
    known = environment_principal(settings, plaintext)
    if known is not None:
        return known
    prefix = key_prefix(plaintext)
    if prefix is None:
        return None
    key = await ApiKeyRepository(session).by_prefix(prefix)
    if key is None or key.revoked_at is not None or not hashes_match(key.key_hash, plaintext):
        return None
    roles: frozenset[Role] = frozenset(key.roles)  # type: ignore[arg-type]
    return Principal(roles=roles, organization_id=key.organization_id, key_id=key.id)
