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

from shared.settings import ServiceName

__all__ = ["ServiceProcess", "start_service", "stop_process", "wait_ready"]


@dataclass
class ServiceProcess:
    name: ServiceName
    url: str
    process: subprocess.Popen[bytes]

    def stop(self, timeout: float = 10.0) -> None:
        stop_process(self.process, timeout)


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
    name: ServiceName, *, port: int, env: Mapping[str, str], log_path: Path
) -> ServiceProcess:
    """`ipx serve <name>` in a child process of its own session, logging to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "serve", name],
        env={**os.environ, **env, f"IPX_{name.upper()}_PORT": str(port)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return ServiceProcess(name, f"http://127.0.0.1:{port}", process)


def wait_ready(service: ServiceProcess, timeout: float = 60.0) -> None:
    """Until /readyz answers 200; raises with the last answer when it does not in time."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise RuntimeError(f"{service.name} exited with code {service.process.returncode}")
        try:
            response = httpx.get(f"{service.url}/readyz", timeout=2.0)
            if response.status_code == 200:
                return
            last = response.text
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.2)
    raise RuntimeError(f"{service.name} not ready after {timeout:.0f}s: {last}")
