"""Benchmark data from the real records, scaled to N rows.

Titles, abstracts, IPC codes and holders come from the real records; beyond the real records,
copies get synthesised identifiers (valid format, correct check digit, serials from 9,000,000 up:
outside the real ones) as NOTES.md allows. Nothing else is invented except the offers' terms.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from infra.seed.demo import demo_terms
from infra.seed.records import SeedRecord, load_records
from services.listing.assets.rules import check_filing_year
from services.listing.imports.parsing import CSV_COLUMNS
from shared.identifiers import cn_application_check_char

KIND_DIGIT = {"invention_patent": "1", "utility_model": "2", "design_patent": "3"}


def synthetic_identifier(kind: str, year: int, serial: int) -> str:
    digits = f"{year:04d}{KIND_DIGIT[kind]}{serial:07d}"
    return f"{digits}.{cn_application_check_char(digits)}"


def market_records() -> list[SeedRecord]:
    """The granted and pending records a holder can list: filed in or before their number's
    year (the seed holds four filed after it, errors of the source), and from 2004 on, the
    first year of the synthesised copies' numbers."""
    return [
        r
        for r in load_records()
        if r.asset.legal_status in ("granted", "pending")
        and (
            r.asset.filed_on is None
            or (
                r.asset.filed_on.year >= 2004
                and check_filing_year(r.asset.kind, r.asset.identifier, r.asset.filed_on) is None
            )
        )
    ]


def scaled_records(n: int, holder: str) -> Iterator[tuple[SeedRecord, str]]:
    """(real record, identifier) pairs: the real identifiers first, then synthesised copies."""
    records = market_records()
    for i in range(n):
        record = records[i % len(records)]
        if i < len(records):
            yield record, record.asset.identifier
        else:
            year = record.asset.filed_on.year if record.asset.filed_on else 2020
            yield record, synthetic_identifier(record.asset.kind, max(year, 2004), 9_000_000 + i)


def import_csv(n: int, holder: str) -> bytes:
    """A university office's file: N rows of assets with their listings, holder `holder`."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for record, identifier in scaled_records(n, holder):
        asset = record.asset
        terms = demo_terms(identifier)
        writer.writerow(
            [
                asset.kind,
                identifier,
                "",
                asset.title.zh or "",
                asset.title.en or "",
                (asset.abstract.zh or "")[:500],
                "",
                ";".join(asset.classifications.ipc),
                "",
                "",
                holder,
                "",
                "110108",
                asset.filed_on or "",
                asset.granted_on or "",
                asset.legal_status,
                terms["type"],
                terms["price"]["mode"],
                terms["price"].get("amount") or "",
                terms.get("royalty_rate") or "",
                terms.get("term_months") or "",
                "CN",
                "",
                "false",
            ]
        )
    return out.getvalue().encode()
