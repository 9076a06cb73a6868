"""Running an import: rows are validated one by one and applied in batches, each batch in a
short transaction of its own (a long one would hold the change feed back), each row all or
nothing. Re-importing the same file updates the seller's listings instead of duplicating them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal
from uuid import UUID, uuid4

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.listing.assets import service as assets
from services.listing.assets.rules import is_holder
from services.listing.imports.parsing import RejectedRow, ValidRow
from services.listing.imports.repository import ImportRepository
from services.listing.listings import service as listings
from services.listing.listings.rules import check_publishable
from services.listing.models import ImportJob, Listing, Organization
from shared.contracts.catalogue import OUR_EXCHANGE
from shared.contracts.events import EventType
from shared.errors import FieldError

Mode = Literal["draft", "submit", "publish"]
BATCH_ROWS = 1000
STATUS_OF_MODE: dict[Mode, str] = {
    "draft": "draft",
    "submit": "pending_review",
    "publish": "published",
}
EVENT_OF_MODE: dict[Mode, EventType] = {
    "draft": "listing.created",
    "submit": "listing.submitted",
    "publish": "listing.published",
}


@dataclass
class Counts:
    total: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0


@dataclass
class Batch:
    rows: list[ValidRow] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)


def _terms_columns(row: ValidRow) -> dict[str, Any]:
    t = row.terms
    return {
        "transaction_type": t.type,
        "price_mode": t.price.mode,
        "amount": t.price.amount,
        "currency": t.price.currency,
        "royalty_rate": t.royalty_rate,
        "term_months": t.term_months,
        "territory": t.territory,
        "field_of_use": t.field_of_use,
        "pledge_disclosed": row.pledge_disclosed,
    }


def _same_terms(listing: Listing, columns: dict[str, Any]) -> bool:
    return all(getattr(listing, name) == value for name, value in columns.items())


async def apply_batch(
    session: AsyncSession,
    *,
    seller: Organization,
    batch: list[ValidRow],
    mode: Mode,
    today: date,
    catalogue_url: str,
    actor_key_id: UUID | None,
    actor_roles: list[str],
    counts: Counts,
) -> list[RejectedRow]:
    """Apply validated rows; returns the rows refused by the state of the database."""
    repo = ImportRepository(session)
    rejected: list[RejectedRow] = []
    # Within a batch the last row for a right wins; earlier ones are reported.
    last: dict[tuple[str, str], ValidRow] = {}
    for row in batch:
        if row.key in last:
            rejected.append(
                RejectedRow(
                    last[row.key].line,
                    [
                        FieldError(
                            field="asset.identifier",
                            rule="duplicate_row",
                            message=f"the same right appears again on line {row.line}, which wins",
                        )
                    ],
                )
            )
        last[row.key] = row
    rows = list(last.values())

    existing = await repo.assets_by_key([r.key for r in rows])
    accepted: list[ValidRow] = []
    for row in rows:
        asset = existing.get(row.key)
        holders = asset.holders if asset else [h.model_dump() for h in row.asset.holders]
        if not is_holder(holders, seller.name, seller.uscc):
            rejected.append(
                RejectedRow(
                    row.line,
                    [
                        FieldError(
                            field="asset.holders",
                            rule="not_a_holder",
                            message="this right is registered to another holder"
                            if asset
                            else "the importing organisation is not among the holders",
                        )
                    ],
                )
            )
            continue
        accepted.append(row)

    new_assets = [
        assets.row_values(r.asset)
        | {
            "id": uuid4(),
            "registered_by": seller.id,
            "created_at": datetime.now(UTC),
            "updated_at": datetime.now(UTC),
            "version": 1,
            "needs_review": False,
        }
        for r in accepted
        if r.key not in existing
    ]
    await repo.insert_assets(new_assets)
    if new_assets:
        existing = await repo.assets_by_key([r.key for r in accepted])
    asset_ids = [existing[r.key].id for r in accepted]
    open_listings = await repo.open_listings(seller.id, asset_ids)
    exclusive_elsewhere = (
        await repo.assets_with_exclusive(asset_ids, seller.id) if mode != "draft" else set()
    )

    now = datetime.now(UTC)
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for row in accepted:
        asset = existing[row.key]
        columns = _terms_columns(row)
        current = open_listings.get(asset.id)
        if mode != "draft" and (current is None or current.status == "draft"):
            problems = check_publishable(
                legal_status=asset.legal_status,
                expires_on=asset.expires_on,
                encumbrances=asset.encumbrances,
                terms=row.terms,
                pledge_disclosed=row.pledge_disclosed,
                other_exclusive_listing=asset.id in exclusive_elsewhere,
                today=today,
            )
            if problems:
                rejected.append(RejectedRow(row.line, problems))
                continue
        if current is not None:
            if _same_terms(current, columns):
                counts.unchanged += 1
                continue
            changes: dict[str, Any] = {
                k: [str(getattr(current, k)), str(v)]
                for k, v in columns.items()
                if getattr(current, k) != v
            }
            for name, value in columns.items():
                setattr(current, name, value)
            current.version += 1
            current.updated_at = now
            updates.append(
                {"id": current.id, **columns, "version": current.version, "updated_at": now}
            )
            listing, action, event_type = current, "imported_update", "listing.updated"
            counts.updated += 1
        else:
            status = STATUS_OF_MODE[mode]
            listing = Listing(
                id=uuid4(),
                asset_id=asset.id,
                seller_id=seller.id,
                exchange=OUR_EXCHANGE,
                external_id="",
                status=status,
                published_at=now if status == "published" else None,
                created_at=now,
                updated_at=now,
                **columns,
            )
            listing.external_id = str(listing.id)
            inserts.append(listing.model_dump())
            changes = {"status": [None, status]}
            action, event_type = "imported", EVENT_OF_MODE[mode]
            counts.created += 1
        history.append(
            {
                "listing_id": listing.id,
                "version": listing.version,
                "action": action,
                "actor_organization_id": seller.id,
                "actor_key_id": actor_key_id,
                "actor_roles": actor_roles,
                "changes": changes,
                "reason": None,
                "at": now,
            }
        )
        document = listings.document(listing, asset, seller, catalogue_url)
        events.append(
            {
                "entity": "listing",
                "entity_id": listing.id,
                "type": event_type,
                "version": listing.version,
                "occurred_at": now,
                "payload": {
                    "data": document.model_dump(mode="json", by_alias=True),
                    "asset_id": str(asset.id),
                    "seller_id": str(seller.id),
                },
            }
        )
    await repo.insert_listings(inserts)
    await repo.update_listings(updates)
    await repo.insert_history(history)
    await repo.insert_events(events)
    return rejected


def next_batch(rows: Iterator[ValidRow | RejectedRow]) -> Batch | None:
    """Up to BATCH_ROWS rows from the file (CPU work: run it in a thread)."""
    batch = Batch()
    for row in rows:
        if isinstance(row, ValidRow):
            batch.rows.append(row)
        else:
            batch.rejected.append(row)
        if len(batch.rows) + len(batch.rejected) >= BATCH_ROWS:
            break
    return batch if batch.rows or batch.rejected else None


def _rejection_rows(job_id: UUID, rejected: list[RejectedRow]) -> list[dict[str, Any]]:
    return [
        {
            "import_id": job_id,
            "line": r.line,
            "field": e.field[:200],
            "rule": e.rule[:64],
            "message": e.message,
        }
        for r in rejected
        for e in r.errors
    ]


async def run_import(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    job: ImportJob,
    seller: Organization,
    rows: Iterator[ValidRow | RejectedRow],
    mode: Mode,
    today: date,
    catalogue_url: str,
    actor_key_id: UUID | None,
    actor_roles: list[str],
) -> Counts:
    counts = Counts()
    while True:
        batch = await asyncio.to_thread(next_batch, rows)
        if batch is None:
            break
        rejected = list(batch.rejected)
        async with sessionmaker() as session, session.begin():
            rejected += await apply_batch(
                session,
                seller=seller,
                batch=batch.rows,
                mode=mode,
                today=today,
                catalogue_url=catalogue_url,
                actor_key_id=actor_key_id,
                actor_roles=actor_roles,
                counts=counts,
            )
            counts.total += len(batch.rows) + len(batch.rejected)
            counts.rejected += len({r.line for r in rejected})
            await ImportRepository(session).insert_rejections(_rejection_rows(job.id, rejected))
            await session.merge(
                ImportJob(
                    **{
                        **job.model_dump(),
                        "total_rows": counts.total,
                        "created_count": counts.created,
                        "updated_count": counts.updated,
                        "unchanged_count": counts.unchanged,
                        "rejected_count": counts.rejected,
                    }
                )
            )
    return counts
