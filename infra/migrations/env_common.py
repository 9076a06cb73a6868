"""The body of every tree's env.py: online migrations only, on a connection we are given."""

from __future__ import annotations

import zlib
from typing import Any

from alembic import context
from sqlalchemy import Connection, MetaData, text
from sqlmodel import SQLModel


def _include_object_in(schema: str) -> Any:
    def include_object(
        obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
    ) -> bool:
        if type_ == "schema":
            return bool(name == schema)
        table = obj if type_ == "table" else getattr(obj, "table", None)
        return table is None or table.schema == schema

    return include_object


def run_for_schema(schema: str, metadata: MetaData | None = None) -> None:
    config = context.config
    connection: Connection | None = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through `ipx migrate` (infra.migrations.upgrade_all)")
    # Two replicas migrating at once take turns instead of racing on DDL.
    connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": zlib.crc32(schema.encode())})
    connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    context.configure(
        connection=connection,
        target_metadata=metadata if metadata is not None else SQLModel.metadata,
        version_table_schema=schema,
        include_schemas=True,
        include_object=_include_object_in(schema),
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
