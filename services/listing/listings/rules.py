"""Listing rules as plain functions: the lifecycle, the terms, what may be published."""

from __future__ import annotations

from collections.abc import Collection
from datetime import date
from typing import Literal

from services.listing.assets.rules import can_be_offered
from services.listing.open_licences.rules import check_declarable, check_exclusive_offer
from shared.contracts.catalogue import ListingStatus, TransactionTerms
from shared.errors import Conflict, FieldError

Action = Literal[
    "submit", "approve", "reject", "withdraw", "negotiate", "reopen", "close", "expire"
]

# (action, from) -> to. Anything else is refused with the current state named.
TRANSITIONS: dict[tuple[Action, ListingStatus], ListingStatus] = {
    ("submit", "draft"): "pending_review",
    ("approve", "pending_review"): "published",
    ("reject", "pending_review"): "draft",
    ("negotiate", "published"): "under_negotiation",
    ("reopen", "under_negotiation"): "published",
    ("close", "published"): "closed",
    ("close", "under_negotiation"): "closed",
    **{
        ("withdraw", s): "withdrawn"
        for s in ("draft", "pending_review", "published", "under_negotiation")
    },
    **{
        ("expire", s): "expired"
        for s in ("draft", "pending_review", "published", "under_negotiation")
    },
}
EDITABLE: frozenset[ListingStatus] = frozenset({"draft", "published", "under_negotiation"})
# A listing in these states holds its asset's exclusivity.
ACTIVE: frozenset[ListingStatus] = frozenset({"pending_review", "published", "under_negotiation"})
VISIBLE: frozenset[ListingStatus] = frozenset(
    {"published", "under_negotiation", "closed", "withdrawn", "expired"}
)


def next_status(action: Action, current: ListingStatus) -> ListingStatus:
    target = TRANSITIONS.get((action, current))
    if target is None:
        allowed = sorted({a for (a, s) in TRANSITIONS if s == current})
        raise Conflict(
            f"cannot {action} a listing that is {current}"
            + (f"; from {current} it can: {', '.join(allowed)}" if allowed else ""),
            slug="invalid-transition",
            title="This transition is not allowed from the current state",
            extra={"current_status": current},
        )
    return target


def check_terms(terms: TransactionTerms, field: str = "transaction") -> list[FieldError]:
    """Terms that are consistent with their price mode and transaction type."""
    errors = []
    mode = terms.price.mode
    if mode == "fixed" and terms.price.amount is None:
        errors.append(
            FieldError(
                field=f"{field}.price.amount",
                rule="required_for_fixed_price",
                message="a fixed price needs its amount",
            )
        )
    if mode == "royalty" and terms.royalty_rate is None:
        errors.append(
            FieldError(
                field=f"{field}.royalty_rate",
                rule="required_for_royalty",
                message="a royalty price needs its royalty rate",
            )
        )
    if terms.type == "open_license" and terms.royalty_rate is None and terms.price.amount is None:
        errors.append(
            FieldError(
                field=f"{field}.royalty_rate",
                rule="open_license_declared_royalty",
                message="an open licence declares its royalty (a rate or an amount)",
            )
        )
    if terms.type == "open_license" and mode == "negotiable":
        errors.append(
            FieldError(
                field=f"{field}.price.mode",
                rule="open_license_not_negotiable",
                message="an open licence is offered on declared terms",
            )
        )
    return errors


def check_publishable(
    *,
    legal_status: str,
    expires_on: date | None,
    encumbrances: list[dict[str, object]],
    terms: TransactionTerms,
    pledge_disclosed: bool,
    other_exclusive_listing: bool,
    today: date,
    offered_types: Collection[str] = (),
    licences_in_force: Collection[str] = (),
) -> list[FieldError]:
    """Why this offer cannot lawfully be published (empty when it can). `offered_types`: the
    transaction types of the asset's other live offers; `licences_in_force`: the types of the
    licences granted on it (deals) whose term runs. An open licence declaration (typed terms)
    is checked by the open licence rules; no exclusive or sole licence while one stands."""
    if terms.open_license is not None:
        return check_declarable(
            legal_status=legal_status,
            expires_on=expires_on,
            encumbrances=encumbrances,
            offered_types=offered_types,
            licences_in_force=licences_in_force,
            today=today,
        )
    errors = check_exclusive_offer(terms.type, offered_types)
    ended = can_be_offered(legal_status, expires_on, today)
    if ended:
        errors.append(
            FieldError(
                field="asset.legal_status",
                rule="right_not_in_force",
                message=f"{ended}: it cannot be offered",
            )
        )

    def active(kind: str) -> bool:
        return any(
            e.get("type") == kind
            and (e.get("until") is None or str(e["until"]) >= today.isoformat())
            for e in encumbrances
        )

    if terms.type == "exclusive_license" and (
        active("exclusive_license") or other_exclusive_listing
    ):
        errors.append(
            FieldError(
                field="transaction.type",
                rule="second_exclusive_license",
                message="the asset already carries or offers an exclusive licence",
            )
        )
    if terms.type == "assignment" and active("pledge") and not pledge_disclosed:
        errors.append(
            FieldError(
                field="pledge_disclosed",
                rule="pledge_not_disclosed",
                message="the asset is pledged: a sale must disclose the pledge",
            )
        )
    return errors
