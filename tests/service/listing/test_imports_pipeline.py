"""Bulk import with two batches in flight: a batch commits after the one before it and only if
that one committed, and a batch holding a right of the batch before it sees what that one wrote.
Small batches (two rows) make a short file span several."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.listing.imports import service
from services.listing.imports.parsing import CSV_COLUMNS
from support import bearer, new_organization, real_application_numbers


@pytest.fixture(autouse=True)
def two_row_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "BATCH_ROWS", 2)


def csv_file(holder: str, rows: list[dict[str, str]]) -> bytes:
    columns = list(CSV_COLUMNS)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow(
            dict.fromkeys(columns, "")
            | {
                "kind": "invention_patent",
                "title_zh": "一种流水线导入测试",
                "holders": holder,
                "holder_region": "110108",
                # In the application number's year (the filing-year rule).
                "filed_on": f"{row.get('identifier', '2017')[:4]}-07-21",
                "transaction_type": "nonexclusive_license",
                "price_mode": "negotiable",
            }
            | row
        )
    return out.getvalue().encode()


def numbers(start: int, count: int) -> Iterator[str]:
    return iter(list(real_application_numbers("invention_patent"))[start : start + count])


async def listings_of(
    maker: async_sessionmaker[AsyncSession], identifiers: list[str]
) -> list[dict[str, Any]]:
    async with maker() as session:
        rows = await session.execute(
            text(
                "SELECT a.identifier, l.id, l.version, l.territory FROM listing.listings l "
                "JOIN listing.assets a ON a.id = l.asset_id WHERE a.identifier = ANY(:ids) "
                "ORDER BY a.identifier"
            ),
            {"ids": identifiers},
        )
        return [dict(r) for r in rows.mappings()]


async def post_import(
    listing: httpx.AsyncClient, key: str, holder: str, rows: list[dict[str, str]]
) -> httpx.Response:
    return await listing.post(
        "/v1/imports",
        content=csv_file(holder, rows),
        headers={**bearer(key), "Content-Type": "text/csv"},
    )


async def import_job(maker: async_sessionmaker[AsyncSession], org_id: str) -> Any:
    """The organisation's one import job: (id, status, total_rows, created_count)."""
    async with maker() as session:
        rows = await session.execute(
            text(
                "SELECT id, status, total_rows, created_count FROM listing.imports "
                "WHERE organization_id = CAST(:org AS uuid)"
            ),
            {"org": org_id},
        )
        return rows.one()


async def test_a_right_in_two_batches_is_created_then_updated(
    listing: httpx.AsyncClient, listing_app: FastAPI, operator_key: str
) -> None:
    holder = "北京邮电大学"
    _, key = await new_organization(listing, operator_key, name=holder)
    maker: async_sessionmaker[AsyncSession] = listing_app.state.sessionmaker
    n0, n1, n2, n3 = numbers(30, 4)
    # Batches [n0, n1], [n2, n0 again with other terms], [n3]: the second batch's n0 row must
    # see the listing the first batch wrote (the last row of the file wins).
    rows = [
        {"identifier": n0},
        {"identifier": n1},
        {"identifier": n2},
        {"identifier": n0, "territory": "京津冀"},
        {"identifier": n3},
    ]
    response = await post_import(listing, key, holder, rows)
    assert response.status_code == 201, response.text
    report = response.json()
    assert (report["total_rows"], report["created"], report["updated"]) == (5, 4, 1)
    assert report["rejected"] == 0

    stored = await listings_of(maker, [n0, n1, n2, n3])
    assert [r["identifier"] for r in stored] == sorted([n0, n1, n2, n3])  # one listing each
    first = next(r for r in stored if r["identifier"] == n0)
    assert (first["version"], first["territory"]) == (2, "京津冀")
    async with maker() as session:
        events = await session.execute(
            text(
                "SELECT type, version FROM listing.change_events WHERE entity_id = :id "
                "ORDER BY xid, seq"
            ),
            {"id": first["id"]},
        )
        assert [tuple(e) for e in events] == [("listing.created", 1), ("listing.updated", 2)]


async def test_a_failed_batch_leaves_the_file_up_to_it_and_nothing_after(
    listing: httpx.AsyncClient, listing_app: FastAPI, operator_key: str
) -> None:
    holder = "北京科技大学"
    org_id, key = await new_organization(listing, operator_key, name=holder)
    maker: async_sessionmaker[AsyncSession] = listing_app.state.sessionmaker
    rights = list(numbers(40, 8))
    refused = rights[4]  # the first row of the third batch
    # A real failure inside PostgreSQL while the third batch writes its assets; the fourth batch
    # is in flight by then, and must not commit.
    async with maker() as session, session.begin():
        await session.execute(
            text(
                "CREATE FUNCTION listing.test_refuse_asset() RETURNS trigger "
                "LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.identifier = '{refused}' THEN RAISE EXCEPTION 'refused by the test'; "
                "END IF; RETURN NEW; END $$"
            )
        )
        await session.execute(
            text(
                "CREATE TRIGGER test_refuse_asset BEFORE INSERT ON listing.assets "
                "FOR EACH ROW EXECUTE FUNCTION listing.test_refuse_asset()"
            )
        )
    try:
        response = await post_import(listing, key, holder, [{"identifier": n} for n in rights])
    finally:
        async with maker() as session, session.begin():
            await session.execute(text("DROP TRIGGER test_refuse_asset ON listing.assets"))
            await session.execute(text("DROP FUNCTION listing.test_refuse_asset()"))
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/problem+json")

    stored = await listings_of(maker, rights)
    assert sorted(r["identifier"] for r in stored) == sorted(rights[:4])
    job = await import_job(maker, org_id)
    assert (job.status, job.total_rows, job.created_count) == ("failed", 4, 4)


async def test_a_batch_that_waits_too_long_for_a_lock_stops_the_import_with_a_409(
    listing: httpx.AsyncClient,
    listing_app: FastAPI,
    operator_key: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch holds its locks while it waits for the batch before it, a wait PostgreSQL cannot
    see; lock_timeout bounds what another transaction can make it wait."""
    monkeypatch.setattr(service, "LOCK_TIMEOUT_SECONDS", 1)
    holder = "北京航空航天大学"
    org_id, key = await new_organization(listing, operator_key, name=holder)
    maker: async_sessionmaker[AsyncSession] = listing_app.state.sessionmaker
    rights = list(numbers(50, 6))
    held = rights[2]  # the first row of the second batch
    async with maker() as session, session.begin():
        # Another transaction registers that right and keeps it uncommitted.
        await session.execute(
            text(
                "INSERT INTO listing.assets (id, kind, identifier, classifications, holders, "
                "legal_status, encumbrances, needs_review, version, created_at, updated_at) "
                "VALUES (gen_random_uuid(), 'invention_patent', :identifier, '{}', '[]', "
                "'pending', '[]', false, 1, now(), now())"
            ),
            {"identifier": held},
        )
        response = await post_import(listing, key, holder, [{"identifier": n} for n in rights])
        await session.rollback()
    assert response.status_code == 409, response.text
    problem = response.json()
    assert problem["type"].endswith("/import-lock-timeout")
    assert problem["rows_applied"] == 2
    stored = await listings_of(maker, rights)
    assert sorted(r["identifier"] for r in stored) == sorted(rights[:2])
    job = await import_job(maker, org_id)
    assert (str(job.id), job.status, job.total_rows) == (problem["import_id"], "failed", 2)

    # Sent again once the lock is gone, the file finishes.
    again = await post_import(listing, key, holder, [{"identifier": n} for n in rights])
    assert again.status_code == 201, again.text
    assert (again.json()["created"], again.json()["unchanged"]) == (4, 2)
