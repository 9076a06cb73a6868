"""The launcher's demo data: real patent records of Beijing, Tianjin and Hebei holders, listed
through the real API (sign-up, operator verification, an operator's publishing import).

The records are real; the offers' terms are not in any public record, so they are chosen
deterministically from the identifier (a spread of transaction types and prices). Each listing's
seller is the first holder whose region is inferred in Beijing, Tianjin or Hebei. Seeding is
skipped when published listings exist already, so a restart does not seed twice.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

from infra.seed.records import SeedRecord, load_records
from infra.seed.regions import JJJ_PROVINCES

LAWFUL = frozenset({"granted", "pending"})
TYPES = (
    "nonexclusive_license",
    "exclusive_license",
    "assignment",
    "open_license",
    "sole_license",
    "nonexclusive_license",
    "equity_contribution",
)


@dataclass
class SeedSummary:
    organizations: int = 0
    listings: int = 0
    rejected: int = 0
    skipped: bool = False


def seller_of(record: SeedRecord) -> tuple[str, str] | None:
    """The first holder in Beijing, Tianjin or Hebei: (name, region)."""
    for holder in record.asset.holders:
        if holder.region and holder.region[:2] in JJJ_PROVINCES:
            return holder.name, holder.region
    return None


def organization_kind(name: str) -> str:
    if "大学" in name or "学院" in name:
        return "university"
    if "研究所" in name or "研究院" in name or "科学院" in name:
        return "research_institute"
    return "enterprise"


def demo_terms(identifier: str) -> dict[str, Any]:
    """Deterministic, varied terms for one record."""
    digest = int(hashlib.sha256(identifier.encode()).hexdigest()[:8], 16)
    kind = TYPES[digest % len(TYPES)]
    amount = Decimal(50_000 + (digest // 7) % 4_950_000).quantize(Decimal("1000"))
    if kind == "open_license":
        rate = Decimal(20 + digest % 41) / Decimal(1000)
        return {
            "type": kind,
            "price": {"mode": "royalty"},
            "royalty_rate": str(rate),
            "term_months": 36,
            "territory": "CN",
        }
    if digest % 3 == 0:
        return {"type": kind, "price": {"mode": "negotiable"}, "territory": "CN"}
    return {
        "type": kind,
        "price": {"mode": "fixed", "amount": f"{amount}.00"},
        "term_months": 60 if kind.endswith("license") else None,
        "territory": "CN",
    }


def demo_import_line(record: SeedRecord) -> str:
    """The record as one NDJSON line of a publishing import, with its demo terms."""
    return json.dumps(
        {
            "asset": record.asset.model_dump(mode="json"),
            "transaction": demo_terms(record.asset.identifier),
        },
        ensure_ascii=False,
    )


def demo_catalogue(limit: int = 5000) -> list[tuple[tuple[str, str], list[SeedRecord]]]:
    """The demo's listings by seller ((name, region), records), largest seller first: the
    lawful records of holders in Beijing, Tianjin or Hebei, at most `limit` in all."""
    by_seller: dict[tuple[str, str], list[SeedRecord]] = defaultdict(list)
    for record in load_records():
        seller = seller_of(record)
        if seller and record.asset.legal_status in LAWFUL:
            by_seller[seller].append(record)
    catalogue = []
    taken = 0
    for seller, records in sorted(by_seller.items(), key=lambda kv: -len(kv[1])):
        records = records[: max(0, limit - taken)]
        if not records:
            break
        catalogue.append((seller, records))
        taken += len(records)
    return catalogue


def seed_demo(
    listing_url: str,
    operator_key: str,
    *,
    limit: int = 5000,
    progress: Callable[[str], None] = lambda _message: None,
) -> SeedSummary:
    summary = SeedSummary()
    headers = {"Authorization": f"Bearer {operator_key}"}
    with httpx.Client(base_url=listing_url, headers=headers, timeout=120) as client:
        existing = client.get("/v1/listings", params={"status": "published", "page_size": 1})
        existing.raise_for_status()
        if existing.json()["items"]:
            summary.skipped = True
            return summary
        for (name, region), records in demo_catalogue(limit):
            signed_up = client.post(
                "/v1/organizations",
                json={"name": name, "kind": organization_kind(name), "region": region},
            )
            signed_up.raise_for_status()
            org_id = signed_up.json()["organization"]["id"]
            client.patch(f"/v1/organizations/{org_id}", json={"verified": True}).raise_for_status()
            lines = [demo_import_line(r) for r in records]
            report = client.post(
                "/v1/imports",
                params={"mode": "publish", "seller_id": org_id},
                content="\n".join(lines).encode(),
                headers={"Content-Type": "application/x-ndjson"},
            )
            report.raise_for_status()
            summary.organizations += 1
            summary.listings += report.json()["created"]
            summary.rejected += report.json()["rejected"]
            progress(f"{summary.listings} listings of {summary.organizations} organisations")
    return summary
