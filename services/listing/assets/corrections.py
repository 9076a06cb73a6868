"""Correcting a registered right (PATCH /v1/assets/{id}). Never commits.

A correction is a holder's (or an operator's) write like any listing edit: optimistic
concurrency on the asset's version, every rule of a registration on the corrected right, and,
since every catalogue document carries its asset inline, each listing on the asset (any seller,
any exchange, any status) gets a new version, a history entry (`asset_corrected`, with the
fields changed) and a `listing.updated` event with its new document: the indexer and every
feed reader pick the correction up as they pick up any edit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from services.listing.assets import service as assets
from services.listing.assets.repository import AssetRepository
from services.listing.assets.rules import changed_fields, is_holder
from services.listing.assets.schemas import AssetUpdate
from services.listing.financing import service as financing
from services.listing.listings import service as listings
from services.listing.listings.repository import serialize_writers
from services.listing.models import Asset
from shared.db import utcnow
from shared.errors import FieldError, Forbidden, UnprocessableEntity
from shared.etags import check_version

__all__ = ["correct", "merge_update"]

_LOCALIZED = ("title", "abstract")
_CLASSIFICATIONS = ("ipc", "nice", "locarno", "plant")
_PLAIN = ("filed_on", "granted_on", "publication_number")


def merge_update(stored: Mapping[str, Any], data: AssetUpdate) -> tuple[dict[str, Any], bool]:
    """The stored asset's row values with the correction's fields (only those given; in the
    title, abstract and classifications only the parts given), and whether it states a legal
    status."""
    merged = dict(stored)
    given = data.model_fields_set
    for name in _LOCALIZED:
        text = getattr(data, name)
        if name in given and text is not None:
            for language in text.model_fields_set:
                merged[f"{name}_{language}"] = getattr(text, language)
    if "classifications" in given and data.classifications is not None:
        dumped = data.classifications.model_dump(mode="json")
        parts = data.classifications.model_fields_set
        merged["classifications"] = {
            **(stored["classifications"] or {}),
            **{key: dumped[key] for key in _CLASSIFICATIONS if key in parts},
        }
    if "holders" in given and data.holders is not None:
        merged["holders"] = [h.model_dump(mode="json") for h in data.holders]
    if "encumbrances" in given and data.encumbrances is not None:
        merged["encumbrances"] = [e.model_dump(mode="json") for e in data.encumbrances]
    for name in _PLAIN:
        if name in given:
            merged[name] = getattr(data, name)
    stated = "legal_status" in given and data.legal_status is not None
    if stated:
        merged["legal_status"] = data.legal_status
    return merged, stated


async def _ensure_may_correct(ctx: listings.Context, asset: Asset) -> None:
    """Operators, and the organisations that hold the right or offer it here."""
    if ctx.principal.is_operator:
        return
    organization = ctx.organization
    if organization is not None and (
        is_holder(asset.holders, organization.name, organization.uscc)
        or await AssetRepository(ctx.session).sells(asset.id, organization.id)
    ):
        return
    raise Forbidden("only a holder of this right (or an operator) corrects it")


def _in_body(exc: UnprocessableEntity) -> UnprocessableEntity:
    """The registration rules name `asset.<field>`; the body of a correction is the asset."""
    errors = [
        FieldError(field=e.field.removeprefix("asset."), rule=e.rule, message=e.message)
        for e in exc.errors or []
    ]
    return UnprocessableEntity(
        f"{len(errors)} field{'s are' if len(errors) != 1 else ' is'} invalid: "
        + ", ".join(f"{e.field} ({e.rule})" for e in errors[:5]),
        errors=errors,
    )


async def correct(
    ctx: listings.Context, asset_id: UUID, data: AssetUpdate, if_match: int | None
) -> Asset:
    """Apply a correction; returns the asset (unchanged, same version, when the correction
    states what is stored)."""
    if data.uscc_check_override and not ctx.principal.is_operator:
        raise Forbidden("only an operator may override a credit code's check character")
    repo = AssetRepository(ctx.session)
    asset = await assets.get(ctx.session, asset_id)  # 404
    await _ensure_may_correct(ctx, asset)
    # The listings' writers' queue first, then the row locks (asset, then listings), as every
    # writer of a listing does: the feed lists each listing's versions in order.
    listing_ids = await repo.listing_ids(asset_id)
    for listing_id in listing_ids:
        await serialize_writers(ctx.session, listing_id)
    locked = await repo.locked(asset_id)
    assert locked is not None  # assets are never deleted
    asset = locked
    check_version("asset", asset.version, if_match if if_match is not None else data.version)
    before = asset.model_dump()
    merged, stated = merge_update(before, data)
    try:
        corrected = assets.corrected_values(
            before,
            merged,
            legal_status_stated=stated,
            today=ctx.today,
            allow_bad_uscc_check=data.uscc_check_override,
        )
    except UnprocessableEntity as exc:
        raise _in_body(exc) from None
    changes = changed_fields(before, {**before, **corrected})
    if not changes:
        return asset
    organization = ctx.organization
    if not ctx.principal.is_operator and not (
        organization is not None
        and is_holder(corrected["holders"], organization.name, organization.uscc)
    ):
        raise UnprocessableEntity.single(
            "holders",
            "not_a_holder",
            "the corrected holders must include the caller's organisation (an operator "
            "corrects a right the caller does not hold)",
        )
    for column, value in corrected.items():
        setattr(asset, column, value)
    asset.version += 1
    asset.updated_at = utcnow()
    # A listing created meanwhile on the asset queues too (rare: it then waits here).
    for listing_id in await repo.listing_ids(asset_id):
        if listing_id not in listing_ids:
            await serialize_writers(ctx.session, listing_id)
            listing_ids.append(listing_id)
    history = {f"asset.{path}": values for path, values in changes.items()}
    for listing, seller in await repo.lock_listings(listing_ids):
        listing.version += 1
        listing.updated_at = asset.updated_at
        listings.audit(ctx, listing, "asset_corrected", history)
        listings.emit(ctx.session, "listing.updated", listing, asset, seller, ctx.catalogue_url)
    # A pledged right whose status or term changed: its pledgees hear of it (issue 22).
    await financing.right_changed(ctx, asset, changes)
    await ctx.session.flush()
    return asset
