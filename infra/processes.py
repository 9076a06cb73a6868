"""Starting the three services as real processes (used by the launcher and the e2e tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from infra.supervisor import StartError, Supervisor, listens_on, log_tail, spawn
from shared.settings import ServiceName

__all__ = ["ServiceProcess", "start_service", "stop_process", "wait_ready"]


@dataclass
class ServiceProcess:
    name: ServiceName
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path | None = None
    log_offset: int = 0  # where this run's output starts in the log

    @property
    def port(self) -> int:
        port = httpx.URL(self.url).port
        assert port is not None
        return port

    def stop(self, timeout: float = 10.0) -> None:
        stop_process(self.process, timeout)

    def exit_report(self) -> str:
        """A line such as: listing exited with code 3 (log: …): <its last errors>."""
        tail = log_tail(self.log_path, self.log_offset)
        where = f" (log: {self.log_path})" if self.log_path else ""
        return f"{self.name} exited with code {self.process.returncode}{where}" + (
            f": {tail}" if tail else ""
        )


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not ended within `timeout` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_service(
    name: ServiceName,
    *,
    port: int,
    env: Mapping[str, str],
    log_path: Path,
    supervisor: Supervisor | None = None,
    shutdown_grace: int | None = None,
) -> ServiceProcess:
    """`ipx serve <name>` in a child process of its own session, logging to `log_path`.

    With a `supervisor` (the launcher), the process dies with this one and stops with the rest.
    `shutdown_grace`: how long uvicorn lets requests in flight finish on SIGTERM (default 5 s).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    offset = log_path.stat().st_size if log_path.exists() else 0
    args = [sys.executable, "-m", "infra.cli", "serve", name]
    if shutdown_grace is not None:
        args += ["--shutdown-grace", str(shutdown_grace)]
    child_env = {**os.environ, **env, f"IPX_{name.upper()}_PORT": str(port)}
    with log_path.open("ab") as log:
        process = spawn(
            supervisor,
            name,
            args,
            log_path=log_path,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return ServiceProcess(name, f"http://127.0.0.1:{port}", process, log_path, offset)


def wait_ready(service: ServiceProcess, timeout: float = 60.0) -> None:
    """Until /readyz answers 200 from this very process (not another one on its port).

    Raises `StartError` if the process ends first (with its last log lines) or is not ready in
    time (with the last answer).
    """
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise StartError(service.exit_report())
        try:
            response = httpx.get(f"{service.url}/readyz", timeout=2.0)
            if response.status_code == 200 and listens_on(service.process.pid, service.port):
                return
            last = response.text if response.status_code != 200 else "another process answers"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.2)
    raise StartError(f"{service.name} not ready after {timeout:.0f}s: {last}")
