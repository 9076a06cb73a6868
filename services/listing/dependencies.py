"""Request dependencies of the listing service: the caller's organisation, today's date."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import Depends

from services.listing.auth import KeyHolder
from services.listing.models import Organization
from shared.auth import CallerDep, Principal
from shared.db import SessionDep
from shared.errors import Forbidden

# Dates in IP records are Chinese dates: "in the future" is judged on Beijing's calendar.
CHINA = ZoneInfo("Asia/Shanghai")


def today_in_china() -> date:
    return datetime.now(CHINA).date()


async def member(principal: CallerDep) -> Principal:
    """An organisation's member or admin key, or an operator."""
    if not (principal.is_operator or principal.has("member", "admin")):
        raise Forbidden("this needs an organisation's member key or an operator key")
    return principal


MemberDep = Annotated[Principal, Depends(member)]


async def today() -> date:
    """As a dependency: async, so FastAPI calls it in place rather than in its thread pool."""
    return today_in_china()


async def caller_organization(principal: MemberDep, session: SessionDep) -> Organization | None:
    if principal.organization_id is None:
        return None
    if isinstance(principal, KeyHolder) and principal.organization is not None:
        return principal.organization  # read with the key, in this request
    return await session.get(Organization, principal.organization_id)


CallerOrganizationDep = Annotated[Organization | None, Depends(caller_organization)]
TodayDep = Annotated[date, Depends(today)]
