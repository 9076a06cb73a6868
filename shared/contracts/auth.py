"""Token introspection between services (the RFC 7662 pattern), contract v1."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["member", "admin", "operator", "partner", "service"]
ROLES: tuple[Role, ...] = ("member", "admin", "operator", "partner", "service")


class IntrospectionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=512)


class IntrospectionResponse(BaseModel):
    """`active` false says nothing else: the key is unknown, revoked or malformed."""

    active: bool
    key_id: UUID | None = None
    organization_id: UUID | None = None
    roles: list[Role] = Field(default_factory=list)
