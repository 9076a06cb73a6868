"""Request-model base and cursor pagination, the same in every service."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Protocol, TypeVar
from uuid import UUID

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from shared.errors import UnprocessableEntity

__all__ = [
    "Page",
    "PageSize",
    "PageToken",
    "StrictModel",
    "created_after",
    "created_position",
    "cut_page",
    "decode_page_token",
    "encode_page_token",
    "nul_free",
    "page_position",
    "token_datetime",
    "token_int",
    "token_str",
    "token_uuid",
]

T = TypeVar("T")
R = TypeVar("R")


def nul_free(value: Any) -> Any:
    """`value` when no text in it holds U+0000; PostgreSQL cannot store that character, so it
    is refused here, as a 422 naming the field (rule `nul_character`), not a 500 at the insert.
    Nested models check their own fields."""
    if isinstance(value, str):
        if "\x00" in value:
            raise PydanticCustomError(
                "nul_character", "text must not contain the NUL character (U+0000)"
            )
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            nul_free(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            nul_free(key)
            nul_free(item)
    return value


class StrictModel(BaseModel):
    """Request bodies refuse unknown fields, so a typo is an error rather than silently ignored,
    and text PostgreSQL cannot store (a NUL character)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _nul_free(cls, value: Any) -> Any:
        return nul_free(value)


class Page(BaseModel, Generic[T]):
    """One page of a list; every list of every service answers in this shape."""

    items: list[T]
    next_page_token: str = Field(default="", description="empty at the end")


PageSize = Annotated[int, Query(ge=1, le=200, description="items per page", examples=[50])]
PageToken = Annotated[
    str,
    Query(
        max_length=512,
        description="next_page_token of the last page (empty: the first page)",
        examples=[""],
    ),
]


def cut_page(
    rows: Sequence[R], page_size: int, position: Callable[[R], dict[str, Any]]
) -> tuple[list[R], str]:
    """A page of `rows` fetched with one row more than `page_size`: the page's rows and the
    token of the next page (empty when that extra row was not there)."""
    page = list(rows[:page_size])
    more = len(rows) > page_size
    return page, encode_page_token(position(page[-1])) if more and page else ""


class Created(Protocol):
    created_at: datetime
    id: UUID


def created_after(page_token: str) -> tuple[datetime, UUID] | None:
    """The (created_at, id) a page token of a list ordered by creation stands for."""
    position = page_position(page_token, created_at=token_datetime, id=token_uuid)
    return (position["created_at"], position["id"]) if position else None


def created_position(row: Created) -> dict[str, Any]:
    """The page-token position after `row`, in a list ordered by (created_at, id)."""
    return {"created_at": row.created_at.isoformat(), "id": str(row.id)}


def encode_page_token(position: dict[str, Any]) -> str:
    raw = json.dumps(position, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str, *keys: str) -> dict[str, Any] | None:
    """The position a token stands for (None for the first page); 422 when it is not ours."""
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        position = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise UnprocessableEntity.single(
            "page_token", "page_token_invalid", "page_token is not one this API issued"
        ) from exc
    if not isinstance(position, dict) or any(key not in position for key in keys):
        raise UnprocessableEntity.single(
            "page_token", "page_token_invalid", "page_token is not one this API issued"
        )
    return position


# Typed values of a page token's keys. A token comes back from the client, so each value is
# checked for what the query needs: a forged one is a 422, never a 500 from the database.
def token_str(value: object) -> str:
    if not isinstance(value, str) or "\x00" in value:
        raise ValueError(value)
    return value


def token_int(value: object) -> int:
    """A non-negative bigint."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise ValueError(value)
    return value


def token_uuid(value: object) -> UUID:
    return UUID(token_str(value))


def token_datetime(value: object) -> datetime:
    """An aware timestamp, in UTC (a naive or out-of-range one is refused)."""
    parsed = datetime.fromisoformat(token_str(value))
    if parsed.tzinfo is None:
        raise ValueError(value)
    return parsed.astimezone(UTC)


def page_position(token: str, **keys: Callable[[Any], Any]) -> dict[str, Any] | None:
    """decode_page_token, each key's value through its parser (token_str, token_int, ...):
    None for the first page, 422 when the token or any value is not one this API issued."""
    position = decode_page_token(token, *keys)
    if position is None:
        return None
    try:
        return {key: parse(position[key]) for key, parse in keys.items()}
    except (TypeError, ValueError, OverflowError) as exc:
        raise UnprocessableEntity.single(
            "page_token", "page_token_invalid", "page_token is not one this API issued"
        ) from exc
