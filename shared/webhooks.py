"""Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature) with the
`standardwebhooks` package: signing what the gateway sends, verifying what partners push."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

__all__ = ["InvalidWebhook", "new_secret", "signed_headers", "verify"]


class InvalidWebhook(Exception):
    """Why a pushed webhook is refused: `reason` is safe to show the sender."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def new_secret() -> str:
    """A signing secret in the Standard Webhooks form (`whsec_` + base64 of 32 random bytes)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def signed_headers(
    secret: str, event_id: str, body: bytes, at: datetime | None = None
) -> dict[str, str]:
    timestamp = (at or datetime.now(UTC)).astimezone(UTC)
    signature = Webhook(secret).sign(msg_id=event_id, timestamp=timestamp, data=body.decode())
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


def verify(secret: str, body: bytes, headers: Mapping[str, str]) -> None:
    """Raises InvalidWebhook for a missing header, a stale or future timestamp (more than five
    minutes off) or a bad signature. The package raises plain ValueError, base64 and Unicode
    errors on malformed headers too: every one of them is a refusal, never a 500."""
    try:
        Webhook(secret).verify(body, dict(headers), json_parse=False)
    except Exception as exc:
        message = str(exc) or type(exc).__name__
        if "too old" in message or "too new" in message:
            raise InvalidWebhook(
                f"webhook-timestamp is more than 5 minutes off ({message})"
            ) from exc
        if "Missing required headers" in message:
            raise InvalidWebhook(
                "webhook-id, webhook-timestamp and webhook-signature are required"
            ) from exc
        raise InvalidWebhook("the webhook signature does not verify") from exc
