"""A real HTTP/1.1 webhook receiver for tests (a subscriber), on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, cast

from support import free_port


@dataclass
class Received:
    at: float
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    answer: int | None = None  # the status sent back; None: closed or timed out

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> dict[str, Any]:
        return cast(dict[str, Any], json.loads(self.body))


@dataclass
class Receiver:
    """A real HTTP/1.1 server on 127.0.0.1 that records every request. It answers the next
    requests as `script` says, then as `mode`: ok (200), fail (500), close (drops the
    connection), hang (never answers), slow (200 after `slow_seconds`). `per_event` scripts
    each webhook-id on its own: its n-th attempt is answered as `per_event[n]` (then `mode`),
    so every event meets the same failures whatever the order of arrival."""

    mode: str = "ok"
    script: list[str] = field(default_factory=list)
    per_event: list[str] = field(default_factory=list)
    slow_seconds: float = 5.0
    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[Any]] = field(default_factory=set)
    _attempts: dict[str, int] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/ipx"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            method, path, _ = head[0].split(" ", 2)
            headers = {
                name.strip().lower(): value.strip()
                for name, value in (line.split(":", 1) for line in head[1:] if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            request = Received(time.monotonic(), method, path, headers, body)
            self.received.append(request)
            attempt = self._attempts.get(headers.get("webhook-id", ""), 0)
            self._attempts[headers.get("webhook-id", "")] = attempt + 1
            if self.script:
                mode = self.script.pop(0)
            elif attempt < len(self.per_event):
                mode = self.per_event[attempt]
            else:
                mode = self.mode
            if mode == "close":
                return
            if mode == "hang":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(reader.read(1), 30)  # until the client gives up
                return
            if mode == "slow":
                await asyncio.sleep(self.slow_seconds)
            status = 500 if mode == "fail" else 200
            request.answer = status
            reason = "OK" if status == 200 else "Internal Server Error"
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\n"
                "connection: close\r\n\r\n".encode()
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def delivered(self) -> list[Received]:
        return [r for r in self.received if r.answer == 200]

    def about(self, listing_id: str) -> list[Received]:
        return [r for r in self.received if r.json()["data"].get("offer_id") == f"jjj:{listing_id}"]

    async def wait_for(
        self, done: Callable[[Receiver], bool], seconds: float = 20.0, what: str = ""
    ) -> None:
        deadline = time.monotonic() + seconds
        while not done(self):
            if time.monotonic() > deadline:
                got = [(r.json()["type"], r.answer) for r in self.received]
                raise AssertionError(f"timed out waiting for {what or 'webhooks'}; got {got}")
            await asyncio.sleep(0.05)


@asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[Receiver]:
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()
