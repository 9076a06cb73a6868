"""`ipx import` (services/listing/imports/cli.py) calls the listing service the settings name:
with only IPX_LISTING_PORT set, that port (it called 8001, another stack, before)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from typer.testing import CliRunner

from infra.cli import app as ipx
from shared.settings import get_settings
from support import free_port

REPORT = {
    "id": "5f0c8b1e-2d1a-4c3b-9e8f-0a1b2c3d4e5f",
    "total_rows": 1,
    "encoding": "utf-8",
    "created": 1,
    "updated": 0,
    "unchanged": 0,
    "rejected": 0,
    "rows": [],
    "rejections": [],
}


async def test_the_import_command_follows_the_listing_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    received: list[dict[str, Any]] = []
    listing = FastAPI()

    @listing.post("/v1/imports", status_code=201)
    async def imports(request: Request) -> dict[str, Any]:
        received.append({"params": dict(request.query_params), "body": await request.body()})
        return REPORT

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(listing, port=port, log_level="error"))
    serving = asyncio.create_task(server.serve())
    for _ in range(500):  # up to 10 s
        if server.started:
            break
        await asyncio.sleep(0.02)
    monkeypatch.delenv("IPX_LISTING_URL", raising=False)
    monkeypatch.setenv("IPX_LISTING_PORT", str(port))
    get_settings.cache_clear()
    rows = tmp_path / "rights.csv"
    rows.write_bytes(b"kind,identifier\ninvention_patent,201710601862.3\n")
    try:
        result = await asyncio.to_thread(
            CliRunner().invoke, ipx, ["import", str(rows), "--key", "ipx_test_key"]
        )
    finally:
        get_settings.cache_clear()
        server.should_exit = True
        await serving
    assert result.exit_code == 0, result.output
    assert "created 1" in result.output
    assert received == [{"params": {"format": "csv", "mode": "draft"}, "body": rows.read_bytes()}]
