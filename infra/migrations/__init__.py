"""Three Alembic trees, one per schema (listing, matching, gateway), in one database.

Each tree keeps its version table in its own schema and only sees its own tables, because
SQLModel's metadata is global and every service's models are imported in the tests.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from infra.blocking import run_blocking
from shared.settings import SERVICE_NAMES

__all__ = ["SCHEMAS", "alembic_config", "head_revision", "upgrade", "upgrade_all"]

SCHEMAS = SERVICE_NAMES
MIGRATIONS_DIR = Path(__file__).resolve().parent


def alembic_config(schema: str, database_url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("path_separator", "os")
    config.set_main_option("script_location", str(MIGRATIONS_DIR / schema))
    config.set_main_option("version_locations", str(MIGRATIONS_DIR / schema / "versions"))
    config.attributes["schema"] = schema
    if database_url:
        config.attributes["database_url"] = database_url
    return config


@cache
def head_revision(schema: str) -> str:
    head = ScriptDirectory.from_config(alembic_config(schema)).get_current_head()
    if head is None:
        raise RuntimeError(f"the {schema} migration tree has no revision")
    return head


def _upgrade_on(connection: Connection, schema: str) -> None:
    config = alembic_config(schema)
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def upgrade(engine: AsyncEngine, schemas: tuple[str, ...] = SCHEMAS) -> None:
    """Bring every schema to its head revision (safe to run from two processes at once)."""
    for schema in schemas:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade_on, schema)


def upgrade_all(database_url: str) -> None:
    """Synchronous entry point for the CLI and the launcher."""

    async def run() -> None:
        engine = create_async_engine(database_url, poolclass=NullPool)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    run_blocking(run)
