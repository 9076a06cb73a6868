"""`ipx secrets new-key` and `ipx secrets rotate`: the keys sealing the gateway's stored
signing secrets (shared/encryption.py). Configured like the services, by IPX_* variables."""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console

secrets_app = typer.Typer(
    no_args_is_help=True,
    help="The keys that seal the signing secrets the gateway stores (IPX_SECRET_KEYS).",
)
console = Console()


@secrets_app.command("new-key")
def new_key() -> None:
    """Print a new key: put it first in IPX_SECRET_KEYS (keep the old ones after it), restart
    the gateway, then run `ipx secrets rotate`."""
    from shared.encryption import new_key as make_key

    print(make_key())


@secrets_app.command("rotate")
def rotate() -> None:
    """Seal every stored secret again under the first key of IPX_SECRET_KEYS; afterwards the
    other keys can be removed."""
    from services.gateway.stored_secrets import reseal
    from shared.db import create_engine, create_sessionmaker
    from shared.encryption import secret_box
    from shared.settings import get_settings

    settings = get_settings()

    async def run() -> int:
        engine = create_engine(settings, application_name="ipx-secrets-cli")
        try:
            box = secret_box(settings.secret_keys)
            return await reseal(create_sessionmaker(engine), box, in_clear_only=False)
        finally:
            await engine.dispose()

    count = asyncio.run(run())
    console.print(f"{count} stored secrets sealed under the first key of IPX_SECRET_KEYS")
