"""What the retention tests of every service share: SQL on the app's database, a job run until
it finds nothing, a replica that another replica's lease keeps from running, and a sample read
off /metrics. (Each test module still overrides `settings` itself, as pytest overrides go.)"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from fastapi import FastAPI
from sqlalchemy import text

from shared.db import asyncpg_connect_kwargs
from shared.retention import RetentionJob, retention_workers
from shared.settings import Settings
from shared.workers import lease_key, run_workers
from support import worker_host


async def run(app: FastAPI, sql: str, **params: Any) -> list[Any]:
    async with app.state.sessionmaker() as session, session.begin():
        result = await session.execute(text(sql), params)
        return list(result.all()) if result.returns_rows else []


async def steps_until_done(retention: RetentionJob) -> list[dict[str, int]]:
    counts = []
    while True:
        counts.append(await retention.step())
        if not any(counts[-1].values()):
            return counts


async def replica_while_leased(settings: Settings, service: str, job: RetentionJob) -> None:
    """Run a replica's retention worker for a second while another connection holds the
    service's retention lease: it runs no round."""
    other = await asyncpg.connect(**asyncpg_connect_kwargs(settings.database_url))
    try:  # another replica holds the lease: this one runs no round
        assert await other.fetchval(
            "SELECT pg_try_advisory_lock($1)", lease_key(f"{service}-retention")
        )
        replica = worker_host(settings.model_copy(update={"retention_interval_seconds": 3600}))
        async with run_workers(replica, retention_workers(replica, service, job)):
            await asyncio.sleep(1.0)
    finally:
        await other.close()


def sample(exposition: str, name: str) -> float:
    for line in exposition.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} is not in /metrics")
