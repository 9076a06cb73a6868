"""Alembic environment of the `matching` schema."""

import services.matching.models  # noqa: F401  (registers the schema's tables on SQLModel.metadata)
from infra.migrations.env_common import run_for_schema

run_for_schema("matching")
