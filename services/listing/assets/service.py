"""Registering and reading assets. Never commits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID, uuid4

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from services.listing.assets.repository import AssetRepository
from services.listing.assets.rules import (
    PATENT_KINDS,
    is_holder,
    normalize_asset,
    status_before_expiry,
)
from services.listing.assets.schemas import AssetCreate
from services.listing.listings.documents import asset_json
from services.listing.models import Asset, Organization
from shared.auth import Principal
from shared.contracts.catalogue import AssetDocument
from shared.contracts.listings import AssetPublic
from shared.db import utcnow
from shared.errors import (
    Conflict,
    Forbidden,
    NotFound,
    UnprocessableEntity,
    field_errors_from_validation,
)
from shared.identifiers import IdentifierError, normalize_identifier

__all__ = [
    "Registration",
    "corrected_values",
    "get",
    "lookup",
    "register",
    "row_values",
    "to_document",
    "to_public",
]
# Kinds whose expiry the dates give (shared.identifiers.expiry_date): a correction computes it
# again; for the others the stated expiry stays.
COMPUTED_EXPIRY = PATENT_KINDS | {"trademark", "plant_variety"}


def to_document(asset: Asset) -> AssetDocument:
    return AssetDocument.model_validate(asset_json(asset))


def to_public(asset: Asset | Mapping[str, Any]) -> AssetPublic:
    """From a stored asset, or an asset row's values."""
    a = asset if isinstance(asset, Mapping) else asset.model_dump()
    return AssetPublic.model_validate(
        {
            **asset_json(a),
            "id": a["id"],
            "version": a["version"],
            "needs_review": a["needs_review"],
            "created_at": a["created_at"],
            "updated_at": a["updated_at"],
        }
    )


def row_values(doc: AssetDocument) -> dict[str, Any]:
    """The columns of an asset row from a normalised document."""
    data = doc.model_dump(mode="json")
    return {
        "kind": doc.kind,
        "identifier": doc.identifier,
        "publication_number": doc.publication_number,
        "title_zh": doc.title.zh,
        "title_en": doc.title.en,
        "abstract_zh": doc.abstract.zh,
        "abstract_en": doc.abstract.en,
        "classifications": data["classifications"],
        "holders": data["holders"],
        "region": next((h.region for h in doc.holders if h.region), None),
        "filed_on": doc.filed_on,
        "granted_on": doc.granted_on,
        "expires_on": doc.expires_on,
        "legal_status": doc.legal_status,
        "encumbrances": data["encumbrances"],
    }


def corrected_values(
    stored: Mapping[str, Any],
    merged: Mapping[str, Any],
    *,
    legal_status_stated: bool,
    today: date,
    allow_bad_uscc_check: bool = False,
) -> dict[str, Any]:
    """The row values (row_values' columns) of a corrected asset: `merged` (the stored values
    with the correction's) validated and normalised with every rule of a registration, the
    expiry computed again from the dates, and an `expired` the old dates decided reconsidered
    (rules.status_before_expiry). 422 naming `asset.<field>` otherwise.

    Credit codes already stored are not checked again (an operator may have accepted a pilot
    code whose check character fails); any new one is."""
    values = dict(merged)
    kind = values["kind"]
    plant = (values["classifications"] or {}).get("plant") or {}
    if not legal_status_stated:
        values["legal_status"] = status_before_expiry(
            kind,
            values["legal_status"],
            values["filed_on"],
            values["granted_on"],
            dates_corrected=(values["filed_on"], values["granted_on"])
            != (stored["filed_on"], stored["granted_on"]),
            woody=bool(plant.get("woody")),
        )
    if kind in COMPUTED_EXPIRY:
        values["expires_on"] = None
    try:
        doc = AssetDocument.model_validate(asset_json(values))
    except ValidationError as exc:
        errors = field_errors_from_validation(exc.errors())
        for error in errors:
            error.field = f"asset.{error.field}"
        raise UnprocessableEntity("the corrected asset is invalid", errors=errors) from None
    known = {h.get("uscc") for h in stored["holders"] if h.get("uscc")}
    new_codes = {h.uscc for h in doc.holders if h.uscc} - known
    normalized = normalize_asset(
        doc, today=today, allow_bad_uscc_check=allow_bad_uscc_check or not new_codes
    )
    return row_values(normalized)


@dataclass(frozen=True)
class Registration:
    """A registered right: its row's values, whether this call created it, and its public
    form."""

    row: dict[str, Any]
    created: bool
    public: AssetPublic


def _new_public(doc: AssetDocument, row: Mapping[str, Any]) -> AssetPublic:
    """The public form of an asset just inserted from `doc`, which normalize_asset validated:
    validating it once more (to_public) cost as much as the insert."""
    return AssetPublic.model_construct(
        **{name: getattr(doc, name) for name in AssetDocument.model_fields},
        id=row["id"],
        version=row["version"],
        needs_review=row["needs_review"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def register(
    session: AsyncSession,
    principal: Principal,
    organization: Organization | None,
    data: AssetCreate,
    *,
    today: date,
) -> Registration:
    """The asset for this right: created, or the existing one (same holder) — 409 when the
    right is registered to another holder."""
    if data.uscc_check_override and not principal.is_operator:
        raise Forbidden("only an operator may override a credit code's check character")
    doc = normalize_asset(
        AssetDocument.model_validate(data.model_dump(exclude={"uscc_check_override"})),
        today=today,
        allow_bad_uscc_check=data.uscc_check_override,
    )
    now = utcnow()
    asset, created = await AssetRepository(session).insert_or_get_values(
        {
            "id": uuid4(),
            **row_values(doc),
            "registered_by": principal.organization_id,
            "needs_review": False,
            "version": 1,
            "created_at": now,
            "updated_at": now,
        }
    )
    if not created and not principal.is_operator:
        # The same right again: it is the caller's when they are among its holders, either as
        # registered or as they describe it now.
        own = organization is not None and (
            is_holder(asset["holders"], organization.name, organization.uscc)
        )
        same_holders = {h.name for h in doc.holders} & {str(h["name"]) for h in asset["holders"]}
        if not own and not same_holders:
            raise Conflict(
                "this right is registered to another holder",
                extra={"asset_id": str(asset["id"])},
            )
    return Registration(asset, created, _new_public(doc, asset) if created else to_public(asset))


async def get(session: AsyncSession, asset_id: UUID) -> Asset:
    asset = await AssetRepository(session).get(asset_id)
    if asset is None:
        raise NotFound(f"no asset {asset_id}")
    return asset


async def lookup(session: AsyncSession, kind: str, identifier: str) -> Asset | None:
    """By any typed form of an identifier (normalised with the registration rules)."""
    try:
        normalized = normalize_identifier(kind, identifier)
    except IdentifierError as exc:
        raise UnprocessableEntity.single("identifier", exc.rule, exc.message) from exc
    return await AssetRepository(session).by_identity(kind, normalized)
