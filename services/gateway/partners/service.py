"""Domain logic of partner exchanges: the registry, verifying pushes, and the intake shared by
push and pull (adapter, validation, inbox). Plain functions over repositories; never commits."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from services.gateway.models import Partner, RejectedEvent
from services.gateway.partners.adapters import AdapterError, adapt_event
from services.gateway.partners.repository import (
    InboxRepository,
    PartnerRepository,
    RejectedEventRepository,
)
from services.gateway.partners.schemas import (
    CODE_PATTERN,
    InboundAccepted,
    PartnerCreate,
    PartnerPublic,
    PartnerUpdate,
    RejectedEventPublic,
)
from shared.auth import Principal
from shared.contracts.catalogue import offer_id
from shared.db import utcnow
from shared.encryption import SecretBox
from shared.errors import (
    BadRequest,
    Conflict,
    FieldError,
    Forbidden,
    NotFound,
    Unauthorized,
    UnprocessableEntity,
)
from shared.webhooks import InvalidWebhook, new_secret, verify

__all__ = [
    "EXCERPT_CHARS",
    "EventRejected",
    "accept",
    "accept_push",
    "get_partner",
    "list_partners",
    "list_rejected",
    "parse_json",
    "pull_event_id",
    "register_partner",
    "to_public",
    "update_partner",
    "verify_push",
]

EXCERPT_CHARS: Final = 2000
EVENT_ID_MAX: Final = 200
WEBHOOK_HEADERS: Final = ("webhook-id", "webhook-timestamp", "webhook-signature")
Source = Literal["push", "pull"]


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


def to_public(partner: Partner, gateway_url: str) -> dict[str, Any]:
    """The fields of PartnerPublic (never the secret)."""
    data = {
        name: getattr(partner, name) for name in PartnerPublic.model_fields if name != "inbound_url"
    }
    data["inbound_url"] = f"{gateway_url.rstrip('/')}/v1/inbound/{partner.code}"
    return data


async def get_partner(session: AsyncSession, code: str) -> Partner:
    # A string that cannot be a code names no partner; it is not even sent to PostgreSQL
    # (which refuses a NUL character with an error).
    partner = None
    if re.fullmatch(CODE_PATTERN, code):
        partner = await PartnerRepository(session).get(code)
    if partner is None:
        raise NotFound(f"no partner exchange has the code {code!r}")
    return partner


async def register_partner(
    session: AsyncSession, data: PartnerCreate, box: SecretBox
) -> tuple[Partner, str]:
    """A new partner and its inbound secret (returned once, in plaintext; stored sealed)."""
    partners = PartnerRepository(session)
    if await partners.get(data.code) is not None:
        raise Conflict(f"the partner code {data.code!r} is taken")
    now = utcnow()
    secret = new_secret()
    partner = Partner(
        code=data.code,
        name=data.name,
        region=data.region,
        status="active",
        inbound_secret=box.seal(secret),
        adapter=data.adapter,
        organization_id=data.organization_id,
        pull_url=data.pull_url,
        pull_interval_seconds=data.pull_interval_seconds,
        pull_next_at=now if data.pull_url else None,
        pull_failures=0,
        created_at=now,
        updated_at=now,
    )
    if not await partners.add(partner):
        raise Conflict(f"the partner code {data.code!r} is taken")
    return partner, secret


_NULLABLE: Final = frozenset({"pull_url", "organization_id"})


async def update_partner(
    session: AsyncSession, code: str, data: PartnerUpdate, box: SecretBox
) -> tuple[Partner, str | None]:
    """Apply the fields sent; the new secret when one was asked for."""
    partner = await get_partner(session, code)
    sent = data.model_fields_set - {"rotate_secret", "reset_cursor"}
    nulls = sorted(name for name in sent - _NULLABLE if getattr(data, name) is None)
    if nulls:
        raise UnprocessableEntity(
            "only pull_url and organization_id can be set to null",
            errors=[FieldError(field=n, rule="not_null", message="cannot be null") for n in nulls],
        )
    now = utcnow()
    new_url = "pull_url" in sent and data.pull_url != partner.pull_url
    for name in sent:
        setattr(partner, name, getattr(data, name))
    if new_url or data.reset_cursor:
        partner.pull_cursor = None
        partner.pull_etag = None
        partner.pull_failures = 0
        partner.pull_last_error = None
    if partner.pull_url and (new_url or data.reset_cursor or "status" in sent):
        partner.pull_next_at = now
    secret = None
    if data.rotate_secret:
        secret = new_secret()
        partner.inbound_secret = box.seal(secret)
    partner.updated_at = now
    await session.flush()
    return partner, secret


async def list_partners(session: AsyncSession, after: str | None, limit: int) -> list[Partner]:
    return await PartnerRepository(session).page(after, limit)


def ensure_can_read_rejected(principal: Principal, partner: Partner) -> None:
    if principal.is_operator:
        return
    if partner.organization_id is not None and principal.organization_id == partner.organization_id:
        return
    raise Forbidden("only the partner exchange itself and operators see its rejected events")


async def list_rejected(
    session: AsyncSession, partner: Partner, before: int | None, limit: int
) -> list[RejectedEventPublic]:
    rows = await RejectedEventRepository(session).page(partner.code, before, limit)
    return [
        RejectedEventPublic(
            id=row.id or 0,
            event_id=row.event_id,
            source="pull" if row.source == "pull" else "push",
            received_at=row.received_at,
            errors=[FieldError.model_validate(e) for e in row.errors],
            payload_excerpt=row.payload_excerpt,
        )
        for row in rows
    ]


# --------------------------------------------------------------------------------------------
# Push: Standard Webhooks verification
# --------------------------------------------------------------------------------------------


def _refused(header: str, rule: str, message: str) -> Unauthorized:
    return Unauthorized(
        message,
        errors=[FieldError(field=header, rule=rule, message=message)],
        slug="webhook-unverified",
        title="The webhook could not be verified",
        headers={"WWW-Authenticate": 'webhook-signature realm="ipx-inbound"'},
    )


def verify_push(partner: Partner, body: bytes, headers: Mapping[str, str], box: SecretBox) -> str:
    """The webhook-id of a push whose Standard Webhooks signature verifies with the partner's
    secret; otherwise 401 naming the header at fault (missing, malformed, a timestamp more than
    five minutes off, or a signature that does not verify)."""
    values = {name: headers.get(name, "") for name in WEBHOOK_HEADERS}
    missing = [name for name in WEBHOOK_HEADERS if not values[name].strip()]
    if missing:
        raise Unauthorized(
            f"missing Standard Webhooks header(s): {', '.join(missing)}",
            errors=[
                FieldError(field=name, rule="missing", message="required by Standard Webhooks")
                for name in missing
            ],
            slug="webhook-unverified",
            title="The webhook could not be verified",
            headers={"WWW-Authenticate": 'webhook-signature realm="ipx-inbound"'},
        )
    timestamp = values["webhook-timestamp"].strip()
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise _refused(
            "webhook-timestamp", "timestamp_format", "webhook-timestamp must be Unix seconds"
        )
    try:
        verify(box.open(partner.inbound_secret), body, values)
    except InvalidWebhook as exc:
        if "webhook-timestamp" in exc.reason:
            raise _refused("webhook-timestamp", "timestamp_tolerance", exc.reason) from exc
        raise _refused("webhook-signature", "signature_invalid", exc.reason) from exc
    event_id = values["webhook-id"]
    if len(event_id) > EVENT_ID_MAX:
        raise UnprocessableEntity.single(
            "webhook-id", "string_too_long", f"webhook-id has at most {EVENT_ID_MAX} characters"
        )
    return event_id


# --------------------------------------------------------------------------------------------
# Intake: adapter, validation, inbox (push and pull alike)
# --------------------------------------------------------------------------------------------


class EventRejected(UnprocessableEntity):
    """A partner event refused at intake; already recorded as a RejectedEvent (the caller must
    let its transaction commit: render this, do not re-raise it)."""


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(body: bytes) -> Any:
    """JSON with exact decimals (numbers with a fraction become Decimal); ValueError if not."""
    try:
        return json.loads(body, parse_float=Decimal, parse_constant=_no_constants)
    except RecursionError as exc:
        raise ValueError("the JSON is nested too deeply") from exc


def _detail(errors: list[FieldError]) -> str:
    count = len(errors)
    return f"{count} field{'s are' if count != 1 else ' is'} invalid: " + ", ".join(
        f"{e.field} ({e.rule})" for e in errors[:5]
    )


def _storable(text: str) -> str:
    """PostgreSQL text and jsonb refuse NUL: stored as U+FFFD, as undecodable bytes are."""
    return text.replace("\x00", "\ufffd")


def excerpt(payload: bytes | str) -> str:
    text = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else payload
    return _storable(text[:EXCERPT_CHARS])


async def reject(
    session: AsyncSession,
    partner: Partner,
    *,
    event_id: str | None,
    source: Source,
    errors: list[FieldError],
    payload_excerpt: str,
    status: int = 422,
) -> EventRejected:
    """Recorded; `status` 400 for a body that is not JSON at all (as on every other route)."""
    await RejectedEventRepository(session).add(
        RejectedEvent(
            partner_code=partner.code,
            event_id=event_id,
            source=source,
            received_at=utcnow(),
            # Field names and messages quote what was sent (an unknown key may hold a NUL).
            errors=[{k: _storable(v) for k, v in e.model_dump().items()} for e in errors],
            payload_excerpt=payload_excerpt,
        )
    )
    if status == 400:
        return EventRejected(
            _detail(errors), errors=errors, status=400, slug=BadRequest.slug, title=BadRequest.title
        )
    return EventRejected(_detail(errors), errors=errors)


def pull_event_id(document_offer_id: str, version: int) -> str:
    """The inbox id of a pulled version: the same version pulled twice is one event."""
    event_id = f"pull:{document_offer_id}:{version}"
    if len(event_id) > EVENT_ID_MAX:
        digest = hashlib.sha256(document_offer_id.encode()).hexdigest()
        event_id = f"pull:sha256:{digest}:{version}"
    return event_id


async def accept(
    session: AsyncSession,
    partner: Partner,
    payload: object,
    *,
    event_id: str | None,
    source: Source,
    raw: bytes | str,
) -> InboundAccepted:
    """Adapt and validate a partner event and put it in the inbox (once per event id).

    Raises EventRejected (recorded) with every error; `event_id` None means "derive it from
    the document" (pull)."""
    try:
        event = adapt_event(partner.adapter, payload, exchange=partner.code)
    except AdapterError as exc:
        raise await reject(
            session,
            partner,
            event_id=event_id,
            source=source,
            errors=exc.errors,
            payload_excerpt=excerpt(raw),
        ) from exc
    document = event.document
    key = offer_id(document.source.exchange, document.source.listing_id)
    event_id = event_id or pull_event_id(key, document.source.version)
    inserted = await InboxRepository(session).insert(
        partner_code=partner.code,
        event_id=event_id,
        source=source,
        source_version=document.source.version,
        offer_key=key,
        document=document.model_dump(mode="json", by_alias=True),
        now=utcnow(),
    )
    return InboundAccepted(
        event_id=event_id,
        duplicate=not inserted,
        offer_id=key,
        source_version=document.source.version,
        event_type=event.event_type,
    )


async def accept_push(
    session: AsyncSession, partner: Partner, event_id: str, body: bytes
) -> InboundAccepted:
    """A verified push: JSON, adapter, validation, inbox. Raises EventRejected (recorded)."""
    try:
        payload = parse_json(body)
    except ValueError as exc:
        errors = [FieldError(field="body", rule="json_invalid", message=f"not JSON: {exc}")]
        raise await reject(
            session,
            partner,
            event_id=event_id,
            source="push",
            errors=errors,
            payload_excerpt=excerpt(body),
            status=400,
        ) from exc
    return await accept(session, partner, payload, event_id=event_id, source="push", raw=body)
