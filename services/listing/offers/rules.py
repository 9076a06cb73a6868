"""Rules of partner offers as plain functions.

A partner exchange's offer is mirrored here from its catalogue document: its seller is the
placeholder organisation of the exchange (nobody signs in as it), and its state is the
partner's (its next `source.version` overwrites whatever we change). So inquiries, offers in a
thread, deals and the seller's own transitions happen on the source exchange, never here.
"""

from __future__ import annotations

from services.listing.models import Listing
from shared.contracts.catalogue import OUR_EXCHANGE, offer_id
from shared.errors import Conflict, FieldError

__all__ = ["PARTNER_OFFER_RULE", "PARTNER_OFFER_SLUG", "ensure_our_offer", "is_partner_offer"]

PARTNER_OFFER_SLUG = "partner-offer"
PARTNER_OFFER_RULE = "partner_offer"


def is_partner_offer(listing: Listing) -> bool:
    """The offer is another exchange's (mirrored from its catalogue document)."""
    return listing.exchange != OUR_EXCHANGE


def ensure_our_offer(listing: Listing, what: str) -> None:
    """409 `/problems/partner-offer` when `listing` is another exchange's offer: `what` (an
    inquiry, a deal, a withdrawal...) is for its source exchange, at `source_url`."""
    if not is_partner_offer(listing):
        return
    where = f" at {listing.source_url}" if listing.source_url else ""
    message = (
        f"offer {offer_id(listing.exchange, listing.external_id)} is the {listing.exchange} "
        f"exchange's: {what} goes to that exchange{where}, not to this one"
    )
    raise Conflict(
        message,
        slug=PARTNER_OFFER_SLUG,
        title="This offer is another exchange's",
        errors=[FieldError(field="listing_id", rule=PARTNER_OFFER_RULE, message=message)],
        extra={
            "offer_id": offer_id(listing.exchange, listing.external_id),
            "exchange": listing.exchange,
            "source_url": listing.source_url,
            "current_status": listing.status,
        },
    )
