"""`ipx import FILE`: upload a CSV or JSONL file to the import API with a progress bar."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from shared.settings import get_settings

CHUNK = 256 * 1024
console = Console()


def _chunks(path: Path, progress: Progress, task: int) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            progress.advance(task, len(chunk))  # type: ignore[arg-type]
            yield chunk


def _problem(response: httpx.Response) -> str:
    """A problem+json answer as one readable line per broken rule (the encoding of a file the
    service cannot read, a CSV header, ...); the raw body otherwise."""
    try:
        problem = response.json()
    except ValueError:
        return response.text
    if not isinstance(problem, dict):
        return response.text
    lines = [str(problem.get("detail") or problem.get("title") or response.text)]
    for error in problem.get("errors") or []:
        lines.append(f"  {error.get('field')} [{error.get('rule')}]: {error.get('message')}")
    return "\n".join(lines)


def import_file(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    key: Annotated[str, typer.Option(envvar="IPX_API_KEY", help="your organisation's API key")],
    api: Annotated[
        str | None,
        typer.Option(help="listing service URL (default: IPX_LISTING_URL, or IPX_LISTING_PORT's)"),
    ] = None,
    mode: Annotated[str, typer.Option(help="draft, submit or publish (operators)")] = "draft",
    seller_id: Annotated[str | None, typer.Option(help="operators: the seller")] = None,
) -> None:
    """Import assets and listings from FILE (.csv or .jsonl, UTF-8 or GBK as Chinese Excel
    saves it); re-running a file updates, and the report names the fields each row changed."""
    api = api or get_settings().listing_url
    fmt = "jsonl" if file.suffix.lower() in (".jsonl", ".ndjson") else "csv"
    params = {"format": fmt, "mode": mode} | ({"seller_id": seller_id} if seller_id else {})
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(f"uploading {file.name}", total=file.stat().st_size)
        response = httpx.post(
            f"{api}/v1/imports",
            params=params,
            content=_chunks(file, progress, task),
            headers={
                "Authorization": f"Bearer {key}",
                "Content-Type": "text/csv" if fmt == "csv" else "application/x-ndjson",
            },
            timeout=httpx.Timeout(30.0, read=3600.0),
        )
    if response.status_code != 201:
        console.print(f"[red]import refused ({response.status_code})[/red]: {_problem(response)}")
        raise typer.Exit(1)
    report = response.json()
    console.print(
        f"import {report['id']}: {report['total_rows']} rows read as {report.get('encoding')} — "
        f"created {report['created']}, updated {report['updated']}, "
        f"unchanged {report['unchanged']}, rejected {report['rejected']}"
    )
    updated = [row for row in report.get("rows", []) if row["outcome"] == "updated"]
    if updated:
        table = Table("line", "changed", title="updated rows (of the first 100)")
        for row in updated:
            table.add_row(str(row["line"]), ", ".join(row["changed"]))
        console.print(table)
    if report["rejections"]:
        table = Table("line", "field", "rule", "message", title="rejected rows (first 100)")
        for rejection in report["rejections"]:
            table.add_row(
                str(rejection["line"]), rejection["field"], rejection["rule"], rejection["message"]
            )
        console.print(table)
        console.print(f"all of them: GET {api}/v1/imports/{report['id']}")
