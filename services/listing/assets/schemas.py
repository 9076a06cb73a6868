"""Asset request and response models: the catalogue's asset document, plus our bookkeeping."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import Field

from shared.contracts.catalogue import AssetDocument


class AssetCreate(AssetDocument):
    """A right as its holder registers it: any typed form of the identifier is accepted."""

    uscc_check_override: bool = Field(
        default=False,
        description="operators only: register a lawful early-pilot credit code whose check "
        "character fails (recorded)",
    )


class AssetPublic(AssetDocument):
    id: UUID
    version: int
    needs_review: bool
    created_at: datetime
    updated_at: datetime
