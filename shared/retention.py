"""The retention loop the services share: delete what is past its window, a batch at a time.

A service describes its retention as a :class:`RetentionJob`: ``begin(now)`` fixes the round's
cutoffs (and reads what the round needs once), ``step()`` deletes at most one batch from each
of its tables, each batch in its own short transaction with ``FOR UPDATE SKIP LOCKED`` (a row
a writer holds is skipped, never waited for), and returns how many rows went per table.

One replica runs a round at a time (an exclusive worker of `shared.workers`). The batches
would be safe to run concurrently (SKIP LOCKED), so the lease only saves the duplicate scanning.

Metrics, in the app's own registry (the one ``/metrics`` serves):
``ipx_retention_deleted_total{table}`` and ``ipx_retention_last_run_timestamp_seconds``
(the end of the last complete round).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Gauge

from shared.db import utcnow
from shared.settings import Settings
from shared.workers import Worker

__all__ = [
    "RetentionJob",
    "RetentionMetrics",
    "app_registry",
    "retention_round",
    "retention_workers",
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


async def retention_round(
    job: RetentionJob, metrics: RetentionMetrics, now: datetime | None = None
) -> dict[str, int]:
    """One round: steps until every table's batch comes back short; the rows deleted per
    table."""
    await job.begin(now or utcnow())
    totals = dict.fromkeys(job.tables, 0)
    while True:
        deleted = await job.step()
        metrics.count(deleted)
        for table, n in deleted.items():
            totals[table] = totals.get(table, 0) + n
        if all(n < job.batch for n in deleted.values()):
            break
    metrics.last_run.set_to_current_time()
    return totals


def retention_workers(app: FastAPI, service: str, job: RetentionJob) -> list[Worker]:
    """The service's retention worker: a round every IPX_RETENTION_INTERVAL_SECONDS on one
    replica at a time; none when the interval is 0 (the metrics are still listed)."""
    settings: Settings = app.state.settings
    metrics = RetentionMetrics.of(app, job.tables)
    if settings.retention_interval_seconds <= 0:
        return []

    async def step() -> int:
        totals = await retention_round(job, metrics)
        if any(totals.values()):
            logger.info("retention deleted %s", totals, extra={"worker": f"{service}-retention"})
        return 0  # the next round after the interval

    return [
        Worker(
            f"{service}-retention",
            step,
            interval=settings.retention_interval_seconds,
            exclusive=True,
        )
    ]
