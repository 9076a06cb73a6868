"""ASGI middleware shared by the services: request body size limits.

Bytes are counted as the body arrives, because a chunked request carries no Content-Length.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import PayloadTooLarge, ProblemResponse

__all__ = ["BodySizeLimitMiddleware"]

# A refused body is read on (and dropped) for up to this long before the 413 goes out: a server
# that closes with unread bytes makes the kernel reset the connection, and the client, still
# sending, never sees the answer. Memory stays flat; a sender slower than this gets the reset.
DRAIN_SECONDS = 2.0


class BodySizeLimitMiddleware:
    """Refuses bodies over `default_limit` bytes (or the limit of the longest matching prefix)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        default_limit: int,
        path_limits: Sequence[tuple[str, int]] = (),
    ) -> None:
        self.app = app
        self.default_limit = default_limit
        self.path_limits = sorted(path_limits, key=lambda item: len(item[0]), reverse=True)

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.path_limits:
            if path.startswith(prefix):
                return limit
        return self.default_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        too_large = PayloadTooLarge(f"the request body is over the limit of {limit} bytes")
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit:
                    if not _expects_continue(scope):  # else the client waits for our answer
                        await _drain(receive)
                    await _send_problem(scope, receive, send, too_large)
                    return

        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if message.get("more_body", False):
                        await _drain(receive)
                    raise too_large
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except PayloadTooLarge as exc:
            # Raised while the body streamed in, outside a route's error handling.
            if response_started or exc is not too_large:
                raise
            await _send_problem(scope, receive, send, too_large)


def _expects_continue(scope: Scope) -> bool:
    return any(
        name == b"expect" and value.lower() == b"100-continue"
        for name, value in scope.get("headers", [])
    )


async def _drain(receive: Receive) -> None:
    """Read the rest of the body, dropping it, for at most DRAIN_SECONDS."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DRAIN_SECONDS):
            while True:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    return


async def _send_problem(scope: Scope, receive: Receive, send: Send, error: PayloadTooLarge) -> None:
    response = ProblemResponse(
        error.to_problem(instance=scope["path"]),
        status_code=error.status_code,
        headers={"Connection": "close"},
    )
    await response(scope, receive, send)
