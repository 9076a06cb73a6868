"""Start a local PostgreSQL: the server binaries found on the machine, else the embedded one.

Root cannot run initdb or postgres, so as root the Debian binaries run as the `postgres` user
(in a folder that user can reach) and pgserver runs as a user of its own. The data folder
persists, so data survives a restart of the launcher. `start_replica` starts a streaming
replica of a running cluster (the tests of reads from replicas; the launcher runs none).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import hashlib
import os
import re
import shutil
import signal
import subprocess
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import asyncpg
import psutil

from infra.blocking import run_blocking
from infra.supervisor import StartError, Supervisor, log_tail, spawn, stop_pids

__all__ = [
    "PostgresHandle",
    "find_system_bindir",
    "leftover_postmasters",
    "start_postgres",
    "start_replica",
    "stop_leftover",
]

Backend = Literal["auto", "system", "pgserver"]
SYSTEM_USER = "postgres"


@dataclass
class PostgresHandle:
    """A running server: a SQLAlchemy URL for each database, and how to stop it."""

    backend: Literal["system", "pgserver"]
    data_dir: Path
    host: str
    port: int
    user: str
    _stop: Callable[[], None]
    # The postmaster, when it is our child (the system backend); pgserver daemonises its own.
    process: subprocess.Popen[bytes] | None = None

    def url(self, database: str) -> str:
        if self.host.startswith("/"):
            return f"postgresql+asyncpg://{self.user}@/{database}?host={self.host}&port={self.port}"
        return f"postgresql+asyncpg://{self.user}@{self.host}:{self.port}/{database}"

    def connect_kwargs(self) -> dict[str, object]:
        return {"host": self.host, "port": self.port, "user": self.user}

    def stop(self) -> None:
        self._stop()

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends at once (its process group: it leads a
        session of its own), as a power cut ends them: no shutdown checkpoint, the next start
        recovers from the WAL. The system backend only (pgserver's postmaster is no child)."""
        if self.process is None:
            raise RuntimeError("only a postmaster started as our child can be killed")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


def find_system_bindir() -> Path | None:
    """The newest PostgreSQL server bin folder on the machine, if any."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))

    def version(path: str) -> float:
        match = re.search(r"/(\d+(?:\.\d+)?)/bin$", path)
        return float(match.group(1)) if match else 0.0

    candidates += [
        Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    ]
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "postgres").exists():
            return bindir
    return None


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", SYSTEM_USER, "--", *cmd] if os.geteuid() == 0 else cmd


def _reachable_by_postgres(path: Path) -> bool:
    if os.geteuid() != 0:
        return True
    probe = subprocess.run(_as_postgres(["test", "-x", str(path)]), check=False)
    return probe.returncode == 0


def _system_data_dir(data_dir: Path) -> Path:
    """The cluster folder: under `data_dir`, or under /var/tmp when `postgres` cannot reach it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if _reachable_by_postgres(data_dir):
        return data_dir / "postgres"
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]
    fallback = Path("/var/tmp") / f"ipx-{digest}"
    fallback.mkdir(mode=0o755, parents=True, exist_ok=True)
    fallback.chmod(0o755)
    (data_dir / "postgres-location").write_text(f"{fallback / 'postgres'}\n")
    return fallback / "postgres"


def _server_conf(port: int, durable: bool) -> str:
    lines = [
        "listen_addresses = '127.0.0.1'",
        f"port = {port}",
        "unix_socket_directories = ''",
        "max_connections = 300",
        "shared_buffers = 128MB",
        "log_min_messages = warning",
    ]
    if not durable:  # throwaway test clusters: speed over crash safety
        lines += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
    return "\n".join(lines) + "\n"


def _start_system(
    bindir: Path, data_dir: Path, port: int, durable: bool, supervisor: Supervisor | None
) -> PostgresHandle:
    cluster = _system_data_dir(data_dir)
    cluster.mkdir(mode=0o700, parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(cluster, SYSTEM_USER, SYSTEM_USER)
    if not (cluster / "PG_VERSION").exists():
        subprocess.run(
            _as_postgres(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(cluster),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-instructions",
                ]
            ),
            check=True,
            capture_output=True,
        )
        with (cluster / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude_if_exists = 'ipx.conf'\n")
    _write_conf(cluster, port, durable)
    stop_leftover(data_dir)
    return _run_postmaster(bindir, cluster, port, supervisor)


def _write_conf(cluster: Path, port: int, durable: bool) -> None:
    conf_path = cluster / "ipx.conf"
    conf_path.write_text(_server_conf(port, durable))
    if os.geteuid() == 0:
        shutil.chown(conf_path, SYSTEM_USER, SYSTEM_USER)


def _run_postmaster(
    bindir: Path, cluster: Path, port: int, supervisor: Supervisor | None
) -> PostgresHandle:
    """Start the postmaster of `cluster` as our child and wait until it accepts connections."""
    # The postmaster itself, as our child (pg_ctl would daemonise it: reparented to init, out of
    # reach of a parent-death signal). Own session: a Ctrl-C in the terminal reaches only the
    # launcher, which stops the stack in order.
    log_path = cluster / "server.log"
    offset = log_path.stat().st_size if log_path.exists() else 0
    with log_path.open("ab") as log:
        if os.geteuid() == 0:
            shutil.chown(log_path, SYSTEM_USER, SYSTEM_USER)
        args = [str(bindir / "postgres"), "-D", str(cluster)]
        as_user: dict[str, Any] = (
            {"user": SYSTEM_USER, "group": SYSTEM_USER, "extra_groups": []}
            if os.geteuid() == 0
            else {}
        )
        process = spawn(
            supervisor,
            "PostgreSQL",
            args,
            log_path=log_path,
            stopping={
                "graceful": signal.SIGINT,  # fast shutdown: clean, data safe
                "immediate": signal.SIGQUIT,  # immediate shutdown: crash-safe, recovery at start
                "grace": 30.0,  # a fast shutdown writes a checkpoint: well under a second
                "on_parent_death": signal.SIGINT,
            },
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            **as_user,
        )
    try:
        _wait_postmaster_ready(cluster, process, log_path, offset, timeout=60.0)
    except BaseException:
        stop_postmaster(process)
        raise

    def stop() -> None:
        stop_postmaster(process)

    return PostgresHandle("system", cluster, "127.0.0.1", port, "postgres", stop, process)


def _postmaster_status(cluster: Path) -> tuple[int, str] | None:
    """The pid and status ("starting", "ready", "stopping") in the cluster's postmaster.pid."""
    try:
        lines = (cluster / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, PermissionError):
        return None
    if not lines or not lines[0].strip().isdigit():
        return None
    status = lines[7].strip() if len(lines) > 7 else ""
    return int(lines[0]), status


def _wait_postmaster_ready(
    cluster: Path, process: subprocess.Popen[bytes], log_path: Path, offset: int, timeout: float
) -> None:
    """Until *this* postmaster says "ready" in postmaster.pid (a stale file names another pid)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StartError(
                f"PostgreSQL exited with code {process.returncode}: {log_tail(log_path, offset)}"
            )
        if _postmaster_status(cluster) == (process.pid, "ready"):
            return
        time.sleep(0.05)
    raise StartError(f"PostgreSQL not ready after {timeout:.0f}s: {log_tail(log_path, offset)}")


def stop_postmaster(process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Fast shutdown (SIGINT), then immediate (SIGQUIT) if it has not ended within `timeout`."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGQUIT)
            process.wait()


def cluster_dirs(data_dir: Path) -> list[Path]:
    """Where a cluster of `data_dir` may live: its own folder, the /var/tmp fallback, pgserver's."""
    dirs = [data_dir / "postgres", data_dir / "pgserver"]
    location = data_dir / "postgres-location"
    if location.exists():
        dirs.append(Path(location.read_text().strip()))
    return dirs


def leftover_postmasters(data_dir: Path) -> list[psutil.Process]:
    """Postmasters of `data_dir`'s clusters still running (a killed launcher's, a test's)."""
    found = []
    for cluster in cluster_dirs(data_dir):
        status = _postmaster_status(cluster)
        if status is None:
            continue
        try:
            process = psutil.Process(status[0])
            # A stale postmaster.pid may name a pid reused since: the postmaster runs in its
            # data folder.
            if process.name() == "postgres" and Path(process.cwd()) == cluster.resolve():
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, OSError):
            continue
    return found


def stop_leftover(data_dir: Path) -> list[int]:
    """Stop (fast shutdown) any postmaster of `data_dir` still running; their pids."""
    leftovers = leftover_postmasters(data_dir)
    stop_pids(leftovers, signal.SIGINT, signal.SIGQUIT, grace=60.0)
    return [process.pid for process in leftovers]


def _start_pgserver(data_dir: Path, supervisor: Supervisor | None) -> PostgresHandle:
    with warnings.catch_warnings():
        # pgserver asks platformdirs for a runtime folder at import; without XDG_RUNTIME_DIR it
        # warns and uses /tmp/runtime-<uid>, which is fine for a lock file.
        warnings.simplefilter("ignore")
        from pgserver.postgres_server import get_server

    cluster = data_dir / "pgserver"
    cluster.mkdir(parents=True, exist_ok=True)
    server = get_server(cluster, cleanup_mode="stop")
    info = server.get_postmaster_info()
    if supervisor is not None:
        # Started by pg_ctl, daemonised: not our child, so no parent-death signal reaches it; a
        # watchdog stops it when the launcher ends.
        supervisor.adopt(
            "PostgreSQL",
            psutil.Process(info.pid),
            graceful=signal.SIGINT,
            immediate=signal.SIGQUIT,
            grace=30.0,
            on_parent_death=signal.SIGINT,
        )

    def stop() -> None:
        server.cleanup()
        atexit.unregister(server._cleanup)  # already done; at exit it would log to closed streams

    # pgserver listens on a unix socket only; asyncpg takes the socket folder as host.
    return PostgresHandle(
        "pgserver",
        cluster,
        str(info.socket_dir),
        int(info.port or 5432),
        "postgres",
        stop,
    )


async def _ensure_database(handle: PostgresHandle, database: str) -> None:
    conn = await asyncpg.connect(database="postgres", **handle.connect_kwargs())
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()


def start_replica(
    primary: PostgresHandle,
    data_dir: Path,
    *,
    port: int,
    durable: bool = True,
    supervisor: Supervisor | None = None,
) -> PostgresHandle:
    """Start (or restart) a streaming replica of `primary` under `data_dir`, on `port`.

    The first start copies the running primary with `pg_basebackup -R` (a fast checkpoint, the
    WAL streamed alongside; `-R` writes `standby.signal` and the `primary_conninfo` to follow),
    as the `postgres` user when we are root, like the primary; later starts resume from the
    replica's own data. The replica is a hot standby: it answers reads, refuses writes, and
    replays what the primary commits within milliseconds on one machine. The primary must be the
    system backend listening on TCP (pgserver's listens on a unix socket only): the defaults of
    `initdb` (`wal_level = replica`, ten WAL senders, replication allowed from 127.0.0.1 by
    `pg_hba.conf`) are what streaming needs, so the primary needs no change.
    """
    if primary.backend != "system":
        raise RuntimeError("a streaming replica needs the system PostgreSQL as its primary")
    bindir = find_system_bindir()
    if bindir is None:
        raise RuntimeError("no PostgreSQL server binaries found (pg_config, /usr/lib/postgresql)")
    cluster = _system_data_dir(data_dir)
    if not (cluster / "PG_VERSION").exists():
        shutil.rmtree(cluster, ignore_errors=True)  # a copy interrupted earlier
        cluster.mkdir(mode=0o700, parents=True)
        if os.geteuid() == 0:
            shutil.chown(cluster, SYSTEM_USER, SYSTEM_USER)
        copy = [
            str(bindir / "pg_basebackup"),
            f"--host={primary.host}",
            f"--port={primary.port}",
            f"--username={primary.user}",
            f"--pgdata={cluster}",
            "--write-recovery-conf",
            "--wal-method=stream",
            "--checkpoint=fast",
            "--no-password",
        ]
        if not durable:
            copy.append("--no-sync")
        done = subprocess.run(_as_postgres(copy), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            shutil.rmtree(cluster, ignore_errors=True)
            raise StartError(f"pg_basebackup failed: {done.stderr.strip()[-2000:]}")
        # The copy carries the primary's log; the replica starts one of its own.
        (cluster / "server.log").unlink(missing_ok=True)
    # The copy carries the primary's ipx.conf too: its port is the primary's.
    _write_conf(cluster, port, durable)
    stop_leftover(data_dir)
    return _run_postmaster(bindir, cluster, port, supervisor)


def start_postgres(
    data_dir: Path,
    *,
    port: int,
    backend: Backend = "auto",
    database: str = "ipx",
    durable: bool = True,
    supervisor: Supervisor | None = None,
) -> PostgresHandle:
    """Start (or restart) the cluster under `data_dir` and make sure `database` exists.

    A server of `data_dir` still running (left by a killed launcher) is stopped first. With a
    `supervisor` (the launcher), the postmaster dies with this process and stops with the rest.
    """
    bindir = find_system_bindir() if backend in ("auto", "system") else None
    if backend == "system" and bindir is None:
        raise RuntimeError("no PostgreSQL server binaries found (pg_config, /usr/lib/postgresql)")
    handle = (
        _start_system(bindir, data_dir, port, durable, supervisor)
        if bindir is not None
        else _start_pgserver(data_dir, supervisor)
    )
    try:
        run_blocking(lambda: _ensure_database(handle, database))
    except BaseException:
        handle.stop()
        raise
    return handle
