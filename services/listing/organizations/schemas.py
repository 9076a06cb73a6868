"""Request and response models of the listing API (validated; copied into table models)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

from shared.contracts.auth import Role
from shared.schemas import StrictModel

# Banks lend against pledged rights, guarantors back those loans, valuation agencies value the
# rights (issue 22); verified by operators like every organisation.
OrganizationKind = Literal[
    "enterprise",
    "university",
    "research_institute",
    "individual",
    "service_agency",
    "exchange",
    "bank",
    "guarantor",
    "valuation_agency",
]
KeyRole = Literal["member", "admin", "partner", "operator"]


class OrganizationCreate(StrictModel):
    name: str = Field(min_length=1, max_length=200, examples=["北京理工大学"])
    kind: OrganizationKind = Field(examples=["university"])
    region: str = Field(
        min_length=6, max_length=6, description="GB/T 2260 code of the seat", examples=["110108"]
    )
    uscc: str | None = Field(
        default=None,
        max_length=24,
        description="Unified social credit code (GB 32100-2015), check characters verified",
        examples=["12100000400000624D"],
    )


class OrganizationUpdate(StrictModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    region: str | None = Field(default=None, min_length=6, max_length=6)
    uscc: str | None = Field(default=None, max_length=24)
    verified: bool | None = Field(default=None, description="operators only")
    uscc_check_override: bool = Field(
        default=False,
        description="operators only: accept an early-pilot code whose check "
        "character fails (recorded)",
    )


class OrganizationPublic(BaseModel):
    id: UUID = Field(examples=["0b6f3c52-6a0e-4f7e-9d43-3c1f0e2a7b15"])
    name: str = Field(examples=["北京理工大学"])
    kind: OrganizationKind = Field(examples=["university"])
    region: str = Field(description="GB/T 2260 code of the seat", examples=["110108"])
    uscc: str | None = Field(examples=["12100000400000624D"])
    verified: bool = Field(
        description="set by an operator; unverified organisations wait in "
        "GET /v1/organizations?verified=false",
        examples=[False],
    )
    version: int = Field(examples=[1])
    created_at: datetime = Field(examples=["2026-11-20T08:00:00Z"])
    updated_at: datetime = Field(examples=["2026-11-20T08:00:00Z"])


class ApiKeyCreate(StrictModel):
    name: str = Field(min_length=1, max_length=100, examples=["tech-transfer office"])
    roles: list[KeyRole] = Field(
        default=["member"],
        min_length=1,
        max_length=4,
        description="member or admin; operators also issue `partner` keys (to exchanges) and "
        "`operator` keys (to the exchange operator's own organisation)",
    )


class ApiKeyPublic(BaseModel):
    id: UUID
    organization_id: UUID | None
    name: str
    prefix: str
    roles: list[Role]
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyIssued(ApiKeyPublic):
    key: str = Field(description="The key itself: shown this once, stored only as a hash")


class OrganizationSignedUp(BaseModel):
    organization: OrganizationPublic
    api_key: ApiKeyIssued
