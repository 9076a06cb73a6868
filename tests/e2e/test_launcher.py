"""The launcher brings up the whole stack as real processes; however it is stopped (Ctrl-C once
or twice, SIGTERM, a closed terminal, SIGKILL of the launcher alone) no process of the stack is
left; data survives a restart; a port in use is reported in one line; a server of its data folder
left running is stopped first."""

from __future__ import annotations

import contextlib
import fcntl
import http.server
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from infra.meili import start_meilisearch
from infra.postgres import find_system_bindir, start_postgres
from infra.processes import ServiceProcess, wait_ready
from infra.supervisor import StartError, describe_process
from support import bearer, free_port

pytestmark = pytest.mark.e2e

SERVICES = ("gateway", "listing", "matching")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def running(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running (a zombie has ended: only its parent has not collected it yet)."""
    alive = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
    return alive


def wait_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while (left := running(processes)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return left


def cluster_state(cluster: Path) -> str:
    """ "shut down" after a clean stop, "in production" after an immediate one (or a crash)."""
    bindir = find_system_bindir()
    assert bindir is not None
    control = subprocess.run(
        [str(bindir / "pg_controldata"), str(cluster)], capture_output=True, text=True, check=True
    )
    match = re.search(r"^Database cluster state:\s+(.+)$", control.stdout, re.MULTILINE)
    assert match is not None, control.stdout
    return match.group(1).strip()


def under(path: Path) -> list[psutil.Process]:
    """Processes whose command line names `path` (the postmaster, Meilisearch)."""
    return [
        process
        for process in psutil.process_iter(["cmdline"])
        if any(str(path) in part for part in process.info["cmdline"] or [])
    ]


class Stack:
    def __init__(self, root: Path, name: str = "stack-data", **env: str) -> None:
        self.data_dir = root / name
        self.ports = {
            "gateway": free_port(),
            "listing": free_port(),
            "matching": free_port(),
            "postgres": free_port(),
            "meilisearch": free_port(),
        }
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.log = root / f"{name}.log"
        self.log.touch()
        self.offset = 0
        self._terminal: int | None = None
        self._reader: threading.Thread | None = None
        self._reading = False

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def output(self) -> str:
        """What the launcher printed since its last start."""
        with self.log.open("rb") as log:
            log.seek(self.offset)
            return log.read().decode(errors="replace")

    def launch(self, *, terminal: bool = False) -> subprocess.Popen[bytes]:
        """`ipx up` in a process group (and session) of its own, as a shell starts a job.

        `terminal`: its output goes to a pseudo-terminal that is its controlling terminal
        (closing it is closing the terminal window); else to the log file.
        """
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
                **self.env,
            }
        )
        self.offset = self.log.stat().st_size
        command = [sys.executable, "-m", "infra.cli", "up"]
        if not terminal:
            with self.log.open("ab") as log:
                self.process = subprocess.Popen(
                    command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            return self.process
        master, slave = os.openpty()

        def take_terminal() -> None:  # after setsid: the pty becomes its controlling terminal
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.process = subprocess.Popen(
            command,
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=take_terminal,
        )
        os.close(slave)
        self._terminal, self._reading = master, True
        self._reader = threading.Thread(target=self._copy_terminal, args=(master,), daemon=True)
        self._reader.start()
        return self.process

    def _copy_terminal(self, master: int) -> None:
        with self.log.open("ab") as log:
            while self._reading:
                if select.select([master], [], [], 0.05)[0]:
                    try:
                        chunk = os.read(master, 65536)
                    except OSError:
                        return
                    log.write(chunk)
                    log.flush()

    def close_terminal(self) -> None:
        """What closing the terminal window does: the kernel hangs up (SIGHUP) its session."""
        assert self._terminal is not None and self._reader is not None
        self._reading = False
        self._reader.join()
        os.close(self._terminal)  # the last reference: the pty hangs up now
        self._terminal = None

    def start(self, *, terminal: bool = False) -> None:
        process = self.launch(terminal=terminal)
        deadline = time.monotonic() + 180
        pending = set(SERVICES)
        while (pending or "Press Ctrl-C" not in self.output()) and time.monotonic() < deadline:
            assert process.poll() is None, self.output()[-3000:]
            for service in list(pending):
                try:
                    if httpx.get(f"{self.url(service)}/readyz", timeout=1).status_code == 200:
                        pending.discard(service)
                except httpx.HTTPError:
                    pass
            time.sleep(0.3)
        assert not pending, f"not ready: {pending}\n{self.output()[-3000:]}"

    def tree(self) -> list[psutil.Process]:
        """Every process the launcher started, and theirs (PostgreSQL's backends)."""
        assert self.process is not None
        tree: list[psutil.Process] = psutil.Process(self.process.pid).children(recursive=True)
        return tree

    def signal(self, sig: signal.Signals) -> None:
        """To the launcher's process group, as the terminal sends Ctrl-C."""
        assert self.process is not None
        os.killpg(self.process.pid, sig)

    def interrupt(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        self.process.wait(60)

    def open_ports(self) -> list[str]:
        return [name for name, port in self.ports.items() if port_open(port)]


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
    # The web catalogue, announced and served by the real gateway process (templates and
    # static files found in the installed package).
    assert f"Web catalogue: {stack.url('gateway')}/" in output
    page = httpx.get(f"{stack.url('gateway')}/stats", params={"lang": "en"})
    assert page.status_code == 200 and "Public deal statistics" in page.text

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


@pytest.fixture(scope="module")
def quiet_stack(test_root: Path) -> Iterator[Stack]:
    """One data folder for the ways of stopping (no demo data: faster starts)."""
    stack = Stack(test_root, "stops-data", IPX_SEED="false")
    yield stack
    if stack.process is not None and stack.process.poll() is None:
        stack.process.kill()
    for process in running(under(stack.data_dir)):  # a failure must not leave them running
        process.kill()


STOPS = ["ctrl-c", "ctrl-c twice", "sigterm", "sigkill of the launcher", "closed terminal"]


@pytest.mark.parametrize("way", STOPS)
def test_no_process_is_left_however_the_launcher_is_stopped(quiet_stack: Stack, way: str) -> None:
    stack = quiet_stack
    stack.start(terminal=way == "closed terminal")
    assert stack.process is not None
    tree = stack.tree()
    names = {p.name() for p in tree}
    assert "postgres" in names and "meilisearch" in names, names
    assert len(tree) >= 3 + 1 + 1 + 4, names  # services, Meilisearch, postmaster and backends

    began = time.monotonic()
    if way == "ctrl-c":
        stack.signal(signal.SIGINT)
    elif way == "ctrl-c twice":
        stack.signal(signal.SIGINT)
        while "Stopping" not in stack.output() and stack.process.poll() is None:
            time.sleep(0.01)
        stack.signal(signal.SIGINT)
    elif way == "sigterm":
        stack.signal(signal.SIGTERM)
    elif way == "sigkill of the launcher":
        stack.process.kill()  # the launcher alone: no handler of its runs
    else:
        stack.close_terminal()
    code = stack.process.wait(30)
    left = wait_gone(tree, timeout=10)
    elapsed = time.monotonic() - began
    print(f"{way}: launcher exited {code}, every process gone after {elapsed:.2f}s")

    assert not left, [(p.pid, p.name()) for p in left]
    assert stack.open_ports() == []
    output = stack.output()
    assert "Traceback" not in output, output[-3000:]
    if way == "ctrl-c":
        assert code == 0 and "Stopped every process the launcher started." in output
        assert elapsed < 3.0, f"a single Ctrl-C took {elapsed:.2f}s to stop the stack"
    elif way == "ctrl-c twice":
        assert code == 130, output[-3000:]
        assert "Ctrl-C again: stopping everything now" in output
        assert "Stopped every process the launcher started (at once)." in output
    elif way == "sigterm":
        assert code == 0 and "Stopped every process the launcher started." in output
    elif way == "sigkill of the launcher":
        assert code == -signal.SIGKILL
    # PostgreSQL: a fast shutdown (a clean stop) every way but the second Ctrl-C (an immediate
    # one: crash-safe, recovered at the next start).
    if find_system_bindir() is not None:  # pgserver's cluster is elsewhere
        expected = "in production" if way == "ctrl-c twice" else "shut down"
        assert cluster_state(stack.data_dir / "postgres") == expected


def test_a_port_in_use_is_reported_in_one_line(quiet_stack: Stack) -> None:
    stack = quiet_stack
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the last run's TIME_WAIT
        squatter.bind(("127.0.0.1", stack.ports["listing"]))
        squatter.listen()
        process = stack.launch()
        code = process.wait(60)
    output = stack.output()
    port = stack.ports["listing"]
    assert code == 1, output
    lines = [line for line in output.splitlines() if f"port {port}" in line]
    holder = describe_process(psutil.Process())  # pid 1234 (python -m pytest …)
    assert holder.startswith(f"pid {os.getpid()} (")
    assert lines == [
        f"port {port} (listing) is in use by {holder}: stop it or set IPX_LISTING_PORT"
    ]
    assert "Traceback" not in output
    assert "PostgreSQL: starting" not in output  # checked before anything starts
    assert running(under(stack.data_dir)) == [] and stack.open_ports() == []


def test_servers_of_its_data_folder_left_running_are_stopped_first(quiet_stack: Stack) -> None:
    """A PostgreSQL and a Meilisearch of the same data folder, on the stack's ports (left by a
    launcher of before, or started by hand): the launcher stops them and comes up."""
    stack = quiet_stack
    key = json.loads((stack.data_dir / "secrets.json").read_text())["meili_master_key"]
    pg = start_postgres(stack.data_dir, port=stack.ports["postgres"], durable=False)
    search = start_meilisearch(
        stack.data_dir / "meilisearch", port=stack.ports["meilisearch"], master_key=key
    )
    assert pg.process is not None
    leftovers = [psutil.Process(pg.process.pid), psutil.Process(search.process.pid)]
    try:
        stack.start()
        output = stack.output()
        for what, process in zip(("PostgreSQL", "Meilisearch"), leftovers, strict=True):
            expected = f"{what}: stopping a server of this data folder left running "
            assert f"{expected}(pid {process.pid})" in output, output
        assert running(leftovers) == []
        tree = stack.tree()
        stack.interrupt()
        assert wait_gone(tree, timeout=10) == [] and stack.open_ports() == []
    finally:
        pg.stop()
        search.stop()


class _Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"status": "ready"}')

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_readiness_is_judged_on_the_process_started_not_on_its_port(tmp_path: Path) -> None:
    """Another server answers /readyz on the port while ours fails to bind it: not "up", but
    our process's exit and its last error."""
    other = http.server.HTTPServer(("127.0.0.1", 0), _Ready)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    log = tmp_path / "listing.log"
    log.write_text("ERROR an earlier run's error\n")
    offset = log.stat().st_size
    fails = (
        "import sys, time; time.sleep(1); "
        "print('ERROR: [Errno 98] address already in use', flush=True); sys.exit(3)"
    )
    try:
        with log.open("ab") as out:
            process = subprocess.Popen([sys.executable, "-c", fails], stdout=out)
        url = f"http://127.0.0.1:{other.server_address[1]}"
        service = ServiceProcess("listing", url, process, log, offset)
        with pytest.raises(StartError) as raised:
            wait_ready(service, timeout=30)
        assert str(raised.value) == (
            f"listing exited with code 3 (log: {log}): ERROR: [Errno 98] address already in use"
        )
    finally:
        other.shutdown()
