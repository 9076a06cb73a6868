"""The benchmark stack: one PostgreSQL and one Meilisearch per run, and for each scenario a fresh
database (cloned from a migrated template), its own catalogue index and the services it needs as
real processes (infra/processes.py, the way the launcher starts them).

    with Infra.start() as infra:
        with infra.stack(("listing", "matching", "gateway")) as stack:
            stack.url("gateway"), stack.operator, stack.pid("listing") ...

Every scenario module takes a `Stack` (and may start or stop services on it), so the runner and
the single-scenario scripts share one way of starting things.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:  # run as a script: tests/support.py is a sibling package
    sys.path.insert(0, str(TESTS))

from infra.blocking import run_blocking  # noqa: E402
from infra.meili import MeiliHandle, start_meilisearch  # noqa: E402
from infra.migrations import upgrade_all  # noqa: E402
from infra.postgres import PostgresHandle, start_postgres  # noqa: E402
from infra.processes import ServiceProcess, start_service, wait_ready  # noqa: E402
from shared.encryption import new_key  # noqa: E402
from shared.settings import SERVICE_NAMES, ServiceName  # noqa: E402
from support import bearer, free_port  # noqa: E402

TEMPLATE = "ipx_bench_template"


@dataclass
class Stack:
    """One scenario's database, index and service processes."""

    infra: Infra
    database: str
    index: str
    env: dict[str, str]
    services: dict[ServiceName, ServiceProcess] = field(default_factory=dict)

    @property
    def database_url(self) -> str:
        return self.infra.pg.url(self.database)

    @property
    def operator(self) -> dict[str, str]:
        return bearer(self.infra.operator_key)

    @property
    def service(self) -> dict[str, str]:
        return bearer(self.infra.service_key)

    @property
    def meili_url(self) -> str:
        return self.infra.meili.url

    @property
    def master_key(self) -> str:
        return self.infra.master_key

    def url(self, name: ServiceName) -> str:
        return self.env[f"IPX_{name.upper()}_URL"]

    def pid(self, name: ServiceName) -> int:
        return self.services[name].process.pid

    def connect_kwargs(self) -> dict[str, object]:
        return {"database": self.database, **self.infra.pg.connect_kwargs()}

    def log(self, name: str) -> Path:
        return self.infra.root / f"{self.database}-{name}.log"

    def start(self, *names: ServiceName) -> None:
        for name in names:
            port = int(self.url(name).rsplit(":", 1)[1])
            self.services[name] = start_service(
                name, port=port, env=self.env, log_path=self.log(name)
            )
        for name in names:
            wait_ready(self.services[name])

    def stop(self, *names: ServiceName) -> None:
        """SIGTERM to all first, then wait for each: a service draining a long-poll takes up
        to its graceful-shutdown timeout, and one after another those add up."""
        names = names or tuple(self.services)
        stopping = [self.services.pop(n) for n in names if n in self.services]
        for service in stopping:
            if service.process.poll() is None:
                service.process.send_signal(signal.SIGTERM)
        for service in stopping:
            service.stop()


@dataclass
class Infra:
    """PostgreSQL and Meilisearch for a whole run (each scenario gets its own database)."""

    root: Path
    pg: PostgresHandle
    meili: MeiliHandle
    master_key: str
    operator_key: str = field(default_factory=lambda: "bench-op-" + secrets.token_urlsafe(18))
    service_key: str = field(default_factory=lambda: "bench-svc-" + secrets.token_urlsafe(18))
    secret_key: str = field(default_factory=new_key)

    @classmethod
    @contextmanager
    def start(cls, keep: bool = False) -> Iterator[Infra]:
        """`keep` (or BENCH_KEEP=1): leave the folder with the logs behind."""
        keep = keep or bool(os.environ.get("BENCH_KEEP"))
        if threading.current_thread() is threading.main_thread():
            # A benchmark stopped with `kill` unwinds like Ctrl-C: its servers stop with it
            # (the default ends the process and leaves PostgreSQL, Meilisearch and the
            # services running).
            signal.signal(signal.SIGTERM, _interrupt)
        root = Path(tempfile.mkdtemp(prefix="ipx-bench-", dir="/tmp"))
        root.chmod(0o755)  # the `postgres` user must reach the cluster
        master = secrets.token_urlsafe(18)
        # Durable like production: fsync stays on, so write figures are not flattered.
        pg = start_postgres(root / "pg", port=free_port(), database="postgres", durable=True)
        try:
            meili = start_meilisearch(root / "meili", port=free_port(), master_key=master)
            try:
                run_blocking(lambda: _create_database(pg, TEMPLATE))
                upgrade_all(pg.url(TEMPLATE))
                yield cls(root, pg, meili, master)
            finally:
                meili.stop()
        finally:
            pg.stop()
            if not keep:
                shutil.rmtree(root, ignore_errors=True)

    @contextmanager
    def stack(
        self, services: Sequence[ServiceName] = SERVICE_NAMES, **extra_env: str
    ) -> Iterator[Stack]:
        """A fresh database and index; `services` started (and stopped at the end)."""
        database = f"bench_{uuid.uuid4().hex[:10]}"
        run_blocking(lambda: _create_database(self.pg, database, template=TEMPLATE))
        env = {
            "IPX_DATABASE_URL": self.pg.url(database),
            "IPX_MEILI_URL": self.meili.url,
            "IPX_MEILI_MASTER_KEY": self.master_key,
            "IPX_MEILI_INDEX": f"catalogue_{database}",
            "IPX_OPERATOR_KEY": self.operator_key,
            "IPX_SERVICE_KEY": self.service_key,
            "IPX_SECRET_KEYS": self.secret_key,
            "IPX_LOG_LEVEL": "WARNING",
            "IPX_ACCESS_LOG": "false",
            # Benchmarks raise the public rate limits (NOTES: limits are configurable).
            "IPX_RATE_LIMIT_KEY_PER_MINUTE": "100000000",
            "IPX_RATE_LIMIT_ANONYMOUS_PER_MINUTE": "100000000",
            "IPX_MAX_IMPORT_BYTES": str(2**31),
            **{f"IPX_{s.upper()}_URL": f"http://127.0.0.1:{free_port()}" for s in SERVICE_NAMES},
            **extra_env,
        }
        stack = Stack(self, database, env["IPX_MEILI_INDEX"], env)
        try:
            stack.start(*services)
            yield stack
        finally:
            stack.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


async def _create_database(pg: PostgresHandle, name: str, template: str | None = None) -> None:
    conn = await asyncpg.connect(database="postgres", **pg.connect_kwargs())
    try:
        clone = f' TEMPLATE "{template}"' if template else ""
        await conn.execute(f'CREATE DATABASE "{name}"{clone}')
    finally:
        await conn.close()


class RssSampler:
    """Samples the resident set of processes every `interval` seconds in a thread."""

    def __init__(self, pids: dict[str, int], interval: float = 0.1) -> None:
        self.processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.samples: dict[str, list[int]] = {name: [] for name in pids}
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, process in self.processes.items():
                with contextlib.suppress(psutil.Error):  # ended: keep what was sampled
                    self.samples[name].append(process.memory_info().rss)
            time.sleep(self.interval)

    def peak(self, name: str) -> int:
        return max(self.samples[name], default=0)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


HOLDER = "北京航空航天大学"


def signup(stack: Stack, name: str = HOLDER, *, verified: bool = True) -> tuple[str, str]:
    """A university organisation on the stack's listing: (id, its admin key)."""
    listing = stack.url("listing")
    response = httpx.post(
        f"{listing}/v1/organizations",
        json={"name": name, "kind": "university", "region": "110108"},
        timeout=30,
    )
    response.raise_for_status()
    org_id, key = response.json()["organization"]["id"], response.json()["api_key"]["key"]
    if verified:
        httpx.patch(
            f"{listing}/v1/organizations/{org_id}",
            json={"verified": True},
            headers=stack.operator,
            timeout=30,
        ).raise_for_status()
    return str(org_id), str(key)


def publish_import(stack: Stack, body: bytes, seller_id: str) -> tuple[dict[str, Any], float]:
    """The operator's publishing import of a CSV file: (its report, seconds it took)."""
    began = time.perf_counter()
    response = httpx.post(
        f"{stack.url('listing')}/v1/imports",
        content=body,
        params={"mode": "publish", "seller_id": seller_id},
        headers={**stack.operator, "Content-Type": "text/csv"},
        timeout=httpx.Timeout(30, read=3600),
    )
    response.raise_for_status()
    report: dict[str, Any] = response.json()
    return report, time.perf_counter() - began


def index_status(stack: Stack) -> dict[str, Any]:
    response = httpx.get(
        f"{stack.url('matching')}/v1/index/status", headers=stack.operator, timeout=30
    )
    response.raise_for_status()
    status: dict[str, Any] = response.json()
    return status


def wait_caught_up(
    stack: Stack, documents: int, timeout: float = 3600, interval: float = 0.1
) -> float:
    """Seconds until the indexer has read the whole feed and the index holds `documents`."""
    began = time.perf_counter()
    while time.perf_counter() - began < timeout:
        status = index_status(stack)
        if status["lag_events"] == 0 and (status["documents"] or 0) >= documents:
            return time.perf_counter() - began
        time.sleep(interval)
    raise RuntimeError(f"the index did not catch up in {timeout:.0f} s")


def meili_used_bytes(stack: Stack) -> int:
    """The bytes Meilisearch's database holds (every index of the run)."""
    response = httpx.get(f"{stack.meili_url}/stats", headers=bearer(stack.master_key), timeout=30)
    response.raise_for_status()
    return int(response.json()["usedDatabaseSize"])


def database_bytes(stack: Stack) -> int:
    """The size of the scenario's PostgreSQL database."""

    async def size() -> int:
        conn = await asyncpg.connect(**stack.connect_kwargs())
        try:
            return int(await conn.fetchval("SELECT pg_database_size(current_database())"))
        finally:
            await conn.close()

    return run_blocking(size)


def wait_matched(stack: Stack, timeout: float = 3600) -> None:
    """Until the match worker has matched every listing the indexer queued."""
    deadline = time.perf_counter() + timeout
    while index_status(stack)["matches_pending"]:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"the match queue did not drain in {timeout:.0f} s")
        time.sleep(0.1)
