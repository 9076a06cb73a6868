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


class RowResult(BaseModel):
    """What the import did with one row it applied (rejected rows are in `rejections`)."""

    line: int = Field(examples=[2])
    outcome: Literal["created", "updated", "unchanged"] = Field(examples=["updated"])
    changed: list[str] = Field(
        default_factory=list,
        examples=[["asset.title.en", "transaction.price.amount"]],
        description="the fields the row changed: `asset.…` of the right (every listing on it "
        "gets a new version), `transaction.…` and `pledge_disclosed` of the seller's listing",
    )


class ImportReport(BaseModel):
    id: UUID
    format: Literal["csv", "jsonl"]
    encoding: Literal["utf-8", "gb18030"] | None = Field(
        default=None,
        examples=["gb18030"],
        description="the text encoding the file was read in: UTF-8 (with or without a BOM) or "
        "GB18030/GBK (Chinese Excel's CSV); a file in neither is refused (422, rule `encoding`)",
    )
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
    rows: list[RowResult] = Field(
        default_factory=list,
        description="what happened to the first 100 rows applied, by line (all of them: "
        "GET /v1/imports/{id}/rows)",
    )
