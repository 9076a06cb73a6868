"""Test setup: a real PostgreSQL and a real Meilisearch, started once per test session.

PostgreSQL starts the way the launcher starts it (infra.postgres: the machine's server binaries,
else pgserver; IPX_TEST_PG_BACKEND=pgserver forces the fallback). Migrations are applied once to a
template database; each test module gets a fresh database cloned from it (pytest-postgresql's
janitor), so modules never see each other's committed rows.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from pytest_postgresql.janitor import DatabaseJanitor

from infra.meili import MeiliHandle, start_meilisearch
from infra.migrations import upgrade_all
from infra.postgres import Backend, PostgresHandle, start_postgres
from shared.encryption import new_key
from shared.settings import Settings
from support import free_port

TEMPLATE_DB = "ipx_template"


def pytest_configure(config: pytest.Config) -> None:
    # A run stopped by SIGTERM (a CI job's time limit, `timeout`) ends the way Ctrl-C ends it:
    # pytest tears the session down, so its PostgreSQL and Meilisearch stop instead of running
    # on (SIGTERM's default ends the process before any fixture's teardown).
    signal.signal(signal.SIGTERM, signal.default_int_handler)


@pytest.fixture(scope="session")
def test_root() -> Iterator[Path]:
    # Under /tmp (not pytest's 0700 folder): the `postgres` user must reach the cluster.
    root = Path(tempfile.mkdtemp(prefix="ipx-test-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(test_root: Path) -> Iterator[PostgresHandle]:
    backend = cast(Backend, os.environ.get("IPX_TEST_PG_BACKEND", "auto"))
    handle = start_postgres(
        test_root / "pg", port=free_port(), backend=backend, database="postgres", durable=False
    )
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def meili_key() -> str:
    return secrets.token_urlsafe(24)


@pytest.fixture(scope="session")
def meili(test_root: Path, meili_key: str) -> Iterator[MeiliHandle]:
    handle = start_meilisearch(test_root / "meili", port=free_port(), master_key=meili_key)
    yield handle
    handle.stop()


def janitor(postgres: PostgresHandle, dbname: str, **kwargs: Any) -> DatabaseJanitor:
    return DatabaseJanitor(
        user=postgres.user, host=postgres.host, port=postgres.port, dbname=dbname, **kwargs
    )


@pytest.fixture(scope="session")
def template_database(postgres: PostgresHandle) -> Iterator[str]:
    template = janitor(postgres, TEMPLATE_DB)
    template.init()
    upgrade_all(postgres.url(TEMPLATE_DB))
    yield TEMPLATE_DB
    template.drop()


@pytest.fixture(scope="module")
def database_url(postgres: PostgresHandle, template_database: str) -> Iterator[str]:
    name = f"ipx_{uuid.uuid4().hex[:12]}"
    database = janitor(postgres, name, template_dbname=template_database)
    database.init()
    yield postgres.url(name)
    database.drop()


@pytest.fixture(scope="session")
def service_key() -> str:
    return "svc-" + secrets.token_urlsafe(24)


@pytest.fixture(scope="session")
def operator_key() -> str:
    return "op-" + secrets.token_urlsafe(24)


@pytest.fixture(scope="session")
def secret_key() -> str:
    """The key sealing the gateway's stored signing secrets (IPX_SECRET_KEYS)."""
    return new_key()


@pytest.fixture(scope="module")
def settings(
    database_url: str,
    meili: MeiliHandle,
    meili_key: str,
    service_key: str,
    operator_key: str,
    secret_key: str,
) -> Settings:
    return Settings(
        database_url=database_url,
        meili_url=meili.url,
        meili_master_key=meili_key,
        service_key=service_key,
        operator_key=operator_key,
        secret_keys=[secret_key],
        listing_url="http://listing.test",
        matching_url="http://matching.test",
        log_format="text",
    )


@pytest.fixture(scope="module")
async def listing_app(settings: Settings) -> AsyncIterator[FastAPI]:
    from services.listing.app import create_app

    app = create_app(settings)
    async with LifespanManager(app):
        yield app


@pytest.fixture(scope="module")
async def listing(listing_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=listing_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://listing.test") as client:
        yield client


@pytest.fixture(scope="module")
def matching_settings(settings: Settings) -> Settings:
    """Each module its own catalogue index in the shared Meilisearch."""
    return settings.model_copy(update={"meili_index": f"catalogue_{uuid.uuid4().hex[:8]}"})


@pytest.fixture(scope="module")
async def matching_app(matching_settings: Settings, listing_app: FastAPI) -> AsyncIterator[FastAPI]:
    """The matching app in process (indexer running), calling listing's real app."""
    from services.matching.app import create_app

    app = create_app(matching_settings, {"http://listing.test": httpx.ASGITransport(listing_app)})
    async with LifespanManager(app):
        yield app


@pytest.fixture(scope="module")
async def matching(matching_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=matching_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://matching.test") as client:
        yield client


@pytest.fixture(scope="module")
async def gateway_app(
    matching_settings: Settings, listing_app: FastAPI, matching_app: FastAPI
) -> AsyncIterator[FastAPI]:
    """The gateway app in process (its workers running), calling listing's and matching's
    real apps."""
    from services.gateway.app import create_app

    mounts = {
        "http://listing.test": httpx.ASGITransport(listing_app),
        "http://matching.test": httpx.ASGITransport(matching_app),
    }
    app = create_app(matching_settings, mounts)
    async with LifespanManager(app):
        yield app


@pytest.fixture(scope="module")
async def gateway(gateway_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(
        app=gateway_app, raise_app_exceptions=False, client=("203.0.113.7", 40000)
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        yield client
