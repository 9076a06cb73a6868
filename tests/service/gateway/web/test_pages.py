"""The web catalogue's pages over HTTP: what each shows, the language, the identifier shortcut,
and bad input rendered as an error page (never a 500). The browser test (test_browser.py) looks
at the same pages in Chromium."""

from __future__ import annotations

import itertools
import re

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from service.gateway.web.conftest import PARTNER, Catalogue
from shared.settings import Settings
from support import bearer, partner_document, real_application_numbers, wait_indexed


def typed_form(number: str) -> str:
    """201710601862.3 as a person types it: ZL 2017 1 0601862.3."""
    return f"ZL {number[:4]} {number[4]} {number[5:]}"


async def page(gateway: httpx.AsyncClient, path: str, **kwargs: object) -> httpx.Response:
    response = await gateway.get(path, **kwargs)  # type: ignore[arg-type]
    assert response.headers["content-type"].startswith("text/html"), response.text
    return response


async def test_search_page_shows_results_facets_and_highlights(
    gateway: httpx.AsyncClient, catalogue: Catalogue
) -> None:
    response = await page(gateway, "/", params={"q": "锂离子电池"})
    assert response.status_code == 200
    html = response.text
    assert '<html lang="zh-CN">' in html
    assert "<mark>" in html  # the title's match, highlighted
    for facet in ("kind", "transaction_type", "province", "legal_status", "exchange"):
        assert f'id="facet-{facet}"' in html, facet
    # Counts beside each value; browsing everything, the partner exchange among them (a
    # right only it offers).
    browse = (await page(gateway, "/")).text
    assert re.search(r'value="tjipe"[^>]*>\s*<label[^>]*>tjipe <span class="count">\(\d+\)', browse)
    timing = response.headers["server-timing"]
    assert re.fullmatch(r"api;dur=[\d.]+, page;dur=[\d.]+", timing), timing


async def test_a_facet_filters_like_the_api(
    gateway: httpx.AsyncClient, catalogue: Catalogue
) -> None:
    api = (await gateway.get("/v1/catalogue/search", params={"exchange": "tjipe"})).json()
    html = (await page(gateway, "/", params={"exchange": "tjipe"})).text
    shown = re.findall(r'<li class="hit" data-asset="([0-9a-f-]+)"', html)
    assert shown == [hit["asset_id"] for hit in api["items"]]
    assert set(shown) == {catalogue.shared_asset, catalogue.partner_only_asset}
    assert re.search(r'value="tjipe"\s+checked', html)


async def test_paging_follows_the_api_contract(
    gateway: httpx.AsyncClient, catalogue: Catalogue
) -> None:
    first = (await page(gateway, "/", params={"page_size": "5"})).text
    token = re.search(
        r'rel="next" id="next-page" href="/\?page_size=5&amp;page_token=([^"]+)"', first
    )
    assert token, "the next page is linked by the API's next_page_token"
    api = (await gateway.get("/v1/catalogue/search", params={"page_size": 5, "page": 2})).json()
    by_token = (
        await page(gateway, "/", params={"page_size": "5", "page_token": token.group(1)})
    ).text
    by_number = (await page(gateway, "/", params={"page_size": "5", "page": "2"})).text
    expected = [hit["asset_id"] for hit in api["items"]]
    for html in (by_token, by_number):
        assert re.findall(r'data-asset="([0-9a-f-]+)"', html) == expected
        assert 'aria-current="page" href="/?page_size=5&amp;page=2"' in html


async def test_an_identifier_in_any_form_goes_to_its_asset(
    gateway: httpx.AsyncClient, catalogue: Catalogue
) -> None:
    for typed in (
        catalogue.shared_number,
        f"CN{catalogue.shared_number}",
        typed_form(catalogue.shared_number),
    ):
        response = await gateway.get("/", params={"q": typed, "lang": "en"})
        assert response.status_code == 303, (typed, response.text)
        assert response.headers["location"] == f"/assets/{catalogue.shared_asset}?lang=en"


async def test_the_asset_page_shows_every_offer_and_its_deal(
    gateway: httpx.AsyncClient, catalogue: Catalogue
) -> None:
    html = (await page(gateway, f"/assets/{catalogue.shared_asset}", params={"lang": "en"})).text
    assert '<html lang="en">' in html
    exchanges = re.findall(r'<tr class="offer" data-exchange="([a-z]+)"', html)
    assert sorted(exchanges) == ["jjj", "jjj", "tjipe"]
    assert 'href="https://tjipe.example/listings/TJ-24-1"' in html  # the source exchange
    assert "Closed" in html and "Non-exclusive licence" in html
    deals = html.split('id="deals"', 1)[1]
    assert "¥980,000.00" in deals and "天津中环半导体股份有限公司" in deals
    assert "H01M" in html and SELLER_NAME in html and "Granted" in html


SELLER_NAME = "中科寒武纪科技股份有限公司"


async def test_the_statistics_page_draws_the_public_statistics(
    gateway: httpx.AsyncClient, catalogue: Catalogue
) -> None:
    stats = await gateway.get("/v1/catalogue/deals/stats", params={"group_by": "region"})
    assert stats.status_code == 200, stats.text
    # Beijing: five deals; Tianjin: two, a group too small to publish.
    assert {g["group"]: g["deal_count"] for g in stats.json()["groups"]} == {"110000": 5}
    assert stats.headers["cache-control"] == "public, max-age=60"
    refused = await gateway.get("/v1/catalogue/deals/stats", params={"group_by": "seller"})
    assert refused.status_code == 422
    html = (await page(gateway, "/stats", params={"lang": "en"})).text
    for group_by in ("month", "region", "kind"):
        assert f'id="chart-{group_by}-count"' in html and f'id="chart-{group_by}-value"' in html
    region_chart = html.split('id="chart-region-count"', 1)[1].split("</svg>", 1)[0]
    assert "Beijing" in region_chart and "Tianjin" not in region_chart
    kind_chart = html.split('id="chart-kind-count"', 1)[1].split("</svg>", 1)[0]
    assert "Invention patent" in kind_chart and ">7<" in kind_chart
    # The same figures as a table, for screen readers and for copying.
    assert '<th scope="row">Beijing</th><td>5</td>' in html
    # Filtered to Tianjin: two deals, too few to publish any group.
    tianjin = (await page(gateway, "/stats", params={"lang": "en", "region": "12"})).text
    assert 'value="12" selected' in tianjin and "<svg" not in tianjin
    assert tianjin.count("No statistics to publish yet.") == 3


async def test_the_language_follows_accept_language(
    gateway: httpx.AsyncClient, catalogue: Catalogue
) -> None:
    english = await page(gateway, "/stats", headers={"Accept-Language": "en-GB,zh;q=0.5"})
    assert '<html lang="en">' in english.text and "Public deal statistics" in english.text
    chinese = await page(gateway, "/stats", headers={"Accept-Language": "zh-CN,en;q=0.8"})
    assert '<html lang="zh-CN">' in chinese.text and "公开交易统计" in chinese.text
    asked = await page(gateway, "/stats", params={"lang": "zh"}, headers={"Accept-Language": "en"})
    assert "公开交易统计" in asked.text


@pytest.mark.parametrize(
    ("path", "params", "status", "shown"),
    [
        ("/", {"page": "abc"}, 422, "page"),
        ("/", {"page": "0"}, 422, "page"),
        ("/", {"page": "500", "page_size": "100"}, 422, "10000"),
        ("/", {"page_size": "1000"}, 422, "page_size"),
        ("/", {"kind": "spaceship"}, 422, "kind"),
        ("/", {"region": "99"}, 422, "region[0]"),
        ("/", {"sort": "loudest"}, 422, "sort"),
        ("/", {"page_token": "not-a-token"}, 422, "page_token"),
        ("/", {"nonsense": "1"}, 422, "nonsense"),
        ("/stats", {"since": "yesterday"}, 422, "since"),
        ("/stats", {"since": "2026-02-01", "until": "2026-01-01"}, 422, "since"),
        ("/assets/not-an-id", {}, 404, "No such asset"),
        ("/assets/00000000-0000-4000-8000-000000000000", {}, 404, "No such asset"),
    ],
)
async def test_bad_input_is_an_error_page(
    gateway: httpx.AsyncClient,
    catalogue: Catalogue,
    path: str,
    params: dict[str, str],
    status: int,
    shown: str,
) -> None:
    response = await page(gateway, path, params={**params, "lang": "en"})
    assert response.status_code == status, response.text
    assert 'role="alert"' in response.text and shown in response.text
    assert "Back to search" in response.text


async def test_static_files_are_served_by_the_gateway(gateway: httpx.AsyncClient) -> None:
    html = (await gateway.get("/stats")).text
    for name in re.findall(r'(?:href|src)="(/static/[^"]+)"', html):
        response = await gateway.get(name)
        assert response.status_code == 200 and response.content
        assert "immutable" in response.headers["cache-control"]
    assert (await gateway.get("/static/site.css")).status_code == 404  # only hashed names


async def test_a_partners_text_is_never_html(
    gateway: httpx.AsyncClient,
    listing: httpx.AsyncClient,
    matching: httpx.AsyncClient,
    catalogue: Catalogue,
    operator_key: str,
    service_key: str,
) -> None:
    """Runs last: it adds an offer. A partner's title with markup is shown as text (the
    highlight's own markers aside) and a `javascript:` source is not linked."""
    # The seed took the first eight numbers.
    number = next(itertools.islice(real_application_numbers("invention_patent"), 20, None))
    document = partner_document("tjipe", "TJ-24-X", number)
    document["asset"]["title"] = {
        "zh": '<script>alert(1)</script><em>神经网络</em><img src=x onerror="alert(2)">'
    }
    document["source"]["url"] = "javascript:alert(3)"
    put = await listing.put(
        "/v1/offers/tjipe/TJ-24-X", json=document, params=PARTNER, headers=bearer(service_key)
    )
    assert put.status_code in (200, 201), put.text
    await wait_indexed(matching, operator_key)
    asset = (await page(gateway, f"/assets/{put.json()['asset_id']}")).text
    found = (await page(gateway, "/", params={"q": "神经网络 alert"})).text
    for html in (asset, found):
        assert "<script>alert" not in html and "<img" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'data-exchange="tjipe"' in asset and "javascript:" not in asset


async def test_the_pages_calls_count_against_the_browsers_rate_limit(
    matching_settings: Settings, listing_app: FastAPI, matching_app: FastAPI, catalogue: Catalogue
) -> None:
    """The page asks the API as the browser would: its calls take the browser's tokens, and
    once they are spent the page says so (429 with Retry-After), as the API would."""
    from services.gateway.app import create_app

    limited = matching_settings.model_copy(
        update={"rate_limit_anonymous_per_minute": 3, "run_workers": False}
    )
    mounts = {
        "http://listing.test": httpx.ASGITransport(listing_app),
        "http://matching.test": httpx.ASGITransport(matching_app),
    }
    app = create_app(limited, mounts)
    async with LifespanManager(app):
        for address, pages in (("198.51.100.1", 3), ("198.51.100.2", 3)):
            transport = httpx.ASGITransport(app=app, client=(address, 50000))
            async with httpx.AsyncClient(transport=transport, base_url="http://g.test") as browser:
                for _ in range(pages):
                    assert (await browser.get("/", params={"lang": "en"})).status_code == 200
                refused = await browser.get("/", params={"lang": "en"})
                assert refused.status_code == 429, refused.text
                assert refused.headers["retry-after"] and 'role="alert"' in refused.text


async def test_an_outage_is_a_503_page_not_a_500(
    matching_settings: Settings, catalogue: Catalogue
) -> None:
    """Listing and matching unreachable (nothing listens on port 9): each page says the
    catalogue is unavailable, with the API's 503 and Retry-After."""
    from services.gateway.app import create_app

    down = matching_settings.model_copy(
        update={
            "listing_url": "http://127.0.0.1:9",
            "matching_url": "http://127.0.0.1:9",
            "run_workers": False,
        }
    )
    app = create_app(down)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app, client=("198.51.100.9", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://g.test") as browser:
            for path in ("/", f"/assets/{catalogue.shared_asset}", "/stats"):
                response = await browser.get(path, params={"lang": "en"})
                assert response.status_code == 503, (path, response.text)
                assert "The catalogue is unavailable, retry shortly." in response.text
                assert response.headers["retry-after"] == "2"
