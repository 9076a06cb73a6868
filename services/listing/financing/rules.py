"""IP-backed financing rules as plain functions: what CNIPA's pledge registration (2021
measures) would refuse, checked before a request, an offer or an acceptance is stored, and the
pledge's states.

Each check answers the errors it finds (empty when none). What the request says wrong is a 422
(`check_parties`, `check_term`, `check_forfeiture`, `check_valuations`, `check_fee_stated`);
what the right does not allow now is a 409 (`check_pledgeable`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from services.listing.assets.rules import ENDED_STATUSES, PATENT_KINDS
from services.listing.open_licences.rules import add_months
from shared.errors import Conflict, FieldError
from shared.settings import Settings

__all__ = [
    "CONSENT_TYPES",
    "IN_EFFECT",
    "LIVE_PLEDGE",
    "TRANSITIONS",
    "CancellationReason",
    "FinancingPolicy",
    "PledgeAction",
    "PledgeStatus",
    "active_pledge_encumbrance",
    "check_cancellation",
    "check_fee_stated",
    "check_forfeiture",
    "check_parties",
    "check_pledgeable",
    "check_pledgee_consent",
    "check_pledgors_are_holders",
    "check_registration",
    "check_term",
    "check_valuations",
    "next_pledge_status",
    "pledge_ends_on",
]

PledgeStatus = Literal["filed", "registered", "changed", "cancelled"]
PledgeAction = Literal["register", "change", "cancel"]
CancellationReason = Literal["repaid", "enforced", "released", "void"]

# A pledge in these states holds its rights: no second pledge of them.
LIVE_PLEDGE: frozenset[str] = frozenset({"filed", "registered", "changed"})
# A pledge in these states is in effect (registered; Civil Code Art. 444): it encumbers the
# right, and an assignment or exclusive licence needs the pledgee's recorded consent.
IN_EFFECT: frozenset[str] = frozenset({"registered", "changed"})
# What the pledgee's consent is recorded for.
CONSENT_TYPES: frozenset[str] = frozenset({"assignment", "exclusive_license"})

# (action, from) -> to; a cancellation names its reason (`CANCELLABLE`).
TRANSITIONS: dict[tuple[PledgeAction, str], PledgeStatus] = {
    ("register", "filed"): "registered",
    ("change", "registered"): "changed",
    ("change", "changed"): "changed",
    ("cancel", "filed"): "cancelled",
    ("cancel", "registered"): "cancelled",
    ("cancel", "changed"): "cancelled",
}
# A pledge never registered was refused or given up (void, released); it was never in effect,
# so it was neither repaid nor enforced.
CANCELLABLE: dict[str, frozenset[str]] = {
    "filed": frozenset({"void", "released"}),
    "registered": frozenset({"repaid", "enforced", "released", "void"}),
    "changed": frozenset({"repaid", "enforced", "released", "void"}),
}


@dataclass(frozen=True)
class FinancingPolicy:
    """The settings the financing rules read (policy, not constants)."""

    max_assets: int
    valuation_max_age_days: int
    annual_fee_grace_months: int
    max_term_months: int

    @classmethod
    def of(cls, settings: Settings) -> FinancingPolicy:
        return cls(
            max_assets=settings.financing_max_assets,
            valuation_max_age_days=settings.financing_valuation_max_age_days,
            annual_fee_grace_months=settings.financing_annual_fee_grace_months,
            max_term_months=settings.financing_max_term_months,
        )


def _error(field: str, rule: str, message: str) -> FieldError:
    return FieldError(field=field, rule=rule, message=message)


def pledge_ends_on(starts_on: date, term_months: int) -> date:
    """The last day of a term of `term_months` from `starts_on`."""
    return add_months(starts_on, term_months) - timedelta(days=1)


def _same_party(holder: Mapping[str, object], name: str, uscc: str | None) -> bool:
    """By credit code when both have one, else by exact name (as `is_holder`)."""
    if uscc and holder.get("uscc"):
        return holder.get("uscc") == uscc
    return holder.get("name") == name


def _text(value: object) -> str | None:
    return str(value) if value else None


def check_parties(
    holders: Sequence[Mapping[str, object]],
    borrower_name: str,
    borrower_uscc: str | None,
    pledgors: Sequence[Mapping[str, object]],
    field: str,
) -> list[FieldError]:
    """Every co-holder of the right is a party to the pledge (CNIPA's joint filing): each
    holder other than the borrower is named among `pledgors`. `field` names the right."""
    missing = [
        str(h.get("name"))
        for h in holders
        if not _same_party(h, borrower_name, borrower_uscc)
        and not any(_same_party(h, str(p.get("name")), _text(p.get("uscc"))) for p in pledgors)
    ]
    if not missing:
        return []
    return [
        _error(
            field,
            "co_holder_not_party",
            f"every co-holder is a party to the pledge; missing: {', '.join(missing)}",
        )
    ]


def check_pledgors_are_holders(
    holders_of: Iterable[Sequence[Mapping[str, object]]],
    pledgors: Sequence[Mapping[str, object]],
    field: str = "pledgors",
) -> list[FieldError]:
    """A pledgor named besides the borrower holds at least one of the rights."""
    every = [h for holders in holders_of for h in holders]
    return [
        _error(
            f"{field}[{i}].name",
            "pledgor_not_a_holder",
            f"{p.get('name')} holds none of the rights pledged",
        )
        for i, p in enumerate(pledgors)
        if not any(_same_party(h, str(p.get("name")), _text(p.get("uscc"))) for h in every)
    ]


def check_term(
    starts_on: date,
    term_months: int,
    expires_on: date | None,
    *,
    max_term_months: int,
    field: str,
    term_field: str = "term_months",
) -> list[FieldError]:
    """The pledge's term ends on or before the right's expiry, and within the longest term."""
    errors = []
    if term_months > max_term_months:
        errors.append(
            _error(
                term_field,
                "term_too_long",
                f"a pledge loan runs at most {max_term_months} months",
            )
        )
    try:
        ends_on = pledge_ends_on(starts_on, term_months)
    except (OverflowError, ValueError):  # past year 9999
        errors.append(
            _error(term_field, "term_out_of_range", "the term ends after the calendar does")
        )
        return errors
    if expires_on is not None and ends_on > expires_on:
        errors.append(
            _error(
                field,
                "term_past_expiry",
                f"the pledge term ends on {ends_on.isoformat()}, after the right expires "
                f"({expires_on.isoformat()})",
            )
        )
    return errors


def check_forfeiture(forfeiture_clause: bool, field: str = "forfeiture_clause") -> list[FieldError]:
    """No clause that hands the right to the lender on default (流质条款, Civil Code Art. 428):
    CNIPA refuses to register a contract with one. The pledgee is paid from the sale."""
    if not forfeiture_clause:
        return []
    return [
        _error(
            field,
            "forfeiture_clause",
            "a clause that hands the right to the lender on default is void and refused "
            "for registration: on default the right is sold (auction, agreed price)",
        )
    ]


def check_fee_stated(kind: str, annual_fee_due_on: date | None, field: str) -> list[FieldError]:
    """A patent's annual fee's next due day is stated (the registry checks the fees)."""
    if kind not in PATENT_KINDS or annual_fee_due_on is not None:
        return []
    return [
        _error(
            field,
            "annual_fee_due_on_required",
            "a patent's pledge states the day its next annual fee falls due",
        )
    ]


def check_valuations(
    valuations: Sequence[Mapping[str, object]],
    asset_ids: Sequence[object],
    *,
    today: date,
    max_age_days: int,
    field: str = "valuations",
) -> list[FieldError]:
    """Each right pledged has a valuation report, dated not in the future and not older than
    `max_age_days`; a report values one of the rights pledged."""
    errors = []
    valued = {str(v.get("asset_id")) for v in valuations}
    for i, asset_id in enumerate(asset_ids):
        if str(asset_id) not in valued:
            errors.append(
                _error(
                    f"assets[{i}].asset_id",
                    "valuation_required",
                    "each right pledged has a valuation report",
                )
            )
    wanted = {str(a) for a in asset_ids}
    for i, report in enumerate(valuations):
        if str(report.get("asset_id")) not in wanted:
            errors.append(
                _error(
                    f"{field}[{i}].asset_id",
                    "valuation_not_pledged",
                    "the report values a right this request does not pledge",
                )
            )
        valued_on = report.get("valued_on")
        assert isinstance(valued_on, date)
        if valued_on > today:
            errors.append(
                _error(
                    f"{field}[{i}].valued_on",
                    "valued_in_future",
                    "a valuation report is dated today or earlier",
                )
            )
        elif (today - valued_on).days > max_age_days:
            errors.append(
                _error(
                    f"{field}[{i}].valued_on",
                    "valuation_stale",
                    f"a valuation report is at most {max_age_days} days old",
                )
            )
    return errors


def active_pledge_encumbrance(encumbrances: Iterable[Mapping[str, object]], today: date) -> bool:
    """Whether the right's record carries a pledge that runs (a partner's or an import's
    record of a pledge not made here)."""
    return any(
        e.get("type") == "pledge"
        and (e.get("until") is None or str(e["until"]) >= today.isoformat())
        for e in encumbrances
    )


def check_pledgeable(
    *,
    kind: str,
    legal_status: str,
    expires_on: date | None,
    annual_fee_due_on: date | None,
    encumbrances: Iterable[Mapping[str, object]],
    pledged: bool,
    requested: bool,
    holds: Collection[str],
    today: date,
    grace_months: int,
    field: str,
) -> list[FieldError]:
    """Why the registry would refuse to register a pledge of this right now (409s): not
    granted, not in force, its annual fee in the grace period, pledged already (here or in its
    record), asked for in another open request, under preservation or suspension."""
    errors = []
    if legal_status in ENDED_STATUSES or (expires_on is not None and expires_on < today):
        why = legal_status if legal_status in ENDED_STATUSES else "expired"
        errors.append(_error(f"{field}.legal_status", "right_not_in_force", f"the right is {why}"))
    elif legal_status != "granted":
        errors.append(
            _error(
                f"{field}.legal_status",
                "right_not_granted",
                f"only a granted right is pledged; this one is {legal_status}",
            )
        )
    elif kind in PATENT_KINDS and annual_fee_due_on is not None and annual_fee_due_on < today:
        lapses_on = add_months(annual_fee_due_on, grace_months)
        if lapses_on < today:
            errors.append(
                _error(
                    f"{field}.annual_fee_due_on",
                    "right_not_in_force",
                    f"the annual fee due on {annual_fee_due_on.isoformat()} was not paid "
                    f"within its grace period: the right has lapsed",
                )
            )
        else:
            errors.append(
                _error(
                    f"{field}.annual_fee_due_on",
                    "annual_fee_in_grace",
                    f"the annual fee due on {annual_fee_due_on.isoformat()} is unpaid (grace "
                    f"period until {lapses_on.isoformat()}): pay it before pledging",
                )
            )
    if pledged or active_pledge_encumbrance(encumbrances, today):
        errors.append(_error(field, "already_pledged", "the right is pledged already"))
    elif requested:
        errors.append(
            _error(
                field,
                "financing_requested",
                "another open financing request pledges this right: withdraw it first",
            )
        )
    if "preservation" in holds:
        errors.append(
            _error(field, "under_preservation", "the right is under a court's preservation")
        )
    if "suspension" in holds:
        errors.append(
            _error(
                field,
                "under_suspension",
                "the right's procedures are suspended (an ownership dispute)",
            )
        )
    return errors


def next_pledge_status(action: PledgeAction, current: str) -> PledgeStatus:
    target = TRANSITIONS.get((action, current))
    if target is None:
        allowed = sorted({a for (a, s) in TRANSITIONS if s == current})
        raise Conflict(
            f"cannot {action} a pledge that is {current}"
            + (f"; from {current} it can: {', '.join(allowed)}" if allowed else ""),
            slug="invalid-transition",
            title="This transition is not allowed from the current state",
            extra={"current_status": current},
        )
    return target


def check_registration(registered_on: date, filed_on: date, today: date) -> list[FieldError]:
    """The registry's registration day: not before the filing, not in the future."""
    if registered_on > today:
        return [
            _error("registered_on", "registered_in_future", "the registration day is not ahead")
        ]
    if registered_on < filed_on:
        return [
            _error(
                "registered_on",
                "registered_before_filing",
                f"the pledge was filed on {filed_on.isoformat()}",
            )
        ]
    return []


def check_cancellation(
    status: str, reason: str, cancelled_on: date, since: date, today: date
) -> list[FieldError]:
    """A reason the pledge's state allows (a pledge never registered is only void or
    released), on a day between its filing (or registration) and today."""
    errors = []
    allowed = CANCELLABLE.get(status, frozenset())
    if status in CANCELLABLE and reason not in allowed:
        errors.append(
            _error(
                "reason",
                "reason_not_allowed",
                f"a {status} pledge is cancelled as {' or '.join(sorted(allowed))}",
            )
        )
    if cancelled_on > today:
        errors.append(
            _error("cancelled_on", "cancelled_in_future", "the cancellation day is not ahead")
        )
    elif cancelled_on < since:
        errors.append(
            _error(
                "cancelled_on",
                "cancelled_before_start",
                f"the pledge stands since {since.isoformat()}",
            )
        )
    return errors


def check_pledgee_consent(transaction_type: str, unconsenting: Sequence[str]) -> list[FieldError]:
    """An assignment or an exclusive licence of a right under a pledge in effect needs the
    consent of its pledgees (`unconsenting`: those who have not recorded it; Civil Code Art.
    444): 409 `pledgee_consent_required`."""
    if transaction_type not in CONSENT_TYPES or not unconsenting:
        return []
    return [
        _error(
            "transaction.type",
            "pledgee_consent_required",
            f"the right is pledged to {', '.join(unconsenting)}: a {transaction_type} needs "
            "the pledgee's consent, recorded at POST /v1/pledges/{id}/consents",
        )
    ]
