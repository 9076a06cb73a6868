"""From an uploaded file to validated rows, one at a time (the file is never held in memory).

CSV columns (UTF-8, a BOM is fine; lists separated by `;`):

    kind, identifier, publication_number, title_zh, title_en, abstract_zh, abstract_en,
    ipc, nice, locarno, holders, holder_uscc, holder_region, filed_on, granted_on,
    legal_status, transaction_type, price_mode, amount, royalty_rate, term_months,
    territory, field_of_use, pledge_disclosed

JSONL: one object per line in the shape of `POST /v1/listings` with the asset inline:
``{"asset": {...}, "transaction": {...}, "pledge_disclosed": false}``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import IO, Any, Literal

from pydantic import ValidationError

from services.listing.assets.rules import normalize_asset
from services.listing.imports.schemas import ImportRow
from services.listing.listings.rules import check_terms
from shared.contracts.catalogue import AssetDocument, TransactionTerms
from shared.errors import FieldError, UnprocessableEntity, field_errors_from_validation

Format = Literal["csv", "jsonl"]
CSV_COLUMNS = (
    "kind",
    "identifier",
    "publication_number",
    "title_zh",
    "title_en",
    "abstract_zh",
    "abstract_en",
    "ipc",
    "nice",
    "locarno",
    "holders",
    "holder_uscc",
    "holder_region",
    "filed_on",
    "granted_on",
    "legal_status",
    "transaction_type",
    "price_mode",
    "amount",
    "royalty_rate",
    "term_months",
    "territory",
    "field_of_use",
    "pledge_disclosed",
)
REQUIRED_CSV = ("kind", "identifier", "holders", "transaction_type", "price_mode")


@dataclass(frozen=True)
class ValidRow:
    line: int
    asset: AssetDocument
    terms: TransactionTerms
    pledge_disclosed: bool

    @property
    def key(self) -> tuple[str, str]:
        return self.asset.kind, self.asset.identifier


@dataclass(frozen=True)
class RejectedRow:
    line: int
    errors: list[FieldError]


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(";") if part.strip()]


def _blank_to_none(value: str | None) -> str | None:
    return value.strip() if value and value.strip() else None


def csv_record_to_row(record: dict[str, str | None]) -> dict[str, Any]:
    """A CSV record in the JSONL shape (validation happens after, in one place)."""
    names = _split(record.get("holders"))
    usccs = _split(record.get("holder_uscc"))
    regions = _split(record.get("holder_region"))
    holders = [
        {
            "name": name,
            "uscc": usccs[i] if i < len(usccs) else None,
            "region": regions[i] if i < len(regions) else (regions[0] if regions else None),
        }
        for i, name in enumerate(names)
    ]
    get = record.get
    asset = {
        "kind": _blank_to_none(get("kind")),
        "identifier": _blank_to_none(get("identifier")),
        "publication_number": _blank_to_none(get("publication_number")),
        "title": {"zh": _blank_to_none(get("title_zh")), "en": _blank_to_none(get("title_en"))},
        "abstract": {
            "zh": _blank_to_none(get("abstract_zh")),
            "en": _blank_to_none(get("abstract_en")),
        },
        "classifications": {
            "ipc": _split(get("ipc")),
            "nice": _split(get("nice")),
            "locarno": _split(get("locarno")),
        },
        "holders": holders,
        "filed_on": _blank_to_none(get("filed_on")),
        "granted_on": _blank_to_none(get("granted_on")),
    }
    if _blank_to_none(get("legal_status")):
        asset["legal_status"] = _blank_to_none(get("legal_status"))
    transaction = {
        "type": _blank_to_none(get("transaction_type")),
        "price": {
            "mode": _blank_to_none(get("price_mode")),
            "amount": _blank_to_none(get("amount")),
        },
        "royalty_rate": _blank_to_none(get("royalty_rate")),
        "term_months": _blank_to_none(get("term_months")),
        "territory": _blank_to_none(get("territory")),
        "field_of_use": _blank_to_none(get("field_of_use")),
    }
    disclosed = (_blank_to_none(get("pledge_disclosed")) or "false").lower()
    return {
        "asset": asset,
        "transaction": transaction,
        "pledge_disclosed": disclosed in ("true", "1", "yes", "y", "是"),
    }


def validate_row(line: int, raw: Any, today: date) -> ValidRow | RejectedRow:
    """The same rules as the API: model validation, identifiers, then terms."""
    try:
        row = ImportRow.model_validate(raw)
    except ValidationError as exc:
        return RejectedRow(line, field_errors_from_validation(exc.errors()))
    try:
        asset = normalize_asset(row.asset, today=today)
    except UnprocessableEntity as exc:
        return RejectedRow(line, list(exc.errors or []))
    problems = check_terms(row.transaction)
    if problems:
        return RejectedRow(line, problems)
    return ValidRow(line, asset, row.transaction, row.pledge_disclosed)


def iter_csv(handle: IO[str], today: date) -> Iterator[ValidRow | RejectedRow]:
    reader = csv.DictReader(handle)
    header = [name.strip() for name in reader.fieldnames or []]
    missing = [name for name in REQUIRED_CSV if name not in header]
    unknown = [name for name in header if name and name not in CSV_COLUMNS]
    if missing or unknown:
        errors = [
            FieldError(field=name, rule="missing_column", message=f"column {name} is required")
            for name in missing
        ]
        errors += [
            FieldError(
                field=name,
                rule="unknown_column",
                message=f"column {name} is not one of {', '.join(CSV_COLUMNS)}",
            )
            for name in unknown
        ]
        raise UnprocessableEntity("the CSV header is not the import format", errors=errors)
    reader.fieldnames = header
    line = reader.line_num
    for record in reader:
        start, line = line + 1, reader.line_num
        if None in record:  # more fields than columns
            yield RejectedRow(
                start,
                [
                    FieldError(
                        field="row",
                        rule="too_many_fields",
                        message="the row has more fields than the header",
                    )
                ],
            )
            continue
        yield validate_row(start, csv_record_to_row(record), today)


def iter_jsonl(handle: IO[str], today: date) -> Iterator[ValidRow | RejectedRow]:
    for line, text in enumerate(handle, start=1):
        if not text.strip():
            continue
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            yield RejectedRow(
                line, [FieldError(field="row", rule="json_invalid", message=f"not JSON: {exc.msg}")]
            )
            continue
        yield validate_row(line, raw, today)


def iter_rows(handle: IO[str], fmt: Format, today: date) -> Iterator[ValidRow | RejectedRow]:
    return iter_csv(handle, today) if fmt == "csv" else iter_jsonl(handle, today)
