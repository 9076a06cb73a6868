"""The incentives report (issue 23) against the real PostgreSQL: deals closed through the API
earn what the policy says; a year of generated deals gives totals equal to a check computed here
from the deals themselves (not from the report's SQL); the CSV and XLSX exports read back
(openpyxl, not the library that wrote them) to the JSON's totals; the charts are SVG; bad input
is a 422 naming the field; the report is the operators' only."""

from __future__ import annotations

import csv
import io
import random
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from xml.etree import ElementTree

import httpx
import openpyxl
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from services.listing.dependencies import today_in_china
from services.listing.incentives.rules import (
    PROGRAMMES,
    Rates,
    eligible,
    programme_of,
    region_group,
)
from services.listing.models import Asset, Deal, Listing, Organization
from shared.schemas import encode_page_token as token
from shared.settings import Settings
from support import (
    assert_problem,
    bearer,
    new_organization,
    patent,
    publish_listing,
    real_application_numbers,
    terms,
)

NUMBERS = real_application_numbers("invention_patent")
RATES = Rates(Decimal("0.01"), Decimal("0.5"), Decimal("0.1"))
# The generated deals' year, and the edge deals' years either side of it, all before this one:
# the API's deals close today, in a year of their own whatever order the tests run in.
YEAR = today_in_china().year - 2
GENERATED = 400
REGIONS = ["110108", "120116", "130682", "139002", "130181", "130627", "131082", "133100",
           "130000", "130102", "320102"]  # fmt: skip
KINDS = ["invention_patent", "utility_model", "design_patent", "trademark", "plant_variety"]
TYPES = [
    "assignment",
    "exclusive_license",
    "nonexclusive_license",
    "open_license",
    "pledge_financing",
    "equity_contribution",
]
CENT = Decimal("0.01")


# ------------------------------------------------------------------------------ the data


async def generated_deals(app: FastAPI) -> list[dict[str, Any]]:
    """GENERATED deals of YEAR over six sellers, stored as the deals table holds them (rows
    written directly: the API closes deals only on today's date): varied regions, kinds,
    types, amounts (some missing, some confidential, some ending in half a cent of earnings)."""
    rng = random.Random(23)
    sellers = [
        Organization(name=f"测试卖方{i}", kind="enterprise", region=REGIONS[i]) for i in range(6)
    ]
    deals: list[dict[str, Any]] = []
    async with app.state.sessionmaker() as session:
        session.add_all(sellers)
        await session.flush()
        for n in range(GENERATED):
            seller = sellers[n % len(sellers)]
            kind, type_ = rng.choice(KINDS), rng.choice(TYPES)
            asset = Asset(
                kind=kind,
                identifier=f"GEN{n:06d}",
                holders=[{"name": seller.name}],
                legal_status="granted",
            )
            session.add(asset)
            await session.flush()
            listing = Listing(
                asset_id=asset.id,
                seller_id=seller.id,
                exchange="jjj",
                external_id=str(uuid.uuid4()),
                transaction_type=type_,
                price_mode="negotiable",
                status="closed",
            )
            session.add(listing)
            await session.flush()
            amount = (
                None
                if n % 17 == 0
                else Decimal(rng.randrange(1, 10**9)) / 100 + Decimal("0.05") * (n % 2)
            )
            deal = Deal(
                listing_id=listing.id,
                seller_id=seller.id,
                buyer_name="某买方",
                transaction_type=type_,
                asset_kind=kind,
                amount=amount,
                confidential=n % 5 == 0,
                closed_on=date(YEAR, 1, 1) + timedelta(days=rng.randrange(365)),
                region=rng.choice(REGIONS),
            )
            session.add(deal)
            deals.append(
                {
                    "seller": str(seller.id),
                    "region": deal.region,
                    "kind": kind,
                    "type": type_,
                    "amount": amount,
                    "month": deal.closed_on.strftime("%Y-%m"),
                }
            )
        # A deal of the year before and of the year after: outside the report.
        for offset, closed_on in enumerate((date(YEAR - 1, 12, 31), date(YEAR + 1, 1, 1))):
            asset = Asset(
                kind="trademark",
                identifier=f"EDGE{offset}",
                holders=[{"name": "x"}],
                legal_status="granted",
            )
            session.add(asset)
            await session.flush()
            listing = Listing(
                asset_id=asset.id,
                seller_id=sellers[0].id,
                exchange="jjj",
                external_id=str(uuid.uuid4()),
                transaction_type="assignment",
                price_mode="fixed",
                status="closed",
            )
            session.add(listing)
            await session.flush()
            session.add(
                Deal(
                    listing_id=listing.id,
                    seller_id=sellers[0].id,
                    buyer_name="某买方",
                    transaction_type="assignment",
                    asset_kind="trademark",
                    amount=Decimal("999999.99"),
                    closed_on=closed_on,
                    region="110108",
                )
            )
        await session.commit()
    return deals


def earns(deal: dict[str, Any]) -> Decimal:
    """What one deal earns, from the rules' arithmetic (not from the report's SQL)."""
    programme = programme_of(deal["type"])
    if deal["amount"] is None or programme in (None, "pledge_interest"):
        return Decimal("0.00")
    assert programme is not None
    return eligible(deal["amount"], RATES.of(programme))


def expected_groups(deals: list[dict[str, Any]], key: str) -> dict[str, tuple[int, int, str, str]]:
    """(deals, deals with an amount, value, eligible) per group, as the API writes them."""
    sums: dict[str, list[Any]] = defaultdict(lambda: [0, 0, Decimal("0.00"), Decimal("0.00")])
    for deal in deals:
        group = region_group(deal["region"]) if key == "region" else deal[key]
        entry = sums[group]
        entry[0] += 1
        entry[1] += deal["amount"] is not None
        entry[2] += deal["amount"] or 0
        entry[3] += earns(deal)
    return {
        g: (c, a, f"{v.quantize(CENT)}", f"{e.quantize(CENT)}") for g, (c, a, v, e) in sums.items()
    }


def as_groups(items: list[dict[str, Any]]) -> dict[str, tuple[int, int, str, str]]:
    return {
        g["group"]: (g["deal_count"], g["amount_count"], g["value"], g["eligible"]) for g in items
    }


@pytest.fixture(scope="module")
async def generated(listing_app: FastAPI) -> list[dict[str, Any]]:
    return await generated_deals(listing_app)


@pytest.fixture(scope="module")
async def report(
    listing: httpx.AsyncClient, operator_key: str, generated: list[dict[str, Any]]
) -> dict[str, Any]:
    response = await listing.get(
        "/v1/incentives", params={"year": YEAR}, headers=bearer(operator_key)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def every_page(
    listing: httpx.AsyncClient, path: str, key: str, params: dict[str, Any]
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    token = ""
    while True:
        response = await listing.get(
            path, params={**params, "page_token": token}, headers=bearer(key)
        )
        assert response.status_code == 200, response.text
        items += response.json()["items"]
        token = response.json()["next_page_token"]
        if not token:
            return items


# ------------------------------------------------------------------------------ the API's deals


async def close(
    listing: httpx.AsyncClient, seller_key: str, operator_key: str, type_: str, amount: str,
    *, confidential: bool = False,
) -> dict[str, Any]:  # fmt: skip
    number = next(NUMBERS)
    body = {
        "asset": patent(
            "河北定州某研究院",
            number,
            filed_on=f"{number[:4]}-03-01",
            holders=[{"name": "河北定州某研究院", "region": "130682"}],
        ),
        "transaction": terms(type_, amount=amount),
    }
    listing_id = await publish_listing(listing, seller_key, operator_key, body)
    deal = {
        "listing_id": listing_id,
        "buyer_name": "天津某银行股份有限公司",
        "amount": amount,
        "confidential": confidential,
        "closed_on": today_in_china().isoformat(),
    }
    closed = await listing.post("/v1/deals", json=deal, headers=bearer(seller_key))
    assert closed.status_code == 201, closed.text
    result: dict[str, Any] = closed.json()
    return result


async def test_deals_closed_through_the_api_earn_what_the_policy_says(
    listing: httpx.AsyncClient, operator_key: str
) -> None:
    org_id, key = await new_organization(
        listing, operator_key, name="河北定州某研究院", region="130682", kind="research_institute"
    )
    licence = await close(listing, key, operator_key, "exclusive_license", "1150000.00")
    pledge = await close(listing, key, operator_key, "pledge_financing", "5000000.00")
    equity = await close(
        listing, key, operator_key, "equity_contribution", "2000000.05", confidential=True
    )
    year = today_in_china().year
    operator = bearer(operator_key)

    report = (await listing.get("/v1/incentives", params={"year": year}, headers=operator)).json()
    assert report["year"] == year and report["currency"] == "CNY"
    assert {r["programme"]: (r["rate"], r["computed"]) for r in report["rates"]} == {
        "licence_transfer": ("0.010000", True),
        "pledge_interest": ("0.500000", True),
        "equity": ("0.100000", True),
    }
    assert report["organization_count"] == 1
    # 1 % of 1,150,000.00; 10 % of 2,000,000.05 is 200,000.005, half up to the cent.
    assert report["totals"] == {
        "group": "total",
        "name": None,
        "deal_count": 3,
        "amount_count": 3,
        "value": "8150000.05",
        "eligible": "211500.01",
    }
    assert report["programmes"] == {
        "licence_transfer": {"deal_count": 1, "value": "1150000.00", "eligible": "11500.00"},
        "pledge_interest": {"deal_count": 1, "value": "5000000.00", "eligible": "0.00"},
        "equity": {"deal_count": 1, "value": "2000000.05", "eligible": "200000.01"},
    }
    # Dingzhou under Baoding's coding is reported as Dingzhou, one of Hebei's 13 cities.
    assert [(g["group"], g["name"]) for g in report["by_region"]] == [("139001", "定州市")]
    assert [g["group"] for g in report["by_month"]] == [today_in_china().strftime("%Y-%m")]
    assert any("issue 22" in note for note in report["notes"])

    orgs = await listing.get(
        "/v1/incentives/organizations", params={"year": year}, headers=operator
    )
    [org] = orgs.json()["items"]
    assert org["organization_id"] == org_id and org["region_group"] == "139001"
    assert (org["deal_count"], org["value"], org["eligible"]) == (3, "8150000.05", "211500.01")
    assert org["programmes"]["pledge_interest"] == {
        "deal_count": 1,
        "value": "5000000.00",
        "eligible": "0.00",
    }

    deals = await listing.get(
        "/v1/incentives/deals", params={"year": year, "organization_id": org_id}, headers=operator
    )
    by_id = {d["deal_id"]: d for d in deals.json()["items"]}
    assert by_id[licence["id"]]["eligible"] == "11500.00"
    assert by_id[licence["id"]]["rate"] == "0.010000"
    assert by_id[pledge["id"]]["programme"] == "pledge_interest"
    assert by_id[pledge["id"]]["eligible"] is None and by_id[pledge["id"]]["rate"] is None
    assert by_id[equity["id"]]["eligible"] == "200000.01"
    assert by_id[equity["id"]]["confidential"] is True
    assert by_id[equity["id"]]["amount"] == "2000000.05"  # operators see confidential amounts


# ------------------------------------------------------------------------------ a year of deals


async def test_totals_equal_a_check_computed_from_the_deals(
    report: dict[str, Any], generated: list[dict[str, Any]]
) -> None:
    everything = expected_groups([{**d, "all": "total"} for d in generated], "all")
    assert as_groups([report["totals"]]) == everything
    assert as_groups(report["by_region"]) == expected_groups(generated, "region")
    assert as_groups(report["by_kind"]) == expected_groups(generated, "kind")
    assert as_groups(report["by_transaction_type"]) == expected_groups(generated, "type")
    assert as_groups(report["by_month"]) == expected_groups(generated, "month")
    assert report["organization_count"] == 6
    regions = {g["group"]: g["name"] for g in report["by_region"]}
    assert regions["139002"] == "辛集市"  # 139002 and 130181 are both Xinji
    assert regions["131000"] == "廊坊市"  # Sanhe (131082) is Langfang's
    assert regions["133100"] == "雄安新区"
    assert regions["130000"] == "河北省（未注明城市）"
    assert regions["320000"] == "江苏省"
    for programme in PROGRAMMES:
        mine = [d for d in generated if programme_of(d["type"]) == programme]
        amounts = report["programmes"][programme]
        assert amounts["deal_count"] == len(mine)
        assert Decimal(amounts["eligible"]) == sum((earns(d) for d in mine), Decimal(0))


async def test_organisations_and_deals_page_through_the_same_totals(
    listing: httpx.AsyncClient,
    operator_key: str,
    report: dict[str, Any],
    generated: list[dict[str, Any]],
) -> None:
    orgs = await every_page(
        listing, "/v1/incentives/organizations", operator_key, {"year": YEAR, "page_size": 4}
    )
    assert len(orgs) == 6 == len({o["organization_id"] for o in orgs})
    assert [Decimal(o["eligible"]) for o in orgs] == sorted(
        (Decimal(o["eligible"]) for o in orgs), reverse=True
    )
    by_seller: dict[str, Decimal] = defaultdict(Decimal)
    for deal in generated:
        by_seller[deal["seller"]] += earns(deal)
    assert {o["organization_id"]: Decimal(o["eligible"]) for o in orgs} == by_seller
    deals = await every_page(
        listing, "/v1/incentives/deals", operator_key, {"year": YEAR, "page_size": 150}
    )
    assert len(deals) == GENERATED == len({d["deal_id"] for d in deals})
    assert all(str(YEAR) == d["closed_on"][:4] for d in deals)
    total = sum((Decimal(d["eligible"] or 0) for d in deals), Decimal(0))
    assert f"{total:.2f}" == report["totals"]["eligible"]


# ------------------------------------------------------------------------------ exports, charts


async def export(listing: httpx.AsyncClient, key: str, **params: str) -> httpx.Response:
    response = await listing.get(
        "/v1/incentives/export", params={"year": YEAR, **params}, headers=bearer(key)
    )
    assert response.status_code == 200, response.text
    return response


def csv_rows(response: httpx.Response) -> list[dict[str, str]]:
    assert response.headers["content-type"].startswith("text/csv")
    assert response.content.startswith(b"\xef\xbb\xbf")  # Excel reads it as UTF-8
    return list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))


def column_sum(rows: list[dict[str, str]], column: str) -> str:
    return f"{sum((Decimal(r[column] or 0) for r in rows), Decimal(0)):.2f}"


async def test_csv_totals_equal_the_json(
    listing: httpx.AsyncClient, operator_key: str, report: dict[str, Any]
) -> None:
    totals = report["totals"]
    organizations = csv_rows(await export(listing, operator_key, format="csv"))
    assert len(organizations) == report["organization_count"]
    deals = csv_rows(await export(listing, operator_key, format="csv", table="deals"))
    assert len(deals) == totals["deal_count"]
    for rows in (organizations, deals):
        assert column_sum(rows, "eligible") == totals["eligible"]
    assert column_sum(organizations, "value") == column_sum(deals, "amount") == totals["value"]
    for programme in PROGRAMMES:
        assert (
            column_sum(organizations, f"{programme}_eligible")
            == (report["programmes"][programme]["eligible"])
        )
    for table, key in (
        ("region", "by_region"),
        ("kind", "by_kind"),
        ("transaction_type", "by_transaction_type"),
        ("month", "by_month"),
    ):
        rows = csv_rows(await export(listing, operator_key, format="csv", table=table))
        assert [r["group"] for r in rows] == [g["group"] for g in report[key]]
        assert column_sum(rows, "eligible") == totals["eligible"]
        assert column_sum(rows, "value") == totals["value"]
    assert "定州市" in {r["region_name"] for r in deals}


async def test_xlsx_reads_back_to_the_json(
    listing: httpx.AsyncClient, operator_key: str, report: dict[str, Any]
) -> None:
    response = await export(listing, operator_key, format="xlsx")
    assert response.headers["content-type"].startswith("application/vnd.openxmlformats")
    assert f'filename="incentives-{YEAR}.xlsx"' in response.headers["content-disposition"]
    book = openpyxl.load_workbook(io.BytesIO(response.content), read_only=True)
    assert book.sheetnames == [
        "Summary",
        "By region",
        "By kind",
        "By transaction type",
        "By month",
        "Organisations",
        "Deals",
    ]

    def table(name: str) -> list[dict[str, Any]]:
        rows = list(book[name].iter_rows(values_only=True))
        header = [str(cell) for cell in rows[0]]
        return [dict(zip(header, row, strict=True)) for row in rows[1:]]

    def money(rows: list[dict[str, Any]], column: str) -> str:
        total = sum((Decimal(str(r[column])) for r in rows if r[column] is not None), Decimal(0))
        return f"{total:.2f}"

    totals = report["totals"]
    deals, organizations = table("Deals"), table("Organisations")
    assert len(deals) == totals["deal_count"]
    assert len(organizations) == report["organization_count"]
    assert money(deals, "eligible") == money(organizations, "eligible") == totals["eligible"]
    assert money(deals, "amount") == totals["value"]
    regions = table("By region")
    assert {r["group"]: r["deal_count"] for r in regions} == {
        g["group"]: g["deal_count"] for g in report["by_region"]
    }
    summary = {row[0]: row[1] for row in book["Summary"].iter_rows(values_only=True) if row}
    assert summary["Incentives report"] == YEAR
    assert f"{Decimal(str(summary['Eligible'])):.2f}" == totals["eligible"]


@pytest.mark.parametrize(("chart", "rows"), [("month", 12), ("region", None), ("kind", None)])
async def test_charts_are_svg_with_a_bar_per_group(
    listing: httpx.AsyncClient,
    operator_key: str,
    report: dict[str, Any],
    chart: str,
    rows: int | None,
) -> None:
    response = await listing.get(
        f"/v1/incentives/charts/{chart}", params={"year": YEAR}, headers=bearer(operator_key)
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("image/svg+xml")
    svg = ElementTree.fromstring(response.content)
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    ns = {"s": "http://www.w3.org/2000/svg"}
    deals = svg.findall("s:rect[@class='deals']", ns)
    groups = report["by_kind" if chart == "kind" else "by_region"]
    assert len(deals) == (rows or len(groups))
    counts = sorted(int(bar.findtext("s:title", namespaces=ns) or 0) for bar in deals)
    assert sum(counts) == report["totals"]["deal_count"]
    texts = {t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")}
    if chart == "region":
        assert {"定州市", "辛集市", "北京市", "天津市"} <= texts
    if chart == "kind":
        assert "发明专利" in texts


# ------------------------------------------------------------------------------ bad input, who


@pytest.mark.parametrize(
    ("path", "params", "field", "rule"),
    [
        ("/v1/incentives", {}, "year", "missing"),
        ("/v1/incentives", {"year": "2025x"}, "year", "int_parsing"),
        ("/v1/incentives", {"year": "1900"}, "year", "greater_than_equal"),
        ("/v1/incentives", {"year": "99999"}, "year", "less_than_equal"),
        ("/v1/incentives/organizations", {"year": "NEXT"}, "year", "not_in_future"),
        ("/v1/incentives", {"year": "2025", "limit": "5"}, "limit", "unknown_parameter"),
        ("/v1/incentives/export", {"year": "2025", "format": "pdf"}, "format", "literal_error"),
        ("/v1/incentives/export", {"year": "2025"}, "format", "missing"),
        (
            "/v1/incentives/export",
            {"year": "2025", "format": "csv", "table": "banks"},
            "table",
            "literal_error",
        ),
        (
            "/v1/incentives/export",
            {"year": "2025", "format": "xlsx", "table": "deals"},
            "table",
            "csv_only",
        ),
        ("/v1/incentives/charts/bank", {"year": "2025"}, "chart", "literal_error"),
        ("/v1/incentives/deals", {"year": "2025", "page_token": "nope"}, "page_token", None),
        (
            "/v1/incentives/organizations",
            {
                "year": "2025",
                "page_token": token({"eligible": "1e999999", "id": str(uuid.UUID(int=1))}),
            },
            "page_token",
            "page_token_invalid",
        ),
        (
            "/v1/incentives/organizations",
            {"year": "2025", "page_token": token({"eligible": "NaN", "id": str(uuid.UUID(int=1))})},
            "page_token",
            "page_token_invalid",
        ),
        (
            "/v1/incentives/deals",
            {"year": "2025", "page_token": token({"closed_on": "2025-13-01", "id": "x"})},
            "page_token",
            "page_token_invalid",
        ),
        (
            "/v1/incentives/deals",
            {"year": "2025", "organization_id": "x"},
            "organization_id",
            "uuid_parsing",
        ),
        ("/v1/incentives/organizations", {"year": "2025", "page_size": "0"}, "page_size", None),
    ],
)
async def test_bad_input_is_a_422_naming_the_field(
    listing: httpx.AsyncClient,
    operator_key: str,
    path: str,
    params: dict[str, str],
    field: str,
    rule: str | None,
) -> None:
    if params.get("year") == "NEXT":
        params = {**params, "year": str(today_in_china().year + 1)}
    response = await listing.get(path, params=params, headers=bearer(operator_key))
    errors = assert_problem(response, 422)["errors"]
    assert any(e["field"] == field and rule in (None, e["rule"]) for e in errors), errors


PATHS = [
    "/v1/incentives",
    "/v1/incentives/organizations",
    "/v1/incentives/deals",
    "/v1/incentives/export?format=csv",
    "/v1/incentives/charts/month",
]


@pytest.mark.parametrize("path", PATHS)
async def test_only_operators_read_the_report(
    listing: httpx.AsyncClient, operator_key: str, service_key: str, path: str
) -> None:
    _, admin = await new_organization(
        listing, operator_key, name=f"某企业{uuid.uuid4().hex[:6]}", region="130100"
    )
    url = f"{path}{'&' if '?' in path else '?'}year={YEAR}"
    assert_problem(await listing.get(url), 401)
    for key in (admin, service_key):
        assert_problem(await listing.get(url, headers=bearer(key)), 403)
    # 403 before the parameters are read: a non-operator learns nothing from a 422.
    assert_problem(await listing.get(path + "?year=1", headers=bearer(admin)), 403)


@pytest.fixture(scope="module")
async def doubled(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A second listing app on the same database, with other rates."""
    from services.listing.app import create_app

    app = create_app(
        settings.model_copy(
            update={
                "incentive_licence_rate": Decimal("0.02"),
                "incentive_equity_rate": Decimal("0.2"),
                "run_workers": False,
            }
        )
    )
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://listing.test") as c:
            yield c


async def test_rates_are_settings(
    doubled: httpx.AsyncClient,
    operator_key: str,
    report: dict[str, Any],
    generated: list[dict[str, Any]],
) -> None:
    response = await doubled.get(
        "/v1/incentives", params={"year": YEAR}, headers=bearer(operator_key)
    )
    assert response.status_code == 200, response.text
    other = response.json()
    assert [r["rate"] for r in other["rates"]] == ["0.020000", "0.500000", "0.200000"]
    expected = sum(
        (
            eligible(
                d["amount"],
                Decimal("0.02") if d["type"] != "equity_contribution" else Decimal("0.2"),
            )
            for d in generated
            if d["amount"] is not None and programme_of(d["type"]) in ("licence_transfer", "equity")
        ),
        Decimal(0),
    )
    assert other["totals"]["eligible"] == f"{expected:.2f}"
    assert other["totals"]["value"] == report["totals"]["value"]
