"""API keys: generation, hashing, constant-time checks, the caller (Principal), dependencies.

A key looks like ``ipx_<prefix>_<secret>``. Only its SHA-256 is stored, with the prefix for lookup;
a fast hash is right for long random keys, and bcrypt on every request would sink throughput.
Listing authenticates keys from its own tables; matching and gateway ask listing
(``POST /v1/auth/introspect``) and cache the answer briefly; listing announces every revocation
with a NOTIFY on AUTH_CHANNEL, which empties those caches on every replica at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Protocol
from uuid import UUID

import httpx
from fastapi import Depends, Request

from shared.contracts.auth import IntrospectionResponse, Role
from shared.errors import Forbidden, ServiceUnavailable, Unauthorized
from shared.notifier import FeedNotifier
from shared.settings import Settings

__all__ = [
    "AUTH_CHANNEL",
    "Authenticator",
    "CallerDep",
    "IntrospectingAuthenticator",
    "KeyMaterial",
    "OptionalCallerDep",
    "Principal",
    "environment_principal",
    "generate_api_key",
    "hash_api_key",
    "key_prefix",
    "require_roles",
]

KEY_SCHEME = "ipx"
AUTH_CHANNEL = "ipx_api_keys"  # NOTIFY'd by listing in the transaction that revokes a key
PREFIX_LENGTH = 12


@dataclass(frozen=True)
class Principal:
    """Who is calling: an organisation's key with its roles, or a service / bootstrap operator."""

    roles: frozenset[Role]
    organization_id: UUID | None = None
    key_id: UUID | None = None

    def has(self, *roles: Role) -> bool:
        return bool(self.roles.intersection(roles))

    @property
    def is_operator(self) -> bool:
        return "operator" in self.roles

    @property
    def is_service(self) -> bool:
        return "service" in self.roles


@dataclass(frozen=True)
class KeyMaterial:
    """A freshly generated key: `plaintext` is shown to its owner once and never stored."""

    plaintext: str
    prefix: str
    hash: str


def hash_api_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def generate_api_key() -> KeyMaterial:
    prefix = secrets.token_hex(PREFIX_LENGTH // 2)
    plaintext = f"{KEY_SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
    return KeyMaterial(plaintext=plaintext, prefix=prefix, hash=hash_api_key(plaintext))


def key_prefix(plaintext: str) -> str | None:
    """The lookup prefix of a well-formed key, None for anything else."""
    parts = plaintext.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_SCHEME or len(parts[1]) != PREFIX_LENGTH:
        return None
    return parts[1]


def hashes_match(stored_hash: str, plaintext: str) -> bool:
    return hmac.compare_digest(stored_hash, hash_api_key(plaintext))


def environment_principal(settings: Settings, plaintext: str) -> Principal | None:
    """Keys that come from the environment: the service key and the bootstrap operator key."""
    service_key = settings.service_key.get_secret_value()
    if service_key and hmac.compare_digest(service_key.encode(), plaintext.encode()):
        return Principal(roles=frozenset({"service"}))
    operator_key = settings.operator_key.get_secret_value()
    if operator_key and hmac.compare_digest(operator_key.encode(), plaintext.encode()):
        return Principal(roles=frozenset({"operator"}))
    return None


class Authenticator(Protocol):
    async def authenticate(self, plaintext: str) -> Principal | None: ...


@dataclass
class IntrospectingAuthenticator:
    """Asks listing who a key belongs to, caching answers (positive and negative) for `ttl`.

    With `revocations` (a listener on AUTH_CHANNEL), the cache is emptied as soon as a key is
    revoked anywhere, and whenever the listener reconnects (it may have missed one): a revoked
    key stops working on every replica at once, not `ttl` later."""

    settings: Settings
    client: httpx.AsyncClient
    ttl: float = 30.0
    revocations: FeedNotifier | None = None
    _cache: dict[str, tuple[float, Principal | None]] = field(default_factory=dict)
    _seen: int = 0  # the revocations' generation the cache was filled in

    async def authenticate(self, plaintext: str) -> Principal | None:
        known = environment_principal(self.settings, plaintext)
        if known is not None:
            return known
        if key_prefix(plaintext) is None:
            return None
        if self.revocations is not None and self.revocations.mark() != self._seen:
            self._seen = self.revocations.mark()
            self._cache.clear()
        cache_key = hash_api_key(plaintext)
        now = time.monotonic()
        cached = self._cache.get(cache_key)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            response = await self.client.post(
                f"{self.settings.listing_url}/v1/auth/introspect",
                json={"token": plaintext},
                headers={"Authorization": f"Bearer {self.settings.service_key.get_secret_value()}"},
            )
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise ServiceUnavailable("the listing service cannot check API keys right now") from exc
        answer = IntrospectionResponse.model_validate_json(response.content)
        principal = (
            Principal(
                roles=frozenset(answer.roles),
                organization_id=answer.organization_id,
                key_id=answer.key_id,
            )
            if answer.active
            else None
        )
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[cache_key] = (now + self.ttl, principal)
        return principal


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <api key>'")
    return token.strip()


async def optional_caller(request: Request) -> Principal | None:
    """The caller when a key is sent (a bad key is a 401, not anonymous), else None."""
    token = _bearer(request)
    if token is None:
        return None
    authenticator: Authenticator = request.app.state.authenticator
    principal = await authenticator.authenticate(token)
    if principal is None:
        raise Unauthorized("the API key is unknown or revoked")
    return principal


async def caller(principal: Annotated[Principal | None, Depends(optional_caller)]) -> Principal:
    if principal is None:
        raise Unauthorized("this endpoint needs an API key: send 'Authorization: Bearer <key>'")
    return principal


OptionalCallerDep = Annotated[Principal | None, Depends(optional_caller)]
CallerDep = Annotated[Principal, Depends(caller)]


def require_roles(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that lets through only callers holding one of `roles`."""

    async def dependency(principal: CallerDep) -> Principal:
        if not principal.has(*roles):
            raise Forbidden(f"this needs one of the roles: {', '.join(roles)}")
        return principal

    return dependency
