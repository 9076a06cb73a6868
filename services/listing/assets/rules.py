"""Validation and normalisation of an asset as people submit it: plain functions, no I/O.

Every problem is collected (not only the first), each naming its field and rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

from shared.contracts.catalogue import AssetDocument, Holder
from shared.errors import FieldError, UnprocessableEntity
from shared.identifiers import (
    IdentifierError,
    expiry_date,
    normalize_cn_application_number,
    normalize_cn_publication_number,
    normalize_identifier,
    normalize_ipc,
    normalize_locarno,
    validate_nice_class,
    validate_region_code,
    validate_uscc,
)

T = TypeVar("T")
PATENT_KINDS = frozenset({"invention_patent", "utility_model", "design_patent"})
ENDED_STATUSES = frozenset({"lapsed", "expired", "invalidated", "rejected", "withdrawn"})
# The longest term of each patent kind (design: 15 years since 2021-06-01), in years.
TERM_YEARS = {"invention_patent": 20, "utility_model": 10, "design_patent": 15}
REPLACEMENT_CHARACTER = "\ufffd"
_NORMALIZED_APPLICATION = re.compile(r"(?:[0-9]{12}|[0-9]{8})\.[0-9X]")


class _Collector:
    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def check(self, field: str, rule: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        try:
            return rule(*args, **kwargs)
        except IdentifierError as exc:
            self.errors.append(FieldError(field=field, rule=exc.rule, message=exc.message))
            return None

    def fail(self, field: str, rule: str, message: str) -> None:
        self.errors.append(FieldError(field=field, rule=rule, message=message))


@dataclass(slots=True)  # not frozen: a frozen __init__ costs a setattr call per field
class NormalizedAsset:
    """What normalisation changes in an asset (the rest of the document stays as it is)."""

    identifier: str
    publication_number: str | None
    ipc: list[str]
    nice: list[int]
    locarno: list[str]
    holders: list[tuple[str, str | None, str | None]]  # (name, uscc, region)
    expires_on: date | None
    legal_status: str


def normalize_asset_values(
    *,
    kind: str,
    identifier: str,
    publication_number: str | None,
    has_title: bool,
    ipc: Sequence[str],
    nice: Sequence[int | str],
    locarno: Sequence[str],
    has_plant: bool,
    woody: bool,
    holders: Sequence[tuple[str, str | None, str | None]],
    filed_on: date | None,
    granted_on: date | None,
    expires_on: date | None,
    legal_status: str,
    today: date,
    allow_bad_uscc_check: bool = False,
) -> NormalizedAsset:
    """normalize_asset on plain values (the bulk import calls it without building models); 422
    listing every broken rule."""
    c = _Collector()
    normalized = c.check("asset.identifier", normalize_identifier, kind, identifier)
    publication = None
    if publication_number:
        if kind in PATENT_KINDS:
            raw = publication_number
            publication = c.check("asset.publication_number", normalize_cn_publication_number, raw)
        else:
            publication = publication_number.strip()
    if not has_title:
        c.fail("asset.title", "title_required", "a title in Chinese or English is required")

    ipc_codes: list[str] = []
    for i, code in enumerate(ipc):
        value = c.check(f"asset.classifications.ipc[{i}]", normalize_ipc, code)
        if value and value not in ipc_codes:
            ipc_codes.append(value)
    nice_classes: list[int] = []
    for i, cls in enumerate(nice):
        number = c.check(f"asset.classifications.nice[{i}]", validate_nice_class, cls)
        if number is not None and number not in nice_classes:
            nice_classes.append(number)
    locarno_codes: list[str] = []
    for i, code in enumerate(locarno):
        value = c.check(f"asset.classifications.locarno[{i}]", normalize_locarno, code)
        if value and value not in locarno_codes:
            locarno_codes.append(value)
    if kind == "trademark" and not nice_classes:
        c.fail("asset.classifications.nice", "nice_required", "a trademark needs its Nice classes")
    if kind == "plant_variety" and not has_plant:
        c.fail(
            "asset.classifications.plant",
            "plant_taxon_required",
            "a plant variety needs its genus (and species)",
        )

    normalized_holders: list[tuple[str, str | None, str | None]] = []
    for i, (name, uscc, region) in enumerate(holders):
        if uscc:
            uscc = c.check(
                f"asset.holders[{i}].uscc",
                validate_uscc,
                uscc,
                allow_bad_check=allow_bad_uscc_check,
            )
        if region:
            region = c.check(f"asset.holders[{i}].region", validate_region_code, region)
        normalized_holders.append((name, uscc, region))

    if filed_on and filed_on > today:
        c.fail("asset.filed_on", "not_in_future", "the filing date cannot be in the future")
    if granted_on:
        if granted_on > today:
            c.fail("asset.granted_on", "not_in_future", "the grant date cannot be in the future")
        if filed_on and granted_on < filed_on:
            c.fail("asset.granted_on", "after_filing", "the grant date precedes the filing date")
    if kind in PATENT_KINDS and filed_on is None:
        c.fail("asset.filed_on", "filing_date_required", "a patent needs its filing date")
    if normalized is not None and filed_on is not None and filed_on <= today:
        mismatch = check_filing_year(kind, normalized, filed_on)
        if mismatch is not None:
            c.errors.append(mismatch)

    if c.errors:
        count = len(c.errors)
        raise UnprocessableEntity(
            f"{count} asset field{'s are' if count > 1 else ' is'} invalid: "
            + ", ".join(f"{e.field} ({e.rule})" for e in c.errors[:5]),
            errors=c.errors,
        )
    assert normalized is not None
    computed = expiry_date(kind, filed_on, granted_on, woody=woody)
    expires = computed or expires_on
    if expires and expires < today and legal_status in ("pending", "granted"):
        legal_status = "expired"
    return NormalizedAsset(
        identifier=normalized,
        publication_number=publication,
        ipc=ipc_codes,
        nice=nice_classes,
        locarno=locarno_codes,
        holders=normalized_holders,
        expires_on=expires,
        legal_status=legal_status,
    )


def application_year(normalized: str) -> int:
    """The year a Chinese patent application number was given: its first four digits
    (``2021…``), or its first two before 2003-10 (``97…`` is 1997, ``03…`` 2003)."""
    body = normalized.split(".", 1)[0]
    if len(body) == 12:
        return int(body[:4])
    two = int(body[:2])
    return 1900 + two if two >= 85 else 2000 + two


def check_filing_year(kind: str, identifier: str, filed_on: date) -> FieldError | None:
    """The filing date against the year in the application number (patents only; None when
    they agree or the kind has no such number).

    The number is given when CNIPA receives the application, and the filing date is that day
    or, for a posted application, its postmark: never a later year. An earlier year is lawful
    for a divisional application (it keeps its parent's filing date) and for a PCT application
    entering the national phase (kind digit 8 or 9: its international filing date), within the
    right's term: no number is given for a right whose term has run out (the seed records hold
    divisionals 1 to 6 years older than their number). So `2021…` takes 2021, or 2001 to 2020
    for such an application, and never 0001 or 2022.
    """
    if kind not in TERM_YEARS:
        return None
    if not _NORMALIZED_APPLICATION.fullmatch(identifier):  # normalised already, usually
        try:
            identifier = normalize_cn_application_number(identifier)
        except IdentifierError:
            return None  # the identifier's own rule reports it
    year = application_year(identifier)
    if filed_on.year > year:
        return FieldError(
            field="asset.filed_on",
            rule="filing_year_mismatch",
            message=f"filed on {filed_on.isoformat()}, after the application number's year "
            f"{year}: the number is given when the application is received",
        )
    term = TERM_YEARS[kind]
    if filed_on.year < year - term:
        return FieldError(
            field="asset.filed_on",
            rule="filing_year_mismatch",
            message=f"filed on {filed_on.isoformat()}, but application number {identifier} was "
            f"given in {year}: the filing year is {year}, or for a divisional or PCT national-"
            f"phase application at most {term} years earlier (the right's term)",
        )
    return None


def _texts(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(path, text) of every string in a JSON-like value, paths as in FieldError.field."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _texts(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _texts(item, f"{path}[{i}]")


def replacement_character_errors(value: Any, path: str = "") -> list[FieldError]:
    """A FieldError for every text in `value` that holds U+FFFD, the replacement character a
    decoder writes for bytes it could not read: such text was garbled on its way here (a file
    read in the wrong encoding) and is refused rather than stored."""
    return [
        FieldError(
            field=where or "row",
            rule="replacement_character",
            message="the text holds U+FFFD (\ufffd), the mark of bytes decoded in the wrong "
            "encoding: send the original text",
        )
        for where, text in _texts(value, path)
        if REPLACEMENT_CHARACTER in text
    ]


def _may_be_garbled(doc: AssetDocument) -> bool:
    """Whether any text of the document holds U+FFFD: a scan of its text fields, cheaper than
    serialising the document (docs/DECISIONS.md, API contract, "Import encodings")."""
    c = doc.classifications
    texts = [
        doc.identifier,
        doc.publication_number,
        doc.title.zh,
        doc.title.en,
        doc.abstract.zh,
        doc.abstract.en,
        *c.ipc,
        *c.locarno,
        *(h.name for h in doc.holders),
        *(h.uscc for h in doc.holders),
        *(e.holder for e in doc.encumbrances),
    ]
    if c.plant is not None:
        texts += [c.plant.genus, c.plant.species, c.plant.crop_zh]
    return any(REPLACEMENT_CHARACTER in text for text in texts if text)


def _invalid(errors: list[FieldError]) -> UnprocessableEntity:
    count = len(errors)
    return UnprocessableEntity(
        f"{count} asset field{'s are' if count > 1 else ' is'} invalid: "
        + ", ".join(f"{e.field} ({e.rule})" for e in errors[:5]),
        errors=errors,
    )


def normalize_asset(
    doc: AssetDocument, *, today: date, allow_bad_uscc_check: bool = False
) -> AssetDocument:
    """The asset with identifiers and codes normalised and expiry computed; 422 listing every
    broken rule otherwise (garbled text included, see replacement_character_errors)."""
    garbled: list[FieldError] = []
    if _may_be_garbled(doc):  # the walk only when there is one
        garbled = replacement_character_errors(doc.model_dump(mode="json"), "asset")
    try:
        n = _normalize_document(doc, today, allow_bad_uscc_check)
    except UnprocessableEntity as exc:
        raise _invalid(garbled + list(exc.errors or [])) from None
    if garbled:
        raise _invalid(garbled)
    return n


def _normalize_document(
    doc: AssetDocument, today: date, allow_bad_uscc_check: bool
) -> AssetDocument:
    plant = doc.classifications.plant
    n = normalize_asset_values(
        kind=doc.kind,
        identifier=doc.identifier,
        publication_number=doc.publication_number,
        has_title=bool(doc.title.zh or doc.title.en),
        ipc=doc.classifications.ipc,
        nice=doc.classifications.nice,
        locarno=doc.classifications.locarno,
        has_plant=plant is not None,
        woody=bool(plant and plant.woody),
        holders=[(h.name, h.uscc, h.region) for h in doc.holders],
        filed_on=doc.filed_on,
        granted_on=doc.granted_on,
        expires_on=doc.expires_on,
        legal_status=doc.legal_status,
        today=today,
        allow_bad_uscc_check=allow_bad_uscc_check,
    )
    return doc.model_copy(
        update={
            "identifier": n.identifier,
            "publication_number": n.publication_number,
            "classifications": doc.classifications.model_copy(
                update={"ipc": n.ipc, "nice": n.nice, "locarno": n.locarno}
            ),
            "holders": [
                Holder(name=name, uscc=uscc, region=region) for name, uscc, region in n.holders
            ],
            "expires_on": n.expires_on,
            "legal_status": n.legal_status,
        }
    )


def is_holder(holders: list[dict[str, object]] | list[Holder], name: str, uscc: str | None) -> bool:
    """An organisation holds a right when a holder carries its credit code, else its exact name."""
    for holder in holders:
        h = holder if isinstance(holder, dict) else holder.model_dump()
        if uscc and h.get("uscc"):
            if h.get("uscc") == uscc:
                return True
        elif h.get("name") == name:
            return True
    return False


def can_be_offered(legal_status: str, expires_on: date | None, today: date) -> str | None:
    """Why a right cannot lawfully be offered, or None when it can."""
    if legal_status in ENDED_STATUSES:
        return f"the right is {legal_status}"
    if expires_on and expires_on < today:
        return f"the right expired on {expires_on.isoformat()}"
    return None


# --------------------------------------------------------------------------------------------
# Corrections: what a holder may change in a registered right, and what changed
# --------------------------------------------------------------------------------------------

# The fields of an asset a correction may change, as document paths. The identifier and the
# kind are the right itself (a different one is another right: register it); `expires_on`
# follows from the kind and the dates.
CORRECTABLE: tuple[str, ...] = (
    "publication_number",
    "title.zh",
    "title.en",
    "abstract.zh",
    "abstract.en",
    "classifications.ipc",
    "classifications.nice",
    "classifications.locarno",
    "classifications.plant",
    "holders",
    "filed_on",
    "granted_on",
    "legal_status",
    "encumbrances",
)
NOT_EDITABLE: dict[str, str] = {
    "kind": "the kind of a right is not editable: a right of another kind is another right; "
    "register it",
    "identifier": "the identifier of a right is not editable: a right with another number is "
    "another right; register it",
    "expires_on": "expires_on is computed from the kind and the dates: correct filed_on or "
    "granted_on instead",
}
_TRACKED: tuple[str, ...] = (*CORRECTABLE, "expires_on")
_TEXT_COLUMNS = ("publication_number", "title_zh", "title_en", "abstract_zh", "abstract_en")
_DATE_COLUMNS = ("filed_on", "granted_on")
_CLASSIFICATION_KEYS = ("ipc", "nice", "locarno", "plant")


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


def asset_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    """An asset's row values (columns, as stored or about to be) by document path, as JSON
    values: what corrections compare and what history records."""
    classifications = row["classifications"] or {}
    return {
        "publication_number": row["publication_number"],
        "title.zh": row["title_zh"],
        "title.en": row["title_en"],
        "abstract.zh": row["abstract_zh"],
        "abstract.en": row["abstract_en"],
        "classifications.ipc": list(classifications.get("ipc") or []),
        "classifications.nice": list(classifications.get("nice") or []),
        "classifications.locarno": list(classifications.get("locarno") or []),
        "classifications.plant": classifications.get("plant"),
        "holders": [
            {"name": h.get("name"), "uscc": h.get("uscc"), "region": h.get("region")}
            for h in row["holders"]
        ],
        "filed_on": _iso(row["filed_on"]),
        "granted_on": _iso(row["granted_on"]),
        "expires_on": _iso(row["expires_on"]),
        "legal_status": row["legal_status"],
        "encumbrances": [
            {"type": e.get("type"), "holder": e.get("holder"), "until": e.get("until")}
            for e in row["encumbrances"]
        ],
    }


def changed_fields(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, list[Any]]:
    """{path: [old, new]} of the fields that differ between two versions of an asset's row
    values (the correctable fields and `expires_on`), in CORRECTABLE order."""
    old, new = asset_fields(before), asset_fields(after)
    return {path: [old[path], new[path]] for path in _TRACKED if old[path] != new[path]}


_CORRECTABLE_COLUMNS = (
    *_TEXT_COLUMNS,
    *_DATE_COLUMNS,
    "classifications",
    "holders",
    "legal_status",
    "encumbrances",
)


def differs(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    """Whether two versions of an asset's row values differ in a correctable column: the cheap
    test a re-import runs on every stored right (changed_fields says what differs)."""
    return any(before[column] != after[column] for column in _CORRECTABLE_COLUMNS)


def merge_stated(
    stored: Mapping[str, Any], row: Mapping[str, Any], *, legal_status_stated: bool
) -> dict[str, Any]:
    """The stored asset's row values with what an import row states instead.

    A row states a value by giving it: a blank cell, a missing column or an empty list states
    nothing and keeps what is stored (so a file without abstracts never erases them; a value is
    erased with PATCH /v1/assets/{id}). A holder the row names keeps its stored credit code and
    region when the row gives none. The legal status is stated only when the row gives it (its
    default, `pending`, is no statement). Expiry is not merged: `correct` computes it.
    """
    merged = dict(stored)
    for column in (*_TEXT_COLUMNS, *_DATE_COLUMNS):
        if row[column] is not None:
            merged[column] = row[column]
    classifications = dict(stored["classifications"] or {})
    for key in _CLASSIFICATION_KEYS:
        if row["classifications"].get(key):
            classifications[key] = row["classifications"][key]
    merged["classifications"] = classifications
    if row["holders"]:
        known = {h.get("name"): h for h in stored["holders"]}
        merged["holders"] = [
            {
                "name": h["name"],
                "uscc": h.get("uscc") or known.get(h["name"], {}).get("uscc"),
                "region": h.get("region") or known.get(h["name"], {}).get("region"),
            }
            for h in row["holders"]
        ]
        merged["region"] = next((h["region"] for h in merged["holders"] if h["region"]), None)
    if row["encumbrances"]:
        merged["encumbrances"] = row["encumbrances"]
    if legal_status_stated:
        merged["legal_status"] = row["legal_status"]
    return merged


def status_before_expiry(
    kind: str,
    legal_status: str,
    filed_on: date | None,
    granted_on: date | None,
    *,
    dates_corrected: bool,
    woody: bool = False,
) -> str:
    """The legal status a correction is validated from when it states none. When the dates are
    corrected, an `expired` that the dates decide (kinds whose term they give) goes back to
    `granted` (with a grant date) or `pending`, and normalisation expires the right again if the
    corrected dates still say so: a wrong filing date (`0001-01-01`) no longer expires a right
    for good. Otherwise the stored status stands (it may have been stated)."""
    if (
        not dates_corrected
        or legal_status != "expired"
        or expiry_date(kind, filed_on, granted_on, woody=woody) is None
    ):
        return legal_status
    return "granted" if granted_on is not None else "pending"
