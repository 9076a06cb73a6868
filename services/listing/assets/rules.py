"""Validation and normalisation of an asset as people submit it: plain functions, no I/O.

Every problem is collected (not only the first), each naming its field and rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

from shared.contracts.catalogue import AssetDocument, Holder
from shared.errors import FieldError, UnprocessableEntity
from shared.identifiers import (
    IdentifierError,
    expiry_date,
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


def normalize_asset(
    doc: AssetDocument, *, today: date, allow_bad_uscc_check: bool = False
) -> AssetDocument:
    """The asset with identifiers and codes normalised and expiry computed; 422 listing every
    broken rule otherwise."""
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
