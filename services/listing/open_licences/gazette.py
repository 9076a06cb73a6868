"""Open licence declarations published in CNIPA's gazette, imported from a CSV of its fields.

Each row becomes an offer of the exchange `cnipa` (the office that announced it) through the
partner-offer upsert, so it is attached to the asset with the same kind and normalised
identifier as every other offer (ours, partners'), and a later announcement (a newer
`announced_on`, e.g. a withdrawal) replaces an earlier one. CNIPA examined the declaration:
it arrives published, without our review. Each row is applied whole or rejected.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

from pydantic import ValidationError

from services.listing.listings.service import Context
from services.listing.offers import service as offers
from services.listing.open_licences.rules import (
    Guidance,
    check_kind,
    check_terms,
    transaction_terms,
)
from services.listing.open_licences.schemas import GazetteImportReport, GazetteRejection
from shared.contracts.catalogue import CatalogueDocument, OpenLicenseTerms, offer_id
from shared.errors import ProblemError, UnprocessableEntity
from shared.identifiers import IdentifierError, normalize_identifier

EXCHANGE = "cnipa"
EXCHANGE_NAME = "国家知识产权局"
EXCHANGE_REGION = "110000"
COLUMNS = (
    "announcement_number",
    "announced_on",
    "kind",
    "patent_number",
    "title",
    "patentees",
    "filed_on",
    "granted_on",
    "fee_type",
    "lump_sum",
    "entry_fee",
    "royalty_rate",
    "royalty_basis",
    "starts_on",
    "ends_on",
    "evaluation_report",
)
REQUIRED = ("announced_on", "kind", "patent_number", "title", "patentees", "fee_type")
# Optional: `status` (`published`, the default, or `withdrawn` for a withdrawal announcement).
STATUSES = ("published", "withdrawn")


def decode(body: bytes) -> str:
    """UTF-8 (a BOM is fine) or GB18030 as Chinese Excel saves it; anything else is a 422."""
    for codec in ("utf-8-sig", "gb18030"):
        try:
            return body.decode(codec)
        except UnicodeDecodeError:
            continue
    raise UnprocessableEntity.single(
        "body", "encoding", "the file is neither UTF-8 nor GB18030/GBK text"
    )


@dataclass
class Counts:
    total: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejections: list[GazetteRejection] = field(default_factory=list)

    def report(self) -> GazetteImportReport:
        return GazetteImportReport(
            total_rows=self.total,
            created=self.created,
            updated=self.updated,
            unchanged=self.unchanged,
            rejected=len({r.line for r in self.rejections}),
            rejections=self.rejections,
        )


class RowRejected(Exception):
    def __init__(self, errors: list[tuple[str, str, str]]) -> None:
        super().__init__(errors)
        self.errors = errors


def _cell(row: dict[str, str | None], name: str) -> str | None:
    value = (row.get(name) or "").strip()
    return value or None


def _date(row: dict[str, str | None], name: str) -> date | None:
    value = _cell(row, name)
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise RowRejected([(name, "date", f"{value!r} is not a date (YYYY-MM-DD)")]) from exc


def _validation(exc: ValidationError) -> RowRejected:
    return RowRejected(
        [(".".join(str(p) for p in e["loc"]) or "row", e["type"], e["msg"]) for e in exc.errors()]
    )


def document(row: dict[str, str | None], today: date, guidance: Guidance) -> CatalogueDocument:
    """The row as a `cnipa` offer's catalogue document; RowRejected naming the columns."""
    missing = [
        (name, "required", f"{name} is required") for name in REQUIRED if not _cell(row, name)
    ]
    if missing:
        raise RowRejected(missing)
    kind, number = str(_cell(row, "kind")), str(_cell(row, "patent_number"))
    errors = [(e.field, e.rule, e.message) for e in check_kind(kind, field="kind")]
    if errors:
        raise RowRejected(errors)
    try:
        identifier = normalize_identifier(kind, number)
    except IdentifierError as exc:
        raise RowRejected([("patent_number", exc.rule, exc.message)]) from exc
    announced_on = _date(row, "announced_on")
    assert announced_on is not None
    status = _cell(row, "status") or "published"
    if status not in STATUSES:
        raise RowRejected([("status", "status", f"status is one of {', '.join(STATUSES)}")])
    try:
        terms = OpenLicenseTerms.model_validate(
            {
                name: _cell(row, name)
                for name in (
                    "fee_type",
                    "lump_sum",
                    "entry_fee",
                    "royalty_rate",
                    "royalty_basis",
                    "starts_on",
                    "ends_on",
                    "evaluation_report",
                )
            }
        )
    except ValidationError as exc:
        raise _validation(exc) from exc
    errors = [
        (e.field.removeprefix("terms."), e.rule, e.message)
        for e in check_terms(terms, kind=kind, expires_on=None, guidance=guidance)
    ]
    if errors:
        raise RowRejected(errors)
    holders = [
        {"name": name.strip()}
        for name in str(_cell(row, "patentees")).replace("；", ";").split(";")
        if name.strip()
    ]
    updated_at = datetime.combine(announced_on, time(), tzinfo=UTC)
    try:
        return CatalogueDocument.model_validate(
            {
                "offer_id": offer_id(EXCHANGE, identifier),
                "source": {
                    "exchange": EXCHANGE,
                    "listing_id": identifier,
                    "url": None,
                    "updated_at": updated_at,
                    # A later announcement of the same patent's declaration wins.
                    "version": int(announced_on.strftime("%Y%m%d")),
                },
                "asset": {
                    "kind": kind,
                    "identifier": identifier,
                    "title": {"zh": _cell(row, "title")},
                    "holders": holders,
                    "filed_on": _date(row, "filed_on"),
                    "granted_on": _date(row, "granted_on"),
                    "legal_status": "granted",
                },
                "transaction": transaction_terms(terms, territory="CN", field_of_use=None),
                "status": status,
                "published_at": updated_at if status == "published" else None,
                "seller": "、".join(h["name"] for h in holders),
            }
        )
    except ValidationError as exc:
        raise _validation(exc) from exc


def rows(text: str) -> Iterator[tuple[int, dict[str, str | None]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [name for name in REQUIRED if name not in (reader.fieldnames or [])]
    if missing:
        raise UnprocessableEntity.single(
            "body", "columns", f"the file has no column {', '.join(missing)}"
        )
    for row in reader:
        yield reader.line_num, row


async def import_rows(ctx: Context, text: str, guidance: Guidance) -> GazetteImportReport:
    """Every row in its own savepoint: a rejected row leaves nothing behind."""
    counts = Counts()
    for line, row in rows(text):
        counts.total += 1
        try:
            doc = document(row, ctx.today, guidance)
            async with ctx.session.begin_nested():
                result = await offers.upsert(
                    ctx,
                    EXCHANGE,
                    doc.source.listing_id,
                    doc,
                    exchange_name=EXCHANGE_NAME,
                    exchange_region=EXCHANGE_REGION,
                )
        except RowRejected as exc:
            counts.rejections += [
                GazetteRejection(line=line, field=f, rule=r, message=m) for f, r, m in exc.errors
            ]
            continue
        except ProblemError as exc:
            counts.rejections += _problem_rejections(line, exc)
            continue
        if not result.applied:
            counts.unchanged += 1
        elif result.version == 1:
            counts.created += 1
        else:
            counts.updated += 1
    return counts.report()


def _problem_rejections(line: int, exc: ProblemError) -> list[GazetteRejection]:
    errors: list[Any] = exc.errors or []
    if not errors:
        return [GazetteRejection(line=line, field="row", rule=exc.problem_slug, message=str(exc))]
    return [
        GazetteRejection(line=line, field=e.field, rule=e.rule, message=e.message) for e in errors
    ]
