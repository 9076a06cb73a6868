"""The launcher brings up the whole stack as real processes; Ctrl-C stops every child it started;
data survives a restart."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import bearer, free_port

pytestmark = pytest.mark.e2e


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Stack:
    def __init__(self, root: Path) -> None:
        self.data_dir = root / "stack-data"
        self.ports = {
            "gateway": free_port(),
            "listing": free_port(),
            "matching": free_port(),
            "postgres": free_port(),
            "meilisearch": free_port(),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.log = root / "launcher.log"

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("IPX_")}
        env.update(
            {
                "IPX_DATA_DIR": str(self.data_dir),
                "IPX_PG_PORT": str(self.ports["postgres"]),
                "IPX_MEILI_PORT": str(self.ports["meilisearch"]),
                "IPX_GATEWAY_PORT": str(self.ports["gateway"]),
                "IPX_LISTING_PORT": str(self.ports["listing"]),
                "IPX_MATCHING_PORT": str(self.ports["matching"]),
                "IPX_LISTING_URL": self.url("listing"),
                "IPX_MATCHING_URL": self.url("matching"),
                "IPX_GATEWAY_URL": self.url("gateway"),
            }
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "infra.cli", "up"],
            env=env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 180
        pending = {"gateway", "listing", "matching"}
        while (pending or "Press Ctrl-C" not in self.log.read_text()) and (
            time.monotonic() < deadline
        ):
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            for service in list(pending):
                try:
                    if httpx.get(f"{self.url(service)}/readyz", timeout=1).status_code == 200:
                        pending.discard(service)
                except httpx.HTTPError:
                    pass
            time.sleep(0.3)
        assert not pending, f"not ready: {pending}\n{self.log.read_text()[-3000:]}"

    def interrupt(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        self.process.wait(60)


@pytest.fixture(scope="module")
def stack(test_root: Path) -> Iterator[Stack]:
    stack = Stack(test_root)
    yield stack
    if stack.process is not None and stack.process.poll() is None:
        stack.interrupt()


def test_launcher_runs_the_stack_stops_it_and_keeps_data(stack: Stack) -> None:
    stack.start()
    output = stack.log.read_text()
    for service in ("gateway", "listing", "matching"):
        assert stack.url(service) in output
        ready = httpx.get(f"{stack.url(service)}/readyz").json()
        assert ready["status"] == "ready" and set(ready["checks"].values()) == {"ok"}
    assert httpx.get(f"{stack.url('gateway')}/openapi.json").status_code == 200

    created = httpx.post(
        f"{stack.url('listing')}/v1/organizations",
        json={"name": "北京航空航天大学", "kind": "university", "region": "110108"},
    )
    assert created.status_code == 201
    org_id, key = created.json()["organization"]["id"], created.json()["api_key"]["key"]
    # The demo seed: real records, published, of Beijing / Tianjin / Hebei organisations.
    operator = json.loads((stack.data_dir / "secrets.json").read_text())["operator_key"]
    seeded = httpx.get(
        f"{stack.url('listing')}/v1/listings",
        params={"status": "published", "page_size": 200},
        headers=bearer(operator),
    )
    assert len(seeded.json()["items"]) == 200 and seeded.json()["next_page_token"]
    assert all(i["asset"]["holders"][0]["name"] for i in seeded.json()["items"])
    assert "Demo data: " in stack.log.read_text() and "published listings" in stack.log.read_text()
    metrics = httpx.get(f"{stack.url('listing')}/metrics").text
    assert 'handler="/v1/organizations"' in metrics

    stack.interrupt()
    assert stack.process is not None and stack.process.returncode == 0
    assert "Stopped every process" in stack.log.read_text()
    for name, port in stack.ports.items():
        assert not port_open(port), f"{name} still listening on {port}"

    stack.start()  # same data folder: the organisation and its key are still there
    assert "Demo data: already there" in stack.log.read_text()
    again = httpx.get(f"{stack.url('listing')}/v1/organizations/{org_id}", headers=bearer(key))
    assert again.status_code == 200 and again.json()["name"] == "北京航空航天大学"
    stack.interrupt()
