"""Open licence request and response models."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field, model_validator

from services.listing.assets.schemas import AssetCreate
from shared.contracts.catalogue import (
    AssetKind,
    Holder,
    ListingStatus,
    LocalizedText,
    OpenLicenseTerms,
    TransactionTerms,
)
from shared.contracts.listings import AssetPublic
from shared.errors import FieldError
from shared.schemas import StrictModel


class Consent(StrictModel):
    """A co-holder's consent to the declaration (by credit code when both have one, else by
    the holder's exact name)."""

    name: str = Field(min_length=1, max_length=200, examples=["清华大学"])
    uscc: str | None = Field(default=None, max_length=24, examples=[None])


class DeclarationCreate(StrictModel):
    """A patentee declares that anyone may take a licence on these terms (Patent Law Art. 50).
    On a registered patent (`asset_id`) or one registered in the same call (`asset`); every
    other holder consents (`consents`)."""

    asset_id: UUID | None = None
    asset: AssetCreate | None = None
    terms: OpenLicenseTerms
    consents: list[Consent] = Field(default_factory=list, max_length=50)
    territory: str | None = Field(default="CN", max_length=100, examples=["CN"])
    field_of_use: str | None = Field(default=None, max_length=500, examples=[None])

    @model_validator(mode="after")
    def _one_asset(self) -> DeclarationCreate:
        if (self.asset_id is None) == (self.asset is None):
            raise ValueError("give exactly one of asset_id and asset")
        return self


class DeclarationPublic(BaseModel):
    """A declaration: its listing (type `open_license`, reviewed like every listing: submit,
    approve or reject, withdraw at /v1/listings/{id}/...), its terms, the co-holders' consent,
    and `flags`: terms outside CNIPA's guidance, for the reviewer."""

    id: UUID = Field(description="the declaration's listing id")
    offer_id: str = Field(examples=["jjj:0b7c4a51-8a4f-4d4e-9a43-1f1c2e3d4b5a"])
    status: ListingStatus
    version: int
    declarant_id: UUID
    declarant_name: str
    asset: AssetPublic
    terms: OpenLicenseTerms
    transaction: TransactionTerms = Field(description="the terms as the catalogue shows them")
    consents: list[Consent]
    flags: list[FieldError] = Field(
        description="terms outside the guidance (fixed fee, royalty): the reviewer decides"
    )
    licences_taken: int = 0
    published_at: datetime | None
    created_at: datetime
    updated_at: datetime


class LicenceTake(StrictModel):
    """The licensee's written notice (Art. 51): the licence exists from it, on the declared
    terms."""

    notice: str = Field(
        min_length=1,
        max_length=20_000,
        examples=["本公司决定按照贵方公布的开放许可条件实施该专利，并按约定支付许可使用费。"],
    )


class Party(BaseModel):
    id: UUID
    name: str
    uscc: str | None
    region: str


class LicensedPatent(BaseModel):
    kind: AssetKind
    identifier: str
    publication_number: str | None
    title: LocalizedText
    holders: list[Holder]
    granted_on: date | None
    expires_on: date | None


class RecordalPackage(BaseModel):
    """What the parties file with CNIPA for recordal, by `recordal_due_on`."""

    licence_id: UUID
    declaration_id: UUID
    licensor: Party
    licensee: Party
    patent: LicensedPatent
    terms: OpenLicenseTerms
    territory: str | None
    field_of_use: str | None
    notice: str
    noticed_at: datetime
    starts_on: date
    ends_on: date
    recordal_due_on: date


class Recordal(BaseModel):
    due_on: date
    state: Literal["awaiting_recordal", "due_soon", "overdue", "recorded"] = Field(
        description="due_soon from the first reminder on; overdue past the deadline"
    )
    days_left: int
    reminders_sent: list[int] = Field(description="the reminders sent, in days before the due day")
    recordal_number: str | None
    recorded_on: date | None
    recorded_at: datetime | None


class LicencePublic(BaseModel):
    id: UUID
    declaration_id: UUID
    status: Literal["awaiting_recordal", "recorded"]
    version: int
    recordal: Recordal
    package: RecordalPackage
    created_at: datetime


class RecordalEntry(StrictModel):
    """CNIPA entered the recordal: its number and day."""

    recordal_number: str = Field(min_length=1, max_length=100, examples=["2027110000123"])
    recorded_on: date = Field(examples=["2027-02-15"])


class GazetteRejection(BaseModel):
    line: int
    field: str
    rule: str
    message: str


class GazetteImportReport(BaseModel):
    """Declarations read from the gazette's CSV: offers of the exchange `cnipa`, each attached
    to the asset with the same kind and identifier."""

    total_rows: int
    created: int
    updated: int
    unchanged: int
    rejected: int
    rejections: list[GazetteRejection]
