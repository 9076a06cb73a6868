"""Open licence rules (Patent Law Art. 50-52, CNIPA's 2024 guidance) as plain functions.

Each check answers the errors it finds (empty when there are none): input that is wrong is a
422 (`check_terms`, `check_kind`, `check_consents`), a right or a market that does not allow the
declaration now is a 409 (`check_declarable`). Terms outside CNIPA's guidance are not refused:
`guidance_flags` names them for the reviewer.
"""

from __future__ import annotations

import calendar
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Literal

from services.listing.assets.rules import can_be_offered
from shared.contracts.catalogue import OpenLicenseTerms, Price, TransactionTerms
from shared.errors import FieldError
from shared.settings import Settings

__all__ = [
    "EXCLUSIVE_TYPES",
    "PATENT_KINDS",
    "REPORT_KINDS",
    "DeadlineState",
    "Guidance",
    "add_months",
    "check_consents",
    "check_declarable",
    "check_kind",
    "check_terms",
    "deadline_state",
    "guidance_flags",
    "recordal_due_on",
    "reminder_to_send",
    "transaction_terms",
]

PATENT_KINDS: frozenset[str] = frozenset({"invention_patent", "utility_model", "design_patent"})
# Art. 50: a utility model's or a design's declaration names its patent evaluation report.
REPORT_KINDS: frozenset[str] = frozenset({"utility_model", "design_patent"})
# Licences that exclude an open licence on the same patent, and that it excludes.
EXCLUSIVE_TYPES: frozenset[str] = frozenset({"exclusive_license", "sole_license"})
DeadlineState = Literal["awaiting_recordal", "due_soon", "overdue", "recorded"]

# Which typed fields each fee type needs and which it may not carry.
_FEE_FIELDS: dict[str, tuple[str, ...]] = {
    "lump_sum": ("lump_sum",),
    "royalty": ("royalty_rate", "royalty_basis"),
    "entry_fee_plus_royalty": ("entry_fee", "royalty_rate", "royalty_basis"),
}
_ALL_FEE_FIELDS = ("lump_sum", "entry_fee", "royalty_rate", "royalty_basis")


@dataclass(frozen=True)
class Guidance:
    """CNIPA's guidance and the minimum term, from the settings (policy, not constants)."""

    max_fixed_fee: Decimal
    max_royalty_net_sales: Decimal
    max_royalty_profit: Decimal
    min_term_months: int

    @classmethod
    def of(cls, settings: Settings) -> Guidance:
        return cls(
            max_fixed_fee=settings.open_licence_max_fixed_fee,
            max_royalty_net_sales=settings.open_licence_max_royalty_net_sales,
            max_royalty_profit=settings.open_licence_max_royalty_profit,
            min_term_months=settings.open_licence_min_term_months,
        )


def add_months(day: date, months: int) -> date:
    """The same day `months` later (the month's last day when it has no such day)."""
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _error(field: str, rule: str, message: str) -> FieldError:
    return FieldError(field=field, rule=rule, message=message)


def check_kind(kind: str, field: str = "asset.kind") -> list[FieldError]:
    if kind in PATENT_KINDS:
        return []
    return [_error(field, "not_a_patent", f"only patents are licensed openly, not a {kind}")]


def check_terms(
    terms: OpenLicenseTerms,
    *,
    kind: str,
    expires_on: date | None,
    guidance: Guidance,
    field: str = "terms",
) -> list[FieldError]:
    """Typed fees that fit their fee type, a term of at least the minimum that ends before the
    patent does, and the evaluation report of a utility model or a design."""
    errors = []
    needed = _FEE_FIELDS[terms.fee_type]
    for name in _ALL_FEE_FIELDS:
        value = getattr(terms, name)
        if name in needed and value is None:
            errors.append(
                _error(
                    f"{field}.{name}",
                    "required_for_fee_type",
                    f"a {terms.fee_type} declaration states its {name}",
                )
            )
        elif name not in needed and value is not None:
            errors.append(
                _error(
                    f"{field}.{name}",
                    "not_for_fee_type",
                    f"a {terms.fee_type} declaration has no {name}",
                )
            )
    shortest = add_months(terms.starts_on, guidance.min_term_months) - timedelta(days=1)
    if terms.ends_on < shortest:
        errors.append(
            _error(
                f"{field}.ends_on",
                "term_too_short",
                f"the licence term is at least {guidance.min_term_months} months: from "
                f"{terms.starts_on.isoformat()} it ends on {shortest.isoformat()} or later",
            )
        )
    if expires_on is not None and terms.ends_on > expires_on:
        errors.append(
            _error(
                f"{field}.ends_on",
                "term_past_expiry",
                f"the licence term ends after the patent expires ({expires_on.isoformat()})",
            )
        )
    if kind in REPORT_KINDS and not terms.evaluation_report:
        errors.append(
            _error(
                f"{field}.evaluation_report",
                "evaluation_report_required",
                f"a {kind} is declared with its patent evaluation report",
            )
        )
    return errors


def _same_party(holder: Mapping[str, object], name: str, uscc: str | None) -> bool:
    """By credit code when both have one, else by exact name (as `is_holder`)."""
    if uscc and holder.get("uscc"):
        return holder.get("uscc") == uscc
    return holder.get("name") == name


def check_consents(
    holders: Sequence[Mapping[str, object]],
    declarant_name: str,
    declarant_uscc: str | None,
    consents: Iterable[Mapping[str, object]],
    field: str = "consents",
) -> list[FieldError]:
    """Every co-holder other than the declarant consents; a consent names a holder."""
    given = list(consents)
    errors = []
    missing = [
        str(h.get("name"))
        for h in holders
        if not _same_party(h, declarant_name, declarant_uscc)
        and not any(_same_party(h, str(c.get("name")), _text(c.get("uscc"))) for c in given)
    ]
    if missing:
        errors.append(
            _error(
                field,
                "co_holder_consent",
                f"every co-holder consents to the declaration; missing: {', '.join(missing)}",
            )
        )
    for i, consent in enumerate(given):
        name, uscc = str(consent.get("name")), _text(consent.get("uscc"))
        if not any(_same_party(h, name, uscc) for h in holders):
            errors.append(
                _error(
                    f"{field}[{i}].name",
                    "consent_not_a_holder",
                    f"{name} is not a holder of this patent",
                )
            )
    return errors


def _text(value: object) -> str | None:
    return str(value) if value else None


def exclusive_encumbrances(encumbrances: Iterable[Mapping[str, object]], today: date) -> bool:
    return any(
        e.get("type") == "exclusive_license"
        and (e.get("until") is None or str(e["until"]) >= today.isoformat())
        for e in encumbrances
    )


def check_declarable(
    *,
    legal_status: str,
    expires_on: date | None,
    encumbrances: Iterable[Mapping[str, object]],
    offered_types: Collection[str],
    licences_in_force: Collection[str],
    today: date,
) -> list[FieldError]:
    """A granted patent in force, with no exclusive or sole licence in force (an encumbrance, or
    a deal on one whose term runs) and none offered on the market (it could close while the
    declaration stands). `offered_types`: the types of the asset's other live offers."""
    errors = []
    ended = can_be_offered(legal_status, expires_on, today)
    if ended:  # expired, lapsed, invalidated: it was granted once
        errors.append(_error("asset.legal_status", "right_not_in_force", ended))
    elif legal_status != "granted":
        errors.append(
            _error(
                "asset.legal_status",
                "patent_not_granted",
                f"only a granted patent is declared; this one is {legal_status}",
            )
        )
    if exclusive_encumbrances(encumbrances, today) or EXCLUSIVE_TYPES & set(licences_in_force):
        errors.append(
            _error(
                "asset.encumbrances",
                "exclusive_license_in_force",
                "an exclusive or sole licence is in force on this patent",
            )
        )
    offered = sorted(EXCLUSIVE_TYPES & set(offered_types))
    if offered:
        errors.append(
            _error(
                "asset_id",
                "exclusive_license_offered",
                f"this patent is offered under a {offered[0]}: withdraw that offer first",
            )
        )
    return errors


def check_exclusive_offer(terms_type: str, offered_types: Collection[str]) -> list[FieldError]:
    """No new exclusive or sole licence while an open licence is declared on the patent."""
    if terms_type in EXCLUSIVE_TYPES and "open_license" in offered_types:
        return [
            _error(
                "transaction.type",
                "open_license_declared",
                f"an open licence is declared on this patent: no {terms_type} while it stands",
            )
        ]
    return []


def guidance_flags(terms: OpenLicenseTerms, guidance: Guidance) -> list[FieldError]:
    """Terms outside CNIPA's guidance, for the reviewer (never a refusal)."""
    flags = []
    for name in ("lump_sum", "entry_fee"):
        amount = getattr(terms, name)
        if amount is not None and amount > guidance.max_fixed_fee:
            flags.append(
                _error(
                    f"terms.{name}",
                    "fixed_fee_above_guidance",
                    f"{name} {amount} is above the guidance's {guidance.max_fixed_fee} yuan",
                )
            )
    if terms.royalty_rate is not None and terms.royalty_basis is not None:
        limit = (
            guidance.max_royalty_net_sales
            if terms.royalty_basis == "net_sales"
            else guidance.max_royalty_profit
        )
        if terms.royalty_rate > limit:
            flags.append(
                _error(
                    "terms.royalty_rate",
                    "royalty_above_guidance",
                    f"a royalty of {terms.royalty_rate} on {terms.royalty_basis} is above the "
                    f"guidance's {limit}",
                )
            )
    return flags


def transaction_terms(
    terms: OpenLicenseTerms, *, territory: str | None, field_of_use: str | None
) -> TransactionTerms:
    """The catalogue's terms of a declaration: a lump sum is a fixed price, a royalty (with or
    without an entry fee, which is then the amount) a royalty price; the typed terms inline."""
    months = (terms.ends_on.year - terms.starts_on.year) * 12 + (
        terms.ends_on.month - terms.starts_on.month
    )
    if terms.fee_type == "lump_sum":
        price = Price(mode="fixed", amount=terms.lump_sum)
    else:
        price = Price(mode="royalty", amount=terms.entry_fee)
    return TransactionTerms(
        type="open_license",
        price=price,
        royalty_rate=terms.royalty_rate,
        term_months=min(max(months, 1), 1200),
        territory=territory,
        field_of_use=field_of_use,
        open_license=terms,
    )


def recordal_due_on(noticed_on: date, months: int) -> date:
    """Art. 52 and the recordal measures: filed within `months` of the licensee's notice."""
    return add_months(noticed_on, months)


def reminder_to_send(
    due_on: date, today: date, reminder_days: Iterable[int], sent: Collection[int]
) -> int | None:
    """The reminder to send today: the most urgent of those whose day has come and that were
    not sent (one message, not several, when a worker was down over two of them)."""
    days_left = (due_on - today).days
    due = [d for d in reminder_days if days_left <= d and d not in sent]
    return min(due) if due else None


def deadline_state(
    status: str, due_on: date, today: date, reminder_days: Iterable[int]
) -> DeadlineState:
    if status == "recorded":
        return "recorded"
    days_left = (due_on - today).days
    if days_left < 0:
        return "overdue"
    if days_left <= max(reminder_days, default=0):
        return "due_soon"
    return "awaiting_recordal"
