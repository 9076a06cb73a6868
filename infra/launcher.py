"""The local stack: PostgreSQL, Meilisearch, migrations, the three services; Ctrl-C stops all.

Secrets for local runs (operator key, service key, Meilisearch master key) are generated once
into `<data dir>/secrets.json`; the data folder persists, so a restart keeps every record.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from pydantic_settings import BaseSettings, SettingsConfigDict
from rich.console import Console
from rich.table import Table

from infra.meili import start_meilisearch
from infra.migrations import upgrade_all
from infra.postgres import Backend, start_postgres
from infra.processes import ServiceProcess, start_service, wait_ready
from infra.seed.demo import seed_demo
from shared.encryption import new_key
from shared.settings import SERVICE_NAMES, Settings

ROOT = Path(__file__).resolve().parent.parent
console = Console()


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


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_stack() -> None:
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
    stops: list[Callable[[], None]] = []
    # Installed explicitly: a process started in the background may inherit SIGINT as ignored,
    # and then Python raises no KeyboardInterrupt on Ctrl-C.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    try:
        if launcher.database_url:
            env["IPX_DATABASE_URL"] = launcher.database_url
            console.print("PostgreSQL: using IPX_DATABASE_URL")
        else:
            console.print("PostgreSQL: starting the local cluster…")
            pg = start_postgres(data_dir, port=launcher.pg_port, backend=launcher.pg_backend)
            stops.append(pg.stop)
            env["IPX_DATABASE_URL"] = pg.url("ipx")
            console.print(f"PostgreSQL: {pg.backend} server, data in {pg.data_dir}")
        if launcher.meili_url:
            env["IPX_MEILI_URL"] = launcher.meili_url
            console.print("Meilisearch: using IPX_MEILI_URL")
        else:
            console.print("Meilisearch: starting the pinned build…")
            meili = start_meilisearch(
                data_dir / "meilisearch",
                port=launcher.meili_port,
                master_key=env["IPX_MEILI_MASTER_KEY"],
            )
            stops.append(meili.stop)
            env["IPX_MEILI_URL"] = meili.url
        console.print("Migrations: applying…")
        upgrade_all(env["IPX_DATABASE_URL"])

        settings = Settings()  # the services' ports, as the environment sets them
        services: list[ServiceProcess] = []
        for name in SERVICE_NAMES:
            service = start_service(
                name,
                port=settings.port_of(name),
                env=env,
                log_path=data_dir / "logs" / f"{name}.log",
            )
            stops.append(service.stop)
            services.append(service)
        for service in services:
            wait_ready(service)
        if launcher.seed:
            console.print("Demo data: listing real patent records of Beijing, Tianjin, Hebei…")
            listing = next(s for s in services if s.name == "listing")
            summary = seed_demo(listing.url, env["IPX_OPERATOR_KEY"], limit=launcher.seed_limit)
            console.print(
                "Demo data: already there"
                if summary.skipped
                else f"Demo data: {summary.listings} published listings of "
                f"{summary.organizations} organisations"
            )
        _print_urls(services, data_dir, env["IPX_OPERATOR_KEY"])
        while True:
            for service in services:
                if service.process.poll() is not None:
                    raise RuntimeError(
                        f"{service.name} exited with code {service.process.returncode}; "
                        f"see {data_dir / 'logs' / (service.name + '.log')}"
                    )
            time.sleep(0.5)
    except KeyboardInterrupt:
        console.print("\nStopping…")
    finally:
        for stop in reversed(stops):
            stop()
        console.print("Stopped every process the launcher started.")


def _print_urls(services: list[ServiceProcess], data_dir: Path, operator_key: str) -> None:
    table = Table(title="ipx stack is up")
    table.add_column("service")
    table.add_column("URL")
    table.add_column("API docs")
    for service in services:
        table.add_row(service.name, service.url, f"{service.url}/docs")
    console.print(table)
    console.print(f"Logs: {data_dir / 'logs'}   Secrets: {data_dir / 'secrets.json'}")
    console.print(f"Operator key (local only): {operator_key}")
    console.print("Press Ctrl-C to stop.")
