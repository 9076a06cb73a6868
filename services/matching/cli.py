"""`ipx index rebuild` and `ipx index check [--repair]`: the catalogue index against the listing
service (see services.matching.repair). Configured like the services, by IPX_* variables."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

if TYPE_CHECKING:
    import httpx
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from services.matching.meili import MeiliClient
    from services.matching.repair import CheckReport, RebuildReport
    from shared.settings import Settings

T = TypeVar("T")
SAMPLE = 10

index_app = typer.Typer(
    no_args_is_help=True,
    help="The catalogue index: rebuild it from the listing service, check it against it.",
)
console = Console()


@asynccontextmanager
async def _resources(
    settings: Settings,
) -> AsyncIterator[tuple[async_sessionmaker[AsyncSession], httpx.AsyncClient, MeiliClient]]:
    """What a matching process has: the database, an identity-encoding HTTP client, Meilisearch."""
    from services.matching.meili import MeiliClient
    from shared.app import open_http_client
    from shared.db import create_engine, create_sessionmaker

    engine = create_engine(settings, application_name="ipx-index-cli")
    try:
        async with open_http_client(settings) as http:
            meili = MeiliClient(
                http, settings.meili_url, settings.meili_master_key.get_secret_value()
            )
            yield create_sessionmaker(engine), http, meili
    finally:
        await engine.dispose()


def _run(work: Callable[[], Awaitable[T]]) -> T:
    """Run `work`, turning the failures an operator can act on into a message and exit 1."""
    import asyncpg
    import httpx
    from sqlalchemy.exc import DBAPIError

    from services.matching.meili import MeiliError, MeiliUnavailable
    from services.matching.repair import RepairError

    async def main() -> T:
        return await work()

    try:
        return asyncio.run(main())
    except RepairError as exc:
        console.print(f"[red]{exc}[/red]")
    except MeiliUnavailable as exc:
        console.print(f"[red]Meilisearch cannot be reached ({exc})[/red]")
    except MeiliError as exc:
        console.print(f"[red]Meilisearch refused: {exc}[/red]")
    except httpx.HTTPStatusError as exc:
        console.print(
            f"[red]the listing service answered {exc.response.status_code} "
            f"for {exc.request.url.path}[/red]"
        )
    except httpx.HTTPError as exc:
        console.print(f"[red]the listing service cannot be reached ({type(exc).__name__})[/red]")
    except (OSError, asyncpg.PostgresError, DBAPIError) as exc:
        console.print(f"[red]PostgreSQL: {type(exc).__name__}: {exc}[/red]")
    raise typer.Exit(1)


def _sample(ids: list[str]) -> str:
    shown = ", ".join(ids[:SAMPLE])
    return shown + (f", … ({len(ids) - SAMPLE} more)" if len(ids) > SAMPLE else "")


@index_app.command("rebuild")
def rebuild_command(
    page_size: Annotated[int, typer.Option(min=1, max=1000, help="offers per page")] = 1000,
    lease_seconds: Annotated[
        float, typer.Option(help="how long to wait for the running indexer's lease")
    ] = 60.0,
) -> None:
    """Rebuild the index from the listing service and swap it in.

    The new index is built beside the live one; search answers from the old index until the
    swap. A running indexer hands over its lease for the last step and then carries on."""
    from services.matching.repair import rebuild
    from shared.settings import get_settings

    settings = get_settings()
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(f"indexing {settings.meili_index}", total=None)

        def advance(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        async def work() -> RebuildReport:
            async with _resources(settings) as (sessionmaker, http, meili):
                return await rebuild(
                    settings=settings,
                    sessionmaker=sessionmaker,
                    http=http,
                    meili=meili,
                    index_uid=settings.meili_index,
                    progress=advance,
                    page_size=page_size,
                    lease_seconds=lease_seconds,
                )

        report = _run(work)
    table = Table("", "")
    table.add_row("listings read", str(report.listings))
    table.add_row("documents indexed", str(report.documents))
    table.add_row("feed events caught up", str(report.caught_up_events))
    table.add_row("left to the indexer", f"{report.pending} listings")
    table.add_row("records corrected", str(report.records_fixed))
    table.add_row("indexer preempted", "yes" if report.preempted else "no")
    console.print(table)
    console.print(f"index {report.index_uid} rebuilt and swapped in ({report.seconds:.1f} s)")


@index_app.command("check")
def check_command(
    repair: Annotated[
        bool, typer.Option("--repair", help="fix what differs (takes the indexer's lease)")
    ] = False,
    page_size: Annotated[int, typer.Option(min=1, max=1000, help="offers per page")] = 1000,
    lease_seconds: Annotated[
        float, typer.Option(help="how long to wait for the running indexer's lease")
    ] = 60.0,
) -> None:
    """Compare the index (ids and versions) with the listing service.

    Exits 1 when they differ and --repair was not given."""
    from services.matching.repair import check
    from shared.settings import get_settings

    settings = get_settings()

    async def work() -> CheckReport:
        async with _resources(settings) as (sessionmaker, http, meili):
            return await check(
                settings=settings,
                sessionmaker=sessionmaker,
                http=http,
                meili=meili,
                index_uid=settings.meili_index,
                repair=repair,
                page_size=page_size,
                lease_seconds=lease_seconds,
            )

    with console.status(f"checking {settings.meili_index}…"):
        report = _run(work)
    verdict = (
        "consistent"
        if report.consistent
        else "repaired"
        if report.repaired
        else "differs from the source"
    )
    table = Table("", "count", "ids (sample)")
    table.add_row("listings in the source", str(report.listings), "")
    table.add_row("searchable", str(report.searchable), "")
    table.add_row("documents in the index", str(report.documents), "")
    table.add_row("pending (indexer not there yet)", str(report.pending), "")
    table.add_row("missing", str(len(report.missing)), _sample(report.missing))
    table.add_row("stale", str(len(report.stale)), _sample(report.stale))
    table.add_row("extra", str(len(report.extra)), _sample(report.extra))
    table.add_row("records", str(len(report.records)), _sample(report.records))
    console.print(table)
    console.print(f"index {report.index_uid}: {verdict} ({report.seconds:.1f} s)")
    if not report.consistent and not report.repaired:
        raise typer.Exit(1)
