"""The launcher's children: each dies with the launcher, however it ends, and all stop together.

Every process the launcher starts (the PostgreSQL postmaster, Meilisearch, the three services)
is its direct child, forked from its main thread, with a parent-death signal: the kernel sends
it when the launcher's process ends, by Ctrl-C, SIGTERM, a closed terminal or SIGKILL alike (no
signal handler runs on SIGKILL; the kernel's signal needs none). The postmaster gets SIGINT (a
fast shutdown, clean), the others SIGKILL. A process it adopts rather than starts (pgserver's
postmaster, daemonised by pg_ctl) gets a watchdog instead, which reads a pipe from the launcher
and signals it at the pipe's end (infra/watchdog.py).

An orderly stop signals every child first and then waits, so it takes as long as the slowest
child, not the sum of them; `force` (a second Ctrl-C) stops everything at once: PostgreSQL's
immediate shutdown (crash-safe), SIGKILL to the rest.

Linux only (prctl). A parent-death signal fires when the *thread* that forked the child ends, so
`Supervisor.popen` refuses to run outside the main thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

__all__ = [
    "Child",
    "StartError",
    "Supervisor",
    "describe_process",
    "listens_on",
    "log_tail",
    "port_holder",
    "port_in_time_wait",
    "port_in_use",
    "stop_pids",
]

PR_SET_PDEATHSIG = 1


class StartError(RuntimeError):
    """A component did not start (its own exit, a port in use): the message says why, in short."""


def log_tail(path: Path | None, offset: int = 0, lines: int = 3) -> str:
    """What a process logged last after `offset`, in one line: its last errors if it logged
    any, else its last `lines` lines (of JSON log lines, the message only)."""
    if path is None or not path.exists():
        return ""
    with path.open("rb") as log:
        log.seek(max(0, min(offset, path.stat().st_size)))
        text = log.read()[-50_000:].decode(errors="replace")
    entries: list[tuple[str, str]] = []  # (level, message)
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict) and "message" in record:
            message = str(record["message"]).strip().splitlines() or [""]
            entries.append((str(record.get("level", "")), message[0]))
        else:
            level = "ERROR" if re.search(r"\b(ERROR|FATAL|PANIC)\b", line) else ""
            entries.append((level, line.strip()))
    errors = [e for e in entries if e[0] in ("ERROR", "CRITICAL", "FATAL", "PANIC")]
    return " | ".join(" ".join(m.split()) for _, m in (errors or entries)[-lines:])


def _die_with_parent(sig: signal.Signals) -> Callable[[], None]:
    """A `preexec_fn`: the kernel sends `sig` to the child when this process ends.

    Runs after Popen's user/group switch (which would clear the setting), before the exec.
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("a parent-death signal needs the child forked from the main thread")
    parent = os.getpid()
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork, not after

    def preexec() -> None:
        if prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the launcher ended between the fork and the prctl
            os.kill(os.getpid(), sig)

    return preexec


@dataclass
class Child:
    """A process the launcher started or adopted, and the signals that stop it."""

    name: str
    process: subprocess.Popen[bytes] | psutil.Process
    graceful: signal.Signals = signal.SIGTERM
    immediate: signal.Signals = signal.SIGKILL
    grace: float = 3.0  # seconds from the graceful signal to the immediate one
    log_path: Path | None = None
    log_offset: int = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        if isinstance(self.process, subprocess.Popen):
            return self.process.poll() is None
        try:
            return bool(self.process.status() != psutil.STATUS_ZOMBIE)
        except psutil.NoSuchProcess:
            return False

    def returncode(self) -> int | None:
        return self.process.returncode if isinstance(self.process, subprocess.Popen) else None

    def signal(self, sig: signal.Signals) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError, psutil.NoSuchProcess):
                self.process.send_signal(sig)

    def exit_report(self) -> str:
        """A line such as: listing exited with code 3 (log: …): <its last errors>."""
        code = self.returncode()
        if code is not None and code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
        else:
            how = "exited" if code is None else f"exited with code {code}"
        tail = log_tail(self.log_path, self.log_offset)
        where = f" (log: {self.log_path})" if self.log_path else ""
        return f"{self.name} {how}{where}" + (f": {tail}" if tail else "")


@dataclass
class Supervisor:
    """Starts the launcher's children and stops them: in order, concurrently, or at once."""

    children: list[Child] = field(default_factory=list)
    forced: bool = False
    watchdogs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def popen(
        self,
        name: str,
        args: Sequence[str],
        *,
        graceful: signal.Signals = signal.SIGTERM,
        immediate: signal.Signals = signal.SIGKILL,
        grace: float = 3.0,
        on_parent_death: signal.Signals = signal.SIGKILL,
        log_path: Path | None = None,
        **kwargs: Any,
    ) -> subprocess.Popen[bytes]:
        """`subprocess.Popen` with a parent-death signal, registered for `stop` and `force`."""
        offset = log_path.stat().st_size if log_path is not None and log_path.exists() else 0
        process: subprocess.Popen[bytes] = subprocess.Popen(
            args, preexec_fn=_die_with_parent(on_parent_death), **kwargs
        )
        self.children.append(Child(name, process, graceful, immediate, grace, log_path, offset))
        if self.forced:  # a second Ctrl-C came while this one was being started
            self.children[-1].signal(immediate)
        return process

    def adopt(
        self,
        name: str,
        process: psutil.Process,
        *,
        graceful: signal.Signals = signal.SIGTERM,
        immediate: signal.Signals = signal.SIGKILL,
        grace: float = 3.0,
        on_parent_death: signal.Signals = signal.SIGKILL,
    ) -> None:
        """A process started by someone else (pgserver's postmaster) that stops with the rest.

        Not our child, so no parent-death signal: a watchdog (infra/watchdog.py) sends it
        `on_parent_death` when this process ends, reading the end of a pipe we hold.
        """
        self.children.append(Child(name, process, graceful, immediate, grace))
        watchdog = [sys.executable, str(Path(__file__).with_name("watchdog.py"))]
        self.watchdogs.append(
            subprocess.Popen(
                [*watchdog, str(process.pid), str(int(on_parent_death))],
                stdin=subprocess.PIPE,
                start_new_session=True,
            )
        )

    def close(self) -> None:
        """After `stop`: the watchdogs end (their process has ended already)."""
        for watchdog in self.watchdogs:
            assert watchdog.stdin is not None
            watchdog.stdin.close()
        for watchdog in self.watchdogs:
            watchdog.wait(10)

    def dead(self) -> Child | None:
        """The first child that has ended, if any."""
        return next((child for child in self.children if not child.alive()), None)

    def force(self) -> None:
        """Everything at once: the immediate signal to every child still running."""
        self.forced = True
        for child in self.children:
            child.signal(child.immediate)

    def stop(
        self,
        names: Sequence[str] | None = None,
        *,
        on_slow: Callable[[list[Child]], None] | None = None,
        slow_after: float = 3.0,
    ) -> list[Child]:
        """Stop the children named (default: all): the graceful signal to each first, then wait.

        A child still running `grace` seconds later gets its immediate signal; `on_slow` hears
        once of those still running after `slow_after` seconds. Returns the children that needed
        the immediate signal.
        """
        chosen = [c for c in self.children if names is None or c.name in names]
        if not self.forced:
            for child in chosen:
                child.signal(child.graceful)
        start = time.monotonic()
        late: list[Child] = []
        heard = on_slow is None
        while running := [c for c in chosen if c.alive()]:
            elapsed = time.monotonic() - start
            for child in running:
                if child not in late and (self.forced or elapsed >= child.grace):
                    late.append(child)
                    child.signal(child.immediate)
            if not heard and elapsed >= slow_after and on_slow is not None:
                heard = True
                if slow := [c for c in running if c not in late]:
                    on_slow(slow)
            if elapsed > max(c.grace for c in chosen) + 10.0:
                break  # not even the immediate signal ended it: nothing more to do here
            time.sleep(0.02)
        return late


def spawn(
    supervisor: Supervisor | None,
    name: str,
    args: Sequence[str],
    *,
    log_path: Path | None = None,
    stopping: Mapping[str, Any] | None = None,
    **popen: Any,
) -> subprocess.Popen[bytes]:
    """A server process in its own session: under `supervisor` (the launcher's: it dies with
    it, stopped as `stopping` says, see Supervisor.popen), or on its own, as the test suite
    starts its servers."""
    if supervisor is None:
        return subprocess.Popen(args, start_new_session=True, **popen)
    return supervisor.popen(
        name, args, log_path=log_path, start_new_session=True, **(stopping or {}), **popen
    )


def _ended(process: psutil.Process) -> bool:
    """Ended, a zombie included (its parent, not us, has yet to collect it)."""
    try:
        return bool(process.status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def stop_pids(
    processes: Sequence[psutil.Process],
    graceful: signal.Signals,
    immediate: signal.Signals,
    grace: float,
) -> None:
    """Stop processes that are not our children: signal, wait `grace`, then the immediate one."""
    for sig, wait in ((graceful, grace), (immediate, 10.0)):
        for process in processes:
            if not _ended(process):
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.send_signal(sig)
        deadline = time.monotonic() + wait
        while not all(_ended(p) for p in processes) and time.monotonic() < deadline:
            time.sleep(0.02)
        if all(_ended(p) for p in processes):
            return


def port_in_use(host: str, port: int) -> bool:
    """Whether a server could not bind `host:port` (as servers do, with SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def port_holder(port: int) -> psutil.Process | None:
    """The process holding TCP `port` (listening on it, else a connection of its own from it),
    when this user may see it."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return None
    ours = [c for c in connections if c.laddr and c.laddr.port == port and c.pid is not None]
    ours.sort(key=lambda c: c.status != psutil.CONN_LISTEN)  # a listener first
    for conn in ours:
        with contextlib.suppress(psutil.NoSuchProcess):
            return psutil.Process(conn.pid)
    return None


def port_in_time_wait(port: int) -> bool:
    """Whether a connection closed moments ago still holds `port` (TIME_WAIT, up to a minute).

    It was a client's (port from the ephemeral range): unlike a server's, it blocks a bind.
    """
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return False
    return any(
        c.laddr and c.laddr.port == port and c.status == psutil.CONN_TIME_WAIT for c in connections
    )


def describe_process(process: psutil.Process, width: int = 70) -> str:
    """'pid 1234 (python3 -m infra.cli serve listing)', the command line cut to `width`."""
    try:
        args = process.cmdline()
        # The program by its name, not its path; one line whatever the arguments hold.
        command = " ".join([Path(args[0]).name, *args[1:]] if args else [process.name()])
        command = " ".join(command.split())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        command = "?"
    if len(command) > width:
        command = command[: width - 1] + "…"
    return f"pid {process.pid} ({command})"


def listens_on(pid: int, port: int) -> bool:
    """Whether process `pid` itself holds a listening socket on `port`."""
    try:
        connections = psutil.Process(pid).net_connections(kind="tcp")
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return any(
        c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in connections
    )
