"""Inquiry and deal request and response models."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from shared.contracts.catalogue import Money
from shared.schemas import StrictModel

GroupBy = Literal["region", "kind", "month"]


class MessageCreate(StrictModel):
    """A message in an inquiry thread, optionally carrying an offer (CNY)."""

    message: str = Field(min_length=1, max_length=5000, examples=["贵校可否接受分期付款？"])
    offer_amount: Money | None = Field(default=None, examples=["950000.00"])


class InquiryCreate(MessageCreate):
    """The first (or a further) message of the caller's organisation on a listing."""


class MessagePublic(BaseModel):
    id: UUID
    author_id: UUID
    author_role: Literal["buyer", "seller"]
    message: str
    offer_amount: Decimal | None
    created_at: datetime


class InquiryPublic(BaseModel):
    """One buyer's thread on one listing, its messages in order."""

    id: UUID
    listing_id: UUID
    seller_id: UUID
    buyer_id: UUID
    buyer_name: str
    status: str = Field(description="open; accepted (its deal closed the listing); closed")
    created_at: datetime
    updated_at: datetime
    messages: list[MessagePublic]


class InquirySummary(BaseModel):
    """A thread in a list: who, how long, and the latest offer in it."""

    id: UUID
    listing_id: UUID
    buyer_id: UUID
    buyer_name: str
    status: str
    message_count: int
    latest_offer_amount: Decimal | None
    created_at: datetime
    updated_at: datetime


class DealCreate(StrictModel):
    """Close a listing with a deal: with the buyer of one of its inquiries (`inquiry_id`), or
    with a buyer met off the platform (`buyer_name`)."""

    listing_id: UUID
    inquiry_id: UUID | None = None
    buyer_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        validate_default=True,
        description="required without `inquiry_id` (an off-platform buyer); not with it",
        examples=["天津中环半导体股份有限公司"],
    )
    amount: Money | None = Field(default=None, examples=["1150000.00"])
    confidential: bool = Field(default=False, description="keep the amount out of the public")
    closed_on: date = Field(description="not in the future (Beijing's calendar)")

    @field_validator("buyer_name")
    @classmethod
    def _buyer_named_once(cls, value: str | None, info: ValidationInfo) -> str | None:
        has_inquiry = info.data.get("inquiry_id") is not None
        if value is None and not has_inquiry:
            raise PydanticCustomError(
                "required_without_inquiry",
                "name the buyer (buyer_name) or give the inquiry (inquiry_id) it came from",
            )
        if value is not None and has_inquiry:
            raise PydanticCustomError(
                "not_with_inquiry",
                "the buyer of an inquiry is its organisation: leave buyer_name out",
            )
        return value


class DealGroup(BaseModel):
    group: str = Field(examples=["110000"], description="province code, kind, or YYYY-MM")
    deal_count: int
    disclosed_count: int = Field(description="deals with a public amount")
    disclosed_total: Decimal = Field(examples=["3450000.00"])
    disclosed_median: Decimal | None = Field(examples=["1150000.00"])


class DealStats(BaseModel):
    group_by: GroupBy
    groups: list[DealGroup]
