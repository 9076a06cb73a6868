"""Validation and normalisation of an asset as people submit it: plain functions, no I/O.

Every problem is collected (not only the first), each naming its field and rule.
"""

from __future__ import annotations

from collections.abc import Callable
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


def normalize_asset(
    doc: AssetDocument, *, today: date, allow_bad_uscc_check: bool = False
) -> AssetDocument:
    """The asset with identifiers and codes normalised and expiry computed; 422 listing every
    broken rule otherwise."""
    c = _Collector()
    identifier = c.check("asset.identifier", normalize_identifier, doc.kind, doc.identifier)
    publication = None
    if doc.publication_number:
        if doc.kind in PATENT_KINDS:
            raw = doc.publication_number
            publication = c.check("asset.publication_number", normalize_cn_publication_number, raw)
        else:
            publication = doc.publication_number.strip()
    if not (doc.title.zh or doc.title.en):
        c.fail("asset.title", "title_required", "a title in Chinese or English is required")

    ipc: list[str] = []
    for i, code in enumerate(doc.classifications.ipc):
        value = c.check(f"asset.classifications.ipc[{i}]", normalize_ipc, code)
        if value and value not in ipc:
            ipc.append(value)
    nice: list[int] = []
    for i, cls in enumerate(doc.classifications.nice):
        number = c.check(f"asset.classifications.nice[{i}]", validate_nice_class, cls)
        if number is not None and number not in nice:
            nice.append(number)
    locarno: list[str] = []
    for i, code in enumerate(doc.classifications.locarno):
        value = c.check(f"asset.classifications.locarno[{i}]", normalize_locarno, code)
        if value and value not in locarno:
            locarno.append(value)
    if doc.kind == "trademark" and not nice:
        c.fail("asset.classifications.nice", "nice_required", "a trademark needs its Nice classes")
    if doc.kind == "plant_variety" and doc.classifications.plant is None:
        c.fail(
            "asset.classifications.plant",
            "plant_taxon_required",
            "a plant variety needs its genus (and species)",
        )

    holders: list[Holder] = []
    for i, holder in enumerate(doc.holders):
        uscc = holder.uscc
        if uscc:
            uscc = c.check(
                f"asset.holders[{i}].uscc",
                validate_uscc,
                uscc,
                allow_bad_check=allow_bad_uscc_check,
            )
        region = holder.region
        if region:
            region = c.check(f"asset.holders[{i}].region", validate_region_code, region)
        holders.append(Holder(name=holder.name, uscc=uscc, region=region))

    if doc.filed_on and doc.filed_on > today:
        c.fail("asset.filed_on", "not_in_future", "the filing date cannot be in the future")
    if doc.granted_on:
        if doc.granted_on > today:
            c.fail("asset.granted_on", "not_in_future", "the grant date cannot be in the future")
        if doc.filed_on and doc.granted_on < doc.filed_on:
            c.fail("asset.granted_on", "after_filing", "the grant date precedes the filing date")
    if doc.kind in PATENT_KINDS and doc.filed_on is None:
        c.fail("asset.filed_on", "filing_date_required", "a patent needs its filing date")

    if c.errors:
        count = len(c.errors)
        raise UnprocessableEntity(
            f"{count} asset field{'s are' if count > 1 else ' is'} invalid: "
            + ", ".join(f"{e.field} ({e.rule})" for e in c.errors[:5]),
            errors=c.errors,
        )
    assert identifier is not None
    woody = bool(doc.classifications.plant and doc.classifications.plant.woody)
    computed = expiry_date(doc.kind, doc.filed_on, doc.granted_on, woody=woody)
    expires_on = computed or doc.expires_on
    legal_status = doc.legal_status
    if expires_on and expires_on < today and legal_status in ("pending", "granted"):
        legal_status = "expired"
    return doc.model_copy(
        update={
            "identifier": identifier,
            "publication_number": publication,
            "classifications": doc.classifications.model_copy(
                update={"ipc": ipc, "nice": nice, "locarno": locarno}
            ),
            "holders": holders,
            "expires_on": expires_on,
            "legal_status": legal_status,
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
