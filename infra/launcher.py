"""The local stack: PostgreSQL, Meilisearch, migrations, the three services; Ctrl-C stops all.

Secrets for local runs (operator key, service key, Meilisearch master key, the gateway's sealing
key) are generated once into `<data dir>/secrets.json`; the data folder persists, so a restart
keeps every record.

Stopping (see infra/supervisor.py): every process the launcher starts dies with it, however the
launcher ends (a parent-death signal, or a watchdog: SIGKILL and a closed terminal included).
Ctrl-C, SIGTERM or SIGHUP stops the services (all at once; requests in flight get 1 s), then
PostgreSQL (fast shutdown) and Meilisearch together: about 1-2 s. A second Ctrl-C (or signal)
while stopping stops everything at once: PostgreSQL's immediate shutdown, SIGKILL to the rest.

At start, a server of this data folder left running (by a launcher of before, or a test) is
stopped first; a port held by another process is reported in one line, and nothing starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import time
from pathlib import Path
from types import FrameType

import psutil
from pydantic_settings import BaseSettings, SettingsConfigDict
from rich.console import Console
from rich.table import Table

from infra import meili, postgres
from infra.meili import start_meilisearch
from infra.migrations import upgrade_all
from infra.postgres import Backend, find_system_bindir, start_postgres
from infra.processes import ServiceProcess, start_service, wait_ready
from infra.seed.demo import seed_demo
from infra.supervisor import (
    Child,
    StartError,
    Supervisor,
    describe_process,
    port_holder,
    port_in_time_wait,
    port_in_use,
    stop_pids,
)
from shared.encryption import new_key
from shared.settings import SERVICE_NAMES, Settings

ROOT = Path(__file__).resolve().parent.parent
console = Console()

# Seconds uvicorn gives requests in flight on SIGTERM (a long-poll would hold it 5 s, `ipx
# serve`'s default); the services then get SIGKILL if still running 3 s after SIGTERM.
SERVICE_SHUTDOWN_GRACE = 1
EXIT_FAILED = 1
EXIT_FORCED = 130  # stopped at once by a second Ctrl-C, as a shell reports an interrupted job


class LauncherSettings(BaseSettings):
    """Launcher-only settings (prefix IPX_); the services' own are in shared.settings."""

    model_config = SettingsConfigDict(env_prefix="IPX_", extra="ignore")

    data_dir: Path = ROOT / ".data"
    pg_port: int = 54329
    pg_backend: Backend = "auto"
    meili_port: int = 7700
    database_url: str | None = None
    meili_url: str | None = None
    seed: bool = True
    seed_limit: int = 5000


def load_secrets(path: Path) -> dict[str, str]:
    """The stack's secrets, generated on first start (and any added since, e.g. the key that
    seals stored signing secrets, for a data folder older than it)."""
    values: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    generated = {
        "operator_key": lambda: "ipx_op_" + secrets.token_urlsafe(24),
        "service_key": lambda: "ipx_svc_" + secrets.token_urlsafe(24),
        "meili_master_key": lambda: secrets.token_urlsafe(24),
        "secret_key": new_key,
    }
    missing = {name: make() for name, make in generated.items() if name not in values}
    if missing:
        values |= missing
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values, indent=2))
        path.chmod(0o600)
    return values


def say(message: str | Table, style: str | None = None) -> None:
    """Print as it is (one line stays one line), unless the terminal is gone (closed: every
    write fails with EIO)."""
    with contextlib.suppress(OSError):
        console.print(message, style=style, markup=False, highlight=False, soft_wrap=True)


class StopRequested(KeyboardInterrupt):
    """The first Ctrl-C, SIGTERM or SIGHUP: stop the stack in order."""


class Signals:
    """The launcher's handler of Ctrl-C, SIGTERM and SIGHUP (a closed terminal).

    The first one raises `StopRequested` wherever the launcher is (starting, waiting); once it
    is stopping, another one stops everything at once and says so.
    """

    HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.stopping = False

    def install(self) -> None:
        # Installed explicitly: a process started in the background may inherit SIGINT as
        # ignored, and then Python raises no KeyboardInterrupt on Ctrl-C. SIGHUP ignored is
        # meant (`nohup make run`): the stack then outlives the terminal.
        for sig in self.HANDLED:
            if not (sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN):
                signal.signal(sig, self.handle)

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if not self.stopping:
            self.stopping = True
            raise StopRequested
        if self.supervisor.forced:
            return
        again = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        say(
            f"{again} again: stopping everything now "
            "(PostgreSQL: immediate shutdown, recovered at the next start; the rest: killed)"
        )
        self.supervisor.force()


def run_stack() -> int:
    """Bring the stack up and keep it up until stopped; the exit code."""
    launcher = LauncherSettings()
    data_dir = launcher.data_dir.resolve()
    stack_secrets = load_secrets(data_dir / "secrets.json")
    # Ours only when not set in the environment: IPX_* given by the user always win.
    env = {
        "IPX_OPERATOR_KEY": os.environ.get("IPX_OPERATOR_KEY", stack_secrets["operator_key"]),
        "IPX_SERVICE_KEY": os.environ.get("IPX_SERVICE_KEY", stack_secrets["service_key"]),
        "IPX_MEILI_MASTER_KEY": os.environ.get(
            "IPX_MEILI_MASTER_KEY", stack_secrets["meili_master_key"]
        ),
        "IPX_SECRET_KEYS": os.environ.get("IPX_SECRET_KEYS", stack_secrets["secret_key"]),
    }
    supervisor = Supervisor()
    signals = Signals(supervisor)
    signals.install()
    handles: list[postgres.PostgresHandle | meili.MeiliHandle] = []
    code = 0
    try:
        settings = Settings()  # the services' ports, as the environment sets them
        _preflight(launcher, settings, data_dir)
        if launcher.database_url:
            env["IPX_DATABASE_URL"] = launcher.database_url
            say("PostgreSQL: using IPX_DATABASE_URL")
        else:
            say("PostgreSQL: starting the local cluster…")
            pg = start_postgres(
                data_dir, port=launcher.pg_port, backend=launcher.pg_backend, supervisor=supervisor
            )
            handles.append(pg)
            env["IPX_DATABASE_URL"] = pg.url("ipx")
            say(f"PostgreSQL: {pg.backend} server, data in {pg.data_dir}")
        if launcher.meili_url:
            env["IPX_MEILI_URL"] = launcher.meili_url
            say("Meilisearch: using IPX_MEILI_URL")
        else:
            say("Meilisearch: starting the pinned build…")
            search = start_meilisearch(
                data_dir / "meilisearch",
                port=launcher.meili_port,
                master_key=env["IPX_MEILI_MASTER_KEY"],
                supervisor=supervisor,
            )
            handles.append(search)
            env["IPX_MEILI_URL"] = search.url
        say("Migrations: applying…")
        upgrade_all(env["IPX_DATABASE_URL"])

        services = [
            start_service(
                name,
                port=settings.port_of(name),
                env=env,
                log_path=data_dir / "logs" / f"{name}.log",
                supervisor=supervisor,
                shutdown_grace=SERVICE_SHUTDOWN_GRACE,
            )
            for name in SERVICE_NAMES
        ]
        for service in services:
            wait_ready(service)  # this process's answer, not another's on its port
        if launcher.seed:
            say("Demo data: listing real patent records of Beijing, Tianjin, Hebei…")
            listing = next(s for s in services if s.name == "listing")
            summary = seed_demo(listing.url, env["IPX_OPERATOR_KEY"], limit=launcher.seed_limit)
            say(
                "Demo data: already there"
                if summary.skipped
                else f"Demo data: {summary.listings} published listings of "
                f"{summary.organizations} organisations"
            )
        _print_urls(services, data_dir, env["IPX_OPERATOR_KEY"])
        while (dead := supervisor.dead()) is None:
            time.sleep(0.5)
        raise StartError(dead.exit_report())
    except StopRequested:
        say("\nStopping… (Ctrl-C again to stop at once)")
    except StartError as exc:
        say(str(exc), style="red")
        code = EXIT_FAILED
    finally:
        signals.stopping = True  # from here on, a signal means "at once"
        _stop_stack(supervisor, handles)
        if supervisor.forced:
            code = EXIT_FORCED
        if supervisor.children:
            say(
                "Stopped every process the launcher started"
                + (" (at once)." if supervisor.forced else ".")
            )
    return code


def _preflight(launcher: LauncherSettings, settings: Settings, data_dir: Path) -> None:
    """Stop this data folder's servers left running; check that every port is free."""
    leftovers: list[tuple[str, psutil.Process]] = []
    if not launcher.database_url:
        leftovers += [("PostgreSQL", p) for p in postgres.leftover_postmasters(data_dir)]
    if not launcher.meili_url:
        leftovers += [
            ("Meilisearch", p) for p in meili.leftover_meilisearch(data_dir / "meilisearch")
        ]
    for what, process in leftovers:
        say(f"{what}: stopping a server of this data folder left running (pid {process.pid})")
        if what == "PostgreSQL":
            stop_pids([process], signal.SIGINT, signal.SIGQUIT, grace=30.0)
        else:
            stop_pids([process], signal.SIGTERM, signal.SIGKILL, grace=3.0)

    ports: list[tuple[str, str, int, str]] = []
    pg_on_tcp = launcher.pg_backend != "pgserver" and find_system_bindir() is not None
    if not launcher.database_url and pg_on_tcp:
        ports.append(("PostgreSQL", "127.0.0.1", launcher.pg_port, "IPX_PG_PORT"))
    if not launcher.meili_url:
        ports.append(("Meilisearch", "127.0.0.1", launcher.meili_port, "IPX_MEILI_PORT"))
    for name in SERVICE_NAMES:
        ports.append((name, settings.host, settings.port_of(name), f"IPX_{name.upper()}_PORT"))
    busy = []
    variables: dict[int, str] = {}
    for _, _, port, variable in ports:
        if port in variables:
            busy.append(f"{variables[port]} and {variable} are both {port}: give each its own")
        variables[port] = variable
    for what, host, port, variable in ports:
        if not port_in_use(host, port):
            continue
        if holder := port_holder(port):
            by = describe_process(holder)
            busy.append(f"port {port} ({what}) is in use by {by}: stop it or set {variable}")
        elif port_in_time_wait(port):
            busy.append(
                f"port {port} ({what}) is held by a connection closed moments ago (TIME_WAIT, "
                f"up to a minute): wait or set {variable}"
            )
        else:
            busy.append(
                f"port {port} ({what}) is in use by another process: stop it or set {variable}"
            )
    if busy:
        raise StartError("\n".join(busy))


def _stop_stack(
    supervisor: Supervisor, handles: list[postgres.PostgresHandle | meili.MeiliHandle]
) -> None:
    """The services first (all at once), then PostgreSQL and Meilisearch (together)."""

    def slow(children: list[Child]) -> None:
        names = ", ".join(child.name for child in children)
        say(f"Waiting for {names} to stop… (Ctrl-C again to stop at once)")

    supervisor.stop(SERVICE_NAMES, on_slow=slow)
    supervisor.stop(on_slow=slow)
    supervisor.close()
    for handle in handles:  # already stopped; pgserver also has its bookkeeping to end
        handle.stop()


def _print_urls(services: list[ServiceProcess], data_dir: Path, operator_key: str) -> None:
    table = Table(title="ipx stack is up")
    table.add_column("service")
    table.add_column("URL")
    table.add_column("API docs")
    for service in services:
        table.add_row(service.name, service.url, f"{service.url}/docs")
    say(table)
    gateway = next((s.url for s in services if s.name == "gateway"), None)
    if gateway:
        say(f"Web catalogue: {gateway}/")
    say(f"Logs: {data_dir / 'logs'}   Secrets: {data_dir / 'secrets.json'}")
    say(f"Operator key (local only): {operator_key}")
    say("Press Ctrl-C to stop (twice: at once).")
