"""Versions as strong ETags (`"3"`), and If-Match read back into the version it names: the
optimistic concurrency of every update (listings, assets, demands)."""

from __future__ import annotations

import re

from shared.errors import UnprocessableEntity

__all__ = ["etag", "parse_if_match"]

ETAG = re.compile(r'^(?:W/)?"?(\d{1,9})"?$')


def etag(version: int) -> str:
    return f'"{version}"'


def parse_if_match(value: str | None, what: str) -> int | None:
    """The version an If-Match names (None without one); 422 `etag_format` for anything else.
    `what` is what the ETag is of ("listing"), for the message."""
    if value is None:
        return None
    match = ETAG.match(value.strip())
    if not match:
        raise UnprocessableEntity.single(
            "If-Match", "etag_format", f'If-Match takes the ETag of the {what}, e.g. "3"'
        )
    return int(match.group(1))
