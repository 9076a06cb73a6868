"""Retention on listing's tables, on the real app and database: Idempotency-Key records past
their window go (a repeat of that key creates again), recent ones still replay; a record a
writer holds is skipped, not waited for; the counts reach /metrics; one replica runs a round."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import timedelta

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from service.retention import replica_while_leased, run, sample, steps_until_done
from services.listing.retention.rules import TABLES, ListingRetention, idempotency_expired
from services.listing.retention.workers import ListingRetentionJob
from shared.db import asyncpg_connect_kwargs, utcnow
from shared.retention import RetentionMetrics, retention_round
from shared.settings import Settings
from support import bearer, new_organization, patent, real_application_numbers, terms

BATCH = 5
POLICY = ListingRetention(idempotency=timedelta(hours=24), batch=BATCH)
SELLER = "北京理工大学"
NUMBERS: Iterator[str] = real_application_numbers("invention_patent")


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    """No background rounds: the tests run the job themselves (the worker still starts and
    lists the metrics)."""
    return settings.model_copy(update={"retention_interval_seconds": 0})


@pytest.fixture(scope="module")
async def seller(listing: httpx.AsyncClient, operator_key: str) -> tuple[str, str]:
    return await new_organization(listing, operator_key, name=SELLER)


def job(app: FastAPI) -> ListingRetentionJob:
    return ListingRetentionJob(app.state.sessionmaker, POLICY)


async def add_keys(app: FastAPI, organization: str, ages: list[timedelta]) -> list[str]:
    """Records as a keyed create leaves them, created `ages` ago: their keys."""
    keys = [f"retention-{uuid.uuid4().hex[:12]}" for _ in ages]
    now = utcnow()
    for key, age in zip(keys, ages, strict=True):
        await run(
            app,
            "INSERT INTO listing.idempotency_keys (organization_id, scope, key, request_hash,"
            " status_code, response, created_at)"
            " VALUES (:org, 'listings', :key, 'h', 201, '{}', :at)",
            org=uuid.UUID(organization),
            key=key,
            at=now - age,
        )
    return keys


async def keys(app: FastAPI) -> set[str]:
    return {r.key for r in await run(app, "SELECT key FROM listing.idempotency_keys")}


async def test_keys_past_their_window_go_and_a_repeat_creates_again(
    listing_app: FastAPI, listing: httpx.AsyncClient, seller: tuple[str, str]
) -> None:
    organization, key = seller
    body = {"asset": patent(SELLER, next(NUMBERS)), "transaction": terms()}
    old_key = {**bearer(key), "Idempotency-Key": "retention-old"}
    new_key = {**bearer(key), "Idempotency-Key": "retention-new"}
    first = await listing.post("/v1/listings", json=body, headers=old_key)
    other = {"asset": patent(SELLER, next(NUMBERS)), "transaction": terms()}
    recent = await listing.post("/v1/listings", json=other, headers=new_key)
    assert first.status_code == recent.status_code == 201
    await run(
        listing_app,
        "UPDATE listing.idempotency_keys SET created_at = created_at - interval '25 hours'"
        " WHERE key = 'retention-old'",
    )
    old = await add_keys(listing_app, organization, [timedelta(hours=h) for h in (25, 48, 700)])
    kept = await add_keys(listing_app, organization, [timedelta(hours=h) for h in (1, 23.5)])
    now = utcnow()
    rows = await run(listing_app, "SELECT key, created_at FROM listing.idempotency_keys")
    expected = {r.key for r in rows if not idempotency_expired(r.created_at, POLICY.cutoff(now))}

    retention = job(listing_app)
    await retention.begin(now)
    counts = await steps_until_done(retention)

    assert counts[0] == {"idempotency_keys": 4}
    left = await keys(listing_app)
    assert left == expected
    assert "retention-old" not in left and not set(old) & left
    assert {"retention-new", *kept} <= left
    # The recent key still replays; the forgotten one creates again.
    replayed = await listing.post("/v1/listings", json=other, headers=new_key)
    assert replayed.headers.get("idempotent-replayed") == "true"
    assert replayed.json()["id"] == recent.json()["id"]
    again = await listing.post("/v1/listings", json=body, headers=old_key)
    assert again.status_code == 201, again.text
    assert "idempotent-replayed" not in again.headers
    assert again.json()["id"] != first.json()["id"]


async def test_batches_skip_a_record_a_writer_holds(
    listing_app: FastAPI, seller: tuple[str, str], settings: Settings
) -> None:
    organization, _ = seller
    old = await add_keys(listing_app, organization, [timedelta(hours=30)] * (2 * BATCH + 1))
    writer = await asyncpg.connect(**asyncpg_connect_kwargs(settings.database_url))
    try:
        async with writer.transaction():
            await writer.execute(
                "SELECT 1 FROM listing.idempotency_keys WHERE key = $1 FOR UPDATE", old[0]
            )
            retention = job(listing_app)
            await retention.begin(utcnow())
            counts = await asyncio.wait_for(steps_until_done(retention), timeout=5)
            assert [c["idempotency_keys"] for c in counts] == [BATCH, BATCH, 0]
            assert await keys(listing_app) & set(old) == {old[0]}
    finally:
        await writer.close()
    retention = job(listing_app)
    await retention.begin(utcnow())
    assert await retention.step() == {"idempotency_keys": 1}
    assert not await keys(listing_app) & set(old)


async def test_a_round_counts_in_metrics_and_runs_on_one_replica(
    listing_app: FastAPI,
    listing: httpx.AsyncClient,
    seller: tuple[str, str],
    settings: Settings,
) -> None:
    before = (await listing.get("/metrics")).text
    name = 'ipx_retention_deleted_total{table="idempotency_keys"}'
    assert name in before and "ipx_retention_last_run_timestamp_seconds" in before
    organization, _ = seller
    old = await add_keys(listing_app, organization, [timedelta(days=3)] * 7)
    metrics = RetentionMetrics.of(listing_app, TABLES)

    await replica_while_leased(settings, "listing", job(listing_app))
    assert set(old) <= await keys(listing_app)

    started = utcnow()
    totals = await retention_round(job(listing_app), metrics)
    assert totals == {"idempotency_keys": 7}
    after = (await listing.get("/metrics")).text
    assert sample(after, name) == sample(before, name) + 7
    assert sample(after, "ipx_retention_last_run_timestamp_seconds") >= started.timestamp() - 1
