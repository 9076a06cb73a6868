"""An unexpected exception: logged with the request id, answered as a 500 problem body without
internals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from fastapi import APIRouter, FastAPI

from shared.app import build_app
from shared.settings import Settings
from support import assert_problem, serve_in_process


@asynccontextmanager
async def no_resources(app: FastAPI) -> AsyncIterator[None]:
    yield


async def test_unknown_errors_are_logged_with_request_id_and_hidden(
    caplog: pytest.LogCaptureFixture,
) -> None:
    router = APIRouter()

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    app = build_app(
        name="listing",
        settings=Settings(log_format="text"),
        lifespan=no_resources,
        routers=[router],
        description="test",
    )
    async with serve_in_process(app, "http://test") as client:
        response = await client.get("/boom", headers={"X-Request-ID": "trace-me"})
    body = assert_problem(response, 500)
    assert body["request_id"] == "trace-me"
    assert "hunter2" not in response.text and "RuntimeError" not in response.text
    logged = [r for r in caplog.records if r.name == "ipx.errors"]
    assert logged and "trace-me" in logged[0].getMessage()
    assert logged[0].exc_info is not None
