"""POST /v1/imports (CSV or JSONL body) and GET /v1/imports/{id} (the report)."""

from __future__ import annotations

import asyncio
import io
import tempfile
from datetime import UTC, datetime
from typing import Annotated, cast
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request, status
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.listing.dependencies import MemberDep, TodayDep
from services.listing.imports.encoding import CODECS, Utf8Check, detect_encoding
from services.listing.imports.parsing import Format, iter_rows
from services.listing.imports.repository import ImportRepository
from services.listing.imports.schemas import ImportReport, Rejection, RowResult
from services.listing.imports.service import (
    ImportContext,
    ImportLockTimeout,
    Mode,
    Outcome,
    run_import,
)
from services.listing.models import ImportJob, Organization
from shared.auth import Principal
from shared.errors import Conflict, Forbidden, NotFound, UnprocessableEntity, problem_responses
from shared.schemas import (
    Page,
    PageSize,
    PageToken,
    encode_page_token,
    page_position,
    token_int,
)

router = APIRouter(prefix="/v1/imports", tags=["bulk import"])
SPOOL_IN_MEMORY = 4 * 1024 * 1024
CONTENT_TYPES: dict[str, Format] = {
    "text/csv": "csv",
    "application/csv": "csv",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/json-lines": "jsonl",
}


def _format(content_type: str | None, explicit: Format | None) -> Format:
    if explicit:
        return explicit
    found = CONTENT_TYPES.get((content_type or "").split(";")[0].strip().lower())
    if found is None:
        raise UnprocessableEntity.single(
            "Content-Type",
            "import_format",
            "send text/csv or application/x-ndjson (or ?format=csv|jsonl)",
        )
    return found


async def _seller(
    maker: async_sessionmaker[AsyncSession],
    principal: Principal,
    seller_id: UUID | None,
    mode: Mode,
) -> Organization:
    if seller_id is not None and not principal.is_operator:
        raise Forbidden("only operators import on behalf of a seller")
    if mode == "publish" and not principal.is_operator:
        raise Forbidden("only operators publish without review (mode=publish)")
    organization_id = seller_id or principal.organization_id
    if organization_id is None:
        raise UnprocessableEntity.single(
            "seller_id", "missing", "an operator names the seller (seller_id)"
        )
    async with maker() as session:
        seller = await session.get(Organization, organization_id)
    if seller is None:
        raise NotFound(f"no organisation {organization_id}")
    if mode == "submit" and not seller.verified:
        raise Forbidden("the seller's organisation is not verified yet: import drafts instead")
    return seller


def _report(
    job: ImportJob, rejections: list[Rejection], token: str, rows: list[RowResult]
) -> ImportReport:
    return ImportReport(
        id=job.id,
        format=job.format,
        encoding=job.encoding,
        status=job.status,
        mode=job.mode,
        total_rows=job.total_rows,
        created=job.created_count,
        updated=job.updated_count,
        unchanged=job.unchanged_count,
        rejected=job.rejected_count,
        created_at=job.created_at,
        finished_at=job.finished_at,
        rejections=rejections,
        next_page_token=token,
        rows=rows,
    )


async def _rejections(
    maker: async_sessionmaker[AsyncSession], job_id: UUID, page_size: int, page_token: str
) -> tuple[list[Rejection], str]:
    position = page_position(page_token, id=token_int)
    async with maker() as session:
        rows = await ImportRepository(session).rejections(
            job_id, position["id"] if position else 0, page_size + 1
        )
    token = encode_page_token({"id": rows[page_size - 1].id}) if len(rows) > page_size else ""
    return [
        Rejection(line=r.line, field=r.field, rule=r.rule, message=r.message)
        for r in rows[:page_size]
    ], token


async def _rows(
    maker: async_sessionmaker[AsyncSession],
    job_id: UUID,
    outcome: Outcome | None,
    page_size: int,
    page_token: str,
) -> tuple[list[RowResult], str]:
    position = page_position(page_token, line=token_int)
    async with maker() as session:
        rows = await ImportRepository(session).outcomes(
            job_id, outcome, position["line"] if position else 0, page_size + 1
        )
    token = encode_page_token({"line": rows[page_size - 1].line}) if len(rows) > page_size else ""
    return [
        RowResult(line=r.line, outcome=cast(Outcome, r.outcome), changed=list(r.changed))
        for r in rows[:page_size]
    ], token


async def _own_job(
    maker: async_sessionmaker[AsyncSession], principal: Principal, import_id: UUID
) -> ImportJob:
    async with maker() as session:
        job = await session.get(ImportJob, import_id)
    if job is None or not (
        principal.is_operator or principal.organization_id == job.organization_id
    ):
        raise NotFound(f"no import {import_id}")
    return job


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ImportReport,
    responses=problem_responses(401, 403, 404, 409, 413, 422),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
        }
    },
)
async def import_file(
    request: Request,
    principal: MemberDep,
    today: TodayDep,
    content_type: Annotated[str | None, Header()] = None,
    format: Annotated[
        Format | None, Query(description="instead of the Content-Type", examples=["csv"])
    ] = None,
    mode: Annotated[
        Mode,
        Query(description="draft (default), submit, or publish (operators)", examples=["draft"]),
    ] = "draft",
    seller_id: Annotated[
        UUID | None,
        Query(
            description="operators: the seller",
            examples=["3f2c1a9e-8b4d-4c6e-9a1f-2b7d5e0c4a18"],
        ),
    ] = None,
) -> ImportReport:
    """Import assets and their listings, up to 100,000 rows (and 512 MiB) per file, in UTF-8
    (a BOM is fine) or GB18030/GBK (Chinese Excel's CSV); a file in neither is refused (422,
    rule `encoding`). Each row is applied whole or rejected with its line number and reason;
    re-importing a file updates the seller's listings (same right, same seller) instead of
    duplicating them, and corrects the stored right where a row states other values (`rows`
    names the fields each row changed; a blank cell keeps the stored value)."""
    fmt = _format(content_type, format)
    maker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    seller = await _seller(maker, principal, seller_id, mode)
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
        utf8 = Utf8Check()
        async for chunk in request.stream():
            spool.write(chunk)
            utf8.feed(chunk)
        if spool.tell() == 0:
            raise UnprocessableEntity.single("body", "empty", "the file is empty")
        spool.seek(0)
        encoding = await asyncio.to_thread(detect_encoding, spool, utf8)
        job = ImportJob(
            organization_id=seller.id, format=fmt, status="running", mode=mode, encoding=encoding
        )
        async with maker() as session, session.begin():
            session.add(job)
        # Strict: the whole file decoded already, so this never meets a byte it cannot read.
        text = io.TextIOWrapper(spool, encoding=CODECS[encoding], errors="strict", newline="")
        try:
            context = ImportContext(
                sessionmaker=maker,
                job=job,
                seller=seller,
                mode=mode,
                today=today,
                catalogue_url=request.app.state.settings.gateway_url,
                actor_key_id=principal.key_id,
                actor_roles=sorted(principal.roles),
            )
            counts = await run_import(context, iter_rows(text, fmt, today))
            job.status = "completed"
        except ImportLockTimeout as exc:
            job.status = "failed"
            raise Conflict(
                "another transaction held rights of this file too long: the import stopped "
                f"after {exc.counts.total} rows (all of them applied, the rest untouched); "
                "send the file again to finish (rows already imported are left unchanged)",
                slug="import-lock-timeout",
                title="The import waited too long for a lock",
                extra={"import_id": str(job.id), "rows_applied": exc.counts.total},
            ) from exc
        except BaseException:
            job.status = "failed"
            raise
        finally:
            text.detach()
            job.finished_at = datetime.now(UTC)
            async with maker() as session, session.begin():
                stored = await session.get(ImportJob, job.id)
                if stored is not None:
                    stored.status, stored.finished_at = job.status, job.finished_at
                    job = stored
    rejections, token = await _rejections(maker, job.id, 100, "")
    rows, _ = await _rows(maker, job.id, None, 100, "")
    assert counts.total == job.total_rows
    return _report(job, rejections, token, rows)


@router.get("/{import_id}", response_model=ImportReport, responses=problem_responses(401, 403, 404))
async def read_import(
    import_id: UUID,
    request: Request,
    principal: MemberDep,
    page_size: PageSize = 100,
    page_token: PageToken = "",
) -> ImportReport:
    """The report of an import, with its rejected rows page by page."""
    maker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    job = await _own_job(maker, principal, import_id)
    rejections, token = await _rejections(maker, job.id, page_size, page_token)
    rows, _ = await _rows(maker, job.id, None, 100, "")
    return _report(job, rejections, token, rows)


@router.get(
    "/{import_id}/rows",
    response_model=Page[RowResult],
    responses=problem_responses(401, 403, 404, 422),
)
async def list_import_rows(
    import_id: UUID,
    request: Request,
    principal: MemberDep,
    outcome: Annotated[
        Outcome | None,
        Query(description="only the rows created, updated or unchanged", examples=["updated"]),
    ] = None,
    page_size: PageSize = 100,
    page_token: PageToken = "",
) -> Page[RowResult]:
    """What the import did with each row it applied, by line: `updated` rows name the fields
    they changed (`asset.title.en`, `transaction.price.amount`, ...)."""
    maker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    job = await _own_job(maker, principal, import_id)
    items, token = await _rows(maker, job.id, outcome, page_size, page_token)
    return Page(items=items, next_page_token=token)
