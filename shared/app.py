"""What every service app has: middleware, error handlers, /healthz, /readyz, /metrics.

Each service's ``create_app()`` calls :func:`build_app` with its own lifespan and routers; the
lifespan puts its resources on ``app.state`` (engine, sessionmaker, authenticator, clients) and
its readiness checks in ``app.state.readiness_checks``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import cache
from typing import Any

import httpx
from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import APIRouter, Depends, FastAPI, params
from fastapi.dependencies.models import Dependant
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry
from prometheus_fastapi_instrumentator import Instrumentator
from prometheus_fastapi_instrumentator.middleware import PrometheusInstrumentatorMiddleware
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.types import ASGIApp

from shared.auth import AUTH_CHANNEL, IntrospectingAuthenticator
from shared.db import create_engine, create_sessionmaker
from shared.errors import (
    FieldError,
    ProblemResponse,
    ServiceUnavailable,
    UnprocessableEntity,
    UnsupportedMediaType,
    install_error_handlers,
)
from shared.health import ReadinessCheck, database_check, http_check
from shared.middleware import BodySizeLimitMiddleware
from shared.notifier import FeedNotifier
from shared.openapi import document_problems
from shared.ratelimit import RateLimitMiddleware
from shared.reads import ReadSessions, open_read_engine, replica_check
from shared.settings import ServiceName, Settings

__all__ = [
    "ClientLanes",
    "build_app",
    "open_database",
    "open_http_client",
    "open_upstreams",
    "tls_context",
]

READINESS_TIMEOUT_SECONDS = 3.0

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


class Health(BaseModel):
    status: str
    service: str


class Readiness(BaseModel):
    status: str
    service: str
    checks: dict[str, str]
    workers: dict[str, str] = Field(
        default_factory=dict,
        description="this replica's background workers: `leader` (it holds the worker's lease: "
        "one replica at a time), `standby` (another replica holds it), `running` (every "
        "replica runs it), `backing off` (its last step failed)",
        examples=[{"indexer": "leader", "match-worker": "running"}],
    )


def build_app(
    *,
    name: ServiceName,
    settings: Settings,
    lifespan: Lifespan,
    routers: Sequence[APIRouter],
    description: str,
    body_limits: Sequence[tuple[str, int]] = (),
    rate_limited_paths: Sequence[str] = (),
    http_mounts: Mapping[str, httpx.AsyncBaseTransport] | None = None,
) -> FastAPI:
    """`http_mounts` routes the service's outgoing HTTP by URL prefix (tests mount another
    service's real app in process through httpx's ASGI transport)."""

    @asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.readiness_checks = {}
        # Checks reported in /readyz that do not make the service not ready (the read replica:
        # reads fall back to the primary).
        app.state.readiness_optional = set()
        async with lifespan(app):
            yield

    app = FastAPI(
        title=f"ipx {name}",
        description=description,
        version="1.0.0",
        lifespan=app_lifespan,
        generate_unique_id_function=operation_id,
        dependencies=[
            Depends(refuse_unknown_query_parameters),
            Depends(require_json_body),
        ],
        # One schema per model: generated clients stop on `Price-Input`/`Price-Output` pairs.
        separate_input_output_schemas=False,
    )
    app.state.settings = settings
    app.state.service_name = name
    app.state.http_mounts = dict(http_mounts or {})
    install_error_handlers(app)

    # Added innermost first: the request id wraps everything, so every log line carries it.
    app.add_middleware(
        BodySizeLimitMiddleware, default_limit=settings.max_body_bytes, path_limits=body_limits
    )
    if rate_limited_paths:
        app.add_middleware(
            RateLimitMiddleware,
            paths=rate_limited_paths,
            anonymous_per_minute=settings.rate_limit_anonymous_per_minute,
            key_per_minute=settings.rate_limit_key_per_minute,
        )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["ETag", "X-Request-ID", "RateLimit", "RateLimit-Policy", "Retry-After"],
    )
    # Our own registry per app: the global one raises on a second create_app() in one process.
    # Other metrics of the app (workers') register on it too: /metrics serves it.
    app.state.metrics_registry = CollectorRegistry()
    Instrumentator(
        registry=app.state.metrics_registry,
        excluded_handlers=["/metrics", "/healthz", "/readyz"],
    ).instrument(app).expose(app, endpoint="/metrics", include_in_schema=False)
    _remember_route_templates(app)
    app.add_middleware(CorrelationIdMiddleware, header_name="X-Request-ID", validator=None)

    @app.get("/healthz", tags=["health"], response_model=Health)
    async def healthz() -> Health:
        """The process is up (no dependency is checked)."""
        return Health(status="ok", service=name)

    @app.get(
        "/readyz",
        tags=["health"],
        response_model=Readiness,
        responses={
            503: {
                "description": "A dependency is not ready",
                "content": {"application/problem+json": {}},
            }
        },
    )
    async def readyz() -> Any:
        """Every dependency this service needs is reachable and its schema is migrated. The
        read replica's state is reported without counting: reads fall back to the primary."""
        checks: dict[str, ReadinessCheck] = app.state.readiness_checks
        optional: set[str] = app.state.readiness_optional
        results = await asyncio.gather(
            *(asyncio.wait_for(check(), READINESS_TIMEOUT_SECONDS) for check in checks.values()),
            return_exceptions=True,
        )
        report = {}
        for check_name, result in zip(checks, results, strict=True):
            if isinstance(result, TimeoutError):
                report[check_name] = "timed out"
            elif isinstance(result, BaseException):
                report[check_name] = str(result) or type(result).__name__
            else:
                report[check_name] = "ok"
        failing = sorted(k for k, v in report.items() if v != "ok" and k not in optional)
        if failing:
            error = ServiceUnavailable(
                "not ready: " + "; ".join(f"{k}: {report[k]}" for k in failing),
                extra={"checks": report},
                headers={"Retry-After": "2"},
            )
            return ProblemResponse(
                error.to_problem("/readyz"), status_code=503, headers=error.headers
            )
        roles: Callable[[], dict[str, str]] | None = getattr(app.state, "worker_roles", None)
        return Readiness(
            status="ready", service=name, checks=report, workers=roles() if roles else {}
        )

    for router in routers:
        app.include_router(router)
    document_problems(app)
    return app


async def require_json_body(request: Request) -> None:
    """A route that takes a JSON body refuses any other media type with 415 (text/plain, XML,
    a form): the body was otherwise handed to validation as bytes ("Input should be a valid
    dictionary"), naming no cause. Routes that read their body raw (CSV imports, signed
    partner pushes) declare no body model and are not concerned."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or route.body_field is None:
        return
    if isinstance(route.body_field.field_info, params.Form):
        return
    if request.headers.get("content-length", "0") == "0" and (
        "transfer-encoding" not in request.headers
    ):
        return  # no body: validation names the missing fields
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        return
    raise UnsupportedMediaType(
        f"the body must be application/json, not {media_type or 'sent without a Content-Type'}",
        extra={"expected": "application/json"},
    )


async def refuse_unknown_query_parameters(request: Request) -> None:
    """A query parameter the route does not take is a 422 naming it, rather than ignored
    (docs/DECISIONS.md, API contract, "Unknown query parameters")."""
    if not request.query_params:
        return
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known: frozenset[str] | None = getattr(route, "ipx_query_names", None)
    if known is None:  # once per route: its parameters never change
        known = _query_names(route.dependant)
        route.ipx_query_names = known  # type: ignore[attr-defined]
    unknown = [name for name in dict.fromkeys(request.query_params) if name not in known]
    if unknown:
        takes = ", ".join(sorted(known)) or "no query parameters"
        raise UnprocessableEntity(
            f"unknown query parameter {', '.join(unknown)}; this endpoint takes: {takes}",
            errors=[
                FieldError(
                    field=name,
                    rule="unknown_parameter",
                    message=f"{name!r} is not a query parameter of this endpoint (takes: {takes})",
                )
                for name in unknown
            ],
        )


def _query_names(dependant: Dependant) -> frozenset[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return frozenset(names)


def operation_id(route: APIRoute) -> str:
    """The endpoint function's name (`catalogue_search`): short, and stable as long as the
    function keeps its name, which makes it part of the contract generated clients call."""
    return route.name


class _RouteTemplateCache(PrometheusInstrumentatorMiddleware):
    """The instrumentator, remembering the route template of each method and path instead of
    matching the request against every route of the app on every request (docs/DECISIONS.md,
    Foundation, "Request metrics"). The routes never change once the app is built, so the
    answer for a path never does either; the memory is bounded (cleared when full)."""

    MAX_PATHS = 4096

    def __init__(self, app: ASGIApp, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._templates: dict[tuple[str, str, str], tuple[str, bool]] = {}

    def _get_handler(self, request: Request) -> tuple[str, bool]:
        scope = request.scope
        key = (scope["method"], scope["path"], scope.get("root_path", ""))
        found = self._templates.get(key)
        if found is None:
            found = super()._get_handler(request)
            if len(self._templates) >= self.MAX_PATHS:
                self._templates.clear()
            self._templates[key] = found
        return found


def _remember_route_templates(app: FastAPI) -> None:
    """Swap the instrumentator's middleware (just added, so first) for the caching one."""
    entry = app.user_middleware[0]
    factory: Any = entry.cls  # typed as a factory protocol the classes do not spell out
    assert factory is PrometheusInstrumentatorMiddleware
    cache: Any = _RouteTemplateCache
    app.user_middleware[0] = Middleware(cache, *entry.args, **entry.kwargs)


@asynccontextmanager
async def open_database(
    app: FastAPI, settings: Settings, *, schema: str, expected_revision: str
) -> AsyncIterator[AsyncEngine]:
    """Engine and sessionmaker on app.state, plus the database readiness check; the read
    sessions (`app.state.reads`, shared/reads.py) on the replica when IPX_DATABASE_READ_URL is
    set, with its state in /readyz as `database_replica`."""
    engine = create_engine(settings, application_name=f"ipx-{schema}")
    app.state.engine = engine
    app.state.sessionmaker = create_sessionmaker(engine)
    app.state.readiness_checks["database"] = database_check(engine, schema, expected_revision)
    replica = open_read_engine(settings, application_name=f"ipx-{schema}-reads")
    app.state.reads = ReadSessions(
        app.state.sessionmaker,
        replica,
        app.state.metrics_registry,
        max_lag_seconds=settings.database_read_max_lag_seconds,
    )
    if replica is not None:
        app.state.readiness_checks["database_replica"] = replica_check(app.state.reads)
        app.state.readiness_optional.add("database_replica")
    try:
        yield engine
    finally:
        await engine.dispose()
        if replica is not None:
            await replica.dispose()


@asynccontextmanager
async def open_http_client(
    settings: Settings, mounts: Mapping[str, httpx.AsyncBaseTransport] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """The client for calls to other services and Meilisearch."""
    async with http_client(settings, mounts) as client:
        yield client


def http_client(
    settings: Settings,
    mounts: Mapping[str, httpx.AsyncBaseTransport] | None = None,
    *,
    connections: int = 100,
) -> httpx.AsyncClient:
    """An HTTP client for the internal hops (the caller closes it).

    Identity encoding: compressing responses on the internal hop costs more than it saves.
    """
    return httpx.AsyncClient(
        mounts=dict(mounts or {}),
        verify=tls_context(),
        timeout=settings.upstream_timeout_seconds,
        headers={"Accept-Encoding": "identity"},
        limits=httpx.Limits(
            max_connections=connections, max_keepalive_connections=max(1, connections // 2)
        ),
    )


class ClientLanes:
    """HTTP clients of one connection each, one per concurrent call, lent to one call at a time.

    httpcore's pool looks at every connection it holds (a socket poll each) when a request
    starts and when a response is closed, dear over a pool of 32+ (docs/DECISIONS.md,
    Gateway, "Inbox"): the partner inbox and the webhook deliveries each keep their calls in
    flight on lanes instead."""

    def __init__(self, client: Callable[[], httpx.AsyncClient], size: int) -> None:
        self._free: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
        self._all = [client() for _ in range(size)]
        for one in self._all:
            self._free.put_nowait(one)

    @asynccontextmanager
    async def lend(self) -> AsyncIterator[httpx.AsyncClient]:
        client = await self._free.get()
        try:
            yield client
        finally:
            self._free.put_nowait(client)

    async def aclose(self) -> None:
        for client in self._all:
            with contextlib.suppress(Exception):
                await client.aclose()


@cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every client: each client otherwise loads the CA bundle
    into a context of its own (docs/DECISIONS.md, Gateway, "Inbox")."""
    return httpx.create_ssl_context()


@asynccontextmanager
async def open_upstreams(
    app: FastAPI, settings: Settings, upstreams: dict[str, str]
) -> AsyncIterator[httpx.AsyncClient]:
    """For matching and gateway: the HTTP client, key checks through listing, and a readiness
    check per service called (`upstreams` maps a name to its base URL)."""
    revocations = FeedNotifier(settings.direct_database_url(), AUTH_CHANNEL)
    async with open_http_client(settings, app.state.http_mounts) as client:
        app.state.http = client
        app.state.authenticator = IntrospectingAuthenticator(
            settings, client, ttl=settings.auth_cache_seconds, revocations=revocations
        )
        for upstream, url in upstreams.items():
            app.state.readiness_checks[upstream] = http_check(client, upstream, url)
        await revocations.start()
        try:
            yield client
        finally:
            await revocations.stop()
