"""How long the incentives report (issue 23) takes for a year of N deals, through the listing
service running as a process on a real PostgreSQL (target: the yearly report for 100,000 deals
in at most 2 s), and whether its totals equal a check computed here from the raw deals.

    .venv/bin/python tests/perf/bench_incentives.py                 # 100,000 deals
    .venv/bin/python tests/perf/bench_incentives.py --deals 10000 --runs 5

It starts its own PostgreSQL (and the Meilisearch every stack has) with stack.py, loads the
deals with SQL (`generate_series`: ORGANIZATIONS sellers across Beijing, Tianjin, Hebei's cities
and two other provinces, every kind and transaction type, 1 in 23 without an amount, 1 in 5
confidential, closing dates spread over the year, and a few deals of the year before that the
report must leave out), ANALYZEs, then times each request `--runs` times after one warm-up
and prints the median (with min and max): the report (JSON), the first page of organisations,
the first page of one organisation's deals, a chart, the CSV of organisations and of deals, and
the XLSX of everything. The independent check reads the deals back and sums them in Python
with the policy's arithmetic (rules.eligible per deal), not with the report's SQL.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections import defaultdict
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

PERF = Path(__file__).resolve().parent
if str(PERF) not in sys.path:
    sys.path.insert(0, str(PERF))

import asyncpg  # noqa: E402
import httpx  # noqa: E402
from stack import Infra, Stack  # noqa: E402

from services.listing.incentives.rules import (  # noqa: E402
    Rates,
    eligible,
    programme_of,
    region_group,
)

ORGANIZATIONS = 2000
OUTSIDE_YEAR = 1000
RATES = Rates(Decimal("0.01"), Decimal("0.5"), Decimal("0.1"))
TARGET_SECONDS = 2.0
REGIONS = ["110108", "110105", "110114", "120116", "120104", "130102", "130203", "130304",
           "130402", "130503", "130627", "130682", "130702", "130802", "130902", "131082",
           "131102", "139002", "130181", "133100", "320102", "440305"]  # fmt: skip
KINDS = ["invention_patent", "utility_model", "design_patent", "trademark", "software_copyright",
         "copyright_work", "ic_layout", "plant_variety", "geographical_indication"]  # fmt: skip
TYPES = ["assignment", "exclusive_license", "sole_license", "nonexclusive_license",
         "open_license", "pledge_financing", "equity_contribution"]  # fmt: skip


def _array(values: list[str]) -> str:
    return "ARRAY[" + ", ".join(f"'{v}'" for v in values) + "]"


# n's attributes, the same expressions for the listing and its deal.
_KIND = f"({_array(KINDS)})[1 + n % {len(KINDS)}]"
_TYPE = f"({_array(TYPES)})[1 + (n / 3) % {len(TYPES)}]"
_SELLER = f"CAST(md5('org-' || (n % {ORGANIZATIONS})) AS uuid)"

LOAD = [
    f"""INSERT INTO listing.organizations (id, name, kind, region, verified, version,
           created_at, updated_at)
        SELECT CAST(md5('org-' || n) AS uuid), '基准机构' || n, 'enterprise',
               ({_array(REGIONS)})[1 + n % {len(REGIONS)}], true, 1, now(), now()
        FROM generate_series(0, {ORGANIZATIONS - 1}) AS n""",
    f"""INSERT INTO listing.assets (id, kind, identifier, classifications, holders,
           legal_status, encumbrances, needs_review, version, created_at, updated_at)
        SELECT CAST(md5('asset-' || n) AS uuid), {_KIND}, 'BENCH' || n, '{{}}', '[]',
               'granted', '[]', false, 1, now(), now()
        FROM generate_series(1, $1::int) AS n""",
    f"""INSERT INTO listing.listings (id, asset_id, seller_id, exchange, external_id,
           transaction_type, price_mode, currency, pledge_disclosed, status, version,
           created_at, updated_at)
        SELECT CAST(md5('listing-' || n) AS uuid), CAST(md5('asset-' || n) AS uuid), {_SELLER},
               'jjj', 'bench-' || n, {_TYPE}, 'fixed', 'CNY', false, 'closed', 1, now(), now()
        FROM generate_series(1, $1::int) AS n""",
    # Deals 1..$2 close in the year before the report's (left out), the rest in its year.
    f"""INSERT INTO listing.deals (id, listing_id, seller_id, buyer_name, transaction_type,
           asset_kind, amount, confidential, closed_on, region, created_at)
        SELECT CAST(md5('deal-' || n) AS uuid), CAST(md5('listing-' || n) AS uuid), {_SELLER},
               '某买方', {_TYPE}, {_KIND},
               CASE WHEN n % 23 = 0 THEN NULL
                    ELSE round(1000 + (abs(hashtext('amount-' || n)) % 500000000) / 100.0
                               + (n % 2) * 0.05, 2) END,
               n % 5 = 0,
               CASE WHEN n <= $2::int THEN make_date($3::int - 1, 12, 1 + n % 31)
                    ELSE make_date($3::int, 1, 1) + (abs(hashtext('day-' || n)) % 365) END,
               ({_array(REGIONS)})[1 + abs(hashtext('region-' || n)) % {len(REGIONS)}],
               now()
        FROM generate_series(1, $1::int) AS n""",
]


async def load(stack: Stack, deals: int, year: int) -> float:
    """The deals (and OUTSIDE_YEAR more of the year before): seconds it took."""
    started = time.perf_counter()
    conn = await asyncpg.connect(**stack.connect_kwargs())
    try:
        total = deals + OUTSIDE_YEAR
        await conn.execute(LOAD[0])
        await conn.execute(LOAD[1], total)
        await conn.execute(LOAD[2], total)
        await conn.execute(LOAD[3], total, OUTSIDE_YEAR, year)
        await conn.execute("ANALYZE listing.organizations, listing.deals")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def independent_totals(stack: Stack, year: int) -> dict[str, Any]:
    """The year's totals from the raw deals, summed here with the policy's arithmetic."""
    conn = await asyncpg.connect(**stack.connect_kwargs())
    try:
        rows = await conn.fetch(
            "SELECT seller_id, transaction_type, asset_kind, amount, region, closed_on "
            "FROM listing.deals WHERE closed_on >= $1 AND closed_on <= $2",
            date(year, 1, 1),
            date(year, 12, 31),
        )
    finally:
        await conn.close()
    by_region: dict[str, Decimal] = defaultdict(Decimal)
    by_kind: dict[str, int] = defaultdict(int)
    sellers = set()
    value = earned = Decimal(0)
    for row in rows:
        programme = programme_of(row["transaction_type"])
        amount = row["amount"]
        deal_earns = Decimal(0)
        if amount is not None and programme in ("licence_transfer", "equity"):
            assert programme is not None
            deal_earns = eligible(amount, RATES.of(programme))
        value += amount or 0
        earned += deal_earns
        by_region[region_group(row["region"])] += deal_earns
        by_kind[row["asset_kind"]] += 1
        sellers.add(row["seller_id"])
    return {
        "deal_count": len(rows),
        "value": f"{value:.2f}",
        "eligible": f"{earned:.2f}",
        "organization_count": len(sellers),
        "by_region": {k: f"{v:.2f}" for k, v in by_region.items()},
        "by_kind": dict(by_kind),
    }


def time_requests(
    client: httpx.Client, url: str, params: dict[str, Any], runs: int
) -> tuple[list[float], httpx.Response]:
    """Seconds of each of `runs` requests, after one warm-up; the last response."""
    response = client.get(url, params=params)
    response.raise_for_status()
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url, params=params)
        seconds.append(time.perf_counter() - started)
        response.raise_for_status()
    return seconds, response


def run(stack: Stack, deals: int, year: int, runs: int) -> dict[str, Any]:
    loaded = asyncio.run(load(stack, deals, year))
    print(f"loaded {deals:,} deals of {year} (+{OUTSIDE_YEAR:,} of {year - 1}) in {loaded:.1f} s")
    check = asyncio.run(independent_totals(stack, year))
    base = stack.url("listing")
    results: dict[str, Any] = {"deals": deals, "year": year, "runs": runs, "timings": {}}
    with httpx.Client(base_url=base, headers=stack.operator, timeout=600) as client:
        report: dict[str, Any] = {}
        one_org = ""
        scenarios: list[tuple[str, str, dict[str, Any]]] = [
            ("report (JSON)", "/v1/incentives", {}),
            ("organisations, first page of 50", "/v1/incentives/organizations", {}),
            ("one organisation's deals, first page", "/v1/incentives/deals", {}),
            ("chart by region (SVG)", "/v1/incentives/charts/region", {}),
            ("CSV of organisations", "/v1/incentives/export", {"format": "csv"}),
            ("CSV of deals", "/v1/incentives/export", {"format": "csv", "table": "deals"}),
            ("XLSX, every table", "/v1/incentives/export", {"format": "xlsx"}),
        ]
        for name, url, extra in scenarios:
            params: dict[str, Any] = {"year": year, **extra}
            if url.endswith("/deals"):
                params["organization_id"] = one_org
            seconds, response = time_requests(client, url, params, runs)
            if url == "/v1/incentives":
                report = response.json()
            if url.endswith("/organizations"):
                one_org = response.json()["items"][0]["organization_id"]
            results["timings"][name] = {
                "median_s": statistics.median(seconds),
                "min_s": min(seconds),
                "max_s": max(seconds),
                "bytes": len(response.content),
            }
    totals = report["totals"]
    got = {
        "deal_count": totals["deal_count"],
        "value": totals["value"],
        "eligible": totals["eligible"],
        "organization_count": report["organization_count"],
        "by_region": {g["group"]: g["eligible"] for g in report["by_region"]},
        "by_kind": {g["group"]: g["deal_count"] for g in report["by_kind"]},
    }
    results["equal_to_check"] = got == check
    results["report_totals"] = {k: got[k] for k in ("deal_count", "value", "eligible")}
    return results


def show(results: dict[str, Any]) -> None:
    print(
        f"\nincentives report, {results['deals']:,} deals of {results['year']}, "
        f"median of {results['runs']} runs after a warm-up (through the listing process):"
    )
    print(f"{'request':40} {'median':>9} {'min':>9} {'max':>9} {'size':>11}")
    for name, t in results["timings"].items():
        print(
            f"{name:40} {t['median_s'] * 1000:7.0f}ms {t['min_s'] * 1000:7.0f}ms "
            f"{t['max_s'] * 1000:7.0f}ms {t['bytes'] / 1000:9.0f}kB"
        )
    report = results["timings"]["report (JSON)"]["median_s"]
    met = report <= TARGET_SECONDS
    print(
        f"\nreport: {report:.3f} s median, target <= {TARGET_SECONDS:g} s: "
        f"{'met' if met else 'NOT met'}"
    )
    print(f"totals {results['report_totals']}")
    print(
        "totals equal the independent check (deals, value, eligible, organisations, by region, "
        f"by kind): {'yes' if results['equal_to_check'] else 'NO'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deals", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--year", type=int, default=date.today().year - 1)
    args = parser.parse_args()
    with Infra.start() as infra, infra.stack(("listing",)) as stack:
        results = run(stack, args.deals, args.year, args.runs)
    show(results)
    return 0 if results["equal_to_check"] else 1


if __name__ == "__main__":
    sys.exit(main())
