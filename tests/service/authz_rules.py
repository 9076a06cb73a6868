"""Who may call what: the authorisation rule of every route of the three services.

`RULES` maps each (service, method, path template) to a `Rule`: either public (no key needed,
with the reason) or, per case, the status every caller class gets. The matrix test enumerates the
apps' routes and fails on a route without a rule or a rule without a route, then performs every
cell against the real apps, on real resources of the "own" organisation (`World`).

Caller classes: `anonymous` (no key), `revoked` (the own organisation's admin key, revoked),
`other` (another organisation's admin key), `member` and `admin` (the own organisation's keys),
`partner` (a partner exchange's key), `operator` (an operator key issued by the bootstrap
operator, so it goes through listing's tables and the introspection of matching and gateway)
and `service` (the services' key).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Literal

import httpx
from receiver import Receiver

from services.gateway.web.router import STATIC_URLS
from services.listing.dependencies import today_in_china
from shared.webhooks import signed_headers
from support import bearer, patent, real_application_numbers, terms

Caller = Literal[
    "anonymous", "revoked", "other", "member", "admin", "partner", "operator", "service"
]
CALLERS: tuple[Caller, ...] = (
    "anonymous",
    "revoked",
    "other",
    "member",
    "admin",
    "partner",
    "operator",
    "service",
)
Service = Literal["listing", "matching", "gateway"]

OWN = "北京理工大学"
OTHER = "天津某贸易有限公司"
BUYER = "河北某新能源科技有限公司"
EXCHANGE = "天津知识产权交易中心"
OPERATORS = "京津冀知识产权交易所"
PARTNER_CODE = "tjipe"
OFFER_PARAMS = {"exchange_name": EXCHANGE, "exchange_region": "120000"}
SETUP_DEADLINE = 30.0


@dataclass
class Req:
    """One request of a cell, without its Authorization header (the runner adds the caller's)."""

    path: str
    json: Any = None
    params: Mapping[str, str] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    content: bytes | None = None


# A cell's request: (world, caller, whether the cell expects success). Routes that use up
# their resource (a transition, a revocation, a replay) build a fresh one per cell.
Build = Callable[["World", Caller, bool], Awaitable[Req]]


@dataclass(frozen=True)
class Case:
    name: str
    build: Build
    expected: Mapping[Caller, int]
    # An id of the own organisation that a 2xx answer to these callers must not contain
    # (lists filtered by organisation answer 200 to everyone, with their own items only).
    private: str | None = None
    private_from: frozenset[Caller] = frozenset()


@dataclass(frozen=True)
class Rule:
    cases: tuple[Case, ...]
    public: str | None = None  # why no key is needed; None: a keyed route


def keyed(
    *,
    other: int,
    member: int,
    admin: int,
    partner: int,
    operator: int,
    service: int,
    anonymous: int = 401,
    revoked: int = 401,
) -> dict[Caller, int]:
    return {
        "anonymous": anonymous,
        "revoked": revoked,
        "other": other,
        "member": member,
        "admin": admin,
        "partner": partner,
        "operator": operator,
        "service": service,
    }


def public(why: str, *cases: tuple[str, Build, int]) -> Rule:
    return Rule(
        cases=tuple(Case(name, build, {"anonymous": status}) for name, build, status in cases),
        public=why,
    )


def rule(*cases: Case) -> Rule:
    return Rule(cases=cases)


# ------------------------------------------------------------------------------- the world


def fresh_identifiers() -> Iterator[str]:
    """Real invention application numbers filed from 2010 (their rights are still in force)."""
    return (n for n in real_application_numbers("invention_patent") if n[:4] >= "2010")


@dataclass
class World:
    """The own organisation's resources and every caller's key, on the real apps."""

    clients: dict[Service, httpx.AsyncClient]
    keys: dict[str, str]  # by caller class, and the buyer's
    bootstrap: str  # the environment's operator key, for setting things up
    receiver: Receiver
    ids: dict[str, str] = field(default_factory=dict)
    numbers: Iterator[str] = field(default_factory=fresh_identifiers)
    counter: Iterator[int] = field(default_factory=itertools.count)

    @property
    def listing(self) -> httpx.AsyncClient:
        return self.clients["listing"]

    def path(self, template: str) -> str:
        return template.format(**self.ids)

    def asset(self, holder: str = OWN) -> dict[str, object]:
        number = next(self.numbers)
        return patent(holder, number, filed_on=f"{number[:4]}-03-01")

    async def ok(self, response: Awaitable[httpx.Response], status: int = 200) -> Any:
        answer = await response
        assert answer.status_code == status, answer.text
        return answer.json() if answer.content else None

    def admin(self) -> dict[str, str]:
        return bearer(self.keys["admin"])

    # Fresh resources, for cells that use theirs up.

    async def draft(self) -> str:
        body = {"asset_id": self.ids["asset"], "transaction": terms("nonexclusive_license")}
        created = await self.ok(
            self.listing.post("/v1/listings", json=body, headers=self.admin()), 201
        )
        return str(created["id"])

    async def pending(self) -> str:
        listing_id = await self.draft()
        await self.ok(self.listing.post(f"/v1/listings/{listing_id}/submit", headers=self.admin()))
        return listing_id

    async def published(self) -> str:
        listing_id = await self.pending()
        await self.ok(
            self.listing.post(f"/v1/listings/{listing_id}/approve", headers=bearer(self.bootstrap))
        )
        return listing_id

    async def negotiating(self) -> str:
        listing_id = await self.published()
        offer = {"message": "可否接受分期付款？", "offer_amount": "950000.00"}
        buyer = bearer(self.keys["buyer"])
        url = f"/v1/listings/{listing_id}/inquiries"
        await self.ok(self.listing.post(url, json=offer, headers=buyer), 201)
        return listing_id

    async def member_key(self) -> str:
        body = {"name": f"key {next(self.counter)}", "roles": ["member"]}
        url = self.path("/v1/organizations/{own_org}/api-keys")
        return str(
            (await self.ok(self.listing.post(url, json=body, headers=self.admin()), 201))["id"]
        )

    async def demand(self) -> str:
        body = {"title": "锂离子电池隔膜技术", "text": "需要锂电池隔膜的生产技术"}
        created = await self.ok(
            self.clients["matching"].post("/v1/demands", json=body, headers=self.admin()), 201
        )
        return str(created["id"])

    def subscription_body(self) -> dict[str, object]:
        return {"url": self.receiver.url, "event_types": ["listing.published", "deal.closed"]}

    async def subscription(self) -> str:
        gateway, body = self.clients["gateway"], self.subscription_body()
        created = await self.ok(
            gateway.post("/v1/subscriptions", json=body, headers=self.admin()), 201
        )
        return str(created["id"])

    async def delivery(self) -> str:
        """A delivered webhook of the own subscription, not replayed yet: a listing is published
        and its listing.published reaches the receiver."""
        listing_id = await self.published()
        url = self.path("/v1/subscriptions/{subscription}/deliveries")
        deadline = time.monotonic() + SETUP_DEADLINE
        while time.monotonic() < deadline:
            page = await self.ok(self.clients["gateway"].get(url, headers=self.admin()))
            for delivery in page["items"]:
                if delivery["ordering_key"] == listing_id and delivery["status"] == "delivered":
                    return str(delivery["id"])
            await asyncio.sleep(0.05)
        raise AssertionError(f"the webhook about {listing_id} was not delivered in time")

    def declaration_body(self, holder: str = OWN) -> dict[str, object]:
        """An open licence declaration on a fresh right of `holder`."""
        today = date.today()
        asset = self.asset(holder)
        filed = date.fromisoformat(str(asset["filed_on"]))
        granted = min(filed.replace(year=filed.year + 2), today)
        return {
            "asset": {**asset, "granted_on": granted.isoformat()},
            "terms": {
                "fee_type": "lump_sum",
                "lump_sum": "300000.00",
                "starts_on": today.isoformat(),
                "ends_on": today.replace(year=today.year + 2).isoformat(),
            },
        }

    async def open_declaration(self) -> str:
        """A published open licence declaration of the own organisation: its id."""
        created = await self.ok(
            self.listing.post(
                "/v1/open-licences", json=self.declaration_body(), headers=self.admin()
            ),
            201,
        )
        declaration_id = str(created["id"])
        await self.ok(
            self.listing.post(f"/v1/listings/{declaration_id}/submit", headers=self.admin())
        )
        await self.ok(
            self.listing.post(
                f"/v1/listings/{declaration_id}/approve", headers=bearer(self.bootstrap)
            )
        )
        return declaration_id

    async def licence(self) -> str:
        """A licence the buyer took on a fresh declaration of the own organisation."""
        declaration_id = await self.open_declaration()
        taken = await self.ok(
            self.listing.post(
                f"/v1/open-licences/{declaration_id}/licences",
                json={"notice": "本公司按公布的条件实施该专利。"},
                headers=bearer(self.keys["buyer"]),
            ),
            201,
        )
        return str(taken["id"])

    async def partner_code(self) -> str:
        body = {"code": f"px{next(self.counter)}", "name": "河北技术交易平台", "region": "130000"}
        gateway = self.clients["gateway"]
        await self.ok(gateway.post("/v1/partners", json=body, headers=bearer(self.bootstrap)), 201)
        return str(body["code"])

    async def target(self) -> str:
        """A new allow-list entry of the own organisation: its id."""
        pattern = f"10.{next(self.counter) % 250}.{next(self.counter) % 250}.0/24"
        gateway = self.clients["gateway"]
        body = {"pattern": pattern, "port": 443, "organization_id": self.ids["own_org"]}
        added = await self.ok(
            gateway.post("/v1/webhook-targets", json=body, headers=bearer(self.bootstrap)), 201
        )
        return str(added["id"])

    def document(self, listing_id: str) -> dict[str, object]:
        """A partner's catalogue document for a right of its own seller."""
        return {
            "schema": "ipx.catalogue/v1",
            "offer_id": f"{PARTNER_CODE}:{listing_id}",
            "source": {
                "exchange": PARTNER_CODE,
                "listing_id": listing_id,
                "url": f"https://{PARTNER_CODE}.example/listings/{listing_id}",
                "updated_at": "2026-01-05T08:00:00Z",
                "version": 1,
            },
            "asset": self.asset("天津某大学"),
            "transaction": terms("nonexclusive_license", amount="800000.00"),
            "status": "published",
            "seller": "天津某大学",
        }


# ------------------------------------------------------------------------- request builders


def at(
    template: str,
    *,
    body: Callable[[World], Any] | None = None,
    params: Mapping[str, str] | None = None,
) -> Build:
    """A request on the world's standing resources (`{name}` placeholders from `World.ids`)."""

    async def build(w: World, caller: Caller, wins: bool) -> Req:
        filled = {k: w.path(v) for k, v in (params or {}).items()}
        return Req(w.path(template), json=body(w) if body else None, params=filled or None)

    return build


Kind = Literal[
    "draft",
    "pending",
    "published",
    "negotiating",
    "member_key",
    "demand",
    "subscription",
    "partner_code",
    "target",
    "delivery",
]


async def resource(w: World, kind: Kind, wins: bool) -> str:
    """A resource of `kind` made for this cell when it should succeed (it is used up); the
    standing one of the same state when it should be refused (a refusal changes nothing)."""
    if not wins:
        return w.ids[kind]
    make: dict[Kind, Callable[[], Awaitable[str]]] = {
        "draft": w.draft,
        "pending": w.pending,
        "published": w.published,
        "negotiating": w.negotiating,
        "member_key": w.member_key,
        "demand": w.demand,
        "subscription": w.subscription,
        "partner_code": w.partner_code,
        "target": w.target,
        "delivery": w.delivery,
    }
    return await make[kind]()


def on_fresh(
    kind: Kind,
    template: str,
    *,
    body: Callable[[World, str], Any] | None = None,
) -> Build:
    """A request on a resource of `kind` (`{fresh}` in the template), see `resource`."""

    async def build(w: World, caller: Caller, wins: bool) -> Req:
        made = await resource(w, kind, wins)
        return Req(w.path(template.replace("{fresh}", made)), json=body(w, made) if body else None)

    return build


async def _version_of(w: World, listing_id: str) -> dict[str, str]:
    found = await w.ok(w.listing.get(f"/v1/listings/{listing_id}", headers=w.admin()))
    return {"If-Match": f'"{found["version"]}"'}


def patch_listing(kind: Kind) -> Build:
    """New terms, based on the listing's current version."""

    async def build(w: World, caller: Caller, wins: bool) -> Req:
        listing_id = await resource(w, kind, wins)
        body = {"transaction": terms("nonexclusive_license", amount="990000.00")}
        headers = await _version_of(w, listing_id)
        return Req(f"/v1/listings/{listing_id}", json=body, headers=headers)

    return build


# Whose rights a caller registers or imports as its own.
HOLDERS: dict[Caller, str] = {"other": OTHER, "partner": EXCHANGE, "operator": OPERATORS}


async def register_asset(w: World, caller: Caller, wins: bool) -> Req:
    """Each caller registers a right of its own (the holder check is the listing's)."""
    return Req("/v1/assets", json=w.asset(HOLDERS.get(caller, OWN)))


async def correct_asset(w: World, caller: Caller, wins: bool) -> Req:
    """A correction of the own right's English title, based on its current version."""
    found = await w.ok(w.listing.get(w.path("/v1/assets/{asset}")))
    body = {"title": {"en": f"Corrected title {next(w.counter)}"}}
    headers = {"If-Match": f'"{found["version"]}"'}
    return Req(w.path("/v1/assets/{asset}"), json=body, headers=headers)


def import_file(*, on_behalf: bool) -> Build:
    """One JSONL row on a fresh right of the own organisation; an operator names the seller."""

    async def build(w: World, caller: Caller, wins: bool) -> Req:
        holder = OWN if on_behalf or caller == "operator" else HOLDERS.get(caller, OWN)
        row = {"asset": w.asset(holder), "transaction": terms("nonexclusive_license")}
        params = {"seller_id": w.ids["own_org"]} if on_behalf or caller == "operator" else None
        return Req(
            "/v1/imports",
            content=json.dumps(row, ensure_ascii=False).encode(),
            params=params,
            headers={"Content-Type": "application/x-ndjson"},
        )

    return build


async def put_offer(w: World, caller: Caller, wins: bool) -> Req:
    listing_id = f"TJ-{next(w.counter)}"
    return Req(
        f"/v1/offers/{PARTNER_CODE}/{listing_id}", json=w.document(listing_id), params=OFFER_PARAMS
    )


async def close_deal(w: World, caller: Caller, wins: bool) -> Req:
    body = {
        "listing_id": await resource(w, "published", wins),
        "buyer_name": "天津中环半导体股份有限公司",
        "amount": "1150000.00",
        "closed_on": date.today().isoformat(),
    }
    return Req("/v1/deals", json=body)


def push(*, signed: bool) -> Build:
    """The partner's push of a fresh offer, signed with its inbound secret (or not at all)."""

    async def build(w: World, caller: Caller, wins: bool) -> Req:
        body = json.dumps(w.document(f"TJ-{next(w.counter)}"), ensure_ascii=False).encode()
        event_id = f"msg_{next(w.counter)}"
        headers = (
            signed_headers(w.ids["inbound_secret"], event_id, body)
            if signed
            else {"content-type": "application/json", "webhook-id": event_id}
        )
        return Req(f"/v1/inbound/{PARTNER_CODE}", content=body, headers=headers)

    return build


async def replay(w: World, caller: Caller, wins: bool) -> Req:
    """A delivered webhook per successful replay (a replayed one is pending again: 409)."""
    delivery = await resource(w, "delivery", wins)
    return Req(w.path("/v1/subscriptions/{subscription}/deliveries/") + f"{delivery}/replay")


async def delete_target(w: World, caller: Caller, wins: bool) -> Req:
    return Req("/v1/webhook-targets/" + await resource(w, "target", wins))


async def declare(w: World, caller: Caller, wins: bool) -> Req:
    """Each caller declares on a right of its own (the holder check is the service's)."""
    return Req("/v1/open-licences", json=w.declaration_body(HOLDERS.get(caller, OWN)))


async def take_licence(w: World, caller: Caller, wins: bool) -> Req:
    """A licence on a fresh published declaration when the caller should get one (a second
    licence of the same licensee is refused)."""
    declaration_id = await w.open_declaration() if wins else w.ids["declaration"]
    return Req(
        f"/v1/open-licences/{declaration_id}/licences",
        json={"notice": "本公司按公布的条件实施该专利。"},
    )


async def enter_recordal(w: World, caller: Caller, wins: bool) -> Req:
    licence_id = await w.licence() if wins else w.ids["licence"]
    return Req(
        f"/v1/licences/{licence_id}/recordal",
        json={"recordal_number": "2027110000123", "recorded_on": date.today().isoformat()},
    )


async def import_gazette(w: World, caller: Caller, wins: bool) -> Req:
    number = next(w.numbers)
    row = (
        "announced_on,kind,patent_number,title,patentees,filed_on,fee_type,lump_sum,"
        "starts_on,ends_on\n"
        f"2026-01-05,invention_patent,{number},一种锂离子电池隔膜,{OWN},{number[:4]}-03-01,"
        "lump_sum,300000,2026-01-05,2028-01-04\n"
    )
    return Req(
        "/v1/open-licences/gazette",
        content=row.encode(),
        headers={"Content-Type": "text/csv"},
    )


# ------------------------------------------------------------------------ financing (issue 22)

BANK = "中国银行股份有限公司河北省分行"


async def bank_key(w: World) -> str:
    """A verified bank's admin key (made once, by the bootstrap operator): no caller class is a
    bank, so every bank-only cell is a refusal and the bank makes the world's offers."""
    if "bank" not in w.keys:
        signed = await w.ok(
            w.listing.post(
                "/v1/organizations",
                json={"name": BANK, "kind": "bank", "region": "130102"},
            ),
            201,
        )
        await w.ok(
            w.listing.patch(
                f"/v1/organizations/{signed['organization']['id']}",
                json={"verified": True},
                headers=bearer(w.bootstrap),
            )
        )
        w.keys["bank"] = signed["api_key"]["key"]
    return w.keys["bank"]


def financing_body(w: World, asset: dict[str, Any]) -> dict[str, object]:
    today = today_in_china()
    return {
        "assets": [
            {
                "asset_id": asset["id"],
                "annual_fee_due_on": (today + timedelta(days=90)).isoformat(),
            }
        ],
        "amount": "2000000.00",
        "term_months": 12,
        "purpose": "研发投入",
        "valuations": [
            {
                "asset_id": asset["id"],
                "agency": "中联资产评估集团有限公司",
                "method": "income",
                "value": "3200000.00",
                "valued_on": (today - timedelta(days=10)).isoformat(),
                "document_sha256": "0" * 64,
            }
        ],
    }


async def granted_right(w: World, key: str, holder: str = OWN) -> dict[str, Any]:
    asset = w.asset(holder)
    filed = date.fromisoformat(str(asset["filed_on"]))
    granted = min(filed.replace(year=filed.year + 2), today_in_china())
    created: dict[str, Any] = await w.ok(
        w.listing.post(
            "/v1/assets", json={**asset, "granted_on": granted.isoformat()}, headers=bearer(key)
        ),
        201,
    )
    return created


async def financing_request(w: World) -> str:
    """An open financing request of the own organisation on a fresh right."""
    asset = await granted_right(w, w.keys["admin"])
    created = await w.ok(
        w.listing.post("/v1/financing/requests", json=financing_body(w, asset), headers=w.admin()),
        201,
    )
    return str(created["id"])


async def financing_offer(w: World) -> str:
    """The bank's open offer on a fresh request of the own organisation."""
    request_id = await financing_request(w)
    offer = {"amount": "1800000.00", "rate": "0.0365", "term_months": 12}
    made = await w.ok(
        w.listing.post(
            f"/v1/financing/requests/{request_id}/offers",
            json=offer,
            headers=bearer(await bank_key(w)),
        ),
        201,
    )
    return str(made["id"])


async def filed_pledge(w: World) -> str:
    """A pledge of the own organisation to the bank, filed (its offer accepted)."""
    offer_id = await financing_offer(w)
    pledge = await w.ok(
        w.listing.post(f"/v1/financing/offers/{offer_id}/accept", headers=w.admin()), 201
    )
    return str(pledge["id"])


async def registered_pledge(w: World) -> str:
    pledge_id = await filed_pledge(w)
    entry = {"registration_number": "Y2026110000123", "registered_on": today_in_china().isoformat()}
    await w.ok(
        w.listing.post(
            f"/v1/pledges/{pledge_id}/registration", json=entry, headers=bearer(w.bootstrap)
        )
    )
    return pledge_id


async def asset_hold(w: World) -> str:
    body = {
        "asset_id": w.ids["asset"],
        "type": "preservation",
        "reference": f"(2026)京0108执保{next(w.counter)}号",
        "since": today_in_china().isoformat(),
    }
    made = await w.ok(
        w.listing.post("/v1/financing/holds", json=body, headers=bearer(w.bootstrap)), 201
    )
    return str(made["id"])


FINANCING: dict[str, Callable[[World], Awaitable[str]]] = {
    "financing_request": financing_request,
    "financing_offer": financing_offer,
    "filed_pledge": filed_pledge,
    "registered_pledge": registered_pledge,
    "asset_hold": asset_hold,
}


async def financing_resource(w: World, kind: str, wins: bool) -> str:
    """A fresh financing resource when the cell should succeed (it is used up); the standing
    one (made at first use) when it should be refused."""
    if wins:
        return await FINANCING[kind](w)
    if kind not in w.ids:
        w.ids[kind] = await FINANCING[kind](w)
    return w.ids[kind]


def on_financing(kind: str, template: str, *, body: Callable[[World], Any] | None = None) -> Build:
    """A request on a financing resource of `kind` (`{fresh}` in the template)."""

    async def build(w: World, caller: Caller, wins: bool) -> Req:
        made = await financing_resource(w, kind, wins)
        return Req(template.replace("{fresh}", made), json=body(w) if body else None)

    return build


def standing(*kinds: str, template: str) -> Build:
    """A request on the standing financing resources (`{kind}` placeholders)."""

    async def build(w: World, caller: Caller, wins: bool) -> Req:
        for kind in kinds:
            await financing_resource(w, kind, False)
        return Req(w.path(template))

    return build


async def ask_financing(w: World, caller: Caller, wins: bool) -> Req:
    """Each caller asks for financing on a right of its own (the holder check is the
    service's); a refused caller's body names the own organisation's right."""
    if not wins:
        return Req("/v1/financing/requests", json=financing_body(w, {"id": w.ids["asset"]}))
    asset = await granted_right(w, w.keys[caller], HOLDERS.get(caller, OWN))
    return Req("/v1/financing/requests", json=financing_body(w, asset))


OFFER = {"amount": "1800000.00", "rate": "0.0365", "term_months": 12}
TODAY_ISO = today_in_china().isoformat()
# Only the request's borrower (the own organisation) and operators read it; verified banks
# too while it is open, but no caller class is a bank.
BORROWER_READ = keyed(other=404, member=200, admin=200, partner=403, operator=200, service=403)
# Only the pledgee (a bank, no caller class) or an operator.
PLEDGEE_WRITE = keyed(other=404, member=403, admin=403, partner=403, operator=200, service=403)


def fixed_body(value: Any) -> Callable[[World], Any]:
    return lambda w: value


MESSAGE = {"message": "请问是否包含技术指导？"}
SERVICES_ONLY = keyed(other=403, member=403, admin=403, partner=403, operator=200, service=200)
OPERATORS_ONLY = keyed(other=403, member=403, admin=403, partner=403, operator=200, service=403)
# The incentives report's year: this one (never in the future, even on Beijing's calendar).
YEAR = {"year": str(date.today().year)}
# A draft or a listing in review is the seller's and the operators' only: 404 to outsiders.
DRAFT_READ = keyed(other=404, member=200, admin=200, partner=404, operator=200, service=200)


# ------------------------------------------------------------------------------- the table

HEALTH = "liveness probe for orchestrators and load balancers: says nothing about data"
READY = "readiness probe: names only which dependency is down"
METRICS = "Prometheus scrape target, reached on the internal network; counts, no business data"
DOCS = "the published API contract and its viewers: the same for everyone"


def _infrastructure(service: Service) -> dict[tuple[Service, str, str], Rule]:
    return {
        (service, "GET", "/healthz"): public(HEALTH, ("up", at("/healthz"), 200)),
        (service, "GET", "/readyz"): public(READY, ("ready", at("/readyz"), 200)),
        (service, "GET", "/metrics"): public(METRICS, ("scrape", at("/metrics"), 200)),
        (service, "GET", "/openapi.json"): public(DOCS, ("spec", at("/openapi.json"), 200)),
        (service, "GET", "/docs"): public(DOCS, ("swagger", at("/docs"), 200)),
        (service, "GET", "/docs/oauth2-redirect"): public(
            DOCS, ("redirect page", at("/docs/oauth2-redirect"), 200)
        ),
        (service, "GET", "/redoc"): public(DOCS, ("redoc", at("/redoc"), 200)),
    }


ORG = "/v1/organizations/{own_org}"
LISTING_RULES: dict[tuple[Service, str, str], Rule] = {
    ("listing", "POST", "/v1/organizations"): public(
        "self sign-up: the answer is a new organisation and its first admin key",
        (
            "sign up",
            at(
                "/v1/organizations",
                body=fixed_body(
                    {"name": "北京某科技有限公司", "kind": "enterprise", "region": "110108"}
                ),
            ),
            201,
        ),
    ),
    ("listing", "GET", "/v1/organizations"): rule(
        Case(
            "the verification queue",
            at("/v1/organizations", params={"verified": "false", "region": "110000"}),
            OPERATORS_ONLY,
        )
    ),
    ("listing", "GET", "/v1/organizations/{organization_id}"): rule(
        Case(
            "own organisation",
            at(ORG),
            keyed(other=403, member=200, admin=200, partner=403, operator=200, service=403),
        )
    ),
    ("listing", "PATCH", "/v1/organizations/{organization_id}"): rule(
        Case(
            "rename",
            at(ORG, body=fixed_body({"region": "110108"})),
            keyed(other=403, member=403, admin=200, partner=403, operator=200, service=403),
        )
    ),
    ("listing", "POST", "/v1/organizations/{organization_id}/api-keys"): rule(
        Case(
            "issue a member key",
            at(ORG + "/api-keys", body=fixed_body({"name": "office", "roles": ["member"]})),
            keyed(other=403, member=403, admin=201, partner=403, operator=201, service=403),
        ),
        Case(
            "issue a partner key to the exchange",
            at(
                "/v1/organizations/{exchange_org}/api-keys",
                body=fixed_body({"name": "sync", "roles": ["partner"]}),
            ),
            # Only operators mint partner keys (the partner key itself is no admin key).
            keyed(other=403, member=403, admin=403, partner=403, operator=201, service=403),
        ),
    ),
    ("listing", "POST", "/v1/organizations/{organization_id}/api-keys/{key_id}/rotate"): rule(
        Case(
            "rotate a member key",
            on_fresh("member_key", ORG + "/api-keys/{fresh}/rotate"),
            keyed(other=403, member=403, admin=201, partner=403, operator=201, service=403),
        )
    ),
    ("listing", "GET", "/v1/organizations/{organization_id}/api-keys"): rule(
        Case(
            "list keys",
            at(ORG + "/api-keys"),
            keyed(other=403, member=403, admin=200, partner=403, operator=200, service=403),
        )
    ),
    ("listing", "DELETE", "/v1/organizations/{organization_id}/api-keys/{key_id}"): rule(
        Case(
            "revoke a member key",
            on_fresh("member_key", ORG + "/api-keys/{fresh}"),
            keyed(other=403, member=403, admin=204, partner=403, operator=204, service=403),
        )
    ),
    ("listing", "POST", "/v1/auth/introspect"): rule(
        Case(
            "introspect the member key",
            at("/v1/auth/introspect", body=lambda w: {"token": w.keys["member"]}),
            SERVICES_ONLY,
        )
    ),
    ("listing", "POST", "/v1/assets"): rule(
        Case(
            "register a right",
            register_asset,
            keyed(other=201, member=201, admin=201, partner=403, operator=201, service=403),
        )
    ),
    ("listing", "GET", "/v1/assets/{asset_id}"): public(
        "registered rights are public records", ("an asset", at("/v1/assets/{asset}"), 200)
    ),
    ("listing", "PATCH", "/v1/assets/{asset_id}"): rule(
        Case(
            "correct the own right",
            correct_asset,
            # Its holders (and sellers here) and operators; a partner corrects nothing here.
            keyed(other=403, member=200, admin=200, partner=403, operator=200, service=403),
        )
    ),
    ("listing", "GET", "/v1/assets"): public(
        "lookup of public records by identifier",
        (
            "by identifier",
            at(
                "/v1/assets",
                params={"kind": "invention_patent", "identifier": "{asset_identifier}"},
            ),
            200,
        ),
    ),
    ("listing", "GET", "/v1/assets/{asset_id}/offers"): public(
        "the offers on the market for an asset (drafts never)",
        ("offers", at("/v1/assets/{asset}/offers"), 200),
    ),
    ("listing", "POST", "/v1/listings"): rule(
        Case(
            "offer the own right",
            at(
                "/v1/listings",
                body=lambda w: {
                    "asset_id": w.ids["asset"],
                    "transaction": terms("nonexclusive_license"),
                },
            ),
            # Only a holder lists a right (403 not_a_holder); operators do not sell.
            keyed(other=403, member=201, admin=201, partner=403, operator=403, service=403),
        )
    ),
    ("listing", "GET", "/v1/listings/{listing_id}"): rule(
        Case("a draft", at("/v1/listings/{draft}"), {**DRAFT_READ, "anonymous": 404}),
        Case(
            "a published listing",
            at("/v1/listings/{published}"),
            keyed(
                other=200,
                member=200,
                admin=200,
                partner=200,
                operator=200,
                service=200,
                anonymous=200,
            ),
        ),
    ),
    ("listing", "PATCH", "/v1/listings/{listing_id}"): rule(
        Case(
            "edit a draft",
            patch_listing("draft"),
            keyed(other=404, member=200, admin=200, partner=403, operator=200, service=403),
        ),
        Case(
            "edit a published listing",
            patch_listing("published"),
            keyed(other=403, member=200, admin=200, partner=403, operator=200, service=403),
        ),
    ),
    ("listing", "POST", "/v1/listings/{listing_id}/submit"): rule(
        Case(
            "submit a draft",
            on_fresh("draft", "/v1/listings/{fresh}/submit"),
            keyed(other=404, member=200, admin=200, partner=403, operator=200, service=403),
        )
    ),
    ("listing", "POST", "/v1/listings/{listing_id}/approve"): rule(
        Case(
            "approve",
            on_fresh("pending", "/v1/listings/{fresh}/approve"),
            keyed(other=404, member=403, admin=403, partner=403, operator=200, service=403),
        )
    ),
    ("listing", "POST", "/v1/listings/{listing_id}/reject"): rule(
        Case(
            "reject",
            on_fresh(
                "pending",
                "/v1/listings/{fresh}/reject",
                body=lambda w, _: {"reason": "证明材料不全"},
            ),
            keyed(other=404, member=403, admin=403, partner=403, operator=200, service=403),
        )
    ),
    ("listing", "POST", "/v1/listings/{listing_id}/withdraw"): rule(
        Case(
            "withdraw a published listing",
            on_fresh("published", "/v1/listings/{fresh}/withdraw"),
            keyed(other=403, member=200, admin=200, partner=403, operator=200, service=403),
        ),
        Case(
            "withdraw a draft",
            on_fresh("draft", "/v1/listings/{fresh}/withdraw"),
            keyed(other=404, member=200, admin=200, partner=403, operator=200, service=403),
        ),
    ),
    ("listing", "POST", "/v1/listings/{listing_id}/reopen"): rule(
        Case(
            "reopen after a negotiation",
            on_fresh("negotiating", "/v1/listings/{fresh}/reopen"),
            keyed(other=403, member=200, admin=200, partner=403, operator=200, service=403),
        )
    ),
    ("listing", "POST", "/v1/listings/{listing_id}/expire"): rule(
        Case(
            "expire",
            on_fresh("published", "/v1/listings/{fresh}/expire"),
            keyed(other=403, member=403, admin=403, partner=403, operator=200, service=403),
        )
    ),
    ("listing", "GET", "/v1/listings"): rule(
        Case(
            "the own organisation's listings",
            at("/v1/listings", params={"seller": "{own_org}"}),
            # Members list their own organisation's only; operators any seller's.
            keyed(other=403, member=200, admin=200, partner=403, operator=200, service=403),
        ),
        Case(
            "the caller's listings",
            at("/v1/listings"),
            keyed(other=200, member=200, admin=200, partner=403, operator=200, service=403),
            private="{draft}",
            private_from=frozenset({"other"}),
        ),
    ),
    ("listing", "GET", "/v1/listings/{listing_id}/history"): rule(
        Case(
            "a draft's history",
            at("/v1/listings/{draft}/history"),
            keyed(other=404, member=200, admin=200, partner=404, operator=200, service=200),
        )
    ),
    ("listing", "POST", "/v1/listings/{listing_id}/inquiries"): rule(
        Case(
            "inquire on a published listing",
            at("/v1/listings/{published}/inquiries", body=fixed_body(MESSAGE)),
            # The other organisation is a buyer like any; a seller never inquires on its own
            # listing; an operator (of its own organisation) may buy too.
            keyed(other=201, member=403, admin=403, partner=403, operator=201, service=403),
        ),
        Case(
            "inquire on a draft",
            at("/v1/listings/{draft}/inquiries", body=fixed_body(MESSAGE)),
            # Operators see drafts: theirs is a state conflict (not open to offers), not a 404.
            keyed(other=404, member=403, admin=403, partner=403, operator=409, service=403),
        ),
    ),
    ("listing", "GET", "/v1/inquiries"): rule(
        Case(
            "threads the caller is party to",
            at("/v1/inquiries"),
            keyed(other=200, member=200, admin=200, partner=403, operator=200, service=403),
            private="{inquiry}",
            private_from=frozenset({"other"}),
        ),
        Case(
            "threads on the own listing",
            at("/v1/inquiries", params={"listing_id": "{published}"}),
            keyed(other=200, member=200, admin=200, partner=403, operator=200, service=403),
            private="{inquiry}",
            private_from=frozenset({"other"}),
        ),
    ),
    ("listing", "GET", "/v1/inquiries/{inquiry_id}"): rule(
        Case(
            "a buyer's thread on the own listing",
            at("/v1/inquiries/{inquiry}"),
            keyed(other=404, member=200, admin=200, partner=403, operator=200, service=403),
        )
    ),
    ("listing", "POST", "/v1/inquiries/{inquiry_id}/messages"): rule(
        Case(
            "the seller answers",
            at("/v1/inquiries/{inquiry}/messages", body=fixed_body(MESSAGE)),
            # Operators read threads but never write in them.
            keyed(other=404, member=201, admin=201, partner=403, operator=403, service=403),
        )
    ),
    ("listing", "POST", "/v1/deals"): rule(
        Case(
            "close a deal",
            close_deal,
            keyed(other=403, member=201, admin=201, partner=403, operator=201, service=403),
        )
    ),
    ("listing", "GET", "/v1/deals"): public(
        "deal announcements are public (a confidential amount is hidden, not the deal)",
        ("announcements", at("/v1/deals"), 200),
    ),
    ("listing", "GET", "/v1/deals/stats"): public(
        "statistics over disclosed amounts, groups of three deals or more",
        ("statistics", at("/v1/deals/stats"), 200),
    ),
    ("listing", "GET", "/v1/incentives"): rule(
        Case("the incentives report", at("/v1/incentives", params=YEAR), OPERATORS_ONLY)
    ),
    ("listing", "GET", "/v1/incentives/organizations"): rule(
        Case(
            "what organisations earn",
            at("/v1/incentives/organizations", params=YEAR),
            OPERATORS_ONLY,
        )
    ),
    ("listing", "GET", "/v1/incentives/deals"): rule(
        Case("what deals earn", at("/v1/incentives/deals", params=YEAR), OPERATORS_ONLY)
    ),
    ("listing", "GET", "/v1/incentives/export"): rule(
        Case(
            "the report as a spreadsheet",
            at("/v1/incentives/export", params={**YEAR, "format": "xlsx"}),
            OPERATORS_ONLY,
        )
    ),
    ("listing", "GET", "/v1/incentives/charts/{chart}"): rule(
        Case("a chart", at("/v1/incentives/charts/region", params=YEAR), OPERATORS_ONLY)
    ),
    ("listing", "GET", "/v1/changes"): rule(Case("the feed", at("/v1/changes"), SERVICES_ONLY)),
    ("listing", "GET", "/v1/changes/head"): rule(
        Case("the feed's head", at("/v1/changes/head"), SERVICES_ONLY)
    ),
    ("listing", "POST", "/v1/imports"): rule(
        Case(
            "import the own rights",
            import_file(on_behalf=False),
            keyed(other=201, member=201, admin=201, partner=403, operator=201, service=403),
        ),
        Case(
            "import on behalf of the own organisation",
            import_file(on_behalf=True),
            keyed(other=403, member=403, admin=403, partner=403, operator=201, service=403),
        ),
    ),
    ("listing", "GET", "/v1/imports/{import_id}"): rule(
        Case(
            "the own import's report",
            at("/v1/imports/{import}"),
            keyed(other=404, member=200, admin=200, partner=403, operator=200, service=403),
        )
    ),
    ("listing", "GET", "/v1/imports/{import_id}/rows"): rule(
        Case(
            "the own import's rows",
            at("/v1/imports/{import}/rows"),
            keyed(other=404, member=200, admin=200, partner=403, operator=200, service=403),
        )
    ),
    ("listing", "GET", "/v1/offers"): rule(
        Case("every offer's document", at("/v1/offers"), SERVICES_ONLY)
    ),
    ("listing", "POST", "/v1/open-licences"): rule(
        Case(
            "declare an open licence on an own right",
            declare,
            keyed(other=201, member=201, admin=201, partner=403, operator=201, service=403),
        )
    ),
    ("listing", "GET", "/v1/open-licences"): rule(
        Case(
            "the own declarations (operators: the review queue)",
            at("/v1/open-licences"),
            keyed(other=200, member=200, admin=200, partner=403, operator=200, service=403),
            private="{declaration}",
            private_from=frozenset({"other"}),
        )
    ),
    ("listing", "GET", "/v1/open-licences/{declaration_id}"): public(
        "a published declaration is an offer in the open catalogue",
        ("a published declaration", at("/v1/open-licences/{declaration}"), 200),
    ),
    ("listing", "POST", "/v1/open-licences/gazette"): rule(
        Case(
            "import the gazette's declarations",
            import_gazette,
            keyed(other=403, member=403, admin=403, partner=403, operator=200, service=403),
        )
    ),
    ("listing", "POST", "/v1/open-licences/{declaration_id}/licences"): rule(
        Case(
            "take a licence by written notice",
            take_licence,
            # The patentee takes none on its own declaration.
            keyed(other=201, member=409, admin=409, partner=403, operator=201, service=403),
        )
    ),
    ("listing", "GET", "/v1/licences"): rule(
        Case(
            "the caller's licences",
            at("/v1/licences"),
            keyed(other=200, member=200, admin=200, partner=200, operator=200, service=403),
            private="{licence}",
            private_from=frozenset({"other", "partner"}),
        )
    ),
    ("listing", "GET", "/v1/licences/{licence_id}"): rule(
        Case(
            "a licence and its recordal package (its parties)",
            at("/v1/licences/{licence}"),
            keyed(other=404, member=200, admin=200, partner=404, operator=200, service=200),
        )
    ),
    ("listing", "POST", "/v1/licences/{licence_id}/recordal"): rule(
        Case(
            "enter the recordal",
            enter_recordal,
            keyed(other=404, member=200, admin=200, partner=404, operator=200, service=404),
        )
    ),
    ("listing", "POST", "/v1/financing/requests"): rule(
        Case(
            "ask for financing against an own right",
            ask_financing,
            keyed(other=201, member=201, admin=201, partner=403, operator=201, service=403),
        )
    ),
    ("listing", "GET", "/v1/financing/requests"): rule(
        Case(
            "the own requests (banks: the open ones; operators: all)",
            standing("financing_request", template="/v1/financing/requests"),
            keyed(other=200, member=200, admin=200, partner=403, operator=200, service=403),
            private="{financing_request}",
            private_from=frozenset({"other"}),
        )
    ),
    ("listing", "GET", "/v1/financing/requests/{request_id}"): rule(
        Case(
            "a financing request",
            standing("financing_request", template="/v1/financing/requests/{financing_request}"),
            BORROWER_READ,
        )
    ),
    ("listing", "POST", "/v1/financing/requests/{request_id}/withdraw"): rule(
        Case(
            "withdraw a financing request",
            on_financing("financing_request", "/v1/financing/requests/{fresh}/withdraw"),
            # An operator reads it but only the borrower withdraws it.
            keyed(other=404, member=200, admin=200, partner=403, operator=403, service=403),
        )
    ),
    ("listing", "POST", "/v1/financing/requests/{request_id}/offers"): rule(
        Case(
            "offer a loan (verified banks only; no caller class is one)",
            on_financing(
                "financing_request",
                "/v1/financing/requests/{fresh}/offers",
                body=fixed_body(OFFER),
            ),
            keyed(other=403, member=403, admin=403, partner=403, operator=403, service=403),
        )
    ),
    ("listing", "GET", "/v1/financing/requests/{request_id}/offers"): rule(
        Case(
            "the offers on a request",
            standing(
                "financing_request", template="/v1/financing/requests/{financing_request}/offers"
            ),
            BORROWER_READ,
        )
    ),
    ("listing", "GET", "/v1/financing/offers/{offer_id}"): rule(
        Case(
            "an offer (the borrower, the bank, operators)",
            standing("financing_offer", template="/v1/financing/offers/{financing_offer}"),
            BORROWER_READ,
        )
    ),
    ("listing", "POST", "/v1/financing/offers/{offer_id}/withdraw"): rule(
        Case(
            "withdraw an offer (the bank that made it only)",
            on_financing("financing_offer", "/v1/financing/offers/{fresh}/withdraw"),
            keyed(other=404, member=403, admin=403, partner=403, operator=403, service=403),
        )
    ),
    ("listing", "POST", "/v1/financing/offers/{offer_id}/accept"): rule(
        Case(
            "accept an offer (the borrower only)",
            on_financing("financing_offer", "/v1/financing/offers/{fresh}/accept"),
            keyed(other=404, member=201, admin=201, partner=403, operator=403, service=403),
        )
    ),
    ("listing", "POST", "/v1/financing/holds"): rule(
        Case(
            "record a preservation",
            at(
                "/v1/financing/holds",
                body=lambda w: {
                    "asset_id": w.ids["asset"],
                    "type": "preservation",
                    "reference": "(2026)京0108执保1号",
                    "since": TODAY_ISO,
                },
            ),
            keyed(other=403, member=403, admin=403, partner=403, operator=201, service=403),
        )
    ),
    ("listing", "POST", "/v1/financing/holds/{hold_id}/lift"): rule(
        Case(
            "lift a hold",
            on_financing(
                "asset_hold",
                "/v1/financing/holds/{fresh}/lift",
                body=fixed_body({"lifted_on": TODAY_ISO}),
            ),
            OPERATORS_ONLY,
        )
    ),
    ("listing", "GET", "/v1/pledges"): rule(
        Case(
            "the caller's pledges",
            standing("filed_pledge", template="/v1/pledges"),
            keyed(other=200, member=200, admin=200, partner=200, operator=200, service=403),
            private="{filed_pledge}",
            private_from=frozenset({"other", "partner"}),
        )
    ),
    ("listing", "GET", "/v1/pledges/{pledge_id}"): rule(
        Case(
            "a pledge with its figures (its parties)",
            standing("filed_pledge", template="/v1/pledges/{filed_pledge}"),
            keyed(other=404, member=200, admin=200, partner=404, operator=200, service=200),
        )
    ),
    ("listing", "GET", "/v1/pledges/{pledge_id}/history"): rule(
        Case(
            "a pledge's audit trail (its parties)",
            standing("filed_pledge", template="/v1/pledges/{filed_pledge}/history"),
            keyed(other=404, member=200, admin=200, partner=404, operator=200, service=200),
        )
    ),
    ("listing", "POST", "/v1/pledges/{pledge_id}/registration"): rule(
        Case(
            "enter the registration",
            on_financing(
                "filed_pledge",
                "/v1/pledges/{fresh}/registration",
                body=fixed_body(
                    {"registration_number": "Y2026110000124", "registered_on": TODAY_ISO}
                ),
            ),
            keyed(other=404, member=200, admin=200, partner=403, operator=200, service=403),
        )
    ),
    ("listing", "POST", "/v1/pledges/{pledge_id}/changes"): rule(
        Case(
            "enter a change",
            on_financing(
                "registered_pledge",
                "/v1/pledges/{fresh}/changes",
                body=fixed_body({"term_months": 18, "reason": "展期"}),
            ),
            keyed(other=404, member=200, admin=200, partner=403, operator=200, service=403),
        )
    ),
    ("listing", "POST", "/v1/pledges/{pledge_id}/cancellation"): rule(
        Case(
            "enter the cancellation (the pledgee or an operator)",
            on_financing(
                "registered_pledge",
                "/v1/pledges/{fresh}/cancellation",
                body=fixed_body({"reason": "released", "cancelled_on": TODAY_ISO}),
            ),
            PLEDGEE_WRITE,
        )
    ),
    ("listing", "POST", "/v1/pledges/{pledge_id}/consents"): rule(
        Case(
            "the pledgee's consent (no caller class is the pledgee)",
            on_financing(
                "registered_pledge",
                "/v1/pledges/{fresh}/consents",
                body=fixed_body({"transaction_type": "assignment"}),
            ),
            keyed(other=404, member=403, admin=403, partner=403, operator=403, service=403),
        )
    ),
    ("listing", "PUT", "/v1/offers/{exchange}/{listing_id}"): rule(
        Case("upsert a partner's offer", put_offer, SERVICES_ONLY)
    ),
}

DEMAND = "/v1/demands/{demand}"
MATCHING_RULES: dict[tuple[Service, str, str], Rule] = {
    ("matching", "GET", "/v1/search"): public(
        "the open catalogue: published offers only",
        ("search", at("/v1/search", params={"q": "电池"}), 200),
    ),
    ("matching", "POST", "/v1/demands"): rule(
        Case(
            "post a need",
            at("/v1/demands", body=fixed_body({"title": "电池隔膜", "text": "需要锂电池隔膜技术"})),
            # Demands are an organisation's, posted with its member or admin key.
            keyed(other=201, member=201, admin=201, partner=403, operator=403, service=403),
        )
    ),
    ("matching", "GET", "/v1/demands"): rule(
        Case(
            "the caller's demands",
            at("/v1/demands"),
            keyed(other=200, member=200, admin=200, partner=403, operator=403, service=403),
            private="{demand}",
            private_from=frozenset({"other"}),
        )
    ),
    ("matching", "GET", "/v1/demands/{demand_id}"): rule(
        Case(
            "the own demand",
            at(DEMAND),
            keyed(other=404, member=200, admin=200, partner=404, operator=200, service=200),
        )
    ),
    ("matching", "PATCH", "/v1/demands/{demand_id}"): rule(
        Case(
            "edit the own demand",
            at(DEMAND, body=fixed_body({"budget_max": "2000000.00"})),
            keyed(other=404, member=200, admin=200, partner=403, operator=403, service=403),
        )
    ),
    ("matching", "DELETE", "/v1/demands/{demand_id}"): rule(
        Case(
            "close the own demand",
            on_fresh("demand", "/v1/demands/{fresh}"),
            keyed(other=404, member=204, admin=204, partner=404, operator=204, service=403),
        )
    ),
    ("matching", "GET", "/v1/demands/{demand_id}/matches"): rule(
        Case(
            "the own demand's matches",
            at(DEMAND + "/matches"),
            keyed(other=404, member=200, admin=200, partner=404, operator=200, service=200),
        )
    ),
    ("matching", "GET", "/v1/matches/changes"): rule(
        Case(
            "the feed of matches: an organisation's key reads its own",
            at("/v1/matches/changes"),
            keyed(other=200, member=200, admin=200, partner=403, operator=200, service=200),
        )
    ),
    ("matching", "GET", "/v1/index/search-key"): rule(
        Case(
            "the gateway's read-only Meilisearch key",
            at("/v1/index/search-key"),
            # A credential for the gateway alone: not even operators read it here.
            keyed(other=403, member=403, admin=403, partner=403, operator=403, service=200),
        )
    ),
    ("matching", "GET", "/v1/index/status"): rule(
        Case("the indexer's status", at("/v1/index/status"), SERVICES_ONLY)
    ),
}

SUBSCRIPTION = "/v1/subscriptions/{subscription}"
GATEWAY_RULES: dict[tuple[Service, str, str], Rule] = {
    ("gateway", "GET", "/v1/catalogue/search"): public(
        "the open catalogue", ("search", at("/v1/catalogue/search", params={"q": "电池"}), 200)
    ),
    ("gateway", "GET", "/v1/catalogue/assets/{asset_id}"): public(
        "the open catalogue: an asset with its offers on the market",
        ("an asset", at("/v1/catalogue/assets/{asset}"), 200),
    ),
    ("gateway", "GET", "/v1/catalogue/listings/{listing_id}"): public(
        "the open catalogue: a published offer (drafts are 404)",
        ("a published offer", at("/v1/catalogue/listings/{published}"), 200),
        ("a draft", at("/v1/catalogue/listings/{draft}"), 404),
    ),
    ("gateway", "GET", "/v1/catalogue/deals"): public(
        "public deal announcements", ("deals", at("/v1/catalogue/deals"), 200)
    ),
    ("gateway", "GET", "/v1/catalogue/deals/stats"): public(
        "statistics over disclosed amounts, groups of three deals or more",
        ("statistics", at("/v1/catalogue/deals/stats"), 200),
    ),
    # The web catalogue: pages built only on the public catalogue API above.
    ("gateway", "GET", "/"): public(
        "the web catalogue's search page", ("search page", at("/", params={"q": "电池"}), 200)
    ),
    ("gateway", "GET", "/assets/{asset_id}"): public(
        "the web catalogue's page of an asset", ("asset page", at("/assets/{asset}"), 200)
    ),
    ("gateway", "GET", "/stats"): public(
        "the web catalogue's deal statistics", ("statistics page", at("/stats"), 200)
    ),
    ("gateway", "GET", "/static/{name}"): public(
        "the web catalogue's stylesheet and script",
        ("stylesheet", at("/static/" + STATIC_URLS["site.css"]), 200),
    ),
    ("gateway", "GET", "/v1/catalogue/changes"): public(
        "the open change feed of public offers (no drafts, no reviews)",
        ("changes", at("/v1/catalogue/changes"), 200),
    ),
    ("gateway", "POST", "/v1/partners"): rule(
        Case(
            "register a partner",
            at(
                "/v1/partners",
                body=lambda w: {
                    "code": f"reg{next(w.counter)}",
                    "name": "北京技术交易促进中心",
                    "region": "110000",
                },
            ),
            keyed(other=403, member=403, admin=403, partner=403, operator=201, service=403),
        )
    ),
    ("gateway", "GET", "/v1/partners"): rule(
        Case("the registry", at("/v1/partners"), OPERATORS_ONLY)
    ),
    ("gateway", "GET", "/v1/partners/{code}"): rule(
        Case("a partner", at("/v1/partners/" + PARTNER_CODE), OPERATORS_ONLY)
    ),
    ("gateway", "PATCH", "/v1/partners/{code}"): rule(
        Case(
            "rename a partner",
            on_fresh("partner_code", "/v1/partners/{fresh}", body=lambda w, _: {"name": "新名称"}),
            OPERATORS_ONLY,
        )
    ),
    ("gateway", "GET", "/v1/partners/{code}/rejected"): rule(
        Case(
            "the partner's refused events",
            at(f"/v1/partners/{PARTNER_CODE}/rejected"),
            # The partner exchange's own keys and operators; the own organisation is not it.
            keyed(other=403, member=403, admin=403, partner=200, operator=200, service=403),
        )
    ),
    ("gateway", "POST", "/v1/inbound/{partner}"): Rule(
        public="partners authenticate each push with its Standard Webhooks signature, not a key",
        cases=(
            Case("a signed push", push(signed=True), {"anonymous": 202}),
            Case(
                "an unsigned push",
                push(signed=False),
                # No key stands in for the signature, however privileged.
                keyed(other=401, member=401, admin=401, partner=401, operator=401, service=401),
            ),
        ),
    ),
    ("gateway", "POST", "/v1/subscriptions"): rule(
        Case(
            "subscribe",
            at("/v1/subscriptions", body=World.subscription_body),
            keyed(other=201, member=201, admin=201, partner=201, operator=403, service=403),
        )
    ),
    ("gateway", "GET", "/v1/subscriptions"): rule(
        Case(
            "the caller's subscriptions",
            at("/v1/subscriptions"),
            keyed(other=200, member=200, admin=200, partner=200, operator=200, service=200),
            private="{subscription}",
            private_from=frozenset({"other", "partner", "service"}),
        )
    ),
    ("gateway", "GET", "/v1/subscriptions/{subscription_id}"): rule(
        Case(
            "the own subscription",
            at(SUBSCRIPTION),
            keyed(other=404, member=200, admin=200, partner=404, operator=200, service=404),
        )
    ),
    ("gateway", "DELETE", "/v1/subscriptions/{subscription_id}"): rule(
        Case(
            "disable the own subscription",
            on_fresh("subscription", "/v1/subscriptions/{fresh}"),
            keyed(other=404, member=204, admin=204, partner=404, operator=204, service=404),
        )
    ),
    ("gateway", "GET", "/v1/subscriptions/{subscription_id}/deliveries"): rule(
        Case(
            "the own subscription's deliveries",
            at(SUBSCRIPTION + "/deliveries"),
            keyed(other=404, member=200, admin=200, partner=404, operator=200, service=404),
        )
    ),
    (
        "gateway",
        "POST",
        "/v1/subscriptions/{subscription_id}/deliveries/{delivery_id}/replay",
    ): rule(
        Case(
            "replay a delivered webhook",
            replay,
            keyed(other=404, member=202, admin=202, partner=404, operator=202, service=404),
        )
    ),
    ("gateway", "POST", "/v1/webhook-targets"): rule(
        Case(
            "allow a private target",
            at(
                "/v1/webhook-targets",
                body=lambda w: {
                    "pattern": f"hooks{next(w.counter)}.example.internal",
                    "port": 443,
                    "organization_id": w.ids["own_org"],
                },
            ),
            keyed(other=403, member=403, admin=403, partner=403, operator=201, service=403),
        )
    ),
    ("gateway", "GET", "/v1/webhook-targets"): rule(
        Case("the allow-list", at("/v1/webhook-targets"), OPERATORS_ONLY)
    ),
    ("gateway", "DELETE", "/v1/webhook-targets/{target_id}"): rule(
        Case(
            "remove a private target",
            delete_target,
            keyed(other=403, member=403, admin=403, partner=403, operator=204, service=403),
        )
    ),
}

RULES: dict[tuple[Service, str, str], Rule] = {
    **_infrastructure("listing"),
    **_infrastructure("matching"),
    **_infrastructure("gateway"),
    **LISTING_RULES,
    **MATCHING_RULES,
    **GATEWAY_RULES,
}
