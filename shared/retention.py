"""The retention loop the services share: delete what is past its window, a batch at a time.

A service describes its retention as a :class:`RetentionJob`: ``begin(now)`` fixes the round's
cutoffs (and reads what the round needs once), ``step()`` deletes at most one batch from each
of its tables, each batch in its own short transaction with ``FOR UPDATE SKIP LOCKED`` (a row
a writer holds is skipped, never waited for), and returns how many rows went per table.

One replica runs a round at a time: :func:`retention_round` takes a session advisory lock
(``pg_try_advisory_lock``) on a dedicated connection and skips the round when another replica
holds it; closing the connection releases it. The batches would be safe to run concurrently
(SKIP LOCKED), so the lock only saves the duplicate scanning, and a lease lost mid-round (its
connection dropped) does no harm.

Metrics, in the app's own registry (the one ``/metrics`` serves):
``ipx_retention_deleted_total{table}`` and ``ipx_retention_last_run_timestamp_seconds``
(the end of the last complete round).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import asyncpg
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Gauge

from shared.db import asyncpg_connect_kwargs, utcnow
from shared.jitter import jitter
from shared.settings import Settings

__all__ = [
    "RetentionJob",
    "RetentionMetrics",
    "app_registry",
    "lease_key",
    "retention_round",
    "run_retention",
]

logger = logging.getLogger("ipx.retention")


class RetentionJob(Protocol):
    """What one service deletes. `tables` name what `step` counts."""

    tables: tuple[str, ...]
    batch: int

    async def begin(self, now: datetime) -> None:
        """Start a round: fix the cutoffs as of `now`."""

    async def step(self) -> dict[str, int]:
        """Delete at most one batch per table; how many rows went from each."""


def app_registry(app: FastAPI) -> CollectorRegistry:
    """The registry the app's `/metrics` serves (`shared.app.build_app` gives each app its
    own)."""
    registry: CollectorRegistry = app.state.metrics_registry
    return registry


@dataclass(frozen=True)
class RetentionMetrics:
    deleted: Counter
    last_run: Gauge

    @classmethod
    def of(cls, app: FastAPI, tables: tuple[str, ...]) -> RetentionMetrics:
        """The app's retention metrics, registered on first use (one set per app)."""
        existing: RetentionMetrics | None = getattr(app.state, "retention_metrics", None)
        if existing is None:
            registry = app_registry(app)
            existing = cls(
                deleted=Counter(
                    "ipx_retention_deleted",
                    "Rows deleted by the retention job, by table",
                    ["table"],
                    registry=registry,
                ),
                last_run=Gauge(
                    "ipx_retention_last_run_timestamp_seconds",
                    "When the last complete retention round ended (Unix time)",
                    registry=registry,
                ),
            )
            app.state.retention_metrics = existing
        for table in tables:
            existing.deleted.labels(table=table)  # listed at 0 before the first delete
        return existing

    def count(self, deleted: Mapping[str, int]) -> None:
        for table, n in deleted.items():
            if n:
                self.deleted.labels(table=table).inc(n)


def lease_key(service: str) -> int:
    return zlib.crc32(f"ipx-retention:{service}".encode())


async def retention_round(
    settings: Settings,
    service: str,
    job: RetentionJob,
    metrics: RetentionMetrics,
    now: datetime | None = None,
) -> dict[str, int] | None:
    """One round under the service's lease: steps until every table's batch comes back short.
    Returns the rows deleted per table, or None when another replica holds the lease."""
    conn = await asyncpg.connect(timeout=5, **asyncpg_connect_kwargs(settings.database_url))
    try:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", lease_key(service)):
            return None
        await job.begin(now or utcnow())
        totals = dict.fromkeys(job.tables, 0)
        while True:
            deleted = await job.step()
            metrics.count(deleted)
            for table, n in deleted.items():
                totals[table] = totals.get(table, 0) + n
            if all(n < job.batch for n in deleted.values()):
                break
            await conn.fetchval("SELECT 1")  # the lease's connection is still alive
        metrics.last_run.set_to_current_time()
        return totals
    finally:
        with contextlib.suppress(Exception):
            await conn.close(timeout=1)


async def run_retention(app: FastAPI, service: str, job: RetentionJob) -> None:
    """Run a round every IPX_RETENTION_INTERVAL_SECONDS (jittered), forever; 0 turns it off
    (the metrics are still listed). Start as a task in the lifespan; cancel to stop."""
    settings: Settings = app.state.settings
    metrics = RetentionMetrics.of(app, job.tables)
    interval = settings.retention_interval_seconds
    if interval <= 0:
        return
    while True:
        try:
            totals = await retention_round(settings, service, job, metrics)
            if totals and any(totals.values()):
                logger.info("retention deleted %s", totals)
        except asyncio.CancelledError:
            raise
        except Exception:  # PostgreSQL down: try again next round
            logger.warning("retention round of %s failed", service, exc_info=True)
        await asyncio.sleep(interval * (0.9 + 0.2 * jitter.random()))
