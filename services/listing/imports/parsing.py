"""From an uploaded file to validated rows, one at a time (the file is never held in memory).

The file is UTF-8 (a BOM is fine) or GB18030/GBK, what Chinese Excel saves (see encoding.py).
Text holding U+FFFD, the mark of bytes once decoded in the wrong encoding, is refused.

CSV columns (lists separated by `;`):

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
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import lru_cache
from typing import IO, Any, Literal, cast, get_args

from pydantic import ValidationError

from services.listing.assets.rules import (
    REPLACEMENT_CHARACTER,
    normalize_asset,
    normalize_asset_values,
    replacement_character_errors,
)
from services.listing.assets.service import row_values
from services.listing.imports.schemas import ImportRow
from services.listing.listings.documents import terms_columns
from services.listing.listings.rules import check_terms
from shared.contracts.catalogue import (
    CENT,
    RATE_STEP,
    LegalStatus,
    Price,
    PriceMode,
    TransactionTerms,
    TransactionType,
)
from shared.errors import FieldError, UnprocessableEntity, field_errors_from_validation
from shared.identifiers import ASSET_KINDS

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


@dataclass(slots=True)  # not frozen: a frozen __init__ costs a setattr call per field
class ValidRow:
    line: int
    key: tuple[str, str]  # (kind, identifier), normalised
    asset: dict[str, Any]  # the asset's column values (assets.service.row_values)
    terms: TransactionTerms
    pledge_disclosed: bool
    listing: dict[str, Any]  # the listing's terms columns, pledge_disclosed included
    # The row gives a legal status (its default, `pending`, is no statement: a re-import does
    # not set a stored right back to pending).
    legal_status_stated: bool = True


@dataclass(frozen=True)
class RejectedRow:
    line: int
    errors: list[FieldError]


def _split(value: str | None) -> list[str]:
    if not value:
        return []
    parts = [part.strip() for part in value.split(";")]
    return [part for part in parts if part]


def _blank_to_none(value: str | None) -> str | None:
    return (value.strip() or None) if value else None


def _csv_holders(get: Callable[[str], str | None]) -> list[tuple[str, str | None, str | None]]:
    """(name, uscc, region) of each holder; a single region applies to every holder."""
    names = _split(get("holders"))
    usccs = _split(get("holder_uscc"))
    regions = _split(get("holder_region"))
    return [
        (
            name,
            usccs[i] if i < len(usccs) else None,
            regions[i] if i < len(regions) else (regions[0] if regions else None),
        )
        for i, name in enumerate(names)
    ]


def _csv_flag(value: str | None) -> bool:
    return (_blank_to_none(value) or "false").lower() in ("true", "1", "yes", "y", "是")


def csv_record_to_row(record: dict[str, str | None]) -> dict[str, Any]:
    """A CSV record in the JSONL shape, for validate_row (fast_csv_row reads the record itself)."""
    get = record.get
    holders = [
        {"name": name, "uscc": uscc, "region": region} for name, uscc, region in _csv_holders(get)
    ]
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
    if legal_status := _blank_to_none(get("legal_status")):
        asset["legal_status"] = legal_status
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
    return {
        "asset": asset,
        "transaction": transaction,
        "pledge_disclosed": _csv_flag(get("pledge_disclosed")),
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
    return ValidRow(
        line,
        (asset.kind, asset.identifier),
        row_values(asset),
        row.transaction,
        row.pledge_disclosed,
        {**terms_columns(row.transaction), "pledge_disclosed": row.pledge_disclosed},
        "legal_status" in row.asset.model_fields_set,
    )


# The fast path of a CSV row: the same checks as the models above and normalize_asset, on plain
# values. It only takes rows it is sure the models accept with the same values — strings already
# stripped, no NUL, ISO dates, plain decimals, no Nice classes — and any other row, or any broken
# rule, goes to validate_row, which reports the errors exactly as before. It stays: a row costs
# twice the CPU through the models (docs/DECISIONS.md, Listing, "Bulk import").
_KINDS = frozenset(ASSET_KINDS)
_LEGAL_STATUSES = frozenset(get_args(LegalStatus))
_TRANSACTION_TYPES = frozenset(get_args(TransactionType))
_PRICE_MODES = frozenset(get_args(PriceMode))
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_AMOUNT = re.compile(r"(?:0|[1-9][0-9]{0,13})(?:\.[0-9]{1,2})?")  # ge=0, 16 digits, 2 places
_RATE = re.compile(r"0(?:\.[0-9]{1,6})?|1(?:\.0{1,6})?")  # 0..1, 7 digits, 6 places
_MONTHS = re.compile(r"[1-9][0-9]{0,3}")


class _NotFast(Exception):
    """The row leaves the fast path for validate_row."""


def _fits(value: str | None, max_length: int) -> str | None:
    if value is not None and len(value) > max_length:
        raise _NotFast
    return value


def _iso_date(value: str | None) -> date | None:
    return None if value is None else _parse_iso_date(value)


@lru_cache(maxsize=4096)  # dates repeat across rows; a _NotFast is not cached
def _parse_iso_date(value: str) -> date:
    if not _ISO_DATE.fullmatch(value):
        raise _NotFast
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _NotFast from None


def _number(value: str | None, pattern: re.Pattern[str]) -> str | None:
    if value is not None and not pattern.fullmatch(value):
        raise _NotFast
    return value


@lru_cache(maxsize=4096)  # a seller's rows often share their terms; a _NotFast is not cached
def _fast_terms(
    type_: str | None,
    mode: str | None,
    amount: str | None,
    rate: str | None,
    months: str | None,
    territory: str | None,
    field_of_use: str | None,
) -> TransactionTerms | None:
    """The terms, when the models take them as they are and check_terms finds nothing wrong.
    (Shared between rows: nothing changes a row's terms once validated.)"""
    if type_ not in _TRANSACTION_TYPES or mode not in _PRICE_MODES:
        return None
    amount = _number(amount, _AMOUNT)
    rate = _number(rate, _RATE)
    months = _number(months, _MONTHS)
    if months is not None and int(months) > 1200:
        return None
    terms = TransactionTerms.model_construct(
        type=cast(TransactionType, type_),
        price=Price.model_construct(
            mode=cast(PriceMode, mode),
            amount=None if amount is None else Decimal(amount).quantize(CENT),
            currency="CNY",
        ),
        royalty_rate=None if rate is None else Decimal(rate).quantize(RATE_STEP),
        term_months=None if months is None else int(months),
        territory=_fits(territory, 100),
        field_of_use=_fits(field_of_use, 500),
    )
    return None if check_terms(terms) else terms


def fast_csv_row(line: int, record: dict[str, str | None], today: date) -> ValidRow | None:
    """The ValidRow that validate_row would return for this CSV record (a csv.DictReader row),
    or None: then call validate_row on csv_record_to_row(record). Reads the record's cells
    directly, without building the JSONL shape first."""
    try:
        return _fast_csv_row(line, record, today)
    except (_NotFast, UnprocessableEntity):
        return None


def _fast_csv_row(line: int, record: dict[str, str | None], today: date) -> ValidRow | None:
    get = record.get
    kind, identifier = _blank_to_none(get("kind")), _blank_to_none(get("identifier"))
    ipc, locarno = _split(get("ipc")), _split(get("locarno"))
    csv_holders = _csv_holders(get)
    if (
        kind not in _KINDS
        or not identifier
        or _split(get("nice"))
        or len(ipc) > 100
        or len(locarno) > 20
        or not 1 <= len(csv_holders) <= 50
    ):
        return None
    _fits(identifier, 200)
    title_zh = _fits(_blank_to_none(get("title_zh")), 20_000)
    title_en = _fits(_blank_to_none(get("title_en")), 20_000)
    abstract_zh = _fits(_blank_to_none(get("abstract_zh")), 20_000)
    abstract_en = _fits(_blank_to_none(get("abstract_en")), 20_000)
    stated_status = _blank_to_none(get("legal_status"))
    legal_status = stated_status or "pending"
    if legal_status not in _LEGAL_STATUSES:
        return None
    holders = [
        (_fits(name, 500) or "", _fits(uscc, 24), _fits(region, 6))
        for name, uscc, region in csv_holders
    ]
    filed_on = _iso_date(_blank_to_none(get("filed_on")))
    granted_on = _iso_date(_blank_to_none(get("granted_on")))
    n = normalize_asset_values(
        kind=kind,
        identifier=identifier,
        publication_number=_fits(_blank_to_none(get("publication_number")), 40),
        has_title=bool(title_zh or title_en),
        ipc=ipc,
        nice=(),
        locarno=locarno,
        has_plant=False,
        woody=False,
        holders=holders,
        filed_on=filed_on,
        granted_on=granted_on,
        expires_on=None,
        legal_status=legal_status,
        today=today,
    )

    terms = _fast_terms(
        _blank_to_none(get("transaction_type")),
        _blank_to_none(get("price_mode")),
        _blank_to_none(get("amount")),
        _blank_to_none(get("royalty_rate")),
        _blank_to_none(get("term_months")),
        _blank_to_none(get("territory")),
        _blank_to_none(get("field_of_use")),
    )
    if terms is None:
        return None
    pledge_disclosed = _csv_flag(get("pledge_disclosed"))
    holder_rows = [
        {"name": name, "uscc": uscc, "region": region} for name, uscc, region in n.holders
    ]
    asset = {  # as assets.service.row_values of the normalised document
        "kind": kind,
        "identifier": n.identifier,
        "publication_number": n.publication_number,
        "title_zh": title_zh,
        "title_en": title_en,
        "abstract_zh": abstract_zh,
        "abstract_en": abstract_en,
        "classifications": {"ipc": n.ipc, "nice": n.nice, "locarno": n.locarno, "plant": None},
        "holders": holder_rows,
        "region": next((h["region"] for h in holder_rows if h["region"]), None),
        "filed_on": filed_on,
        "granted_on": granted_on,
        "expires_on": n.expires_on,
        "legal_status": n.legal_status,
        "encumbrances": [],
    }
    listing = {  # as listings.documents.terms_columns
        "transaction_type": terms.type,
        "price_mode": terms.price.mode,
        "amount": terms.price.amount,
        "currency": "CNY",
        "royalty_rate": terms.royalty_rate,
        "term_months": terms.term_months,
        "territory": terms.territory,
        "field_of_use": terms.field_of_use,
        "pledge_disclosed": pledge_disclosed,
    }
    return ValidRow(
        line,
        (kind, n.identifier),
        asset,
        terms,
        pledge_disclosed,
        listing,
        stated_status is not None,
    )


def iter_csv(handle: IO[str], today: date) -> Iterator[ValidRow | RejectedRow]:
    reader = csv.DictReader(handle)
    # A byte order mark the decoder kept (GB18030 has one too) is no part of the first name.
    header = [name.strip().lstrip("\ufeff").strip() for name in reader.fieldnames or []]
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
        if any(REPLACEMENT_CHARACTER in value for value in record.values() if value):
            yield RejectedRow(start, replacement_character_errors(csv_record_to_row(record)))
            continue
        # A NUL goes to the models, which name its field.
        nul = any("\x00" in value for value in record.values() if value)
        fast = None if nul else fast_csv_row(start, record, today)
        yield fast or validate_row(start, csv_record_to_row(record), today)


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
        escaped = "\\ufffd" in text or "\\uFFFD" in text
        garbled = (
            replacement_character_errors(raw) if escaped or REPLACEMENT_CHARACTER in text else []
        )
        if garbled:
            yield RejectedRow(line, garbled)
            continue
        yield validate_row(line, raw, today)


def iter_rows(handle: IO[str], fmt: Format, today: date) -> Iterator[ValidRow | RejectedRow]:
    return iter_csv(handle, today) if fmt == "csv" else iter_jsonl(handle, today)
