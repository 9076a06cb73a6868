"""The `ipx` command: bring up the stack, migrate, serve one service."""

from __future__ import annotations

import gc
import importlib

import typer
import uvicorn

from infra.http_protocol import ProblemHttpProtocol
from services.gateway.cli import secrets_app
from services.listing.imports.cli import import_file
from services.matching.cli import index_app
from shared.logging import configure_logging
from shared.settings import SERVICE_NAMES, ServiceName, get_settings

# Services that hold tens of thousands of objects for a moment (an import's batches, the
# indexer's pages of 1,000 documents): a young collection every 10,000 net allocations instead
# of 700, or each one walks them again. Not the gateway: its garbage is request-sized, and its
# memory is tight (docs/DECISIONS.md, Foundation, "Garbage collection").
BULK_WORK: frozenset[ServiceName] = frozenset({"listing", "matching"})
YOUNG_COLLECTION_EVERY = 10_000

app = typer.Typer(no_args_is_help=True, help="Jing-Jin-Ji IP exchange backend.")
app.command("import")(import_file)
app.add_typer(index_app, name="index")
app.add_typer(secrets_app, name="secrets")


@app.command()
def up() -> None:
    """Start PostgreSQL, Meilisearch, the migrations and the three services; Ctrl-C stops all."""
    from infra.launcher import run_stack

    raise typer.Exit(run_stack())


@app.command()
def migrate() -> None:
    """Apply the migrations of all three schemas to IPX_DATABASE_URL."""
    from infra.migrations import upgrade_all

    upgrade_all(get_settings().database_url)
    typer.echo("migrations applied")


@app.command()
def serve(
    name: str = typer.Argument(help="listing, matching or gateway"),
    shutdown_grace: int = typer.Option(
        5, help="On SIGTERM, seconds requests in flight get to finish (the launcher: 1)."
    ),
) -> None:
    """Run one service with uvicorn on IPX_HOST and its port."""
    if name not in SERVICE_NAMES:
        raise typer.BadParameter(f"must be one of {', '.join(SERVICE_NAMES)}")
    service: ServiceName = name
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    service_app = importlib.import_module(f"services.{service}.app").create_app()
    # What start-up built (modules, models, schemas, routes) lives as long as the process: out
    # of the collector's reach, a full collection walks only what requests build
    # (docs/DECISIONS.md, Foundation, "Garbage collection").
    gc.freeze()
    if service in BULK_WORK:
        gc.set_threshold(YOUNG_COLLECTION_EVERY, 10, 10)
    uvicorn.run(
        service_app,
        host=settings.host,
        port=settings.port_of(service),
        log_config=None,
        access_log=settings.access_log,
        proxy_headers=True,
        http=ProblemHttpProtocol,
        # Long-polls (up to 30 s) would otherwise hold a shutdown that long; the local launcher
        # gives 1 s (a Ctrl-C stops its whole stack within 3 s; see infra/launcher.py).
        timeout_graceful_shutdown=shutdown_grace,
    )


if __name__ == "__main__":
    app()
