"""The embedded PostgreSQL (pgserver) that the launcher uses when no server binaries exist."""

from __future__ import annotations

from pathlib import Path

from infra.migrations import upgrade_all
from infra.postgres import start_postgres
from shared.settings import Settings
from support import serve_in_process


async def test_the_stack_runs_on_pgserver(test_root: Path, settings: Settings) -> None:
    from services.listing.app import create_app

    handle = start_postgres(test_root / "pgserver-fallback", port=0, backend="pgserver")
    try:
        assert handle.backend == "pgserver" and handle.host.startswith("/")
        upgrade_all(handle.url("ipx"))
        on_pgserver = settings.model_copy(update={"database_url": handle.url("ipx")})
        async with serve_in_process(create_app(on_pgserver), "http://listing.test") as client:
            assert (await client.get("/readyz")).status_code == 200
            created = await client.post(
                "/v1/organizations",
                json={"name": "河北大学", "kind": "university", "region": "130600"},
            )
            assert created.status_code == 201
    finally:
        handle.stop()
