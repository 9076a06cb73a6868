"""The test harness itself: a test run stopped by SIGTERM stops the PostgreSQL and Meilisearch it
started (they are separate processes, and would otherwise run on after a CI time limit)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
HOLDING = """
import json, os, time
from pathlib import Path

def test_holds_the_servers(postgres, meili, test_root):
    probe = Path(os.environ["IPX_PROBE"])
    written = {"postgres": postgres.port, "meili": meili.url, "root": str(test_root)}
    probe.with_suffix(".tmp").write_text(json.dumps(written))
    probe.with_suffix(".tmp").rename(probe)  # whole or absent
    time.sleep(120)
"""


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _processes_under(root: str) -> list[psutil.Process]:
    """The processes whose command line names `root` (the servers the session started)."""
    return [
        process
        for process in psutil.process_iter(["cmdline"])
        if any(root in part for part in process.info["cmdline"] or [])
    ]


def test_sigterm_stops_the_servers_the_session_started(tmp_path: Path) -> None:
    (tmp_path / "test_holding.py").write_text(HOLDING)
    probe = tmp_path / "probe.json"
    env = {
        **os.environ,
        "IPX_PROBE": str(probe),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)]),
    }
    # The project's conftest, loaded as a plugin by a pytest run of the file above.
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider",
         "-p", "no:randomly", "-c", str(ROOT / "pyproject.toml"), str(tmp_path)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    started: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 120
        while not probe.exists() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert probe.exists(), "the session did not start its servers"
        started = json.loads(probe.read_text())
        meili_port = int(started["meili"].rsplit(":", 1)[1])
        assert _listening(started["postgres"]) and _listening(meili_port)

        run.send_signal(signal.SIGTERM)
        output, _ = run.communicate(timeout=60)
        left = _processes_under(started["root"])
        assert not left, output.decode()
        assert not _listening(started["postgres"]) and not _listening(meili_port)
        assert not Path(started["root"]).exists()
    finally:
        if run.poll() is None:
            run.kill()
        # A failure here must not leave them running either.
        for process in _processes_under(started["root"]) if started else []:
            process.kill()
