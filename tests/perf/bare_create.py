"""The raw baseline of "create listing": a bare FastAPI endpoint doing the same writes as the
listing service with asyncpg, into the same tables, in one transaction — the idempotency claim,
the asset (insert unless the right exists, then read it), the listing, its history row, its
outbox event (the catalogue document, which fires the feed's NOTIFY trigger too) and the stored
response. No key lookup, no validation, no ORM: what is left is the floor the service stands on.

    BENCH_PG=host:port:user:database BENCH_SELLER=<uuid> \
        python -m uvicorn bare_create:app --app-dir tests/perf --port 8100
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse

SCOPE = "POST /v1/listings"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    host, port, user, database = os.environ["BENCH_PG"].split(":")
    # The same pool size as the service's default (pool 10 + overflow 10).
    app.state.pool = await asyncpg.create_pool(
        host=host, port=int(port), user=user, database=database, min_size=10, max_size=20
    )
    app.state.seller = uuid.UUID(os.environ["BENCH_SELLER"])
    try:
        yield
    finally:
        await app.state.pool.close()


app = FastAPI(lifespan=lifespan)


def _date(value: Any) -> Any:
    return datetime.fromisoformat(value).date() if value else None


@app.post("/v1/listings", status_code=201)
async def create(
    request: Request, idempotency_key: Annotated[str, Header(alias="Idempotency-Key")]
) -> JSONResponse:
    body = await request.json()
    seller: uuid.UUID = app.state.seller
    asset, terms = body["asset"], body["transaction"]
    now = datetime.now(UTC)
    listing_id = uuid.uuid4()
    price = terms["price"]
    document = {
        "schema": "ipx.catalogue/v1",
        "offer_id": f"jjj:{listing_id}",
        "asset": asset,
        "transaction": terms,
        "status": "draft",
        "published_at": None,
    }
    async with app.state.pool.acquire() as conn, conn.transaction():
        claimed = await conn.fetchval(
            "INSERT INTO listing.idempotency_keys (organization_id, scope, key, request_hash,"
            " status_code, response, created_at) VALUES ($1, $2, $3, $4, 0, '{}', $5)"
            " ON CONFLICT DO NOTHING RETURNING key",
            seller,
            SCOPE,
            idempotency_key,
            "0" * 64,
            now,
        )
        if claimed is None:
            stored = await conn.fetchval(
                "SELECT response FROM listing.idempotency_keys WHERE organization_id = $1"
                " AND scope = $2 AND key = $3",
                seller,
                SCOPE,
                idempotency_key,
            )
            return JSONResponse(json.loads(stored), headers={"Idempotent-Replayed": "true"})
        await conn.execute(
            "INSERT INTO listing.assets (id, kind, identifier, title_zh, title_en, abstract_zh,"
            " classifications, holders, region, filed_on, legal_status, encumbrances,"
            " registered_by, needs_review, version, created_at, updated_at) VALUES"
            " ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9, $10, $11, '[]', $12, false, 1,"
            " $13, $13) ON CONFLICT DO NOTHING",
            uuid.uuid4(),
            asset["kind"],
            asset["identifier"],
            asset["title"].get("zh"),
            asset["title"].get("en"),
            (asset.get("abstract") or {}).get("zh"),
            json.dumps(asset.get("classifications") or {}),
            json.dumps(asset["holders"]),
            asset["holders"][0].get("region"),
            _date(asset.get("filed_on")),
            asset["legal_status"],
            seller,
            now,
        )
        asset_id = await conn.fetchval(
            "SELECT id FROM listing.assets WHERE kind = $1 AND identifier = $2",
            asset["kind"],
            asset["identifier"],
        )
        await conn.execute(
            "INSERT INTO listing.listings (id, asset_id, seller_id, exchange, external_id,"
            " transaction_type, price_mode, amount, currency, pledge_disclosed, status, version,"
            " created_at, updated_at) VALUES ($1, $2, $3, 'jjj', $4, $5, $6, $7::numeric, 'CNY',"
            " false, 'draft', 1, $8, $8)",
            listing_id,
            asset_id,
            seller,
            str(listing_id),
            terms["type"],
            price["mode"],
            price.get("amount"),
            now,
        )
        await conn.execute(
            "INSERT INTO listing.listing_history (listing_id, version, action,"
            " actor_organization_id, actor_roles, changes, at) VALUES"
            " ($1, 1, 'created', $2, '{member}', $3::jsonb, $4)",
            listing_id,
            seller,
            json.dumps({"transaction": terms}),
            now,
        )
        await conn.execute(
            "INSERT INTO listing.change_events (entity, entity_id, type, version, payload,"
            " occurred_at) VALUES ('listing', $1, 'listing.created', 1, $2::jsonb, $3)",
            listing_id,
            json.dumps({"data": document, "asset_id": str(asset_id), "seller_id": str(seller)}),
            now,
        )
        response = {"id": str(listing_id), "asset_id": str(asset_id), "status": "draft"}
        await conn.execute(
            "UPDATE listing.idempotency_keys SET status_code = 201, response = $4::jsonb"
            " WHERE organization_id = $1 AND scope = $2 AND key = $3",
            seller,
            SCOPE,
            idempotency_key,
            json.dumps(response),
        )
    return JSONResponse(response, status_code=201)
