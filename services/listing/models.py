"""Table models of the `listing` schema. They never leave this service."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

from sqlalchemy import ARRAY, DateTime, String
from sqlmodel import Column, Field, SQLModel

SCHEMA = "listing"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Organization(SQLModel, table=True):
    __tablename__ = "organizations"
    __table_args__ = {"schema": SCHEMA}

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    name: str = Field(max_length=200)
    kind: str = Field(max_length=32)
    uscc: str | None = Field(default=None, max_length=18, unique=True)
    region: str = Field(max_length=6)
    verified: bool = False
    version: int = 1
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"
    __table_args__ = {"schema": SCHEMA}

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    organization_id: UUID | None = Field(
        default=None, foreign_key=f"{SCHEMA}.organizations.id", index=True
    )
    name: str = Field(max_length=100)
    prefix: str = Field(max_length=16, unique=True)
    key_hash: str = Field(max_length=64)
    roles: list[str] = Field(sa_column=Column(ARRAY(String(16)), nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    revoked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
