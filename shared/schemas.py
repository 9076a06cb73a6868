"""Request-model base and cursor pagination, the same in every service."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field

from shared.errors import UnprocessableEntity

__all__ = ["Page", "PageSize", "PageToken", "StrictModel", "decode_page_token", "encode_page_token"]

T = TypeVar("T")


class StrictModel(BaseModel):
    """Request bodies refuse unknown fields, so a typo is an error rather than silently ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_page_token: str = Field(default="", description="empty at the end")


PageSize = Annotated[int, Query(ge=1, le=200, description="items per page")]
PageToken = Annotated[str, Query(max_length=512, description="next_page_token of the last page")]


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
