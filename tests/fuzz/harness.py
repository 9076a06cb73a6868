"""Schemathesis against a service's own OpenAPI document, in process, with real keys and data.

The apps are called through schemathesis's ASGI transport, which runs every request in one
event-loop thread of its own; the apps' lifespans run there too, so the asyncpg pools live on
the loop that uses them. `Stack` is the ASGI app it calls: the service under test plus the real
apps it calls (mounted through httpx's ASGI transport, as tests/conftest.py does), started
once, requests routed by Host (`listing.test`, `matching.test`; anything else reaches the
service under test).

The fuzzer gets past 401 and 404 because `Fuzz` supplies real keys (operator, service,
organisations' admin and member keys, drawn per case) and known ids and bodies of real
resources (generation hooks), mixed with whatever the schema allows. Checks: no 5xx, status
code, content type and body as documented, and every error problem+json.
"""

from __future__ import annotations

import asyncio
import json
import os
import zlib
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import hypothesis.strategies as st
import pytest
import schemathesis
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from requests.auth import AuthBase
from schemathesis import APIOperation, Case, CheckContext
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.schemas import BaseSchema
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from support import nonexclusive_offer, real_application_numbers

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Examples per operation in Hypothesis's generate phase (the coverage and examples phases add
# their own cases); IPX_FUZZ_EXAMPLES=2000 for a long run.
EXAMPLES = int(os.environ.get("IPX_FUZZ_EXAMPLES", "200"))
# Reproducible in CI: derandomized, nothing kept between runs, no per-example deadline (a
# request that hits PostgreSQL and Meilisearch has no useful fixed bound; the transport has one).
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)
# Hypothesis warns when an example's repr passes 30 kB (the cost of printing it): generated
# bodies legitimately reach 100 kB. The warning is about printing, not about the API.
LARGE_REPRS_ALLOWED = pytest.mark.filterwarnings(
    "ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning"
)
REQUEST_TIMEOUT_SECONDS = 30.0
PROBLEM = "application/problem+json"
LONG_POLL_CAP_SECONDS = 0.2
KEY_HEADER = "X-Fuzz-Key"
# Signed per Standard Webhooks instead of a key (see the gateway's test).
UNKEYED = "/v1/inbound/"
FuzzCase = Case[APIOperation[Any, Any, Any, Any]]


class Stack:
    """The service under test and the services it calls, as one ASGI app with one lifespan.

    Made empty when the test module is imported (the schema needs its app then) and given its
    apps by the module's fixture, once the test database exists. Schemathesis ends an app's
    lifespan after every test (one per operation) and starts it again on the next request:
    the apps start once, in a task of schemathesis's loop, and run until `stop()`."""

    def __init__(self) -> None:
        self.target: FastAPI | None = None
        self.upstreams: dict[str, FastAPI] = {}  # Host (no port) -> app
        # Entered in the stack's loop before the apps start (e.g. a webhook receiver).
        self.contexts: list[AbstractAsyncContextManager[Any]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        assert self.target is not None, "the module's fuzz fixture did not start the stack"
        host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
        app = self.upstreams.get(host.split(":")[0], self.target)
        await app(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        if self._running is None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            started: asyncio.Future[None] = self._loop.create_future()
            self._running = asyncio.create_task(self._run(started))
            try:
                await started
            except Exception as exc:
                self._running = None
                await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                return
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown: the apps keep running until stop()
        await send({"type": "lifespan.shutdown.complete"})

    async def _run(self, started: asyncio.Future[None]) -> None:
        assert self.target is not None and self._stop is not None
        try:
            async with AsyncExitStack() as stack:
                for context in self.contexts:
                    await stack.enter_async_context(context)
                # Upstreams first: the service under test checks them when it starts.
                for app in [*self.upstreams.values(), self.target]:
                    await stack.enter_async_context(
                        LifespanManager(app, startup_timeout=60, shutdown_timeout=60)
                    )
                started.set_result(None)
                await self._stop.wait()
        except BaseException as exc:
            if not started.done():
                started.set_exception(exc)
            raise

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the apps (from the test's thread): their lifespans end in their own loop."""
        running, stop, loop = self._running, self._stop, self._loop
        if running is None or stop is None or loop is None:
            return

        async def stopped() -> None:
            stop.set()
            await running

        asyncio.run_coroutine_threadsafe(stopped(), loop).result(timeout)
        self._running = None


@schemathesis.check
def problem_json(ctx: CheckContext, response: schemathesis.Response, case: FuzzCase) -> bool | None:
    """Every error is RFC 9457 problem+json with type, title and the response's status."""
    if response.status_code < 400:
        return None
    media_type = response.headers.get("content-type", [""])[0].split(";")[0].strip()
    assert media_type == PROBLEM, f"{response.status_code} answered as {media_type!r}"
    body = json.loads(response.content)
    assert isinstance(body, dict), f"the problem is not an object: {body!r}"
    assert body.get("status") == response.status_code, f"status {body.get('status')!r}"
    assert isinstance(body.get("type"), str) and body["type"], "no problem type"
    assert isinstance(body.get("title"), str) and body["title"], "no problem title"
    return True


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    """An import file as generated (a string), or rows (objects) one JSON document a line."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    rows = value if isinstance(value, list) else [value]
    return "\n".join(json.dumps(row, ensure_ascii=False) for row in rows).encode(
        "utf-8", "surrogatepass"
    )


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    problem_json,
]


def _stable_choice(case: FuzzCase, count: int) -> int:
    """The same case always picks the same key (Hypothesis replays cases when it shrinks)."""
    seen = repr((case.path_parameters, case.query, case.body))
    return zlib.crc32(seen.encode("utf-8", "surrogatepass")) % count


@dataclass
class Fuzz:
    """A service under test with its seed data: keys, known ids, and what the fuzz ran."""

    name: str
    stack: Stack = field(default_factory=Stack)
    operator_key: str = ""
    service_key: str = ""
    client: asgi.ASGIClient | None = None
    openapi: dict[str, Any] = field(default_factory=dict)
    # The keys the auth provider picks from, per case, by name; the keys themselves (None: no
    # Authorization header) once the fixture has made them.
    key_names: tuple[str, ...] = ()
    keys: dict[str, str | None] = field(default_factory=dict)
    # Values of real resources per operation label ("GET /v1/x/{id}"): path and query
    # parameters (dicts of values) and bodies.
    path_values: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    query_values: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    body_values: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))
    # Called after every fuzzed request (e.g. to re-issue a key the fuzzer rotated).
    observers: list[Callable[[FuzzCase, schemathesis.Response], None]] = field(default_factory=list)
    # Operations whose bodies may name URLs the service will call (see loopback_urls).
    outbound_url_operations: set[str] = field(default_factory=set)
    # Signs requests to operations that take no key (the gateway's partner intake).
    signer: AuthBase | None = None
    requests_per_operation: Counter[str] = field(default_factory=Counter)
    statuses_per_operation: dict[str, Counter[int]] = field(
        default_factory=lambda: defaultdict(Counter)
    )
    statuses: Counter[int] = field(default_factory=Counter)

    # ------------------------------------------------------------------ seeding helpers

    def call(
        self,
        method: str,
        url: str,
        key: str | None = None,
        expect: int | tuple[int, ...] = (200, 201, 202, 204),
        **kwargs: Any,
    ) -> Any:
        """A request to the stack (absolute URL for an upstream) that must answer `expect`."""
        assert self.client is not None, "the stack is not running"
        headers = dict(kwargs.pop("headers", {}))
        if key:
            headers["Authorization"] = f"Bearer {key}"
        response = self.client.request(
            method, url, headers=headers, timeout=REQUEST_TIMEOUT_SECONDS, **kwargs
        )
        wanted = (expect,) if isinstance(expect, int) else expect
        assert response.status_code in wanted, f"{method} {url}: {response.text}"
        return response.json() if response.content else None

    def known_path(self, operation: str, *values: dict[str, Any]) -> None:
        self.path_values[operation].extend(values)

    def known_query(self, operation: str, *values: dict[str, Any]) -> None:
        self.query_values[operation].extend(values)

    def known_body(self, operation: str, *values: Any) -> None:
        self.body_values[operation].extend(values)

    # ------------------------------------------------------------------ the schema

    def schema(self, openapi: dict[str, Any]) -> BaseSchema:
        """The schema of `openapi` (the service's document), sent to the stack in process."""
        self.openapi = openapi
        schema = schemathesis.openapi.from_dict(openapi)
        schema.app = self.stack
        schema.config.update(
            base_url=f"http://{asgi.HOST}", request_timeout=REQUEST_TIMEOUT_SECONDS
        )
        fuzz = self

        def with_known(
            values: dict[str, list[Any]], label: str, strategy: st.SearchStrategy[Any]
        ) -> st.SearchStrategy[Any]:
            known = values.get(label)
            if not known:
                return strategy
            # Half known-good values (past 404 into the handler), half whatever the schema
            # allows. Read at draw time: observers replace ids the fuzzer used up.
            known_value = st.integers(min_value=0, max_value=len(known) - 1).map(
                lambda i: known[i % len(known)]
            )
            return st.one_of(known_value, strategy)

        @schema.hook
        def before_generate_path_parameters(
            context: schemathesis.HookContext, strategy: st.SearchStrategy[Any]
        ) -> st.SearchStrategy[Any]:
            assert context.operation is not None
            return with_known(fuzz.path_values, context.operation.label, strategy)

        @schema.hook
        def before_generate_query(
            context: schemathesis.HookContext, strategy: st.SearchStrategy[Any]
        ) -> st.SearchStrategy[Any]:
            assert context.operation is not None
            return with_known(fuzz.query_values, context.operation.label, strategy)

        @schema.hook
        def before_generate_body(
            context: schemathesis.HookContext, strategy: st.SearchStrategy[Any]
        ) -> st.SearchStrategy[Any]:
            assert context.operation is not None
            return with_known(fuzz.body_values, context.operation.label, strategy)

        @schema.hook
        def map_query(context: schemathesis.HookContext, query: Any) -> Any:
            # Long-polling is tested in listing/test_feed.py; here a wait at the head of the feed
            # would only spend the run's time budget.
            if isinstance(query, dict) and isinstance(query.get("wait"), int | float):
                query["wait"] = min(query["wait"], LONG_POLL_CAP_SECONDS)
            return query

        @schema.hook
        def flatmap_case(
            context: schemathesis.HookContext, case: FuzzCase
        ) -> st.SearchStrategy[FuzzCase]:
            # The key is drawn with the rest of the case, so every known id and body meets
            # every kind of caller (and a shrunk or replayed case keeps its key).
            if case.operation.path.startswith(UNKEYED):
                return st.just(case)

            def with_key(name: str) -> FuzzCase:
                case.headers[KEY_HEADER] = name
                return case

            return st.sampled_from(fuzz.key_names).map(with_key)

        class Keys:
            """A real key per case: operator, service, organisations' keys, or none. For the
            cases of the coverage phase, which are not drawn (see flatmap_case)."""

            def get(self, case: FuzzCase, ctx: schemathesis.AuthContext) -> str | None:
                if case.operation.path.startswith(UNKEYED) or KEY_HEADER in case.headers:
                    return None
                return fuzz.key_names[_stable_choice(case, len(fuzz.key_names))]

            def set(self, case: FuzzCase, data: str, ctx: schemathesis.AuthContext) -> None:
                # The name of the key: coverage cases are made when pytest collects, before
                # the keys exist; `exercise` puts the key itself in.
                case.headers[KEY_HEADER] = data

        schema.auth(refresh_interval=None)(Keys)
        if self.signer is not None:
            schema.auth.set_from_requests(self.signer).apply_to(path="/v1/inbound/{partner}")
        return schema

    # ------------------------------------------------------------------ one fuzzed case

    def exercise(self, case: FuzzCase, **call_kwargs: Any) -> None:
        if case.operation.label in self.outbound_url_operations:
            # Here, not in a map_body hook: the explicit examples of the OpenAPI document
            # (erp.example.com) do not go through hooks.
            case.body = loopback_urls(case.body)
        name = case.headers.pop(KEY_HEADER, None)
        if name is not None and self.keys[name] is not None:
            case.headers["Authorization"] = f"Bearer {self.keys[name]}"
        response = case.call(**call_kwargs)
        self.requests_per_operation[case.operation.label] += 1
        self.statuses[response.status_code] += 1
        self.statuses_per_operation[case.operation.label][response.status_code] += 1
        for observe in self.observers:
            observe(case, response)
        case.validate_response(response, checks=CHECKS)

    @contextmanager
    def running(
        self,
        target: FastAPI,
        upstreams: dict[str, FastAPI],
        *,
        operator_key: str,
        service_key: str,
        contexts: tuple[AbstractAsyncContextManager[Any], ...] = (),
    ) -> Iterator[Fuzz]:
        """The stack started (its lifespan runs in schemathesis's ASGI loop), stopped after."""
        self.stack.target, self.stack.upstreams = target, upstreams
        self.stack.contexts = list(contexts)
        self.operator_key, self.service_key = operator_key, service_key
        # The served document is the one the schema was built from at import.
        with asgi.get_client(self.stack) as client:  # type: ignore[arg-type]
            self.client = client
            try:
                served = self.call("GET", "/openapi.json", expect=200)
                assert served == self.openapi
                yield self
            finally:
                print(f"\n{self.summary()}")
                # Stopped here, not at exit: the module's database is dropped after this.
                self.stack.stop()
                asgi.shutdown_lifespans()
                self.client = None

    def summary(self) -> str:
        """One line for the service, then one per operation: requests and their statuses."""
        total = sum(self.requests_per_operation.values())
        classes = Counter(f"{status // 100}xx" for status in self.statuses.elements())
        lines = [
            f"fuzz {self.name}: {len(self.requests_per_operation)} operations, {total} requests "
            f"({EXAMPLES} generated examples per operation at most, plus coverage and "
            f"explicit examples); statuses {dict(sorted(classes.items()))}"
        ]
        for label, count in sorted(self.requests_per_operation.items()):
            statuses = dict(sorted(self.statuses_per_operation[label].items()))
            lines.append(f"  {label}: {count} requests, statuses {statuses}")
        return "\n".join(lines)


def loopback_urls(value: Any) -> Any:
    """Every http(s) URL in a body, pointed at 127.0.0.1 (same scheme, port, path): webhook
    targets and pull feeds the fuzzer invents must never send traffic off this machine."""
    if isinstance(value, dict):
        return {key: loopback_urls(item) for key, item in value.items()}
    if isinstance(value, list):
        return [loopback_urls(item) for item in value]
    if isinstance(value, str) and value.strip().lower().startswith(("http://", "https://")):
        try:
            parts = urlsplit(value.strip())
            port = parts.port
        except ValueError:
            return value
        if parts.hostname in (None, "127.0.0.1"):
            return value
        netloc = "127.0.0.1" + (f":{port}" if port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return value


# ---------------------------------------------------------------------- listing's seed data

SELLER = "北京航空航天大学"
BUYER = "天津中环半导体股份有限公司"


@dataclass
class Org:
    id: str
    admin_key: str
    member_key: str


@dataclass
class ListingSeed:
    """Real organisations, assets and listings in every state the fuzzer should reach."""

    seller: Org
    buyer: Org
    unverified: Org
    numbers: list[str]
    draft: dict[str, Any]
    published: list[dict[str, Any]]
    negotiating: dict[str, Any]
    closed: dict[str, Any]
    inquiry_id: str
    import_id: str
    partner_offer: dict[str, Any]
    # Keys of the seller the fuzzer may rotate and revoke (never the keys it calls with).
    spare_key_ids: list[str]

    @property
    def listings(self) -> list[dict[str, Any]]:
        return [
            self.draft,
            *self.published,
            self.negotiating,
            self.closed,
            self.partner_offer,
        ]


def new_org(fuzz: Fuzz, name: str, region: str, kind: str, *, verified: bool = True) -> Org:
    signed_up = fuzz.call(
        "POST",
        "http://listing.test/v1/organizations",
        json={"name": name, "kind": kind, "region": region},
        expect=201,
    )
    org_id, admin_key = signed_up["organization"]["id"], signed_up["api_key"]["key"]
    if verified:
        fuzz.call(
            "PATCH",
            f"http://listing.test/v1/organizations/{org_id}",
            fuzz.operator_key,
            json={"verified": True},
            expect=200,
        )
    member = fuzz.call(
        "POST",
        f"http://listing.test/v1/organizations/{org_id}/api-keys",
        admin_key,
        json={"name": "fuzz member", "roles": ["member"]},
        expect=201,
    )
    return Org(id=org_id, admin_key=admin_key, member_key=member["key"])


def asset_body(number: str, holder: str = SELLER) -> dict[str, Any]:
    return {
        "kind": "invention_patent",
        "identifier": number,
        "title": {"zh": "一种锂离子电池隔膜及其制备方法"},
        "classifications": {"ipc": ["H01M  2/16", "H01M10/0525"]},
        "holders": [{"name": holder, "region": "110108"}],
        "filed_on": f"{number[:4]}-05-01",
        "legal_status": "granted",
    }


def terms_body(type_: str = "nonexclusive_license", amount: str | None = "1200000.00") -> Any:
    return {"type": type_, "price": {"mode": "fixed", "amount": amount}}


def seed_listing(fuzz: Fuzz) -> ListingSeed:

    numbers = list(real_application_numbers("invention_patent"))[:12]
    seller = new_org(fuzz, SELLER, "110108", "university")
    buyer = new_org(fuzz, BUYER, "120116", "enterprise")
    unverified = new_org(fuzz, "河北工业大学", "130100", "university", verified=False)
    url = "http://listing.test/v1"

    def draft(number: str) -> dict[str, Any]:
        body = {"asset": asset_body(number), "transaction": terms_body()}
        created: dict[str, Any] = fuzz.call(
            "POST", f"{url}/listings", seller.admin_key, json=body, expect=201
        )
        return created

    def publish(number: str) -> dict[str, Any]:
        listing_id = draft(number)["id"]
        fuzz.call("POST", f"{url}/listings/{listing_id}/submit", seller.admin_key, expect=200)
        published: dict[str, Any] = fuzz.call(
            "POST", f"{url}/listings/{listing_id}/approve", fuzz.operator_key, expect=200
        )
        return published

    draft_listing = draft(numbers[0])
    published = [publish(numbers[1]), publish(numbers[2]), publish(numbers[3])]
    negotiating = publish(numbers[4])
    inquiry = fuzz.call(
        "POST",
        f"{url}/listings/{negotiating['id']}/inquiries",
        buyer.member_key,
        json={"message": "贵校可否接受分期付款？", "offer_amount": "950000.00"},
        expect=201,
    )
    fuzz.call(
        "POST",
        f"{url}/inquiries/{inquiry['id']}/messages",
        seller.admin_key,
        json={"message": "可以分两期支付。"},
        expect=201,
    )
    closed = publish(numbers[5])
    fuzz.call(
        "POST",
        f"{url}/deals",
        seller.admin_key,
        json={
            "listing_id": closed["id"],
            "buyer_name": "场外买方有限公司",
            "amount": "1000000.00",
            "closed_on": "2026-01-05",
        },
        expect=201,
    )
    row = {"asset": asset_body(numbers[6]), "transaction": terms_body()}
    imported = fuzz.call(
        "POST",
        f"{url}/imports",
        seller.admin_key,
        data=json.dumps(row, ensure_ascii=False).encode(),
        headers={"Content-Type": "application/x-ndjson"},
        expect=(200, 201),
    )
    offer = fuzz.call(
        "PUT",
        f"{url}/offers/tipei/L-2026-0001",
        fuzz.service_key,
        params={"exchange_name": "天津知识产权交易中心", "exchange_region": "120000"},
        json=nonexclusive_offer("tipei", "L-2026-0001", numbers[7]),
        expect=200,
    )
    partner_offer = fuzz.call("GET", f"{url}/listings/{offer['listing_id']}", expect=200)
    spares = [
        fuzz.call(
            "POST",
            f"{url}/organizations/{seller.id}/api-keys",
            seller.admin_key,
            json={"name": f"spare {i}", "roles": ["member"]},
            expect=201,
        )["id"]
        for i in range(2)
    ]
    return ListingSeed(
        seller=seller,
        buyer=buyer,
        unverified=unverified,
        numbers=numbers,
        draft=draft_listing,
        published=published,
        negotiating=negotiating,
        closed=closed,
        inquiry_id=inquiry["id"],
        import_id=imported["id"],
        partner_offer=partner_offer,
        spare_key_ids=spares,
    )


def wait_indexed(fuzz: Fuzz, key: str, seconds: float = 60.0) -> None:
    """Until matching's indexer has caught up with listing's feed (bounded)."""
    import time

    deadline = time.monotonic() + seconds
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = fuzz.call("GET", "http://matching.test/v1/index/status", key, expect=200)
        if status["lag_events"] == 0 and status["cursor"] == status["feed_head"]:
            return
        time.sleep(0.2)
    raise AssertionError(f"the index did not catch up: {status}")


def assert_errors_documented_as_problems(openapi: dict[str, Any]) -> int:
    """Every documented error of every operation is problem+json with the Problem schema, and
    every operation that reads a key or a body documents 401 / 400, 413, 422 and 503.
    Returns how many error responses were checked."""
    checked = 0
    problem = {"schema": {"$ref": "#/components/schemas/Problem"}}
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            for status, response in responses.items():
                if int(status) >= 400:
                    assert response["content"] == {PROBLEM: problem}, (method, path, status)
                    checked += 1
            if "requestBody" in operation:
                assert {"400", "413", "422"} <= set(responses), (method, path)
            if path != "/healthz":
                assert "503" in responses, (method, path)
    assert "HTTPValidationError" not in openapi["components"]["schemas"]
    return checked
