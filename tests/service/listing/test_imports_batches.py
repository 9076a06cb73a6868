"""Bulk import: the assets of a batch go in with a straight COPY; a right registered by someone
else between the import's look-up and that COPY stays theirs (the batch then goes through
INSERT ... ON CONFLICT DO NOTHING, in the same transaction). And the per-key look-ups of a batch
still see other sellers' listings (a second exclusive licence is refused)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID, uuid4

import httpx
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.listing.imports.parsing import (
    CSV_COLUMNS,
    ValidRow,
    csv_record_to_row,
    validate_row,
)
from services.listing.imports.repository import ImportRepository
from support import bearer, new_organization, real_application_numbers

HOLDER = "北京工业大学"


def asset_values(identifier: str, registered_by: str) -> dict[str, Any]:
    """An asset row as the import builds it (validated through the import's own parser)."""
    record: dict[str, str | None] = {
        "kind": "invention_patent",
        "identifier": identifier,
        "title_zh": "一种并发登记测试",
        "holders": HOLDER,
        "holder_region": "110108",
        "filed_on": f"{identifier[:4]}-07-21",
        "transaction_type": "nonexclusive_license",
        "price_mode": "negotiable",
    }
    row = validate_row(2, csv_record_to_row(record), date(2026, 11, 30))
    assert isinstance(row, ValidRow), row
    now = datetime.now(UTC)
    return row.asset | {
        "id": uuid4(),
        "registered_by": UUID(registered_by),
        "created_at": now,
        "updated_at": now,
        "version": 1,
        "needs_review": False,
    }


async def ids_by_identifier(
    maker: async_sessionmaker[AsyncSession], identifiers: list[str]
) -> dict[str, UUID]:
    async with maker() as session:
        rows = await session.execute(
            text("SELECT identifier, id FROM listing.assets WHERE identifier = ANY(:ids)"),
            {"ids": identifiers},
        )
        return {r.identifier: r.id for r in rows}


async def test_a_right_registered_meanwhile_stays_and_the_rest_go_in(
    listing: httpx.AsyncClient, listing_app: FastAPI, operator_key: str
) -> None:
    org_id, _ = await new_organization(listing, operator_key, name=HOLDER)
    maker: async_sessionmaker[AsyncSession] = listing_app.state.sessionmaker
    numbers = list(real_application_numbers("invention_patent"))[:4]
    batch = [asset_values(n, org_id) for n in numbers]

    # Somebody registers the first right after the import looked it up.
    theirs = asset_values(numbers[0], org_id)
    async with maker() as session, session.begin():
        assert await ImportRepository(session).insert_assets([theirs]) == {theirs["id"]}

    async with maker() as session, session.begin():
        inserted = await ImportRepository(session).insert_assets(batch)
        # The transaction goes on after the savepoint gave way: later statements work.
        assert (await session.execute(text("SELECT 1"))).scalar() == 1
    assert inserted == {row["id"] for row in batch[1:]}
    stored = await ids_by_identifier(maker, [row["identifier"] for row in batch])
    assert stored == {
        batch[0]["identifier"]: theirs["id"],
        **{row["identifier"]: row["id"] for row in batch[1:]},
    }


async def test_new_rights_go_in_with_the_ids_given(
    listing: httpx.AsyncClient, listing_app: FastAPI, operator_key: str
) -> None:
    org_id, _ = await new_organization(listing, operator_key, name="北京交通大学")
    maker: async_sessionmaker[AsyncSession] = listing_app.state.sessionmaker
    numbers = list(real_application_numbers("invention_patent"))[10:13]
    batch = [asset_values(n, org_id) for n in numbers]
    async with maker() as session, session.begin():
        assert await ImportRepository(session).insert_assets(batch) == {r["id"] for r in batch}
    stored = await ids_by_identifier(maker, [row["identifier"] for row in batch])
    assert stored == {row["identifier"]: row["id"] for row in batch}


def csv_body(identifier: str, holders: str, transaction_type: str) -> bytes:
    columns = list(CSV_COLUMNS)
    row = dict.fromkeys(columns, "") | {
        "kind": "invention_patent",
        "identifier": identifier,
        "title_zh": "一种共有专利",
        "holders": holders,
        "holder_region": "110108",
        "filed_on": f"{identifier[:4]}-07-21",
        "transaction_type": transaction_type,
        "price_mode": "negotiable",
    }
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    writer.writerow(row)
    return out.getvalue().encode()


async def test_a_co_holder_cannot_publish_a_second_exclusive_licence(
    listing: httpx.AsyncClient, operator_key: str
) -> None:
    """The look-up of other exclusive listings (one probe per asset) finds the co-holder's."""
    first, second = "北京化工大学", "北京林业大学"
    first_id, _ = await new_organization(listing, operator_key, name=first)
    second_id, _ = await new_organization(listing, operator_key, name=second)
    number = list(real_application_numbers("invention_patent"))[20]

    async def publish(seller_id: str, transaction_type: str) -> dict[str, Any]:
        response = await listing.post(
            "/v1/imports",
            params={"mode": "publish", "seller_id": seller_id},
            content=csv_body(number, f"{first};{second}", transaction_type),
            headers={**bearer(operator_key), "Content-Type": "text/csv"},
        )
        assert response.status_code == 201, response.text
        report: dict[str, Any] = response.json()
        return report

    assert (await publish(first_id, "exclusive_license"))["created"] == 1
    refused = await publish(second_id, "exclusive_license")
    assert refused["created"] == 0 and refused["rejected"] == 1
    assert [r["rule"] for r in refused["rejections"]] == ["second_exclusive_license"]
    assert (await publish(second_id, "nonexclusive_license"))["created"] == 1
