"""The three Alembic trees: they match the table models, are idempotent, and gate readiness."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

import services.gateway.models
import services.listing.models
import services.matching.models  # noqa: F401  (registers every table)
from conftest import janitor
from infra.migrations import SCHEMAS, head_revision, upgrade_all
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
