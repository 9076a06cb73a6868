"""The catalogue document of an offer as plain JSON data, built straight from stored columns.

One builder for every writer of the feed (the API and the bulk import); no validation round-trip
per row. The shape is the `CatalogueDocument` contract (tests parse the feed with it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from services.listing.models import Asset, Listing
from shared.contracts.catalogue import OUR_EXCHANGE, SCHEMA_V1, TransactionTerms, offer_id

TERMS_COLUMNS = (
    "transaction_type",
    "price_mode",
    "amount",
    "currency",
    "royalty_rate",
    "term_months",
    "territory",
    "field_of_use",
)


def _iso(value: date | datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _decimal(value: Decimal | None) -> str | None:
    return str(value) if value is not None else None


def asset_json(asset: Asset | Mapping[str, Any]) -> dict[str, Any]:
    """From a stored asset, or the column values of one about to be inserted."""
    a = asset if isinstance(asset, Mapping) else asset.model_dump()
    return {
        "kind": a["kind"],
        "identifier": a["identifier"],
        "publication_number": a["publication_number"],
        "title": {"zh": a["title_zh"], "en": a["title_en"]},
        "abstract": {"zh": a["abstract_zh"], "en": a["abstract_en"]},
        "classifications": a["classifications"],
        "holders": a["holders"],
        "filed_on": _iso(a["filed_on"]),
        "granted_on": _iso(a["granted_on"]),
        "expires_on": _iso(a["expires_on"]),
        "legal_status": a["legal_status"],
        "encumbrances": a["encumbrances"],
    }


def terms_json(columns: Mapping[str, Any]) -> dict[str, Any]:
    """Transaction terms from a listing's columns (a dict of TERMS_COLUMNS)."""
    return {
        "type": columns["transaction_type"],
        "price": {
            "mode": columns["price_mode"],
            "amount": _decimal(columns["amount"]),
            "currency": columns["currency"],
        },
        "royalty_rate": _decimal(columns["royalty_rate"]),
        "term_months": columns["term_months"],
        "territory": columns["territory"],
        "field_of_use": columns["field_of_use"],
        "open_license": _open_license(columns.get("open_license")),
    }


def _open_license(value: Any) -> Any:
    """An open licence declaration's typed terms (a JSONB column: a dict from the ORM, JSON
    text from the driver); null for every other offer, as the contract's model writes it."""
    return json.loads(value) if isinstance(value, str) else value


def terms_columns(terms: TransactionTerms) -> dict[str, Any]:
    """A listing's columns from transaction terms (the inverse of terms_json)."""
    return {
        "transaction_type": terms.type,
        "price_mode": terms.price.mode,
        "amount": terms.price.amount,
        "currency": terms.price.currency,
        "royalty_rate": terms.royalty_rate,
        "term_months": terms.term_months,
        "territory": terms.territory,
        "field_of_use": terms.field_of_use,
    }


@dataclass(frozen=True)
class OfferState:
    """What a document needs of a listing (a row, or values about to be inserted)."""

    id: UUID
    exchange: str
    external_id: str
    status: str
    version: int
    updated_at: datetime
    published_at: datetime | None
    terms: dict[str, Any]
    seller_name: str
    source_url: str | None = None
    source_updated_at: datetime | None = None
    source_version: int | None = None

    @classmethod
    def of(cls, listing: Listing | Mapping[str, Any], seller_name: str) -> OfferState:
        """From a stored listing, or a listing's column values."""
        v = listing if isinstance(listing, Mapping) else listing.model_dump()
        return cls(
            id=v["id"],
            exchange=v["exchange"],
            external_id=v["external_id"],
            status=v["status"],
            version=v["version"],
            updated_at=v["updated_at"],
            published_at=v["published_at"],
            terms=terms_json(v),
            seller_name=v.get("seller_name") or seller_name,
            source_url=v.get("source_url"),
            source_updated_at=v.get("source_updated_at"),
            source_version=v.get("source_version"),
        )


def document_data(offer: OfferState, asset: dict[str, Any], catalogue_url: str) -> dict[str, Any]:
    ours = offer.exchange == OUR_EXCHANGE
    return {
        "schema": SCHEMA_V1,
        "offer_id": offer_id(offer.exchange, offer.external_id),
        "source": {
            "exchange": offer.exchange,
            "listing_id": offer.external_id,
            "url": f"{catalogue_url}/v1/catalogue/listings/{offer.id}"
            if ours
            else offer.source_url,
            "updated_at": _iso(offer.updated_at if ours else offer.source_updated_at),
            "version": offer.version if ours else offer.source_version,
        },
        "asset": asset,
        "transaction": offer.terms,
        "status": offer.status,
        "published_at": _iso(offer.published_at),
        "seller": offer.seller_name,
    }
