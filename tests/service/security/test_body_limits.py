"""Body limits on every service, declared or streamed, and the larger limit of imports."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import httpx
from asgi_lifespan import LifespanManager

from service.security.helpers import SELLER, World
from shared.settings import Settings
from support import assert_problem, bearer, patent, terms


async def chunks(total: int) -> AsyncIterator[bytes]:
    """A body of `total` bytes sent chunked (no Content-Length): a JSON string padded."""
    yield b'{"pad": "'
    sent = 9
    while sent < total:
        piece = min(65536, total - sent)
        yield b"x" * piece
        sent += piece
    yield b'"}'


async def test_bodies_over_the_limit_are_413_on_every_service(
    listing: httpx.AsyncClient,
    matching: httpx.AsyncClient,
    gateway: httpx.AsyncClient,
    settings: Settings,
    world: World,
) -> None:
    limit = settings.max_body_bytes
    big = b'{"pad": "' + b"x" * limit + b'"}'
    json_type = {"Content-Type": "application/json"}
    for client, path, key in (
        (listing, "/v1/listings", world.seller),
        (listing, f"/v1/listings/{world.listing_id}/inquiries", world.buyer),
        (matching, "/v1/demands", world.buyer),
        (gateway, "/v1/subscriptions", world.buyer),
        (gateway, "/v1/inbound/nobody", None),
    ):
        headers = {**json_type, **(bearer(key) if key else {})}
        declared = await client.post(path, content=big, headers=headers)
        assert_problem(declared, 413)
        streamed = await client.post(path, content=chunks(limit + 1), headers=headers)
        assert_problem(streamed, 413)
        # Just under the limit, the body reaches the route (and is refused for what it is).
        under = await client.post(path, content=chunks(limit - 64), headers=headers)
        assert under.status_code != 413, (path, under.status_code)


async def test_imports_have_their_own_larger_limit(
    settings: Settings, world: World, numbers: Iterator[str]
) -> None:
    from services.listing.app import create_app

    # The same app with a smaller import limit, so the test sends megabytes, not 512 MiB.
    limits = settings.model_copy(update={"max_import_bytes": 3 * settings.max_body_bytes})
    async with LifespanManager(create_app(limits)) as manager:
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://listing.test") as client:
            ndjson = {**bearer(world.seller), "Content-Type": "application/x-ndjson"}
            row = json.dumps(
                {
                    "asset": patent(SELLER, next(numbers)),
                    "transaction": terms(),
                },
                ensure_ascii=False,
            ).encode()
            # Twice the general limit: refused elsewhere, taken by the import (JSON whitespace
            # pads the one row).
            padded = row[:-1] + b" " * (2 * settings.max_body_bytes) + b"}"
            assert_problem(
                await client.post(
                    "/v1/listings",
                    content=padded,
                    headers={**bearer(world.seller), "Content-Type": "application/json"},
                ),
                413,
            )
            report = await client.post("/v1/imports", content=padded, headers=ndjson)
            assert report.status_code == 201, report.text
            assert report.json()["created"] == 1, report.text
            over = row[:-1] + b" " * (3 * settings.max_body_bytes) + b"}"
            assert_problem(await client.post("/v1/imports", content=over, headers=ndjson), 413)

            async def streamed() -> AsyncIterator[bytes]:
                yield row[:-1]
                for _ in range(3 * settings.max_body_bytes // 65536 + 1):
                    yield b" " * 65536
                yield b"}"

            assert_problem(
                await client.post("/v1/imports", content=streamed(), headers=ndjson), 413
            )
