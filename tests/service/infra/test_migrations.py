"""The three Alembic trees: they match the table models, are idempotent, and gate readiness."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

import services.gateway.models
import services.listing.models
import services.matching.models  # noqa: F401  (registers every table)
from conftest import janitor
from infra.migrations import SCHEMAS, alembic_config, head_revision, upgrade_all
from infra.migrations.env_common import _include_object_in
from infra.postgres import PostgresHandle
from shared.settings import Settings
from support import assert_problem, serve_in_process


def _diff(connection: Connection, schema: str) -> list[object]:
    context = MigrationContext.configure(
        connection,
        opts={
            "include_schemas": True,
            "include_object": _include_object_in(schema),
            "version_table_schema": schema,
            "compare_type": True,
        },
    )
    return list(compare_metadata(context, SQLModel.metadata))


@pytest.mark.parametrize("schema", SCHEMAS)
async def test_models_and_migrations_agree(database_url: str, schema: str) -> None:
    engine = create_async_engine(database_url)
    async with engine.connect() as conn:
        diff = await conn.run_sync(_diff, schema)
    await engine.dispose()
    assert diff == []


@pytest.fixture
def empty_database(postgres: PostgresHandle) -> Iterator[str]:
    name = f"ipx_empty_{uuid.uuid4().hex[:8]}"
    database = janitor(postgres, name)
    database.init()
    yield postgres.url(name)
    database.drop()


async def test_readiness_needs_migrations_and_they_run_twice_harmlessly(
    empty_database: str, settings: Settings
) -> None:
    from services.listing.app import create_app

    unmigrated = settings.model_copy(update={"database_url": empty_database})
    async with serve_in_process(create_app(unmigrated), "http://listing.test") as client:
        body = assert_problem(await client.get("/readyz"), 503)
        assert "run the migrations" in str(body["checks"])
        upgrade_all(empty_database)
        upgrade_all(empty_database)
        ready = await client.get("/readyz")
        assert ready.status_code == 200
    assert head_revision("listing") == "0003"


async def test_unscoped_allow_list_entries_are_carried_to_the_tenants_using_them(
    empty_database: str,
) -> None:
    """Gateway 0006: an old entry becomes one entry per (tenant, port) that used it."""
    org, other = uuid.uuid4(), uuid.uuid4()

    def to(revision: str) -> Callable[[Connection], None]:
        def run(connection: Connection) -> None:
            config = alembic_config("gateway")
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

        return run

    engine = create_async_engine(empty_database)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(to("0005"))
            await conn.execute(
                text(
                    "INSERT INTO gateway.allowed_targets (pattern, created_at) VALUES "
                    "('127.0.0.1', now()), ('10.0.0.0/8', now()), ('*.corp.example', now()), "
                    "('unused.example', now())"
                )
            )
            for organization, url in (
                (org, "http://127.0.0.1:8123/hook"),
                (org, "https://hooks.corp.example/in"),
                (other, "http://10.1.2.3:9000/"),
                (other, "https://public.example/"),  # public: no entry needed
            ):
                await conn.execute(
                    text(
                        "INSERT INTO gateway.subscriptions (id, organization_id, url, "
                        "event_types, filter, secret, status, created_at) VALUES (:id, :org, "
                        ":url, ARRAY['deal.closed'], '{}', 's', 'active', now())"
                    ),
                    {"id": uuid.uuid4(), "org": organization, "url": url},
                )
            await conn.execute(
                text(
                    "INSERT INTO gateway.partners (code, name, region, status, inbound_secret, "
                    "adapter, pull_url, pull_interval_seconds, pull_failures, created_at, "
                    "updated_at) VALUES ('tjipe', '天津', '120000', 'active', 's', 'canonical', "
                    "'http://127.0.0.1:7001/feed', 60, 0, now(), now())"
                )
            )
            await conn.run_sync(to("head"))
            rows = await conn.execute(
                text(
                    "SELECT organization_id, partner_code, pattern, port "
                    "FROM gateway.allowed_targets"
                )
            )
            carried = {tuple(row) for row in rows}
    finally:
        await engine.dispose()
    assert carried == {
        (org, None, "127.0.0.1", 8123),
        (org, None, "*.corp.example", 443),
        (other, None, "10.0.0.0/8", 9000),
        (None, "tjipe", "127.0.0.1", 7001),
    }
