"""Webhook subscriptions: who may do what, which feed events become which webhooks, and which
subscriptions receive them. Never commits."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy.ext.asyncio import AsyncSession

from services.gateway.models import AllowedTarget, Delivery, Subscription
from services.gateway.webhooks import repository
from services.gateway.webhooks.repository import Tenant
from services.gateway.webhooks.schemas import (
    AttemptPublic,
    DeliveryPublic,
    MatchChange,
    SubscriptionCreate,
    SubscriptionPublic,
    TargetCreate,
)
from services.gateway.webhooks.ssrf import TargetRefused, normalize_pattern, resolve_public
from shared.auth import Principal
from shared.contracts.events import ChangeEvent
from shared.db import utcnow
from shared.encryption import SecretBox
from shared.errors import Conflict, Forbidden, NotFound, UnprocessableEntity
from shared.identifiers import IdentifierError, normalize_ipc
from shared.webhooks import new_secret

# A listing in one of these states is on the market (public); others are drafts or ended.
PUBLIC_STATUSES = frozenset({"published", "under_negotiation"})
# Listing feed event type -> webhook type (None: not delivered).
LISTING_UPDATES = frozenset({"listing.updated", "listing.negotiation", "listing.reopened"})
LISTING_ENDINGS = frozenset({"listing.withdrawn", "listing.closed", "listing.expired"})
# Events of an agreement between two organisations (an open licence, a pledge): delivered as
# they are, to their two parties only (`data.parties`).
PARTY_ENTITIES = frozenset({"licence", "pledge"})


# ----------------------------------------------------------------------------- filters


@dataclass(frozen=True)
class Facts:
    """What a filter can test about an event; None when the event does not carry it."""

    kind: str | None = None
    transaction_type: str | None = None
    ipc: tuple[str, ...] | None = None
    nice: tuple[int, ...] | None = None
    region: str | None = None
    amount: Decimal | None = None


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def _ipc_codes(raw: Any) -> tuple[str, ...]:
    codes = []
    for item in raw if isinstance(raw, list) else []:
        try:
            codes.append(normalize_ipc(str(item)))
        except IdentifierError:
            continue
    return tuple(codes)


def _nice_classes(raw: Any) -> tuple[int, ...]:
    classes = []
    for item in raw if isinstance(raw, list) else []:
        try:
            classes.append(int(item))
        except (TypeError, ValueError):
            continue
    return tuple(classes)


def listing_facts(doc: Mapping[str, Any]) -> Facts:
    """From a catalogue document (the region is the first holder's, as in search)."""
    asset = doc.get("asset") or {}
    terms = doc.get("transaction") or {}
    classifications = asset.get("classifications") or {}
    regions = [h.get("region") for h in asset.get("holders") or [] if h.get("region")]
    return Facts(
        kind=asset.get("kind"),
        transaction_type=terms.get("type"),
        ipc=_ipc_codes(classifications.get("ipc")),
        nice=_nice_classes(classifications.get("nice")),
        region=str(regions[0]) if regions else None,
        amount=_decimal((terms.get("price") or {}).get("amount")),
    )


def deal_facts(deal: Mapping[str, Any]) -> Facts:
    """From a deal announcement (no classifications: an IPC or Nice criterion fails)."""
    return Facts(
        kind=(deal.get("asset") or {}).get("kind"),
        transaction_type=deal.get("transaction_type"),
        region=deal.get("region"),
        amount=_decimal(deal.get("amount")),
    )


def licence_facts(licence: Mapping[str, Any]) -> Facts:
    """From an open licence's or a pledge's event (its right's kind; no classifications or
    price)."""
    return Facts(
        kind=(licence.get("asset") or {}).get("kind"),
        transaction_type=licence.get("transaction_type"),
    )


def match_facts(match: Mapping[str, Any]) -> Facts:
    """From a match (its listing summary: kind, type, region, amount)."""
    listing = match.get("listing") or {}
    return Facts(
        kind=listing.get("kind"),
        transaction_type=listing.get("transaction_type"),
        region=listing.get("region"),
        amount=_decimal(listing.get("amount")),
    )


def region_matches(wanted: str, region: str) -> bool:
    """2 digits: the province. 6 digits, hierarchically: 110000 all of Beijing, 130600 all of
    Baoding, 110108 Haidian only."""
    if len(wanted) == 6:
        if wanted.endswith("0000"):
            wanted = wanted[:2]
        elif wanted.endswith("00"):
            wanted = wanted[:4]
        else:
            return region == wanted
    return region.startswith(wanted)


def ipc_matches(prefix: str, code: str) -> bool:
    """`prefix` as normalised by the filter schema; `code` a normalised IPC symbol
    (``H01M 10/0525``). A ``/00`` subgroup stands for its whole main group."""
    subclass, group = code.split(" ", 1)
    main, sub = group.split("/", 1)
    if " " not in prefix:
        return subclass.startswith(prefix)
    wanted_subclass, wanted_group = prefix.split(" ", 1)
    if wanted_subclass != subclass:
        return False
    wanted_main, _, wanted_sub = wanted_group.partition("/")
    if int(wanted_main) != int(main):
        return False
    return not wanted_sub or wanted_sub == "00" or sub.startswith(wanted_sub)


def matches_filter(criteria: Mapping[str, Any], facts: Facts) -> bool:
    """Every criterion given holds (lists: any of). A criterion on a field the event does not
    carry fails: a subscriber only receives events known to fit."""
    kinds = criteria.get("kind")
    if kinds and facts.kind not in kinds:
        return False
    types = criteria.get("transaction_type")
    if types and facts.transaction_type not in types:
        return False
    prefixes = criteria.get("ipc")
    if prefixes and not any(ipc_matches(p, c) for p in prefixes for c in facts.ipc or ()):
        return False
    nice = criteria.get("nice")
    if nice and not set(nice).intersection(facts.nice or ()):
        return False
    regions = criteria.get("region")
    if regions and (
        facts.region is None or not any(region_matches(r, facts.region) for r in regions)
    ):
        return False
    low, high = _decimal(criteria.get("price_min")), _decimal(criteria.get("price_max"))
    if low is not None or high is not None:
        if facts.amount is None:
            return False
        if low is not None and facts.amount < low:
            return False
        if high is not None and facts.amount > high:
            return False
    return True


# ----------------------------------------------------------------------------- fan-out


@dataclass(frozen=True)
class OutboundEvent:
    """A webhook to queue for every subscription it fits."""

    event_id: str
    type: str
    ordering_key: str
    occurred_at: datetime
    data: dict[str, Any]
    facts: Facts
    # match.created: the organisation whose demand matched (the only one that receives it);
    # licence.*: the licensor and the licensee; pledge.*: the pledgor and the pledgee.
    audience: frozenset[UUID] | None = None

    def payload(self) -> dict[str, Any]:
        return {"type": self.type, "timestamp": self.occurred_at.isoformat(), "data": self.data}


def listing_webhook_type(event: ChangeEvent) -> str | None:
    """licence.* as they are (for the licence's parties); listing.published when a listing goes
    on the market; listing.updated for a change of a public listing; listing.closed when a
    listing that was public is closed by a deal (here or on its exchange), listing.withdrawn
    when it is withdrawn or expires; deal.closed. Drafts, submissions and rejections are never
    delivered."""
    if event.type == "deal.closed":
        return "deal.closed"
    if event.entity in PARTY_ENTITIES:
        return event.type
    status = event.data.get("status")
    if event.type == "listing.published":
        return "listing.published"
    if event.type in LISTING_UPDATES:
        return "listing.updated" if status in PUBLIC_STATUSES else None
    if event.type in LISTING_ENDINGS:
        if not event.data.get("published_at"):
            return None
        return "listing.closed" if event.type == "listing.closed" else "listing.withdrawn"
    return None


def from_listing_feed(event: ChangeEvent) -> OutboundEvent | None:
    kind = listing_webhook_type(event)
    if kind is None:
        return None
    audience = None
    if event.entity == "deal":
        ordering_key = str(event.data.get("listing_id") or event.entity_id)
        facts = deal_facts(event.data)
    elif event.entity in PARTY_ENTITIES:
        ordering_key = str(event.entity_id)
        facts = licence_facts(event.data)
        audience = frozenset(UUID(str(party)) for party in event.data.get("parties") or ())
    else:
        ordering_key = str(event.entity_id)
        facts = listing_facts(event.data)
    return OutboundEvent(
        event_id=f"evt_listing_{event.cursor}",
        type=kind,
        ordering_key=ordering_key,
        occurred_at=event.occurred_at,
        data=event.data,
        facts=facts,
        audience=audience,
    )


def from_match_feed(event: MatchChange) -> OutboundEvent | None:
    if event.type != "match.created":
        return None
    return OutboundEvent(
        event_id=f"evt_match_{event.cursor}",
        type="match.created",
        ordering_key=str(event.demand_id),
        occurred_at=event.occurred_at,
        data={**event.data, "listing_id": str(event.listing_id)},
        facts=match_facts(event.data),
        audience=frozenset({event.organization_id}),
    )


def receives(subscription: Subscription, event: OutboundEvent) -> bool:
    """The subscription wants this type, it existed when the event happened, its filter fits,
    and a match goes only to the organisation whose demand it is."""
    if subscription.status != "active" or event.type not in subscription.event_types:
        return False
    if event.occurred_at < subscription.created_at:
        return False
    if event.audience is not None and subscription.organization_id not in event.audience:
        return False
    return matches_filter(subscription.filter or {}, event.facts)


def delivery_rows(
    events: Iterable[OutboundEvent], subscriptions: Sequence[Subscription]
) -> list[dict[str, Any]]:
    """The deliveries to queue, in feed order (their seq keeps the order per listing)."""
    now = utcnow()
    rows = []
    for event in events:
        for subscription in subscriptions:
            if receives(subscription, event):
                rows.append(
                    {
                        "id": uuid4(),
                        "subscription_id": subscription.id,
                        "event_id": event.event_id,
                        "event_type": event.type,
                        "ordering_key": event.ordering_key,
                        "payload": event.payload(),
                        "status": "pending",
                        "attempts": 0,
                        "next_attempt_at": now,
                        "created_at": now,
                    }
                )
    return rows


# ----------------------------------------------------------------------------- the API


def public(subscription: Subscription) -> SubscriptionPublic:
    return SubscriptionPublic.model_validate(subscription, from_attributes=True)


async def create(
    session: AsyncSession, principal: Principal, data: SubscriptionCreate, box: SecretBox
) -> tuple[Subscription, str]:
    """The new subscription and its signing secret (shown once; stored sealed)."""
    if principal.organization_id is None or not principal.has("member", "admin", "partner"):
        raise Forbidden("subscriptions belong to an organisation: use its member or partner key")
    try:
        target = await resolve_public(
            data.url,
            await repository.allowed_for(session, Tenant(principal.organization_id)),
        )
    except TargetRefused as exc:
        raise UnprocessableEntity.single("url", exc.rule, exc.message) from exc
    partner_code = (
        await repository.partner_code_of(session, principal.organization_id)
        if principal.has("partner")
        else None
    )
    subscription = Subscription(
        organization_id=principal.organization_id,
        partner_code=partner_code,
        url=target.url,
        event_types=list(data.event_types),
        filter=data.filter.model_dump(mode="json", exclude_none=True),
        secret=box.seal(secret := new_secret()),
    )
    session.add(subscription)
    await session.flush()
    return subscription, secret


async def get_visible(
    session: AsyncSession, principal: Principal, subscription_id: UUID
) -> Subscription:
    """The subscription, for its organisation and operators; 404 to anyone else, and once
    deleted."""
    subscription = await repository.get_subscription(session, subscription_id)
    if (
        subscription is None
        or subscription.status == "deleted"
        or not (
            principal.is_operator
            or (
                principal.organization_id is not None
                and subscription.organization_id == principal.organization_id
            )
        )
    ):
        raise NotFound(f"no subscription {subscription_id}")
    return subscription


async def list_page(
    session: AsyncSession,
    principal: Principal,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[Subscription]:
    if principal.is_operator:
        return await repository.list_subscriptions(session, None, after, limit)
    if principal.organization_id is None:
        return []
    return await repository.list_subscriptions(session, principal.organization_id, after, limit)


async def delete(session: AsyncSession, principal: Principal, subscription_id: UUID) -> None:
    subscription = await get_visible(session, principal, subscription_id)
    await repository.delete_subscription(session, subscription)


def delivery_public(delivery: Delivery, attempts: Sequence[Any]) -> DeliveryPublic:
    assert delivery.seq is not None
    return DeliveryPublic(
        id=delivery.id,
        seq=delivery.seq,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        ordering_key=delivery.ordering_key,
        status=delivery.status,
        attempts=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at if delivery.status == "pending" else None,
        last_status_code=delivery.last_status_code,
        created_at=delivery.created_at,
        delivered_at=delivery.delivered_at,
        payload=delivery.payload,
        attempt_log=[AttemptPublic.model_validate(a, from_attributes=True) for a in attempts],
    )


async def deliveries(
    session: AsyncSession,
    principal: Principal,
    subscription_id: UUID,
    status: str | None,
    before_seq: int | None,
    limit: int,
) -> list[DeliveryPublic]:
    await get_visible(session, principal, subscription_id)
    rows = await repository.deliveries_page(session, subscription_id, status, before_seq, limit)
    attempts = await repository.attempts_of(session, [d.id for d in rows])
    return [delivery_public(d, attempts[d.id]) for d in rows]


async def replay(
    session: AsyncSession, principal: Principal, subscription_id: UUID, delivery_id: UUID
) -> DeliveryPublic:
    """Queue a delivered or failed delivery again, now, with the same webhook-id (receivers
    dedupe on it) and a fresh retry schedule. A pending one is already queued: 409."""
    await get_visible(session, principal, subscription_id)
    delivery = await repository.get_delivery(session, subscription_id, delivery_id, lock=True)
    if delivery is None:
        raise NotFound(f"no delivery {delivery_id} on subscription {subscription_id}")
    if delivery.status == "pending":
        raise Conflict(
            "this delivery is still queued; it is retried on its schedule",
            extra={"current_status": delivery.status},
        )
    delivery.status = "pending"
    delivery.attempts = 0
    delivery.lease_until = None
    delivery.next_attempt_at = utcnow()
    await session.flush()
    attempts = await repository.attempts_of(session, [delivery.id])
    return delivery_public(delivery, attempts[delivery.id])


async def add_target(session: AsyncSession, data: TargetCreate) -> AllowedTarget:
    if (data.organization_id is None) == (data.partner_code is None):
        raise UnprocessableEntity.single(
            "organization_id",
            "target_tenant",
            "name exactly one tenant: organization_id (its webhooks) or partner_code (its pull "
            "feed); an entry never opens a target to every tenant",
        )
    if data.partner_code is not None and not await repository.partner_exists(
        session, data.partner_code
    ):
        raise UnprocessableEntity.single(
            "partner_code", "partner_unknown", f"no partner has the code {data.partner_code!r}"
        )
    try:
        pattern = normalize_pattern(data.pattern)
    except ValueError as exc:
        raise UnprocessableEntity.single(
            "pattern",
            "target_pattern",
            f"{data.pattern!r} is not a host name (or *.domain), an IP address or a CIDR network",
        ) from exc
    tenant = Tenant(data.organization_id, data.partner_code)
    return await repository.add_target(session, tenant, pattern, data.port)


async def delete_target(session: AsyncSession, target_id: UUID) -> None:
    target = await repository.get_target(session, target_id)
    if target is None:
        raise NotFound(f"no allow-list entry {target_id}")
    await repository.delete_target(session, target)
