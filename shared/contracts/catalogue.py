"""The open catalogue document, v1 (API.md): one offer with its asset inline.

What partners push, what frontends read and what the change feed carries. Amounts and royalty
rates are decimal strings in JSON, never floats.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from shared.identifiers import AssetKind
from shared.schemas import nul_free

__all__ = [
    "CENT",
    "CURRENCY",
    "EXCHANGE_CODE_PATTERN",
    "OUR_EXCHANGE",
    "RATE_STEP",
    "SCHEMA_V1",
    "AssetDocument",
    "AssetKind",
    "AssetOffer",
    "CatalogueDocument",
    "Classifications",
    "Encumbrance",
    "Holder",
    "LegalStatus",
    "ListingStatus",
    "LocalizedText",
    "Money",
    "OpenLicenseFeeType",
    "OpenLicenseTerms",
    "PlantTaxon",
    "Price",
    "PriceMode",
    "Rate",
    "Source",
    "TransactionTerms",
    "TransactionType",
    "money_text",
    "offer_id",
]

TransactionType = Literal[
    "assignment",
    "exclusive_license",
    "sole_license",
    "nonexclusive_license",
    "open_license",
    "pledge_financing",
    "equity_contribution",
]
LegalStatus = Literal[
    "pending", "granted", "lapsed", "expired", "invalidated", "rejected", "withdrawn"
]
ListingStatus = Literal[
    "draft",
    "pending_review",
    "published",
    "under_negotiation",
    "closed",
    "withdrawn",
    "expired",
]
PriceMode = Literal["fixed", "negotiable", "royalty"]
# Open licence fees (Patent Law Art. 50): a lump sum, a royalty on net sales or on profit, or an
# entry fee plus a royalty.
OpenLicenseFeeType = Literal["lump_sum", "royalty", "entry_fee_plus_royalty"]
RoyaltyBasis = Literal["net_sales", "profit"]
OUR_EXCHANGE = "jjj"
EXCHANGE_CODE_PATTERN = r"^[a-z][a-z0-9_-]{1,31}$"
SCHEMA_V1: Literal["ipx.catalogue/v1"] = "ipx.catalogue/v1"

ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
CURRENCY: Literal["CNY"] = "CNY"  # every amount on the exchange is in yuan
CENT = Decimal("0.01")
RATE_STEP = Decimal("0.000001")


def _cents(value: Decimal) -> Decimal:
    return value.quantize(CENT)


def money_text(value: object) -> str | None:
    """An amount in its one written form ("175000" -> "175000.00"); for amounts kept as text
    outside the models (the search index's documents)."""
    if value is None or value == "":
        return None
    return str(Decimal(str(value)).quantize(CENT))


def _rate_steps(value: Decimal) -> Decimal:
    return value.quantize(RATE_STEP)


# One written form of an amount everywhere (API, feed, webhooks, index): two decimals, as
# PostgreSQL's numeric(18, 2) gives it back ("20000" in was "20000" out, "20000.00" on read).
Money = Annotated[Decimal, Field(ge=0, max_digits=16, decimal_places=2), AfterValidator(_cents)]
# A royalty rate: six decimals, as numeric(7, 6) gives it back.
Rate = Annotated[
    Decimal, Field(ge=0, le=1, max_digits=7, decimal_places=6), AfterValidator(_rate_steps)
]


class Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _nul_free(cls, value: object) -> object:
        # Partner documents end up in PostgreSQL too: a NUL is a validation error at intake.
        return nul_free(value)


class LocalizedText(Contract):
    zh: str | None = Field(default=None, max_length=20_000)
    en: str | None = Field(default=None, max_length=20_000)


class Holder(Contract):
    name: ShortText = Field(examples=["北京理工大学"])
    uscc: str | None = Field(default=None, max_length=24, examples=[None])
    region: str | None = Field(default=None, max_length=6, examples=["110000"])


class PlantTaxon(Contract):
    genus: ShortText = Field(examples=["Zea"])
    species: str | None = Field(default=None, max_length=200, examples=["Zea mays L."])
    crop_zh: str | None = Field(default=None, max_length=100, examples=["玉米"])
    woody: bool = Field(default=False, description="vines and trees: 20-year term, else 15")


class Classifications(Contract):
    ipc: list[str] = Field(default_factory=list, max_length=100, examples=[["A61B 34/20"]])
    nice: list[int] = Field(default_factory=list, max_length=45, examples=[[9, 42]])
    locarno: list[str] = Field(default_factory=list, max_length=20, examples=[["14-02"]])
    plant: PlantTaxon | None = None


class Encumbrance(Contract):
    type: Literal["pledge", "exclusive_license"]
    holder: ShortText
    until: date | None = None


class AssetDocument(Contract):
    """One IP right. `identifier` in its normalised form (any typed form is accepted in)."""

    kind: AssetKind = Field(examples=["invention_patent"])
    identifier: str = Field(min_length=1, max_length=200, examples=["202111476668.X"])
    publication_number: str | None = Field(default=None, max_length=40, examples=["CN114145846A"])
    title: LocalizedText
    abstract: LocalizedText = Field(default_factory=LocalizedText)
    classifications: Classifications = Field(default_factory=Classifications)
    holders: list[Holder] = Field(min_length=1, max_length=50)
    filed_on: date | None = Field(default=None, examples=["2021-12-06"])
    granted_on: date | None = None
    expires_on: date | None = Field(default=None, description="computed from kind and dates")
    legal_status: LegalStatus = "pending"
    encumbrances: list[Encumbrance] = Field(default_factory=list, max_length=20)


class Price(Contract):
    mode: PriceMode = Field(examples=["negotiable"])
    amount: Money | None = Field(default=None, examples=["1200000.00"])
    currency: Literal["CNY"] = "CNY"


class OpenLicenseTerms(Contract):
    """The typed terms of an open licence declaration (`transaction.type` `open_license`):
    anyone may take a licence on them by written notice, from `starts_on` to `ends_on`."""

    fee_type: OpenLicenseFeeType = Field(examples=["entry_fee_plus_royalty"])
    lump_sum: Money | None = Field(default=None, examples=[None], description="lump_sum")
    entry_fee: Money | None = Field(
        default=None, examples=["50000.00"], description="entry_fee_plus_royalty"
    )
    royalty_rate: Rate | None = Field(default=None, examples=["0.030000"])
    royalty_basis: RoyaltyBasis | None = Field(
        default=None, examples=["net_sales"], description="what the royalty rate applies to"
    )
    starts_on: date = Field(examples=["2027-01-01"])
    ends_on: date = Field(examples=["2029-12-31"], description="not after the patent expires")
    evaluation_report: str | None = Field(
        default=None,
        max_length=100,
        examples=[None],
        description="utility models and designs: the number of the patent evaluation report",
    )
    payment: str | None = Field(
        default=None, max_length=500, description="how and when fees are paid", examples=[None]
    )


class TransactionTerms(Contract):
    type: TransactionType = Field(examples=["exclusive_license"])
    price: Price
    royalty_rate: Rate | None = Field(default=None, examples=["0.035000"])
    term_months: int | None = Field(default=None, ge=1, le=1200, examples=[60])
    territory: str | None = Field(default=None, max_length=100, examples=["CN"])
    field_of_use: str | None = Field(default=None, max_length=500, examples=["medical devices"])
    open_license: OpenLicenseTerms | None = Field(
        default=None, description="`open_license` declarations: their typed terms"
    )


class Source(Contract):
    exchange: str = Field(pattern=EXCHANGE_CODE_PATTERN, examples=["tipei"])
    listing_id: str = Field(min_length=1, max_length=200, examples=["L-2024-00017"])
    url: str | None = Field(default=None, max_length=2000)
    updated_at: AwareDatetime
    version: int = Field(ge=1)


class CatalogueDocument(Contract):
    """One offer on one exchange, with its asset inline (`offer_id` = `<exchange>:<id>`)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_: Literal["ipx.catalogue/v1"] = Field(default=SCHEMA_V1, alias="schema")
    offer_id: str = Field(examples=["tipei:L-2024-00017"])
    source: Source
    asset: AssetDocument
    transaction: TransactionTerms
    status: ListingStatus = "published"
    published_at: AwareDatetime | None = None
    seller: str | None = Field(
        default=None, max_length=200, description="the seller's name as the exchange shows it"
    )


class AssetOffer(BaseModel):
    """One offer on an asset, on any exchange."""

    listing_id: UUID
    status: ListingStatus = Field(examples=["published"])
    document: CatalogueDocument = Field(
        description="the offer's catalogue document (ipx.catalogue/v1), its asset inline"
    )


def offer_id(exchange: str, listing_id: str) -> str:
    return f"{exchange}:{listing_id}"
