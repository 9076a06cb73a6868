"""Import rows and reports."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

from shared.contracts.catalogue import AssetDocument, TransactionTerms
from shared.schemas import StrictModel


class ImportRow(StrictModel):
    """One row: an asset and the listing that offers it (the `POST /v1/listings` shape)."""

    asset: AssetDocument
    transaction: TransactionTerms
    pledge_disclosed: bool = False


class Rejection(BaseModel):
    line: int
    field: str
    rule: str
    message: str


class ImportReport(BaseModel):
    id: UUID
    format: Literal["csv", "jsonl"]
    status: Literal["running", "completed", "failed"]
    mode: Literal["draft", "submit", "publish"] = Field(
        description="what new listings become: drafts, submitted for review, or published "
        "(operators only)"
    )
    total_rows: int
    created: int
    updated: int
    unchanged: int
    rejected: int
    created_at: datetime
    finished_at: datetime | None
    rejections: list[Rejection] = Field(
        default_factory=list, description="the first rejected rows (page through the rest)"
    )
    next_page_token: str = ""
