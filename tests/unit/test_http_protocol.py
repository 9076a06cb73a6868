"""The services' HTTP protocol (infra.http_protocol, what `ipx serve` runs): a request uvicorn
cannot read is answered with problem+json, a 100 kB URL with 414."""

from __future__ import annotations

import asyncio
import json

import uvicorn
from fastapi import FastAPI

from infra.http_protocol import ProblemHttpProtocol
from support import free_port


async def raw_request(port: int, request: bytes) -> tuple[str, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return status_line, {k.lower(): v for k, v in headers.items()}, body


async def test_unreadable_requests_get_problem_json() -> None:
    app = FastAPI()

    @app.get("/v1/things")
    async def things() -> dict[str, int]:
        return {"ok": 1}

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, port=port, http=ProblemHttpProtocol, log_level="error")
    )
    serving = asyncio.create_task(server.serve())
    for _ in range(500):  # up to 10 s
        if server.started:
            break
        await asyncio.sleep(0.02)
    try:
        fine = await raw_request(
            port,
            b"GET /v1/things?q="
            + b"a" * 2000
            + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        assert fine[0] == "HTTP/1.1 200 OK"

        status, headers, body = await raw_request(
            port, b"GET /v1/things?q=" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        assert status == "HTTP/1.1 414 URI Too Long"
        assert headers["content-type"] == "application/problem+json"
        problem = json.loads(body)
        assert problem["status"] == 414 and problem["type"] == "/problems/uri-too-long"
        assert "100,0" in problem["detail"]

        status, headers, body = await raw_request(port, b"GET /v1/things HTTP/9 garbage\r\n\r\n")
        assert status == "HTTP/1.1 400 Bad Request"
        assert headers["content-type"] == "application/problem+json"
        assert json.loads(body)["type"] == "/problems/bad-request"
    finally:
        server.should_exit = True
        await serving
