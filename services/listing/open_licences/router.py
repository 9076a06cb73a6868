"""Open licence endpoints: declarations, licences taken on them, their recordal, and the
gazette's declarations imported."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response, status

from services.listing import idempotency
from services.listing.dependencies import CallerOrganizationDep, MemberDep, TodayDep
from services.listing.listings.router import context
from services.listing.open_licences import gazette, service
from services.listing.open_licences.rules import Guidance
from services.listing.open_licences.schemas import (
    DeclarationCreate,
    DeclarationPublic,
    GazetteImportReport,
    LicencePublic,
    LicenceTake,
    RecordalEntry,
)
from shared.auth import CallerDep, OptionalCallerDep
from shared.contracts.catalogue import ListingStatus
from shared.db import SessionDep
from shared.errors import Forbidden, UnprocessableEntity, problem_responses
from shared.etags import etag
from shared.schemas import Page, PageSize, PageToken

router = APIRouter(prefix="/v1/open-licences", tags=["open licences"])
licences_router = APIRouter(prefix="/v1/licences", tags=["open licences"])
DECLARE_SCOPE = "POST /v1/open-licences"
TAKE_SCOPE = "POST /v1/open-licences/{id}/licences"


def _policy(request: Request) -> service.Policy:
    return service.Policy.of(request.app.state.settings)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DeclarationPublic,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def create_declaration(
    data: DeclarationCreate,
    request: Request,
    session: SessionDep,
    principal: MemberDep,
    organization: CallerOrganizationDep,
    today: TodayDep,
    idempotency_key: idempotency.IdempotencyKeyHeader = None,
) -> Response:
    """The patentee declares an open licence on a granted patent in force (a draft listing of
    type `open_license`; submit it for review at `/v1/listings/{id}/submit`). Refused, with
    nothing stored: a co-holder who did not consent (422 `co_holder_consent`), fees that do not
    fit their type, a term shorter than a year or past the patent's expiry, a utility model or
    design without its evaluation report (422); a patent not granted or not in force, an
    exclusive or sole licence in force or offered (409). Terms outside CNIPA's guidance are
    accepted and `flags` name them for the reviewer."""
    ctx = context(request, session, principal, organization, today)
    policy = _policy(request)

    async def create() -> tuple[dict[str, Any], dict[str, str]]:
        declaration_id = await service.declare(ctx, data, policy)
        created = await service.read_declaration(session, principal, declaration_id)
        return created.model_dump(mode="json"), {
            "ETag": etag(created.version),
            "Location": f"/v1/open-licences/{created.id}",
        }

    return await idempotency.create_once(
        session,
        principal.organization_id,
        scope=DECLARE_SCOPE,
        key=idempotency_key,
        digest=idempotency.request_hash(data),
        create=create,
    )


@router.get("", response_model=Page[DeclarationPublic], responses=problem_responses(401, 403, 422))
async def list_declarations(
    session: SessionDep,
    principal: MemberDep,
    status_: Annotated[
        ListingStatus | None, Query(alias="status", examples=["pending_review"])
    ] = None,
    page_size: PageSize = 50,
    page_token: PageToken = "",
) -> Page[DeclarationPublic]:
    """The caller's declarations; operators see all (`status=pending_review`: the review
    queue, each with the flags the reviewer decides on)."""
    return await service.declarations_page(
        session, principal, status=status_, page_size=page_size, page_token=page_token
    )


@router.post(
    "/gazette",
    response_model=GazetteImportReport,
    responses=problem_responses(401, 403, 413, 422),
    openapi_extra={
        "requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}
    },
)
async def import_gazette(
    request: Request, session: SessionDep, principal: MemberDep, today: TodayDep
) -> GazetteImportReport:
    """Operators: declarations announced in CNIPA's gazette, as CSV (UTF-8 or GB18030) with
    the columns `announcement_number, announced_on, kind, patent_number, title, patentees`
    (`;`-separated)`, filed_on, granted_on, fee_type, lump_sum, entry_fee, royalty_rate,
    royalty_basis, starts_on, ends_on, evaluation_report` and optionally `status`
    (`withdrawn` for a withdrawal). Each becomes an offer of the exchange `cnipa` on the asset
    of the same right (deduplicated like partners' offers); rows are applied whole or rejected
    with their line, column and rule; a row announced again unchanged is `unchanged`."""
    if not principal.is_operator:
        raise Forbidden("the gazette is imported by the exchange's operators")
    body = await request.body()
    if not body:
        raise UnprocessableEntity.single("body", "empty", "the file is empty")
    ctx = context(request, session, principal, None, today)
    return await gazette.import_rows(
        ctx, gazette.decode(body), Guidance.of(request.app.state.settings)
    )


@router.get(
    "/{declaration_id}", response_model=DeclarationPublic, responses=problem_responses(404, 422)
)
async def read_declaration(
    declaration_id: UUID, session: SessionDep, principal: OptionalCallerDep
) -> DeclarationPublic:
    """A published (or withdrawn) declaration is public; a draft or one in review only to its
    declarant and operators. `licences_taken` counts the licences taken on it."""
    return await service.read_declaration(session, principal, declaration_id)


@router.post(
    "/{declaration_id}/licences",
    status_code=status.HTTP_201_CREATED,
    response_model=LicencePublic,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def take_licence(
    declaration_id: UUID,
    data: LicenceTake,
    request: Request,
    session: SessionDep,
    principal: MemberDep,
    organization: CallerOrganizationDep,
    today: TodayDep,
    idempotency_key: idempotency.IdempotencyKeyHeader = None,
) -> Response:
    """Take a licence by written notice: it exists at once on the declared terms (from the
    notice's timestamp) and the answer is its recordal package (both parties, the patent, the
    terms, the dates), to be filed by `recordal_due_on` (three months). The parties' webhooks
    receive `licence.taken`, and `licence.recordal_due` 30 and 7 days before the deadline."""
    ctx = context(request, session, principal, organization, today)
    policy = _policy(request)

    async def create() -> tuple[dict[str, Any], dict[str, str]]:
        taken = await service.take(ctx, declaration_id, data, policy)
        return taken.model_dump(mode="json"), {
            "ETag": etag(taken.version),
            "Location": f"/v1/licences/{taken.id}",
        }

    return await idempotency.create_once(
        session,
        principal.organization_id,
        scope=TAKE_SCOPE,
        key=idempotency_key,
        # The same notice to another declaration is another request.
        digest=hashlib.sha256(
            f"{declaration_id}:{idempotency.request_hash(data)}".encode()
        ).hexdigest(),
        create=create,
    )


@licences_router.get(
    "", response_model=Page[LicencePublic], responses=problem_responses(401, 403, 422)
)
async def list_licences(
    request: Request,
    session: SessionDep,
    principal: CallerDep,
    today: TodayDep,
    declaration_id: Annotated[
        UUID | None,
        Query(description="only this declaration's", examples=[None]),
    ] = None,
    page_size: PageSize = 50,
    page_token: PageToken = "",
) -> Page[LicencePublic]:
    """The caller's licences, as licensor or licensee (operators: all), oldest first."""
    return await service.licences_page(
        session,
        principal,
        declaration_id=declaration_id,
        today=today,
        policy=_policy(request),
        page_size=page_size,
        page_token=page_token,
    )


@licences_router.get(
    "/{licence_id}", response_model=LicencePublic, responses=problem_responses(401, 404, 422)
)
async def read_licence(
    licence_id: UUID,
    request: Request,
    session: SessionDep,
    principal: CallerDep,
    today: TodayDep,
) -> LicencePublic:
    """A licence, its recordal package and its deadline's state (the parties, operators)."""
    return await service.read_licence(session, principal, licence_id, today, _policy(request))


@licences_router.post(
    "/{licence_id}/recordal",
    response_model=LicencePublic,
    responses=problem_responses(401, 404, 409, 422),
)
async def enter_recordal(
    licence_id: UUID,
    data: RecordalEntry,
    request: Request,
    session: SessionDep,
    principal: CallerDep,
    today: TodayDep,
) -> LicencePublic:
    """Either party (or an operator) enters CNIPA's recordal: the licence is `recorded` and
    the reminders stop."""
    return await service.enter_recordal(
        session, principal, licence_id, data, today, _policy(request)
    )
