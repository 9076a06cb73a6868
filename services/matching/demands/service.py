"""Demands: create, read, update, close; their matches. Never commits."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from services.matching.demands import repository
from services.matching.demands.matcher import Matcher
from services.matching.demands.reading import Reading, read_demand
from services.matching.demands.schemas import DemandCreate, DemandUpdate
from services.matching.models import Demand, Match
from shared.auth import Principal
from shared.errors import Conflict, FieldError, Forbidden, NotFound, UnprocessableEntity
from shared.search import normalize_ipc_prefix, region_filter_errors


def _checked_lists(ipc_prefixes: list[str], regions: list[str]) -> tuple[list[str], list[str]]:
    errors = []
    normalized = []
    for i, prefix in enumerate(ipc_prefixes):
        try:
            normalized.append(normalize_ipc_prefix(prefix))
        except ValueError:
            errors.append(
                FieldError(
                    field=f"ipc_prefixes[{i}]",
                    rule="ipc_prefix",
                    message="not an IPC prefix (H, H01, H01M, H01M 10/0525)",
                )
            )
    errors += region_filter_errors("regions", regions)
    if errors:
        raise UnprocessableEntity("; ".join(e.message for e in errors), errors=errors)
    return normalized, regions


def checked_reading(title: str, text: str) -> Reading:
    """What the demand asks for; a demand with nothing technical in it (我公司需要技术合作)
    would never match anything, so it is refused instead of kept."""
    reading = read_demand(title, text)
    if not reading.terms:
        raise UnprocessableEntity.single(
            "text",
            "technical_terms",
            "nothing technical was found in title or text: name the technique, product or "
            "problem (e.g. 锂电池隔膜涂覆工艺), not only who you are, budget or terms",
        )
    return reading


async def create(
    session: AsyncSession, matcher: Matcher, principal: Principal, data: DemandCreate
) -> tuple[Demand, int]:
    if principal.organization_id is None:
        raise Forbidden("demands belong to an organisation: use its member key")
    ipc, regions = _checked_lists(data.ipc_prefixes, data.regions)
    reading = checked_reading(data.title, data.text)
    demand = Demand(
        organization_id=principal.organization_id,
        title=data.title,
        text=data.text,
        kinds=list(data.kinds),
        ipc_prefixes=ipc,
        transaction_types=list(data.transaction_types),
        regions=regions,
        budget_max=data.budget_max,
        reading=reading.to_json(),
    )
    session.add(demand)
    await session.flush()
    await matcher.index_demand(demand)
    return demand, await matcher.match_demand(session, demand)


async def get_owned(
    session: AsyncSession, principal: Principal, demand_id: UUID, *, lock: bool = False
) -> Demand:
    demand = await repository.demand(session, demand_id, lock=lock)
    if demand is None or not (
        principal.is_operator
        or principal.is_service
        or demand.organization_id == principal.organization_id
    ):
        raise NotFound(f"no demand {demand_id}")
    return demand


async def update(
    session: AsyncSession,
    matcher: Matcher,
    principal: Principal,
    demand_id: UUID,
    data: DemandUpdate,
    if_match: int | None,
) -> Demand:
    demand = await get_owned(session, principal, demand_id, lock=True)
    if principal.organization_id != demand.organization_id:
        raise Forbidden("only the buyer edits its demand")
    expected = if_match if if_match is not None else data.version
    if expected is not None and expected != demand.version:
        raise Conflict(
            f"the demand is at version {demand.version}, not {expected}",
            slug="version-conflict",
            extra={"current_version": demand.version},
        )
    if demand.status != "active":
        raise Conflict("a closed demand cannot be edited", extra={"current_status": "closed"})
    changes = data.model_dump(exclude_unset=True, exclude={"version"})
    if "ipc_prefixes" in changes or "regions" in changes:
        ipc, regions = _checked_lists(
            changes.get("ipc_prefixes", demand.ipc_prefixes) or [],
            changes.get("regions", demand.regions) or [],
        )
        changes["ipc_prefixes"], changes["regions"] = ipc, regions
    if "title" in changes or "text" in changes:
        changes["reading"] = checked_reading(
            changes.get("title") or demand.title, changes.get("text") or demand.text
        ).to_json()
    for name, value in changes.items():
        setattr(demand, name, list(value) if isinstance(value, list) else value)
    demand.version += 1
    demand.updated_at = datetime.now(UTC)
    await session.flush()
    await matcher.index_demand(demand)
    await matcher.match_demand(session, demand)
    return demand


async def close(
    session: AsyncSession, matcher: Matcher, principal: Principal, demand_id: UUID
) -> None:
    demand = await get_owned(session, principal, demand_id, lock=True)
    if principal.organization_id != demand.organization_id and not principal.is_operator:
        raise Forbidden("only the buyer closes its demand")
    demand.status = "closed"
    demand.version += 1
    demand.updated_at = datetime.now(UTC)
    await session.flush()
    await matcher.index_demand(demand)


async def list_mine(
    session: AsyncSession, principal: Principal, after: tuple[datetime, UUID] | None, limit: int
) -> list[Demand]:
    """The caller's organisation's demands, newest first."""
    return await repository.demands_of(session, principal.organization_id, after, limit)


async def matches(session: AsyncSession, demand_id: UUID, limit: int, offset: int) -> list[Match]:
    return await repository.matches_of(session, demand_id, limit, offset)
