"""PostgreSQL connections one process of each service holds, at idle and under load, straight to
PostgreSQL and through a real PgBouncer in transaction pooling mode (infra/DEPLOY.md's sizing
table comes from this).

    .venv/bin/python tests/perf/bench_connections.py [--seconds 20] [--mode both|direct|...]

Each mode starts listing, matching and gateway as real processes (tests/perf/stack.py), waits
for them to settle, samples for a few seconds (idle), then runs a publishing import (COPY on a
pooled connection) and drives creates on listing, catalogue searches on the gateway and
searches on matching at once while sampling (load). A sample counts pg_stat_activity's rows of
the scenario's database and attributes each to the process owning its client port (psutil):
the pool's connections carry `application_name` ipx-<schema>, the others ipx-lease-<worker>
(exclusive workers' leases) or ipx-listen-<channel> (LISTEN). Through PgBouncer a service's
pool connects to PgBouncer, so its client connections are counted on the service's side and
PgBouncer's server connections on PostgreSQL's. The figures are the peaks over the samples.
The PgBouncer modes need Debian's `pgbouncer` package.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
from bench_create import bodies, requests_for  # tests/perf is this script's folder
from datasets import import_csv
from loadgen import Request, drive
from stack import HOLDER, Infra, Stack, publish_import, signup

from shared.settings import SERVICE_NAMES, ServiceName
from support import free_port

SERVICES: tuple[ServiceName, ...] = SERVICE_NAMES
QUERIES = ["电池", "石墨烯", "传感器", "发动机", "催化剂", "图像识别", "锂离子", "无人机"]


def local_ports(pid: int, remote_port: int) -> set[int]:
    """The local TCP ports of `pid`'s connections to `remote_port` on this machine."""
    ports = set()
    for conn in psutil.Process(pid).net_connections(kind="tcp"):
        if conn.raddr and conn.raddr.port == remote_port and conn.status == "ESTABLISHED":
            ports.add(conn.laddr.port)
    return ports


class Sampler:
    """Samples connections every `interval` s in a thread of its own; keeps each count's peak."""

    def __init__(
        self, stack: Stack, pids: dict[str, int], bouncer: tuple[int, int] | None, interval: float
    ) -> None:
        self.stack, self.pids, self.bouncer, self.interval = stack, pids, bouncer, interval
        self.peaks: dict[str, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    async def _run(self) -> None:
        pg_port = int(self.stack.infra.pg.port)
        conn = await asyncpg.connect(**self.stack.connect_kwargs())
        try:
            while not self._stop.is_set():
                rows = await conn.fetch(
                    "SELECT application_name, client_port FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                counts: dict[str, int] = {"postgresql_total": len(rows)}
                owners: dict[int, str] = {}
                for name, pid in self.pids.items():
                    owners |= dict.fromkeys(local_ports(pid, pg_port), name)
                if self.bouncer is not None:
                    bouncer_pid, bouncer_port = self.bouncer
                    owners |= {port: "pgbouncer" for port in local_ports(bouncer_pid, pg_port)}
                    for name in SERVICES:
                        clients = len(local_ports(self.pids[name], bouncer_port))
                        counts[f"{name}.to_pgbouncer"] = clients
                for row in rows:
                    owner = owners.get(row["client_port"], "other")
                    if owner in SERVICES:
                        name = row["application_name"]
                        pooled = name == f"ipx-{owner}"
                        key = f"{owner}.{'pool' if pooled else 'direct'}"
                        for kind in ("lease", "listen"):  # shared.workers, shared.notifier
                            if name.startswith(f"ipx-{kind}-"):
                                kinds = f"{owner}.{kind}"
                                counts[kinds] = counts.get(kinds, 0) + 1
                    else:
                        key = f"{owner}.servers" if owner == "pgbouncer" else "other"
                    counts[key] = counts.get(key, 0) + 1
                for name in SERVICES:
                    counts[f"{name}.to_postgresql"] = counts.get(f"{name}.pool", 0) + counts.get(
                        f"{name}.direct", 0
                    )
                for key, value in counts.items():
                    self.peaks[key] = max(self.peaks.get(key, 0), value)
                self.samples += 1
                await asyncio.sleep(self.interval)
        finally:
            await conn.close()


def start_pgbouncer(stack: Stack, pool_size: int) -> tuple[subprocess.Popen[bytes], int]:
    """PgBouncer in transaction pooling mode in front of the stack's PostgreSQL (trust, as the
    test cluster), run as `postgres` (it refuses root)."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():
        raise RuntimeError("pgbouncer is not installed (apt-get install pgbouncer)")
    pg = stack.infra.pg
    folder = stack.infra.root / "pgbouncer"
    folder.mkdir(exist_ok=True)
    port = free_port()
    (folder / "userlist.txt").write_text(f'"{pg.user}" ""\n')
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={pg.host} port={pg.port}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\n"
        f"unix_socket_dir = {folder}\n"
        f"auth_type = trust\nauth_file = {folder / 'userlist.txt'}\n"
        "pool_mode = transaction\n"
        f"default_pool_size = {pool_size}\nmax_client_conn = 1000\n"
        "ignore_startup_parameters = extra_float_digits\n"
        f"logfile = {folder / 'pgbouncer.log'}\n"
    )
    shutil.chown(folder, "postgres")
    for name in ("userlist.txt", "pgbouncer.ini"):
        shutil.chown(folder / name, "postgres")
    process = subprocess.Popen(
        ["runuser", "-u", "postgres", "--", binary, str(folder / "pgbouncer.ini")]
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"pgbouncer did not start: {(folder / 'pgbouncer.log').read_text()[-2000:]}")


def bouncer_pid(process: subprocess.Popen[bytes]) -> int:
    """runuser's child, the pgbouncer process itself."""
    children = psutil.Process(process.pid).children(recursive=True)
    return children[0].pid if children else process.pid


def load(stack: Stack, seconds: float) -> dict[str, Any]:
    """A publishing import (COPY on the pool's connection), then creates (listing), catalogue
    searches (gateway) and searches (matching) at once."""
    seller, key = signup(stack)
    rows = int(seconds * 20)
    report, _ = publish_import(stack, import_csv(rows, HOLDER), seller)
    creates = requests_for(stack.url("listing"), key, bodies(int(seconds * 60), 9_900_000))
    gateway = stack.url("gateway")
    matching = stack.url("matching")
    n = int(seconds * 150)
    searches: list[Request] = [
        {"url": f"{gateway}/v1/catalogue/search", "params": {"q": QUERIES[i % len(QUERIES)]}}
        for i in range(n)
    ]
    matches: list[Request] = [
        {
            "url": f"{matching}/v1/search",
            "params": {"q": QUERIES[i % len(QUERIES)]},
            "headers": stack.operator,
        }
        for i in range(n)
    ]
    results: dict[str, Any] = {"import": {"rows": rows, "created": report.get("created")}}

    def run(name: str, requests: list[Request], concurrency: int) -> None:
        results[name] = drive(requests, concurrency=concurrency).summary()

    threads = [
        threading.Thread(target=run, args=("listing creates", creates, 48)),
        threading.Thread(target=run, args=("gateway searches", searches, 48)),
        threading.Thread(target=run, args=("matching searches", matches, 32)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def measure(infra: Infra, seconds: float, pgbouncer: bool, switch: bool = True) -> dict[str, Any]:
    with infra.stack(()) as stack:
        bouncer = None
        process = None
        if pgbouncer:
            process, port = start_pgbouncer(stack, pool_size=20)
            pg = infra.pg
            stack.env["IPX_DATABASE_DIRECT_URL"] = stack.env["IPX_DATABASE_URL"]
            stack.env["IPX_DATABASE_URL"] = (
                f"postgresql+asyncpg://{pg.user}@127.0.0.1:{port}/{stack.database}"
            )
            stack.env["IPX_DB_PGBOUNCER"] = "true" if switch else "false"
            bouncer = (bouncer_pid(process), port)
        try:
            stack.start(*SERVICES)
            pids: dict[str, int] = {name: stack.pid(name) for name in SERVICES}
            time.sleep(5)  # leases taken, listeners connected, first worker rounds done
            with Sampler(stack, pids, bouncer, 0.2) as idle:
                time.sleep(5)
            with Sampler(stack, pids, bouncer, 0.2) as busy:
                driven = load(stack, seconds)
            with httpx.Client(timeout=10) as client:
                for name in SERVICES:
                    client.get(f"{stack.url(name)}/readyz").raise_for_status()
        finally:
            stack.stop()
            if process is not None:
                process.terminate()
                process.wait(10)
    return {
        "mode": ("pgbouncer (transaction)" if pgbouncer else "direct")
        + ("" if switch else ", IPX_DB_PGBOUNCER=false"),
        "idle": dict(sorted(idle.peaks.items())),
        "load": dict(sorted(busy.peaks.items())),
        "samples": {"idle": idle.samples, "load": busy.samples},
        "driven": driven,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--mode",
        choices=["both", "direct", "pgbouncer", "control"],
        default="both",
        help="control: through PgBouncer with IPX_DB_PGBOUNCER=false (what the switch prevents)",
    )
    args = parser.parse_args()
    runs = {
        "both": [(False, True), (True, True)],
        "direct": [(False, True)],
        "pgbouncer": [(True, True)],
        "control": [(True, False)],
    }[args.mode]
    with Infra.start() as infra:
        results = [
            measure(infra, args.seconds, pgbouncer=through, switch=switch)
            for through, switch in runs
        ]
    print(json.dumps(results, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
