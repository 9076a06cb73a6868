"""Readiness checks: each answers None when fine, or raises with the reason it is not ready."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import schema_revision

__all__ = ["ReadinessCheck", "database_check", "http_check", "meilisearch_check"]

ReadinessCheck = Callable[[], Awaitable[None]]


class NotReady(Exception):
    """Why a dependency is not ready (shown in /readyz; no secrets)."""


def database_check(engine: AsyncEngine, schema: str, expected_revision: str) -> ReadinessCheck:
    async def check() -> None:
        try:
            revision = await schema_revision(engine, schema)
        except Exception as exc:
            raise NotReady(f"PostgreSQL is unreachable ({type(exc).__name__})") from exc
        if revision != expected_revision:
            raise NotReady(
                f"schema '{schema}' is at revision {revision}, expected {expected_revision}: "
                "run the migrations (ipx migrate)"
            )

    return check


def meilisearch_check(client: httpx.AsyncClient, url: str) -> ReadinessCheck:
    return _answers_200(client, f"{url}/health", "Meilisearch")


def http_check(client: httpx.AsyncClient, name: str, url: str) -> ReadinessCheck:
    return _answers_200(client, f"{url}/healthz", f"the {name} service")


def _answers_200(client: httpx.AsyncClient, url: str, subject: str) -> ReadinessCheck:
    """Ready when a GET of `url` answers 200; `subject` names the peer in the reason."""

    async def check() -> None:
        try:
            response = await client.get(url)
        except httpx.HTTPError as exc:
            raise NotReady(f"{subject} is unreachable ({type(exc).__name__})") from exc
        if response.status_code != 200:
            raise NotReady(f"{subject} answered {response.status_code}")

    return check
