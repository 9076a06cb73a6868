"""Start a local PostgreSQL: the server binaries found on the machine, else the embedded one.

Root cannot run initdb or postgres, so as root the Debian binaries run as the `postgres` user
(in a folder that user can reach) and pgserver runs as a user of its own. The data folder
persists, so data survives a restart of the launcher.
"""

from __future__ import annotations

import atexit
import glob
import hashlib
import os
import re
import shutil
import subprocess
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import asyncpg

from infra.blocking import run_blocking

__all__ = ["PostgresHandle", "find_system_bindir", "start_postgres"]

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

    def url(self, database: str) -> str:
        if self.host.startswith("/"):
            return f"postgresql+asyncpg://{self.user}@/{database}?host={self.host}&port={self.port}"
        return f"postgresql+asyncpg://{self.user}@{self.host}:{self.port}/{database}"

    def connect_kwargs(self) -> dict[str, object]:
        return {"host": self.host, "port": self.port, "user": self.user}

    def stop(self) -> None:
        self._stop()


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


def _start_system(bindir: Path, data_dir: Path, port: int, durable: bool) -> PostgresHandle:
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
    conf_path = cluster / "ipx.conf"
    conf_path.write_text(_server_conf(port, durable))
    if os.geteuid() == 0:
        shutil.chown(conf_path, SYSTEM_USER, SYSTEM_USER)

    pg_ctl = str(bindir / "pg_ctl")
    running = (
        subprocess.run(
            _as_postgres([pg_ctl, "status", "-D", str(cluster)]), capture_output=True, check=False
        ).returncode
        == 0
    )
    if running:  # left over from a launcher that was killed: restart on our settings
        subprocess.run(
            _as_postgres([pg_ctl, "stop", "-D", str(cluster), "-m", "fast", "-w"]),
            capture_output=True,
            check=False,
        )
    # Own session: a Ctrl-C in the terminal reaches the launcher, which stops us in order.
    result = subprocess.run(
        _as_postgres(
            [
                pg_ctl,
                "start",
                "-D",
                str(cluster),
                "-w",
                "-t",
                "60",
                "-l",
                str(cluster / "server.log"),
            ]
        ),
        capture_output=True,
        text=True,
        check=False,
        start_new_session=True,
    )
    if result.returncode != 0:
        log = (cluster / "server.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"PostgreSQL did not start: {result.stderr.strip()}\n{log}")

    def stop() -> None:
        subprocess.run(
            _as_postgres([pg_ctl, "stop", "-D", str(cluster), "-m", "fast", "-w"]),
            capture_output=True,
            check=False,
        )

    return PostgresHandle("system", cluster, "127.0.0.1", port, "postgres", stop)


def _start_pgserver(data_dir: Path) -> PostgresHandle:
    with warnings.catch_warnings():
        # pgserver asks platformdirs for a runtime folder at import; without XDG_RUNTIME_DIR it
        # warns and uses /tmp/runtime-<uid>, which is fine for a lock file.
        warnings.simplefilter("ignore")
        from pgserver.postgres_server import get_server

    cluster = data_dir / "pgserver"
    cluster.mkdir(parents=True, exist_ok=True)
    server = get_server(cluster, cleanup_mode="stop")
    info = server.get_postmaster_info()

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


def start_postgres(
    data_dir: Path,
    *,
    port: int,
    backend: Backend = "auto",
    database: str = "ipx",
    durable: bool = True,
) -> PostgresHandle:
    """Start (or restart) the cluster under `data_dir` and make sure `database` exists."""
    bindir = find_system_bindir() if backend in ("auto", "system") else None
    if backend == "system" and bindir is None:
        raise RuntimeError("no PostgreSQL server binaries found (pg_config, /usr/lib/postgresql)")
    handle = (
        _start_system(bindir, data_dir, port, durable)
        if bindir is not None
        else _start_pgserver(data_dir)
    )
    try:
        run_blocking(lambda: _ensure_database(handle, database))
    except BaseException:
        handle.stop()
        raise
    return handle
