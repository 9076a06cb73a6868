"""The one runtime for background work (docs/DECISIONS.md, "One worker runtime").

A worker declares its name, one `step`, how it is woken (a NOTIFY channel, an interval, or a
`nudge()` from its own code) and whether one replica at a time may run it (`exclusive`: a
PostgreSQL advisory lock held on a connection of its own). The runtime calls the step again at
once while it reports work done, waits for a wake-up when it reports none, backs off with jitter
when it raises, counts runs and failures, logs with the worker's name, and stops within a
deadline. A step never sees the lease: when the lease's connection dies the step in flight is
cancelled before another replica can take over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Gauge

from shared.db import asyncpg_connect_kwargs
from shared.errors import is_database_unavailable
from shared.jitter import backoff_seconds, jitter
from shared.notifier import FeedNotifier
from shared.settings import Settings

__all__ = [
    "SHUTDOWN_SECONDS",
    "Backoff",
    "Worker",
    "WorkerMetrics",
    "lease_key",
    "run_workers",
]

logger = logging.getLogger("ipx.worker")

SHUTDOWN_SECONDS = 1.5  # a step still running after this is cancelled (the launcher stops in 3 s)
LEASE_RETRY_SECONDS = 2.0  # how often a replica without the lease asks for it again
LEASE_CHECK_SECONDS = 5.0  # how often the lease's connection is asked whether it is alive
PROGRESS_SECONDS = 30.0  # a step that fails after running this long starts the back-off anew
# Failures that say a dependency is away, not that the code is wrong: logged without a trace.
OUTAGES: tuple[type[BaseException], ...] = (
    httpx.HTTPError,
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
)


@dataclass(frozen=True)
class Backoff:
    """How long a worker waits after its n-th failure in a row."""

    base: float = 0.5
    cap: float = 10.0

    def after(self, failures: int) -> float:
        return backoff_seconds(failures, self.base, self.cap)


def lease_key(name: str) -> int:
    """The advisory lock key of an exclusive worker's lease."""
    return zlib.crc32(f"ipx-worker:{name}".encode())


@dataclass
class Worker:
    """One kind of background work. `step()` returns how much it did: more than 0 runs it
    again at once; 0 waits until `interval` passes, a NOTIFY on `channel` arrives, or the
    worker's own code calls `nudge()`. `concurrency` runs that many loops of the step."""

    name: str
    step: Callable[[], Awaitable[int]]
    interval: float = 1.0
    channel: str | None = None
    exclusive: bool = False
    lease: int | None = None  # the advisory lock key; by default lease_key(name)
    concurrency: int = 1
    backoff: Backoff = field(default_factory=Backoff)
    outages: tuple[type[BaseException], ...] = ()  # more failures logged without a trace
    # Its step is cancelled at once on stop: it mostly waits (a long poll), and what it did
    # before its commit is done again by the next run.
    interruptible: bool = False
    on_stop: Callable[[], Awaitable[None]] | None = None  # after the last step: close, cancel
    _nudged: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def nudge(self) -> None:
        """Wake the worker if it is waiting (e.g. a slot of its own work has freed)."""
        self._nudged.set()

    @property
    def lease_id(self) -> int:
        return self.lease if self.lease is not None else lease_key(self.name)


@dataclass(frozen=True)
class WorkerMetrics:
    runs: Counter
    failures: Counter
    lag: Gauge
    leader: Gauge

    @classmethod
    def of(cls, registry: CollectorRegistry) -> WorkerMetrics:
        return cls(
            runs=Counter("ipx_worker_runs", "Steps a worker ran", ["worker"], registry=registry),
            failures=Counter(
                "ipx_worker_failures", "Steps that raised", ["worker"], registry=registry
            ),
            lag=Gauge(
                "ipx_worker_lag_seconds",
                "Seconds since the worker last caught up (found nothing left to do)",
                ["worker"],
                registry=registry,
            ),
            leader=Gauge(
                "ipx_worker_leader",
                "1 while this replica holds an exclusive worker's lease",
                ["worker"],
                registry=registry,
            ),
        )


class _Lease:
    """An advisory lock on a connection of its own: held while the connection lives."""

    def __init__(self, settings: Settings, key: int, name: str = "") -> None:
        self.settings = settings
        self.key = key
        # Named in pg_stat_activity: who holds which lease, and connections counted by kind.
        self.application_name = f"ipx-lease-{name}" if name else "ipx-lease"
        self.conn: asyncpg.Connection | None = None
        self.lost = asyncio.Event()
        self.checked = 0.0

    async def held(self) -> bool:
        """Whether the lease is still ours; its connection is asked every LEASE_CHECK_SECONDS
        (a connection cut without a word from the server shows nothing until then)."""
        if self.conn is None or self.conn.is_closed() or self.lost.is_set():
            return False
        if time.monotonic() - self.checked >= LEASE_CHECK_SECONDS:
            try:
                await self.conn.fetchval("SELECT 1", timeout=LEASE_CHECK_SECONDS)
            except Exception:
                self.lost.set()
                return False
            self.checked = time.monotonic()
        return True

    async def acquire(self) -> bool:
        await self.release()
        conn = await asyncpg.connect(
            timeout=5,
            server_settings={"application_name": self.application_name},
            **asyncpg_connect_kwargs(self.settings.direct_database_url()),
        )
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key):
            await conn.close(timeout=1)
            return False
        self.lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn, lost=self.lost: lost.set())
        self.conn, self.checked = conn, time.monotonic()
        return True

    async def watch(self) -> None:
        """Returns when the lease is lost: its connection closed or stopped answering."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.lost.wait(), LEASE_CHECK_SECONDS)
            if not await self.held():
                return

    async def release(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await conn.close(timeout=1)


class _Loop:
    """One worker's loop in this process."""

    def __init__(
        self, worker: Worker, settings: Settings, metrics: WorkerMetrics, stopping: asyncio.Event
    ) -> None:
        if worker.exclusive and worker.concurrency != 1:
            raise ValueError(f"{worker.name}: an exclusive worker runs one loop")
        self.worker = worker
        self.settings = settings
        self.metrics = metrics
        self.stopping = stopping
        self.notifier = (
            FeedNotifier(settings.direct_database_url(), worker.channel) if worker.channel else None
        )
        self.lease = _Lease(settings, worker.lease_id, worker.name) if worker.exclusive else None
        self.failures = 0
        self.caught_up = time.monotonic()
        metrics.runs.labels(worker=worker.name)
        metrics.failures.labels(worker=worker.name)
        metrics.lag.labels(worker=worker.name).set(0)
        if worker.exclusive:
            metrics.leader.labels(worker=worker.name).set(0)

    async def run(self) -> None:
        if self.notifier is not None:
            await self.notifier.start()
        try:
            await asyncio.gather(*(self._one() for _ in range(self.worker.concurrency)))
        finally:
            if self.lease is not None:
                await self.lease.release()
                self.metrics.leader.labels(worker=self.worker.name).set(0)
            if self.notifier is not None:
                await self.notifier.stop()

    async def _one(self) -> None:
        while not self.stopping.is_set():
            if self.lease is not None and not await self._lead():
                continue
            mark = self.notifier.mark() if self.notifier is not None else 0
            self.worker._nudged.clear()
            began = time.monotonic()
            try:
                done = await self._step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if time.monotonic() - began >= PROGRESS_SECONDS:
                    # A step that ran this long worked before it failed (the indexer's runs
                    # until it fails): this failure is a first one, not the n-th in a row.
                    self.failures = 0
                if self.lease is not None:
                    # Given back while it backs off: a replica, or a rebuild that cancelled
                    # the step to take the lease, goes on meanwhile.
                    await self.lease.release()
                    self.metrics.leader.labels(worker=self.worker.name).set(0)
                await self._failed(exc)
                continue
            self.failures = 0
            self.metrics.runs.labels(worker=self.worker.name).inc()
            now = time.monotonic()
            if not done:
                self.caught_up = now
            self.metrics.lag.labels(worker=self.worker.name).set(now - self.caught_up)
            if not done:
                await self._idle(mark)

    async def _step(self) -> int:
        """The step; with a lease, cancelled as soon as the lease is lost."""
        if self.lease is None:
            return await self.worker.step()
        step = asyncio.ensure_future(self.worker.step())
        watch = asyncio.ensure_future(self.lease.watch())
        try:
            await asyncio.wait({step, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
            if not step.done():
                step.cancel()
            await asyncio.gather(step, watch, return_exceptions=True)
        if step.cancelled():
            raise ConnectionError(f"the lease of {self.worker.name} was lost")
        return step.result()

    def role(self) -> str:
        """What this replica does of the worker, as /readyz says it."""
        if self.failures:
            return "backing off"
        if self.lease is None:
            return "running"
        held = self.lease.conn is not None and not self.lease.lost.is_set()
        return "leader" if held else "standby"

    async def _lead(self) -> bool:
        """Whether this replica holds the lease (taken when free); waits a while if not."""
        assert self.lease is not None
        if await self.lease.held():
            return True
        name = self.worker.name
        try:
            if await self.lease.acquire():
                self.metrics.leader.labels(worker=name).set(1)
                logger.info("%s took its lease", name, extra={"worker": name})
                return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.metrics.leader.labels(worker=name).set(0)
            await self._failed(exc)
            return False
        self.metrics.leader.labels(worker=name).set(0)
        await self._sleep(LEASE_RETRY_SECONDS + jitter.random())  # another replica holds it
        return False

    async def _failed(self, exc: Exception) -> None:
        self.failures += 1
        name = self.worker.name
        self.metrics.failures.labels(worker=name).inc()
        self.metrics.lag.labels(worker=name).set(time.monotonic() - self.caught_up)
        delay = self.worker.backoff.after(self.failures)
        extra = {"worker": name, "failures": self.failures, "retry_in": round(delay, 2)}
        expected = OUTAGES + self.worker.outages
        if isinstance(exc, expected) or is_database_unavailable(exc):
            logger.warning(
                "%s paused (%s: %s); retrying in %.1fs",
                name,
                type(exc).__name__,
                exc,
                delay,
                extra=extra,
            )
        else:
            logger.error("%s failed; retrying in %.1fs", name, delay, exc_info=exc, extra=extra)
        await self._sleep(delay)

    async def _idle(self, mark: int) -> None:
        """Until a NOTIFY after `mark`, a nudge, the interval, or the stop."""
        waits: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(self.stopping.wait()),
            asyncio.ensure_future(self.worker._nudged.wait()),
        ]
        if self.notifier is not None:
            interval = self.worker.interval
            waits.append(
                asyncio.ensure_future(self.notifier.wait(interval, since=mark, recheck=interval))
            )
        else:
            waits.append(asyncio.ensure_future(asyncio.sleep(self.worker.interval)))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)


def _metrics(app: FastAPI) -> WorkerMetrics:
    """The app's worker metrics, registered once in the registry its `/metrics` serves."""
    existing: WorkerMetrics | None = getattr(app.state, "worker_metrics", None)
    if existing is None:
        existing = app.state.worker_metrics = WorkerMetrics.of(app.state.metrics_registry)
    return existing


@asynccontextmanager
async def run_workers(
    app: FastAPI, workers: Sequence[Worker], *, shutdown_seconds: float = SHUTDOWN_SECONDS
) -> AsyncIterator[None]:
    """Run `workers` for the life of the block (none when IPX_RUN_WORKERS is off). On exit
    each finishes its step within `shutdown_seconds`, or is cancelled (an interruptible one at
    once); then its `on_stop`."""
    settings: Settings = app.state.settings
    if not settings.run_workers or not workers:
        yield
        return
    metrics = _metrics(app)
    stopping = asyncio.Event()
    loops = [_Loop(worker, settings, metrics, stopping) for worker in workers]
    tasks = [asyncio.create_task(loop.run(), name=f"worker-{loop.worker.name}") for loop in loops]
    app.state.worker_roles = lambda: {loop.worker.name: loop.role() for loop in loops}
    try:
        yield
    finally:
        app.state.worker_roles = None
        stopping.set()
        for loop, task in zip(loops, tasks, strict=True):
            if loop.worker.interruptible:
                task.cancel()
        _, late = await asyncio.wait(tasks, timeout=shutdown_seconds)
        for task in late:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for loop, result in zip(loops, results, strict=True):
            if isinstance(result, Exception):
                logger.error(
                    "%s ended with an error",
                    loop.worker.name,
                    exc_info=result,
                    extra={"worker": loop.worker.name},
                )
        for worker in workers:
            if worker.on_stop is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(worker.on_stop(), shutdown_seconds)
