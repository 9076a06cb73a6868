"""The web catalogue in a real browser: Debian's Chromium driven by Playwright against the
gateway served over TCP, on the seeded catalogue (conftest.py).

Every page is watched: a console error, an uncaught exception, a failed request or an answer
of 400 or more fails the test (unless the test expects that answer), and axe-core (pinned,
vendored, injected from the repository) must find no serious or critical violation.
Screenshots for a person to look at go to test-output/web-catalogue/ (gitignored).
"""

from __future__ import annotations

import asyncio
import hashlib
import statistics
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from playwright.async_api import (
    BrowserContext,
    ConsoleMessage,
    Page,
    Request,
    Response,
    async_playwright,
)

from service.gateway.web.browser import LAUNCH_ARGS, ensure_chromium
from service.gateway.web.conftest import Catalogue
from support import free_port

ROOT = Path(__file__).resolve().parents[4]
SCREENSHOTS = ROOT / "test-output" / "web-catalogue"
AXE = Path(__file__).parent / "vendor" / "axe-core-4.14.1.min.js"
AXE_SHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


@dataclass
class Watch:
    """What went wrong on a page: console errors, page errors, failed requests, 4xx/5xx."""

    problems: list[str] = field(default_factory=list)
    expected_statuses: set[int] = field(default_factory=set)

    def attach(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and not (
            self.expected_statuses and "the server responded with a status of" in message.text
        ):
            self.problems.append(f"console error: {message.text}")

    def _failed(self, request: Request) -> None:
        self.problems.append(f"request failed: {request.url} ({request.failure})")

    def _response(self, response: Response) -> None:
        if response.status >= 400 and response.status not in self.expected_statuses:
            self.problems.append(f"HTTP {response.status}: {response.url}")

    def check(self) -> None:
        assert self.problems == [], "\n".join(self.problems)


@pytest.fixture(scope="module")
async def site(gateway_app: FastAPI, catalogue: Catalogue) -> AsyncIterator[str]:
    """The gateway (already running in process, workers included) served over TCP."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            gateway_app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=1,
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the gateway did not start"
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture(scope="module")
async def browser(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BrowserContext]:
    chromium = ensure_chromium()
    profile = tmp_path_factory.mktemp("chromium-profile")  # a fresh --user-data-dir
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(chromium),
            headless=True,
            args=LAUNCH_ARGS,
            viewport=DESKTOP,  # type: ignore[arg-type]
            locale="zh-CN",
            service_workers="block",
        )
        yield context
        await context.close()


@pytest.fixture
async def page(browser: BrowserContext) -> AsyncIterator[tuple[Page, Watch]]:
    tab = await browser.new_page()
    watch = Watch()
    watch.attach(tab)
    yield tab, watch
    await tab.close()


@pytest.fixture(scope="module")
def axe_source() -> str:
    content = AXE.read_bytes()
    assert hashlib.sha256(content).hexdigest() == AXE_SHA256, "the vendored axe-core changed"
    return content.decode()


async def accessibility(tab: Page, axe_source: str, name: str) -> None:
    """axe-core on the page as it is: no serious or critical violation."""
    await tab.add_script_tag(content=axe_source)
    result: dict[str, Any] = await tab.evaluate(
        "async () => await axe.run(document, {resultTypes: ['violations']})"
    )
    violations = result["violations"]
    summary = ", ".join(f"{v['id']} ({v['impact']}, {len(v['nodes'])})" for v in violations)
    print(f"\naxe {result['testEngine']['version']} on {name}: {summary or 'no violations'}")
    serious = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert serious == [], [(v["id"], v["help"], v["nodes"][0]["html"]) for v in serious]


async def screenshot(tab: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await tab.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0
    print(f"\nscreenshot: {path}")


async def test_search_with_a_facet_by_keyboard(
    site: str, page: tuple[Page, Watch], axe_source: str, catalogue: Catalogue
) -> None:
    tab, watch = page
    await tab.goto(f"{site}/?lang=en")
    # The first Tab reaches the skip link; following it lands in the main content.
    await tab.keyboard.press("Tab")
    assert await tab.evaluate("document.activeElement.className") == "skip"
    await tab.keyboard.press("Enter")
    assert await tab.evaluate("document.activeElement.id") == "main"
    # Type a query and search with the keyboard alone.
    await tab.focus("#q")
    await tab.keyboard.type("神经网络")
    async with tab.expect_navigation():
        await tab.keyboard.press("Enter")
    assert "q=%E7%A5%9E" in tab.url
    # Tick the partner exchange's facet with the space bar: the search reruns with it.
    checkbox = tab.locator('#facet-exchange input[value="tjipe"]')
    await checkbox.focus()
    async with tab.expect_navigation():
        await tab.keyboard.press("Space")
    assert "exchange=tjipe" in tab.url
    await tab.wait_for_selector("#hits li.hit")
    assert await tab.locator('#facet-exchange input[value="tjipe"]').is_checked()
    hits = await tab.locator("#hits li.hit").evaluate_all("els => els.map(e => e.dataset.asset)")
    assert hits and set(hits) <= {catalogue.shared_asset, catalogue.partner_only_asset}
    assert await tab.locator("#hits mark").count() > 0  # the match, highlighted
    for facet in ("kind", "transaction_type", "province", "legal_status", "exchange"):
        assert await tab.locator(f"#facet-{facet} .count").count() > 0, facet
    await screenshot(tab, "search-with-facet")
    await accessibility(tab, axe_source, "search with a facet")
    watch.check()


async def test_paging_by_token_and_by_number(site: str, page: tuple[Page, Watch]) -> None:
    tab, watch = page
    await tab.goto(f"{site}/?page_size=5&lang=en")
    first = await tab.locator("#hits li.hit").evaluate_all("els => els.map(e => e.dataset.asset)")
    await tab.click("#next-page")
    await tab.wait_for_load_state()
    assert "page_token=" in tab.url
    second = await tab.locator("#hits li.hit").evaluate_all("els => els.map(e => e.dataset.asset)")
    assert second and not set(second) & set(first)
    assert await tab.locator('.pager [aria-current="page"]').inner_text() == "2"
    await tab.click('.pager a:text-is("1")')
    await tab.wait_for_load_state()
    assert (
        await tab.locator("#hits li.hit").evaluate_all("els => els.map(e => e.dataset.asset)")
        == first
    )
    watch.check()


async def test_an_asset_with_offers_from_two_exchanges(
    site: str, page: tuple[Page, Watch], axe_source: str, catalogue: Catalogue
) -> None:
    tab, watch = page
    # A patent number typed as people write it leads straight to its asset.
    number = catalogue.shared_number
    await tab.goto(f"{site}/?lang=en")
    await tab.fill("#q", f"ZL {number[:4]} {number[4]} {number[5:]}")
    async with tab.expect_navigation():
        await tab.press("#q", "Enter")
    assert tab.url.endswith(f"/assets/{catalogue.shared_asset}?lang=en"), tab.url
    exchanges = await tab.locator("#offers tr.offer").evaluate_all(
        "rows => rows.map(r => r.dataset.exchange)"
    )
    assert sorted(exchanges) == ["jjj", "jjj", "tjipe"]
    source = tab.locator('#offers tr[data-exchange="tjipe"] a.source')
    assert await source.get_attribute("href") == "https://tjipe.example/listings/TJ-24-1"
    for selector in ("#holders li", "#classifications dd", "#legal-status", "#deals tbody tr"):
        assert await tab.locator(selector).count() > 0, selector
    assert await tab.locator("#encumbrances").count() == 1
    await screenshot(tab, "asset-two-exchanges")
    await accessibility(tab, axe_source, "an asset")
    watch.check()


async def test_the_statistics_page(
    site: str, page: tuple[Page, Watch], axe_source: str, catalogue: Catalogue
) -> None:
    tab, watch = page
    await tab.goto(f"{site}/stats?lang=en")
    for group_by in ("month", "region", "kind"):
        for measure in ("count", "value"):
            chart = tab.locator(f"svg#chart-{group_by}-{measure}")
            assert await chart.count() == 1, (group_by, measure)
            assert await chart.locator("rect.chart-bar").count() > 0
    await screenshot(tab, "statistics")
    await accessibility(tab, axe_source, "the statistics")
    watch.check()


async def test_phone_width(
    site: str, browser: BrowserContext, axe_source: str, catalogue: Catalogue
) -> None:
    tab = await browser.new_page()
    await tab.set_viewport_size(PHONE)  # type: ignore[arg-type]
    watch = Watch()
    watch.attach(tab)
    try:
        for path in ("/?q=电池", f"/assets/{catalogue.shared_asset}", "/stats"):
            await tab.goto(site + path)
            overflow = await tab.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{path} scrolls sideways by {overflow}px on a phone"
        await tab.goto(site + "/?q=电池")
        # The filters start folded on a phone, the results first; the keyboard opens them.
        filters = tab.locator("details#filters")
        assert await filters.get_attribute("open") is None
        await tab.focus("details#filters > summary")
        await tab.keyboard.press("Enter")
        assert await filters.get_attribute("open") == ""
        await tab.keyboard.press("Enter")
        await screenshot(tab, "search-phone")
        await accessibility(tab, axe_source, "search on a phone")
        watch.check()
    finally:
        await tab.close()


async def test_bad_input_shows_an_error(site: str, page: tuple[Page, Watch]) -> None:
    tab, watch = page
    watch.expected_statuses = {422}
    response = await tab.goto(f"{site}/?page=abc&lang=en")
    assert response is not None and response.status == 422
    alert = tab.locator('[role="alert"]')
    assert "page" in await alert.inner_text()
    watch.check()


async def test_page_time_beyond_the_api(
    site: str, page: tuple[Page, Watch], catalogue: Catalogue
) -> None:
    """A search page against the same search asked of the API, both from the browser: the
    page's own time (the in-process hop, parameters, templates, a larger body) is what the
    page adds to the API's. Measured two ways: the page fetched like the API call (the same
    request machinery, so the difference is the page's own), and the page as a navigation
    (what a person waits for until the HTML has arrived)."""
    tab, watch = page
    queries = ["电池", "神经网络", "隔膜", "芯片", "图像", "传感器", "算法", "材料"] * 3
    await tab.goto(f"{site}/?q=warmup")
    timed = """async (url) => {
        const response = await fetch(url, {cache: 'no-store'});
        await response.arrayBuffer();
        const e = performance.getEntriesByName(new URL(url, location.href).href).pop();
        return e.responseEnd - e.requestStart; }"""
    api_ms: list[float] = []
    fetched_ms: list[float] = []
    nav_ms: list[float] = []
    render_ms: list[float] = []
    hop_ms: list[float] = []
    for q in queries:
        await tab.goto(f"{site}/?q={q}&lang=en")
        nav: dict[str, Any] = await tab.evaluate(
            """() => { const n = performance.getEntriesByType('navigation')[0];
                return {ms: n.responseEnd - n.requestStart,
                    timing: Object.fromEntries(
                        n.serverTiming.map(t => [t.name, t.duration]))}; }"""
        )
        nav_ms.append(nav["ms"])
        render_ms.append(nav["timing"]["page"])
        hop_ms.append(nav["timing"]["api"])
        # Alternate the order so that neither always goes first.
        pair = [f"/v1/catalogue/search?q={q}", f"/?q={q}&lang=en&page_size=20"]
        if len(api_ms) % 2:
            pair.reverse()
        first, second = [await tab.evaluate(timed, url) for url in pair]
        api, fetched = (first, second) if pair[0].startswith("/v1/") else (second, first)
        api_ms.append(api)
        fetched_ms.append(fetched)
    api_p50 = statistics.median(api_ms)
    own = statistics.median(p - a for p, a in zip(fetched_ms, api_ms, strict=True))
    own_nav = statistics.median(p - a for p, a in zip(nav_ms, api_ms, strict=True))
    print(
        f"\nsearch, {len(queries)} queries, medians: API {api_p50:.1f} ms; page fetched "
        f"{statistics.median(fetched_ms):.1f} ms, beyond the API {own:.1f} ms; page as a "
        f"navigation {statistics.median(nav_ms):.1f} ms, beyond the API {own_nav:.1f} ms "
        f"(server side: the in-process API call {statistics.median(hop_ms):.1f} ms, "
        f"parameters and templates {statistics.median(render_ms):.1f} ms)"
    )
    # The page answers about as fast as the API: its own part is a few milliseconds.
    assert statistics.median(render_ms) < 25
    assert own < max(25.0, api_p50)
    watch.check()
