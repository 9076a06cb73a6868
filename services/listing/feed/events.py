"""Writing to the outbox, in the caller's transaction."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from services.listing.models import ChangeEvent
from shared.contracts.events import EventType


def record(
    session: AsyncSession,
    *,
    type: EventType,
    entity_id: UUID,
    version: int,
    data: dict[str, Any],
    asset_id: UUID | None = None,
    seller_id: UUID | None = None,
) -> None:
    """Add an event to the outbox; it commits (or not) with the change it describes."""
    entity = type.split(".", 1)[0]
    payload = {
        "data": data,
        "asset_id": str(asset_id) if asset_id else None,
        "seller_id": str(seller_id) if seller_id else None,
    }
    session.add(
        ChangeEvent(entity=entity, entity_id=entity_id, type=type, version=version, payload=payload)
    )
