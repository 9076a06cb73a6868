"""Asset request and response models: the catalogue's asset document, plus our bookkeeping."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import Field, field_validator
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from services.listing.assets.rules import NOT_EDITABLE
from shared.contracts.catalogue import (
    AssetDocument,
    Classifications,
    Encumbrance,
    Holder,
    LegalStatus,
    LocalizedText,
)
from shared.schemas import StrictModel


class AssetCreate(AssetDocument):
    """A right as its holder registers it: any typed form of the identifier is accepted."""

    uscc_check_override: bool = Field(
        default=False,
        description="operators only: register a lawful early-pilot credit code whose check "
        "character fails (recorded)",
    )


class AssetUpdate(StrictModel):
    """A holder's correction of a registered right: the fields given replace the stored ones
    (in `title`, `abstract` and `classifications`, only the parts given; `null` erases a
    nullable field); the rest stays. `kind` and `identifier` are the right itself and are not
    editable (422 `not_editable`); `expires_on` is computed again from the corrected dates.
    Every rule of a registration applies to the corrected right, the filing year against the
    application number included. Needs the version it is based on (`If-Match` or `version`)."""

    title: LocalizedText | None = Field(
        default=None, examples=[{"en": "Lithium-ion battery separator and its preparation"}]
    )
    abstract: LocalizedText | None = None
    classifications: Classifications | None = Field(
        default=None, examples=[{"ipc": ["H01M 2/16", "H01M 10/0525"]}]
    )
    holders: list[Holder] | None = Field(default=None, min_length=1, max_length=50)
    filed_on: date | None = Field(default=None, examples=["2017-07-21"])
    granted_on: date | None = Field(default=None, examples=["2019-01-02"])
    legal_status: LegalStatus | None = Field(default=None, examples=["granted"])
    encumbrances: list[Encumbrance] | None = Field(default=None, max_length=20)
    publication_number: str | None = Field(default=None, max_length=40, examples=["CN107331783B"])
    uscc_check_override: bool = Field(
        default=False,
        description="operators only: accept a lawful early-pilot credit code whose check "
        "character fails",
    )
    version: int | None = Field(
        default=None, ge=1, description="the version this correction is based on (or If-Match)"
    )
    # Refused with their own rule (not as unknown fields), and left out of the schema.
    kind: SkipJsonSchema[Any] = None
    identifier: SkipJsonSchema[Any] = None
    expires_on: SkipJsonSchema[Any] = None

    @field_validator("kind", "identifier", "expires_on", mode="before")
    @classmethod
    def _not_editable(cls, value: Any, info: Any) -> Any:
        raise PydanticCustomError("not_editable", NOT_EDITABLE[info.field_name])
