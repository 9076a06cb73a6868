"""Versions as strong ETags (`"3"`), and If-Match read back into the version it names: the
optimistic concurrency of every update (listings, assets, demands)."""

from __future__ import annotations

import re

from shared.errors import Conflict, PreconditionRequired, UnprocessableEntity

__all__ = ["check_version", "etag", "parse_if_match"]

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


def check_version(what: str, current: int, expected: int | None, *, required: bool = True) -> None:
    """The version an update is based on against the `current` one: 428 without one when it
    is `required`, 409 `version-conflict` (with `current_version`) when it is not the current
    one. `what` is what is updated ("listing"), for the messages."""
    if expected is None:
        if required:
            raise PreconditionRequired(
                f"send If-Match with the {what}'s ETag (or `version` in the body)"
            )
        return
    if expected != current:
        raise Conflict(
            f"the {what} is at version {current}, not {expected}: reload and retry",
            slug="version-conflict",
            title=f"The {what} changed since it was read",
            extra={"current_version": current},
        )
