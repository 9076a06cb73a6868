"""The reference web catalogue: server-rendered pages at `/` (search), `/assets/{id}` (an asset
with every offer across exchanges and its deals) and `/stats` (public deal statistics as
charts), in Chinese and English.

The pages take the search API's own query parameters and pass them on unchanged to the public
API (`PublicApi`, in process), so paging, filters and their checks are the API's: a refused
parameter is rendered as the API's problem, in an error page with the API's status. Routes are
left out of the OpenAPI document (they answer HTML, not the API's contract).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode
from uuid import UUID

import jinja2
from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape
from starlette.responses import RedirectResponse

from services.gateway.web.charts import bar_chart
from services.gateway.web.i18n import LABELS, Lang, Translator, choose_lang
from services.gateway.web.public_api import ApiAnswer, PublicApi
from shared.contracts.catalogue import OUR_EXCHANGE
from shared.errors import ProblemError
from shared.identifiers import PROVINCE_CODES

__all__ = ["router"]

HERE = Path(__file__).parent
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
# Facets shown, in order, with the query parameter that filters on each.
FACETS = (
    ("kind", "kind"),
    ("transaction_type", "transaction_type"),
    ("province", "region"),
    ("legal_status", "legal_status"),
    ("exchange", "exchange"),
)
# What the search form itself sends; any other parameter of the search rides along hidden.
FORM_FIELDS = {"q", "sort", *(param for _, param in FACETS)}
SORTS = ("relevance", "price_asc", "price_desc", "newest", "oldest", "filed")
DEAL_SCAN_PAGES = 5  # pages of an asset's deal history shown, 100 deals a page
STATS_GROUPS = ("month", "region", "kind")


@dataclass(frozen=True)
class StaticFile:
    content: bytes
    media_type: str


def _static_files() -> dict[str, StaticFile]:
    """The shipped assets under names carrying their content's hash (`site-1a2b3c4d.css`): a
    changed file is a new URL, so each can be cached for a year."""
    found: dict[str, StaticFile] = {}
    for path in sorted((HERE / "static").iterdir()):
        if path.suffix not in STATIC_TYPES:
            continue
        content = path.read_bytes()
        digest = hashlib.sha256(content).hexdigest()[:10]
        found[f"{path.stem}-{digest}{path.suffix}"] = StaticFile(content, STATIC_TYPES[path.suffix])
    return found


STATIC = _static_files()
STATIC_URLS = {name.rsplit("-", 1)[0] + "." + name.rsplit(".", 1)[1]: name for name in STATIC}

templates = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, auto_reload=False
    )
)


def highlighted(text: str | None) -> Markup:
    """A title as the search highlighted it: escaped, with only the engine's `<em>` markers
    turned into `<mark>` (the indexed text itself is never trusted as HTML)."""
    if not text:
        return Markup("")
    safe = str(escape(text))
    return Markup(safe.replace("&lt;em&gt;", "<mark>").replace("&lt;/em&gt;", "</mark>"))


def money(value: Any) -> str:
    if value in (None, ""):
        return ""
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    return f"¥{amount:,.2f}"


def web_url(value: Any) -> str | None:
    """A link a partner gave (an offer's source): only http(s), never `javascript:` or
    `data:` (the partner's text is not trusted)."""
    text = str(value or "").strip()
    return text if text.lower().startswith(("https://", "http://")) else None


templates.env.filters["money"] = money
templates.env.filters["web_url"] = web_url
templates.env.filters["highlighted"] = highlighted


class HtmlErrorRoute(APIRoute):
    """A page route whose refusals (an unknown query parameter, refused by the app-wide
    dependency) are rendered as an error page rather than problem+json."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except ProblemError as exc:
                problem = exc.to_problem(request.url.path)
                return error_page(request, exc.status_code, problem)
            except RequestValidationError as exc:
                errors = [
                    {"field": ".".join(str(p) for p in e["loc"][1:]), "message": e["msg"]}
                    for e in exc.errors()
                ]
                return error_page(request, 422, {"detail": "invalid parameters", "errors": errors})

        return route


router = APIRouter(include_in_schema=False, route_class=HtmlErrorRoute)


# ----------------------------------------------------------------------------------- helpers


def _lang(request: Request) -> tuple[Lang, bool]:
    asked = request.query_params.get("lang")
    lang = choose_lang(asked, request.headers.get("accept-language", ""))
    return lang, asked == lang


def _context(request: Request, **values: Any) -> dict[str, Any]:
    lang, explicit = _lang(request)
    keep = {"lang": lang} if explicit else {}

    def url(path: str, params: list[tuple[str, str]] | None = None) -> str:
        """A link that keeps the chosen language."""
        pairs = [*(params or []), *keep.items()]
        return path + ("?" + urlencode(pairs) if pairs else "")

    other: Lang = "en" if lang == "zh" else "zh"
    switch = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    return {
        "request": request,
        "lang": lang,
        "t": Translator(lang),
        "url": url,
        "static": lambda name: f"/static/{STATIC_URLS[name]}",
        "switch_url": request.url.path + "?" + urlencode([*switch, ("lang", other)]),
        **values,
    }


def _render(
    request: Request,
    template: str,
    api: PublicApi | None,
    started: float,
    status: int = 200,
    **values: Any,
) -> Response:
    response: Response = templates.TemplateResponse(
        request, template, _context(request, **values), status_code=status
    )
    # The page's own time beside the API's, for a browser's performance tools (and the test).
    api_ms = (api.elapsed if api else 0.0) * 1000
    own_ms = (time.perf_counter() - started) * 1000 - api_ms
    response.headers["Server-Timing"] = f"api;dur={api_ms:.2f}, page;dur={own_ms:.2f}"
    response.headers["Cache-Control"] = "no-cache"
    return response


def error_page(request: Request, status: int, problem: dict[str, Any]) -> Response:
    return _render(request, "error.html", None, time.perf_counter(), status, problem=problem)


def _api_error(request: Request, answer: ApiAnswer, started: float, api: PublicApi) -> Response:
    body = answer.body if isinstance(answer.body, dict) else {}
    status = answer.status if 400 <= answer.status < 500 else 503
    response = _render(request, "error.html", api, started, status, problem=body)
    if answer.retry_after:  # rate-limited or unavailable: the browser may retry then
        response.headers["Retry-After"] = answer.retry_after
    return response


def _pairs(**lists: list[str] | str) -> list[tuple[str, str]]:
    """Non-empty parameters as (name, value) pairs, lists repeated."""
    pairs: list[tuple[str, str]] = []
    for name, value in lists.items():
        for item in [value] if isinstance(value, str) else value:
            if item.strip():
                pairs.append((name, item.strip()))
    return pairs


# ------------------------------------------------------------------------------------ routes

Many = Annotated[list[str], Query()]


@router.get("/", response_class=Response)
async def web_search(
    request: Request,
    q: str = "",
    kind: Many = [],  # noqa: B006
    transaction_type: Many = [],  # noqa: B006
    region: Many = [],  # noqa: B006
    legal_status: Many = [],  # noqa: B006
    exchange: Many = [],  # noqa: B006
    ipc: Many = [],  # noqa: B006
    nice: Many = [],  # noqa: B006
    price_min: str = "",
    price_max: str = "",
    sort: str = "",
    page: str = "",
    page_size: str = "",
    page_token: str = "",
    exact_total: str = "",
    lang: str = "",
) -> Response:
    """Search: the API's search parameters, passed on; an identifier that finds one asset
    goes straight to it."""
    started = time.perf_counter()
    asked = _pairs(
        q=q,
        kind=kind,
        transaction_type=transaction_type,
        region=region,
        legal_status=legal_status,
        exchange=exchange,
        ipc=ipc,
        nice=nice,
        price_min=price_min,
        price_max=price_max,
        sort=sort,
        page=page,
        page_size=page_size,
        page_token=page_token,
        exact_total=exact_total,
    )
    api = PublicApi(request)
    answer = await api.get("/v1/catalogue/search", asked)
    if not answer.ok:
        return _api_error(request, answer, started, api)
    result = answer.body
    assets = {hit["asset_id"] for hit in result["items"]}
    if result["query"].get("identifier") and len(assets) == 1 and not page_token:
        # A patent number typed in any form: its asset, at once.
        target = f"/assets/{assets.pop()}"
        if _lang(request)[1]:
            target += "?" + urlencode({"lang": lang})
        return RedirectResponse(target, status_code=303)
    chosen = {param: [v for k, v in asked if k == param] for _, param in FACETS}
    facets = []
    for facet, param in FACETS:
        counts: dict[str, int] = dict(result["facets"].get(facet, {}))
        for value in chosen[param]:
            counts.setdefault(value, 0)  # a chosen value the results no longer have
        facets.append(
            {
                "name": facet,
                "param": param,
                "values": sorted(counts.items(), key=lambda kv: (-int(kv[1]), str(kv[0]))),
                "chosen": set(chosen[param]),
            }
        )
    # Links to other pages keep the query and filters, never the token (it is one page's).
    base = [(k, v) for k, v in asked if k not in ("page", "page_token")]
    return _render(
        request,
        "search.html",
        api,
        started,
        q=q,
        sort=sort or "relevance",
        sorts=SORTS,
        result=result,
        facets=facets,
        base=base,
        hidden=[(k, v) for k, v in base if k not in FORM_FIELDS],
        pager=_pager(result["page"], result["total_pages"]),
    )


def _pager(page: int, pages: int) -> list[int | None]:
    """Page numbers to link: the first, the last and two around the current one (None: a gap)."""
    shown = sorted({1, pages, *range(page - 2, page + 3)} & set(range(1, pages + 1)))
    out: list[int | None] = []
    for number in shown:
        if out and out[-1] is not None and number - out[-1] > 1:
            out.append(None)
        out.append(number)
    return out


@router.get("/assets/{asset_id}", response_class=Response)
async def web_asset(request: Request, asset_id: str, lang: str = "") -> Response:
    """An asset: its right, every offer on it across exchanges, and its deals."""
    started = time.perf_counter()
    try:
        UUID(asset_id)
    except ValueError:
        return error_page(
            request, 404, {"detail": Translator(_lang(request)[0])("error_not_found")}
        )
    api = PublicApi(request)
    answer = await api.get(f"/v1/catalogue/assets/{asset_id}", [("include_closed", "true")])
    if answer.status == 404:
        problem = {"detail": Translator(_lang(request)[0])("error_not_found")}
        return _render(request, "error.html", api, started, 404, problem=problem)
    if not answer.ok:
        return _api_error(request, answer, started, api)
    asset, offers = answer.body["asset"], answer.body["offers"]
    deals, complete = await _deals_of(api, asset, offers)
    return _render(
        request,
        "asset.html",
        api,
        started,
        asset=asset,
        offers=offers,
        deals=deals,
        deals_complete=complete,
        deals_scanned=DEAL_SCAN_PAGES * 100,
        our_exchange=OUR_EXCHANGE,
    )


async def _deals_of(
    api: PublicApi, asset: dict[str, Any], offers: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], bool]:
    """The deal announcements on the asset (the public deals list by `asset_id`: its closed
    offers here; a partner's offer closes on its own exchange), newest first, at most
    DEAL_SCAN_PAGES pages; (deals, whether that is all of them). Nothing is read for an asset
    without a closed offer here, which is most of them."""
    if not any(
        o["status"] == "closed" and o["document"]["source"]["exchange"] == OUR_EXCHANGE
        for o in offers
    ):
        return [], True
    params = [("asset_id", str(asset["id"])), ("page_size", "100")]
    found: list[dict[str, Any]] = []
    token = ""
    for _ in range(DEAL_SCAN_PAGES):
        answer = await api.get(
            "/v1/catalogue/deals", params + ([("page_token", token)] if token else [])
        )
        if not answer.ok:
            return found, False
        found += answer.body["items"]
        token = answer.body["next_page_token"]
        if not token:
            return found, True
    return found, False


@router.get("/stats", response_class=Response)
async def web_stats(
    request: Request,
    since: str = "",
    until: str = "",
    region: str = "",
    kind: str = "",
    transaction_type: str = "",
    lang: str = "",
) -> Response:
    """Public deal statistics: deals and disclosed value by month, region and kind."""
    started = time.perf_counter()
    filters = _pairs(
        since=since, until=until, region=region, kind=kind, transaction_type=transaction_type
    )
    api = PublicApi(request)
    t = Translator(_lang(request)[0])
    charts = []
    for group_by in STATS_GROUPS:
        answer = await api.get("/v1/catalogue/deals/stats", [*filters, ("group_by", group_by)])
        if not answer.ok:
            return _api_error(request, answer, started, api)
        groups = answer.body["groups"]
        if group_by == "month":
            groups = sorted(groups, key=lambda g: g["group"])
        name: Callable[[str], str] = {
            "month": lambda g: g,
            "region": t.province,
            "kind": lambda g: t.label("kind", g),
        }[group_by]
        rows = [(name(g["group"]), g) for g in groups]
        title = t(f"by_{group_by}")
        charts.append(
            {
                "key": group_by,
                "title": title,
                "rows": rows,
                "count_chart": bar_chart(
                    f"{title}: {t('deal_count')}",
                    [(label, int(g["deal_count"])) for label, g in rows],
                    lambda v: f"{int(v):,}",
                    chart_id=f"chart-{group_by}-count",
                ),
                "value_chart": bar_chart(
                    f"{title}: {t('disclosed_total')}",
                    [(label, Decimal(str(g["disclosed_total"]))) for label, g in rows],
                    money,
                    chart_id=f"chart-{group_by}-value",
                ),
            }
        )
    return _render(
        request,
        "stats.html",
        api,
        started,
        charts=charts,
        filters=dict(filters),
        provinces=list(PROVINCE_CODES),
        kinds=list(LABELS["kind"]),
        transaction_types=list(LABELS["transaction_type"]),
    )


@router.get("/static/{name}", response_class=Response)
async def web_static(name: str) -> Response:
    """The pages' own CSS and JavaScript (no CDN: the catalogue works offline)."""
    found = STATIC.get(name)
    if found is None:
        return Response("not found", status_code=404, media_type="text/plain")
    return Response(
        found.content,
        media_type=found.media_type,
        headers={"Cache-Control": "public, max-age=31536000, immutable"},
    )
