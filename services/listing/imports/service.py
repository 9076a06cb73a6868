"""Running an import: rows are validated one by one and applied in batches, each batch in a
short transaction of its own (a long one would hold the change feed back), each row all or
nothing. Re-importing the same file updates the seller's listings instead of duplicating them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime
from typing import Any, Literal
from uuid import UUID

from asyncpg.exceptions import LockNotAvailableError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.listing.assets.rules import changed_fields, differs, is_holder, merge_stated
from services.listing.assets.service import corrected_values
from services.listing.financing import service as financing
from services.listing.imports.parsing import RejectedRow, ValidRow
from services.listing.imports.repository import ImportRepository
from services.listing.listings.documents import (
    OfferState,
    asset_json,
    document_data,
    terms_json,
)
from services.listing.listings.rules import check_publishable
from services.listing.models import ImportJob, Organization
from shared.contracts.catalogue import OUR_EXCHANGE
from shared.contracts.events import EventType
from shared.errors import FieldError, UnprocessableEntity, raised_from

Mode = Literal["draft", "submit", "publish"]
BATCH_ROWS = 1000
# How long a batch waits for a row lock before the import stops (see apply_in_order).
LOCK_TIMEOUT_SECONDS = 10
SLICE_ROWS = 32
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


# The listing's columns an import row sets, as the paths its report names.
TERM_PATHS: dict[str, str] = {
    "transaction_type": "transaction.type",
    "price_mode": "transaction.price.mode",
    "amount": "transaction.price.amount",
    "currency": "transaction.price.currency",
    "royalty_rate": "transaction.royalty_rate",
    "term_months": "transaction.term_months",
    "territory": "transaction.territory",
    "field_of_use": "transaction.field_of_use",
    "pledge_disclosed": "pledge_disclosed",
}
# What a correction writes of an asset.
ASSET_UPDATE_COLUMNS = (
    "id",
    "publication_number",
    "title_zh",
    "title_en",
    "abstract_zh",
    "abstract_en",
    "classifications",
    "holders",
    "region",
    "filed_on",
    "granted_on",
    "expires_on",
    "legal_status",
    "encumbrances",
    "version",
    "updated_at",
)
Outcome = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True, slots=True)
class RowOutcome:
    """What an import did with one applied row, and the fields it changed (`asset.title.en`,
    `transaction.price.amount`, ...)."""

    line: int
    outcome: Outcome
    changed: tuple[str, ...] = ()


@dataclass
class Counts:
    total: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0

    def plus(self, other: Counts) -> Counts:
        return Counts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def add(self, other: Counts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass
class Batch:
    rows: list[ValidRow] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)


def _same_terms(listing: dict[str, Any], columns: dict[str, Any]) -> bool:
    return all(listing[name] == value for name, value in columns.items())


@dataclass(frozen=True)
class ImportContext:
    """What every batch of one import is applied with."""

    sessionmaker: async_sessionmaker[AsyncSession]
    job: ImportJob
    seller: Organization
    mode: Mode
    today: date
    catalogue_url: str
    actor_key_id: UUID | None
    actor_roles: list[str]


def _asset_update(asset: dict[str, Any]) -> dict[str, Any]:
    """The columns of a corrected asset an import writes (the same keys for every asset)."""
    return {column: asset[column] for column in ASSET_UPDATE_COLUMNS}


def _correction(
    ctx: ImportContext, stored: dict[str, Any], row: ValidRow
) -> tuple[dict[str, Any], dict[str, list[Any]]] | RejectedRow:
    """The stored asset as the row corrects it and what changed ({} when the row states what is
    stored), or the row rejected: the corrected right breaks a rule, or the seller would no
    longer hold it."""
    merged = merge_stated(stored, row.asset, legal_status_stated=row.legal_status_stated)
    if not differs(stored, merged):
        return stored, {}
    try:
        corrected = corrected_values(
            stored, merged, legal_status_stated=row.legal_status_stated, today=ctx.today
        )
    except UnprocessableEntity as exc:
        return RejectedRow(row.line, list(exc.errors or []))
    after = {**stored, **corrected}
    changes = changed_fields(stored, after)
    if changes and not is_holder(after["holders"], ctx.seller.name, ctx.seller.uscc):
        return RejectedRow(
            row.line,
            [
                FieldError(
                    field="asset.holders",
                    rule="not_a_holder",
                    message="the corrected holders must include the importing organisation",
                )
            ],
        )
    return after, changes


def _listing_history(
    ctx: ImportContext,
    listing_id: UUID,
    version: int,
    action: str,
    changes: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    return {
        "listing_id": listing_id,
        "version": version,
        "action": action,
        "actor_organization_id": ctx.seller.id,
        "actor_key_id": ctx.actor_key_id,
        "actor_roles": ctx.actor_roles,
        "changes": changes,
        "at": now,
    }


def _listing_event(
    ctx: ImportContext,
    event_type: EventType,
    offer: OfferState,
    asset: dict[str, Any],
    seller_id: UUID,
    now: datetime,
) -> dict[str, Any]:
    return {
        "entity": "listing",
        "entity_id": offer.id,
        "type": event_type,
        "version": offer.version,
        "occurred_at": now,
        "payload": {
            "data": document_data(offer, asset_json(asset), ctx.catalogue_url),
            "asset_id": str(asset["id"]),
            "seller_id": str(seller_id),
        },
    }


async def apply_batch(
    session: AsyncSession,
    ctx: ImportContext,
    batch: list[ValidRow],
    counts: Counts,
    outcomes: list[RowOutcome],
) -> list[RejectedRow]:
    """Apply validated rows; returns the rows refused by the state of the database, and adds
    what happened to each applied row to `outcomes`."""
    seller, mode, today = ctx.seller, ctx.mode, ctx.today
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

    now = datetime.now(UTC)
    existing = await repo.assets_by_key([r.key for r in rows])
    accepted: list[ValidRow] = []
    for row in rows:
        stored = existing.get(row.key)
        holders = stored["holders"] if stored else row.asset["holders"]
        if not is_holder(holders, seller.name, seller.uscc):
            rejected.append(
                RejectedRow(
                    row.line,
                    [
                        FieldError(
                            field="asset.holders",
                            rule="not_a_holder",
                            message="this right is registered to another holder"
                            if stored
                            else "the importing organisation is not among the holders",
                        )
                    ],
                )
            )
            continue
        accepted.append(row)

    ids = iter(await repo.new_ids(2 * len(accepted)))  # an asset and a listing per row at most
    new_assets = {
        r.key: r.asset
        | {
            "id": next(ids),
            "registered_by": seller.id,
            "created_at": now,
            "updated_at": now,
            "version": 1,
            "needs_review": False,
        }
        for r in accepted
        if r.key not in existing
    }
    inserted = await repo.insert_assets(list(new_assets.values()))
    lost = [key for key, values in new_assets.items() if values["id"] not in inserted]
    if lost:  # registered by someone else meanwhile: theirs stands (holders checked again)
        existing |= await repo.assets_by_key(lost)
        accepted = [
            r
            for r in accepted
            if r.key not in lost or is_holder(existing[r.key]["holders"], seller.name, seller.uscc)
        ]
    # Column values of every asset in the batch, stored or just inserted.
    asset_of: dict[tuple[str, str], dict[str, Any]] = {
        **{k: v for k, v in new_assets.items() if k not in lost},
        **existing,
    }

    # Corrections: stored rights whose row states other values (a re-import of a corrected
    # file). Locked before any listing (as a correction through the API does), and decided on
    # the locked rows.
    correcting = {
        existing[r.key]["id"]
        for r in accepted
        if r.key in existing
        and differs(
            existing[r.key],
            merge_stated(existing[r.key], r.asset, legal_status_stated=r.legal_status_stated),
        )
    }
    corrections: dict[UUID, dict[str, list[Any]]] = {}
    if correcting:
        locked = await repo.lock_assets(sorted(correcting))
        kept: list[ValidRow] = []
        for row in accepted:
            stored = asset_of[row.key]
            if stored["id"] not in correcting:
                kept.append(row)
                continue
            stored = locked[stored["id"]]
            outcome = (
                _correction(ctx, stored, row)
                if is_holder(stored["holders"], seller.name, seller.uscc)
                else RejectedRow(
                    row.line,
                    [
                        FieldError(
                            field="asset.holders",
                            rule="not_a_holder",
                            message="this right is registered to another holder",
                        )
                    ],
                )
            )
            if isinstance(outcome, RejectedRow):
                rejected.append(outcome)
                continue
            after, fields = outcome
            if fields:
                after = {**after, "version": stored["version"] + 1, "updated_at": now}
                corrections[stored["id"]] = fields
            asset_of[row.key] = after
            kept.append(row)
        accepted = kept

    by_asset = {asset_of[r.key]["id"]: r for r in accepted}
    asset_ids = list(by_asset)
    open_listings = await repo.open_listings(seller.id, asset_ids)
    changing = [
        asset_id
        for asset_id, listing in open_listings.items()
        if asset_id in corrections or not _same_terms(listing, by_asset[asset_id].listing)
    ]
    if changing:  # lock what will change, and read it again under the lock
        open_listings |= await repo.lock_listings(
            seller.id, [open_listings[asset_id]["id"] for asset_id in changing]
        )
        # Their rights read again too: a correction through the API that held one of these
        # listings has committed by now, and the new documents must carry its asset.
        unlocked = [by_asset[a].key for a in changing if a not in corrections]
        for key, fresh in (await repo.assets_by_key(unlocked)).items():
            asset_of[key] = fresh
    # The other listings on corrected rights (other sellers', other exchanges', ended ones):
    # their documents carry the asset too.
    others = (
        await repo.lock_other_listings(
            list(corrections), [listing["id"] for listing in open_listings.values()]
        )
        if corrections
        else []
    )
    exclusive_elsewhere = (
        await repo.assets_with_exclusive(asset_ids, seller.id) if mode != "draft" else set()
    )

    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    asset_updates: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for row in accepted:
        asset = asset_of[row.key]
        columns = row.listing
        corrected_fields = corrections.get(asset["id"], {})
        current = open_listings.get(asset["id"])
        if mode != "draft" and (current is None or current["status"] == "draft"):
            problems = check_publishable(
                legal_status=asset["legal_status"],
                expires_on=asset["expires_on"],
                encumbrances=asset["encumbrances"],
                terms=row.terms,
                pledge_disclosed=row.pledge_disclosed,
                other_exclusive_listing=asset["id"] in exclusive_elsewhere,
                today=today,
            )
            if problems:
                rejected.append(RejectedRow(row.line, problems))
                corrections.pop(asset["id"], None)  # the row is applied whole or not at all
                continue
        if corrected_fields:
            asset_updates.append(_asset_update(asset))
        asset_changes = {f"asset.{path}": values for path, values in corrected_fields.items()}
        changed = [f"asset.{path}" for path in corrected_fields]
        changes: dict[str, Any]
        event_type: EventType
        if current is not None:
            if _same_terms(current, columns) and not corrected_fields:
                counts.unchanged += 1
                outcomes.append(RowOutcome(row.line, "unchanged"))
                continue
            terms_changed = [k for k, v in columns.items() if current[k] != v]
            changes = {k: [str(current[k]), str(columns[k])] for k in terms_changed}
            changes |= asset_changes
            changed = [TERM_PATHS[k] for k in terms_changed] + changed
            updated = {**current, **columns, "version": current["version"] + 1, "updated_at": now}
            updates.append(
                {"id": updated["id"], **columns, "version": updated["version"], "updated_at": now}
            )
            offer = OfferState.of(updated, seller.name)
            action, event_type = "imported_update", "listing.updated"
            counts.updated += 1
            outcomes.append(RowOutcome(row.line, "updated", tuple(changed)))
        else:
            status = STATUS_OF_MODE[mode]
            listing_id = next(ids)
            values = {
                "id": listing_id,
                "asset_id": asset["id"],
                "seller_id": seller.id,
                "exchange": OUR_EXCHANGE,
                "external_id": str(listing_id),
                "status": status,
                "version": 1,
                "published_at": now if status == "published" else None,
                "created_at": now,
                "updated_at": now,
                **columns,
            }
            inserts.append(values)
            offer = OfferState(
                id=listing_id,
                exchange=OUR_EXCHANGE,
                external_id=str(listing_id),
                status=status,
                version=1,
                updated_at=now,
                published_at=values["published_at"],
                terms=terms_json(columns),
                seller_name=seller.name,
            )
            changes = {"status": [None, status]} | asset_changes
            action, event_type = "imported", EVENT_OF_MODE[mode]
            counts.created += 1
            outcomes.append(RowOutcome(row.line, "created", tuple(changed)))
        history.append(_listing_history(ctx, offer.id, offer.version, action, changes, now))
        events.append(_listing_event(ctx, event_type, offer, asset, seller.id, now))
    bumps: list[dict[str, Any]] = []
    asset_by_id = {a["id"]: a for a in asset_of.values()}
    for listing in others:
        fields = corrections.get(listing["asset_id"], {})
        if not fields:
            continue  # its row was rejected
        asset = asset_by_id[listing["asset_id"]]
        bumped = {**listing, "version": listing["version"] + 1, "updated_at": now}
        bumps.append({"id": bumped["id"], "version": bumped["version"], "updated_at": now})
        offer = OfferState.of(bumped, listing["seller_org_name"])
        history.append(
            _listing_history(
                ctx,
                offer.id,
                offer.version,
                "asset_corrected",
                {f"asset.{path}": values for path, values in fields.items()},
                now,
            )
        )
        events.append(
            _listing_event(ctx, "listing.updated", offer, asset, listing["seller_id"], now)
        )
    await repo.update_assets(asset_updates)
    await repo.insert_listings(inserts)
    await repo.update_listings(updates)
    await repo.bump_listings(bumps)
    await repo.insert_history(history)
    await repo.insert_events(events)
    # A pledged right whose status or term the file corrected: its pledgees hear of it.
    await financing.rights_changed(
        session,
        ctx.seller.id,
        ctx.actor_key_id,
        ctx.actor_roles,
        [(asset_by_id[asset_id], fields) for asset_id, fields in corrections.items()],
    )
    return rejected


async def next_batch(rows: Iterator[ValidRow | RejectedRow]) -> Batch | None:
    """Up to BATCH_ROWS rows from the file. The CPU work runs on the event loop and gives it
    back every SLICE_ROWS rows, so the previous batch's statements go on meanwhile and other
    requests wait a millisecond or two at most (why not a thread: docs/DECISIONS.md, Listing,
    "Bulk import")."""
    batch = Batch()
    for row in rows:
        if isinstance(row, ValidRow):
            batch.rows.append(row)
        else:
            batch.rejected.append(row)
        taken = len(batch.rows) + len(batch.rejected)
        if taken >= BATCH_ROWS:
            break
        if taken % SLICE_ROWS == 0:
            await asyncio.sleep(0)
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


def _outcome_rows(job_id: UUID, outcomes: list[RowOutcome]) -> list[dict[str, Any]]:
    return [
        {"import_id": job_id, "line": o.line, "outcome": o.outcome, "changed": list(o.changed)}
        for o in sorted(outcomes, key=lambda o: o.line)
    ]


class ImportLockTimeout(Exception):
    """A batch waited too long for a row lock; `counts` are those of the batches committed."""

    def __init__(self, counts: Counts) -> None:
        super().__init__("an import batch waited too long for a row lock")
        self.counts = counts


async def apply_in_order(
    ctx: ImportContext, batch: Batch, previous: asyncio.Task[None] | None, counts: Counts
) -> None:
    """One batch in a transaction of its own, committed after the batch before it (`previous`)
    and only if that one committed: what an import leaves is always its file up to a batch.
    Adds the batch's counts to `counts` once committed.

    A batch waits LOCK_TIMEOUT_SECONDS at most for a lock, then the import stops there
    (ImportLockTimeout), whole up to a batch: it waits for the one before it while holding its
    own row locks, a wait PostgreSQL's deadlock detector cannot see (docs/DECISIONS.md,
    Listing, "Bulk import")."""
    mine = Counts()
    async with ctx.sessionmaker() as session, session.begin():
        repo = ImportRepository(session)
        await repo.limit_lock_waits(LOCK_TIMEOUT_SECONDS)
        rejected = list(batch.rejected)
        outcomes: list[RowOutcome] = []
        rejected += await apply_batch(session, ctx, batch.rows, mine, outcomes)
        mine.total = len(batch.rows) + len(batch.rejected)
        mine.rejected = len({r.line for r in rejected})
        await repo.insert_rejections(_rejection_rows(ctx.job.id, rejected))
        await repo.insert_outcomes(_outcome_rows(ctx.job.id, outcomes))
        if previous is not None:
            await previous  # its error, raised here, rolls this batch back
        await repo.record_progress(ctx.job.id, counts.plus(mine))
    counts.add(mine)


async def run_import(ctx: ImportContext, rows: Iterator[ValidRow | RejectedRow]) -> Counts:
    """Two batches in flight, on two connections: while PostgreSQL writes one, the listing
    builds the next (measured: docs/DECISIONS.md, Listing, "Bulk import"). A batch holding a
    right of the batch before it waits for that one to commit first, so it sees what that one
    wrote (the last row of a file wins, as within a batch), and the change feed has that
    right's events in order."""
    counts = Counts()
    # The next batch is parsed while these are written.
    parsing = asyncio.ensure_future(next_batch(rows))
    writing: asyncio.Task[None] | None = None
    writing_keys: set[tuple[str, str]] = set()
    try:
        while (batch := await parsing) is not None:
            parsing = asyncio.ensure_future(next_batch(rows))
            keys = {row.key for row in batch.rows}
            if writing is not None and not keys.isdisjoint(writing_keys):
                await writing
            before = writing
            writing = asyncio.ensure_future(apply_in_order(ctx, batch, before, counts))
            writing_keys = keys
            if before is not None:
                await before  # at most two batches in flight
        if writing is not None:
            await writing
    except Exception as exc:
        if raised_from(exc, LockNotAvailableError):
            raise ImportLockTimeout(counts) from exc
        raise
    except asyncio.CancelledError:
        if writing is not None:
            writing.cancel()
        raise
    finally:
        # Never leave a task reading a file the caller is about to close, nor a batch running.
        parsing.cancel()
        pending = [task for task in (parsing, writing) if task is not None]
        await asyncio.wait(pending)
        for task in pending:
            if not task.cancelled():
                task.exception()  # retrieved: the error that matters is the one raised here
    return counts
