"""The worker runtime (shared/workers.py) on a real PostgreSQL: waking, back-off, metrics,
one leader among replicas, a lost lease, and stopping within the deadline."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import asyncpg
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from shared import workers
from shared.db import asyncpg_connect_kwargs
from shared.jitter import backoff_seconds, jittered
from shared.settings import Settings
from shared.workers import Backoff, Worker, lease_key, run_workers
from support import worker_host


def sample(app: FastAPI, metric: str, worker: str) -> float:
    registry: CollectorRegistry = app.state.metrics_registry
    value = registry.get_sample_value(metric, {"worker": worker})
    return 0.0 if value is None else value


async def until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.02)


@asynccontextmanager
async def running(app: FastAPI, *workers: Worker, shutdown: float = 1.5) -> AsyncIterator[None]:
    async with run_workers(app, workers, shutdown_seconds=shutdown):
        yield


def test_backoff_doubles_up_to_its_cap_with_jitter() -> None:
    rng = random.Random(7)
    for failures, full in ((1, 0.5), (2, 1.0), (3, 2.0), (6, 10.0), (60, 10.0)):
        delays = [backoff_seconds(failures, 0.5, 10.0, rng) for _ in range(200)]
        assert all(full / 2 <= d <= full for d in delays), failures
        assert max(delays) - min(delays) > full / 4  # spread, not one value
    assert Backoff(base=1, cap=4).after(10) <= 4
    assert all(8 <= jittered(10, 0.2, rng) <= 12 for _ in range(100))


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    for failures, low, high in ((1, 1.0, 2.0), (2, 2.0, 4.0), (4, 8.0, 16.0), (40, 30.0, 60.0)):
        delays = {backoff_seconds(failures, 2.0, 60.0) for _ in range(50)}
        assert all(low <= d <= high for d in delays) and len(delays) > 1


async def test_a_busy_step_runs_again_at_once_and_an_idle_one_waits(settings: Settings) -> None:
    app = worker_host(settings)
    calls: list[float] = []
    backlog = [3]

    async def step() -> int:
        calls.append(time.monotonic())
        if backlog[0]:
            backlog[0] -= 1
            return 1
        return 0

    worker = Worker("drain", step, interval=30.0)
    async with running(app, worker):
        await until(lambda: len(calls) == 4)  # three with work, one that found none
        await asyncio.sleep(0.3)
        assert len(calls) == 4  # idle: waits for its interval
        backlog[0] = 1
        worker.nudge()  # its own code says there is work
        await until(lambda: len(calls) == 6)
    assert calls[3] - calls[0] < 1.0
    assert sample(app, "ipx_worker_runs_total", "drain") == 6
    assert sample(app, "ipx_worker_failures_total", "drain") == 0


async def test_a_notify_on_its_channel_wakes_a_worker(settings: Settings) -> None:
    app = worker_host(settings)
    calls: list[float] = []

    async def step() -> int:
        calls.append(time.monotonic())
        return 0

    async with running(app, Worker("listener", step, interval=30.0, channel="ipx_test_wake")):
        await until(lambda: len(calls) >= 1)
        await asyncio.sleep(0.5)  # the LISTEN connection is up
        seen = len(calls)
        conn = await asyncpg.connect(**asyncpg_connect_kwargs(settings.database_url))
        try:
            await conn.execute("NOTIFY ipx_test_wake")
        finally:
            await conn.close()
        await until(lambda: len(calls) > seen, seconds=5)


async def test_a_failing_step_backs_off_is_counted_and_logged(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = worker_host(settings)
    calls: list[float] = []

    async def step() -> int:
        calls.append(time.monotonic())
        if len(calls) <= 3:
            raise ConnectionRefusedError("PostgreSQL is restarting")
        if len(calls) == 4:
            raise ValueError("a bug")
        return 0

    worker = Worker("flaky", step, interval=30.0, backoff=Backoff(base=0.1, cap=0.4))
    with caplog.at_level(logging.WARNING, logger="ipx.worker"):
        async with running(app, worker):
            await until(lambda: len(calls) >= 5)
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1 and 0.2 <= gaps[2] <= 0.6, gaps
    assert sample(app, "ipx_worker_failures_total", "flaky") == 4
    assert sample(app, "ipx_worker_runs_total", "flaky") == 1
    records = [r for r in caplog.records if getattr(r, "worker", None) == "flaky"]
    outages = [r for r in records if r.levelno == logging.WARNING]
    bugs = [r for r in records if r.levelno == logging.ERROR]
    assert len(outages) == 3 and all(r.exc_info is None for r in outages)  # no trace for outages
    assert len(bugs) == 1 and bugs[0].exc_info is not None
    assert [getattr(r, "failures", None) for r in records] == [1, 2, 3, 4]


async def test_one_replica_leads_and_another_takes_over_a_lost_lease(settings: Settings) -> None:
    """Two replicas of an exclusive worker: only the leader steps. When its lease connection
    is terminated (a PostgreSQL restart, an idle reaper), its step in flight is cancelled
    before the lease can be taken again: never two writers at once. When the leader stops,
    the other replica takes over."""
    apps = {"first": worker_host(settings), "second": worker_host(settings)}
    active: list[str] = []
    overlaps: list[tuple[str, ...]] = []
    steps = {"first": 0, "second": 0}
    cancelled: list[str] = []

    def make(name: str) -> Worker:
        async def step() -> int:
            active.append(name)
            if len(active) > 1:
                overlaps.append(tuple(active))
            steps[name] += 1
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                cancelled.append(name)
                raise
            finally:
                active.remove(name)
            return 1

        return Worker("ipx-test-leader", step, exclusive=True, backoff=Backoff(0.05, 0.1))

    async def holder_pids() -> list[int]:
        conn = await asyncpg.connect(**asyncpg_connect_kwargs(settings.database_url))
        try:
            rows = await conn.fetch(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND granted",
                lease_key("ipx-test-leader"),
            )
            return [row["pid"] for row in rows]
        finally:
            await conn.close()

    async with AsyncExitStack() as first, AsyncExitStack() as second:
        stacks = {"first": first, "second": second}
        for name, stack in stacks.items():
            await stack.enter_async_context(running(apps[name], make(name)))
        await until(lambda: steps["first"] + steps["second"] >= 10)
        leader = "first" if steps["first"] else "second"
        other = "second" if leader == "first" else "first"
        assert steps[other] == 0
        assert sample(apps[leader], "ipx_worker_leader", "ipx-test-leader") == 1
        assert sample(apps[other], "ipx_worker_leader", "ipx-test-leader") == 0
        # What each replica's /readyz says of it.
        assert apps[leader].state.worker_roles() == {"ipx-test-leader": "leader"}
        assert apps[other].state.worker_roles() == {"ipx-test-leader": "standby"}
        (pid,) = await holder_pids()
        conn = await asyncpg.connect(**asyncpg_connect_kwargs(settings.database_url))
        try:
            await conn.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await conn.close()
        before = sum(steps.values())
        await until(lambda: sum(steps.values()) >= before + 5, seconds=15)
        assert leader in cancelled  # its step in flight did not run on without the lease
        assert len(await holder_pids()) == 1
        # The leader of the moment stops: the other replica takes the lease and goes on.
        leading = [n for n in apps if sample(apps[n], "ipx_worker_leader", "ipx-test-leader")]
        (stopping,) = leading
        follower = "second" if stopping == "first" else "first"
        await stacks[stopping].aclose()
        taken = steps[follower]
        await until(lambda: steps[follower] >= taken + 5, seconds=10)
    assert overlaps == []


async def test_stopping_cancels_a_step_past_the_deadline_then_runs_on_stop(
    settings: Settings,
) -> None:
    app = worker_host(settings)
    started = asyncio.Event()
    stopped: list[str] = []

    async def step() -> int:
        started.set()
        await asyncio.sleep(3600)  # a long poll that would hold the shutdown
        return 0

    async def on_stop() -> None:
        stopped.append("closed")

    began = time.monotonic()
    async with running(app, Worker("stuck", step, on_stop=on_stop), shutdown=0.5):
        await started.wait()
        began = time.monotonic()
    assert time.monotonic() - began < 1.5
    assert stopped == ["closed"]


async def test_no_worker_runs_when_workers_are_off(settings: Settings) -> None:
    app = worker_host(settings.model_copy(update={"run_workers": False}))
    calls: list[int] = []

    async def step() -> int:
        calls.append(1)
        return 0

    async with running(app, Worker("off", step)):
        await asyncio.sleep(0.2)
    assert calls == []


async def test_an_interruptible_step_is_cancelled_at_once_on_stop(settings: Settings) -> None:
    app = worker_host(settings)
    started = asyncio.Event()

    async def long_poll() -> int:
        started.set()
        await asyncio.sleep(3600)
        return 0

    async with running(app, Worker("poller", long_poll, interruptible=True), shutdown=5.0):
        await started.wait()
        began = time.monotonic()
    assert time.monotonic() - began < 0.5  # not the 5 s a step may take to finish


async def test_a_long_step_that_fails_starts_the_back_off_anew(
    settings: Settings, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The indexer's step runs until it fails: each failure after a long run is a first one,
    not the n-th in a row (its back-off grew to the cap over a process's life)."""
    monkeypatch.setattr(workers, "PROGRESS_SECONDS", 0.2)
    app = worker_host(settings)
    calls: list[float] = []

    async def runs_then_fails() -> int:
        calls.append(time.monotonic())
        await asyncio.sleep(0.25 if len(calls) <= 3 else 0)  # three long runs, then quick ones
        raise ConnectionResetError("Meilisearch went away")

    worker = Worker("long", runs_then_fails, backoff=Backoff(base=0.05, cap=0.1))
    with caplog.at_level(logging.WARNING, logger="ipx.worker"):
        async with running(app, worker):
            await until(lambda: len(calls) >= 6)
    counted = [getattr(r, "failures", None) for r in caplog.records if r.name == "ipx.worker"]
    assert counted[:3] == [1, 1, 1]  # after long runs
    assert counted[3:5] == [2, 3]  # quick failures in a row count up
