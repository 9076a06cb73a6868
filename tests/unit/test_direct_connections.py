"""Behind PgBouncer in transaction pooling mode (infra/DEPLOY.md): the pool's connect arguments
turn the prepared statement caches off, and the connections that hold session state (leases'
advisory locks, LISTEN, matching's repair lock) go to PostgreSQL itself, IPX_DATABASE_DIRECT_URL.

No database: asyncpg.connect is replaced by a recorder that refuses the connection."""

from __future__ import annotations

import ast
import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from services.matching.repair import repository as repair_repository
from shared import db, notifier, workers
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
POOLED = "postgresql+asyncpg://ipx:pw@pgbouncer:6432/ipx"
DIRECT = "postgresql+asyncpg://ipx:pw@postgres-primary:5432/ipx"


class Refused(Exception):
    """What the recording asyncpg.connect raises once it has seen its arguments."""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("IPX_"):
            monkeypatch.delenv(name)


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every asyncpg.connect call's keyword arguments (the call then fails)."""
    seen: list[dict[str, Any]] = []

    async def record(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs)
        raise Refused

    monkeypatch.setattr("asyncpg.connect", record)
    return seen


def test_direct_url_defaults_to_the_database_url() -> None:
    assert Settings(database_url=POOLED).direct_database_url() == POOLED
    assert Settings(database_url=POOLED, database_direct_url="").direct_database_url() == POOLED
    both = Settings(database_url=POOLED, database_direct_url=DIRECT)
    assert both.direct_database_url() == DIRECT
    assert both.database_url == POOLED


def test_the_direct_url_and_the_pgbouncer_switch_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IPX_DATABASE_URL", POOLED)
    monkeypatch.setenv("IPX_DATABASE_DIRECT_URL", DIRECT)
    monkeypatch.setenv("IPX_DB_PGBOUNCER", "true")
    settings = Settings()
    assert settings.direct_database_url() == DIRECT
    assert settings.db_pgbouncer is True


def test_pool_connect_arguments_keep_the_caches_without_pgbouncer() -> None:
    args = db.engine_connect_args(Settings(database_url=POOLED), application_name="ipx-listing")
    assert args == {"timeout": 5, "server_settings": {"application_name": "ipx-listing"}}


def test_pool_connect_arguments_turn_the_caches_off_behind_pgbouncer() -> None:
    settings = Settings(database_url=POOLED, db_pgbouncer=True)
    args = db.engine_connect_args(settings, application_name="ipx-listing")
    assert args["statement_cache_size"] == 0
    assert args["prepared_statement_cache_size"] == 0
    assert args["server_settings"] == {"application_name": "ipx-listing"}
    names = {args["prepared_statement_name_func"]() for _ in range(1000)}
    assert len(names) == 1000  # never asyncpg's numbered names, which two clients can share
    assert all(name.startswith("__asyncpg_") for name in names)


@pytest.mark.parametrize("pgbouncer", [False, True])
async def test_the_engine_hands_them_to_asyncpg(
    connects: list[dict[str, Any]], pgbouncer: bool
) -> None:
    """Through SQLAlchemy's asyncpg dialect: asyncpg receives statement_cache_size=0 (the
    dialect keeps its own prepared statement cache's arguments)."""
    settings = Settings(database_url=POOLED, db_pgbouncer=pgbouncer)
    engine = db.create_engine(settings, application_name="ipx-test")
    try:
        with pytest.raises(Refused):
            async with engine.connect():
                pass
    finally:
        await engine.dispose()
    (kwargs,) = connects
    assert kwargs["host"] == "pgbouncer" and kwargs["port"] == 6432
    assert "prepared_statement_cache_size" not in kwargs
    assert "prepared_statement_name_func" not in kwargs
    if pgbouncer:
        assert kwargs["statement_cache_size"] == 0
    else:
        assert "statement_cache_size" not in kwargs


@pytest.mark.parametrize(("direct", "host"), [(DIRECT, "postgres-primary"), ("", "pgbouncer")])
async def test_a_lease_connects_to_the_direct_url(
    connects: list[dict[str, Any]], direct: str, host: str
) -> None:
    settings = Settings(database_url=POOLED, database_direct_url=direct)
    with pytest.raises(Refused):
        await workers._Lease(settings, 42, "indexer").acquire()
    assert [kwargs["host"] for kwargs in connects] == [host]
    assert connects[0]["server_settings"] == {"application_name": "ipx-lease-indexer"}


async def test_a_workers_feed_listener_connects_to_the_direct_url(
    connects: list[dict[str, Any]],
) -> None:
    settings = Settings(database_url=POOLED, database_direct_url=DIRECT)

    async def step() -> int:
        return 0

    worker = workers.Worker(name="direct-test", step=step, channel="listing_changes")
    loop = workers._Loop(
        worker, settings, workers.WorkerMetrics.of(CollectorRegistry()), asyncio.Event()
    )
    assert loop.notifier is not None
    await loop.notifier.start()
    try:
        for _ in range(100):
            if connects:
                break
            await asyncio.sleep(0.01)
    finally:
        await loop.notifier.stop()
    assert connects and connects[0]["host"] == "postgres-primary"
    assert connects[0]["server_settings"] == {"application_name": "ipx-listen-listing_changes"}


async def test_the_repair_lock_connects_to_the_direct_url(
    connects: list[dict[str, Any]],
) -> None:
    settings = Settings(database_url=POOLED, database_direct_url=DIRECT)
    with pytest.raises(Refused):
        await repair_repository.connect(settings, "ipx-index-cli")
    (kwargs,) = connects
    assert kwargs["host"] == "postgres-primary" and kwargs["port"] == 5432


def _session_connections() -> list[tuple[str, int, str]]:
    """Every FeedNotifier(...) and asyncpg_connect_kwargs(...) in the services' code, with the
    source of the URL it is given."""
    found = []
    for path in [*ROOT.glob("shared/**/*.py"), *ROOT.glob("services/**/*.py")]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            callee = node.func
            name = callee.attr if isinstance(callee, ast.Attribute) else getattr(callee, "id", "")
            if name in ("FeedNotifier", "asyncpg_connect_kwargs") and node.args:
                relative = str(path.relative_to(ROOT))
                found.append((relative, node.lineno, ast.unparse(node.args[0])))
    return found


def test_every_session_connection_in_the_code_takes_the_direct_url() -> None:
    """A LISTEN or a session lock opened on IPX_DATABASE_URL would go through PgBouncer, where
    a transaction-mode server connection is shared: the lock or the LISTEN would be lost."""
    found = _session_connections()
    # The three services' feed listeners, the workers' listener and lease, the repair lock.
    assert len(found) >= 5, found
    wrong = [
        (path, line, url)
        for path, line, url in found
        if not url.endswith("direct_database_url()")
        # asyncpg_connect_kwargs's own parameter, and FeedNotifier's forwarding of it.
        and (path, url) not in {("shared/notifier.py", "database_url")}
    ]
    assert not wrong, wrong


def test_notifier_forwards_its_url_unchanged() -> None:
    listener = notifier.FeedNotifier(DIRECT, "matching_changes")
    assert listener._connect_kwargs["host"] == "postgres-primary"
