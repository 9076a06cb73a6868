"""Secrets kept at rest, sealed: partners' signing secrets and webhook subscriptions' secrets.

Fernet (AES-128-CBC with HMAC-SHA256, `cryptography`) under keys from the settings
(`IPX_SECRET_KEYS`, comma-separated Fernet keys). MultiFernet: the first key seals, every key
opens, so a key is rotated by putting the new one first and running `ipx secrets rotate`, which
seals every stored secret again under it; then the old key can go. A sealed value is
`fernet:<token>`; a value without the prefix was stored before sealing and is read as it is
(the gateway seals those at start-up). A database dump alone holds no usable secret.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

__all__ = ["SEALED", "SecretBox", "SecretsNotConfigured", "new_key", "secret_box"]

SEALED = "fernet:"


class SecretsNotConfigured(RuntimeError):
    """No key to seal secrets with: IPX_SECRET_KEYS is not set."""


class SecretBox:
    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise SecretsNotConfigured(
                "IPX_SECRET_KEYS is not set: give one or more Fernet keys, comma-separated "
                "(`ipx secrets new-key` makes one); the first seals, all open"
            )
        self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])

    def seal(self, secret: str) -> str:
        return SEALED + self._fernet.encrypt(secret.encode()).decode()

    def open(self, stored: str) -> str:
        if not stored.startswith(SEALED):
            return stored  # stored before secrets were sealed
        try:
            return self._fernet.decrypt(stored.removeprefix(SEALED).encode()).decode()
        except InvalidToken as exc:
            raise SecretsNotConfigured(
                "a stored secret was sealed under a key IPX_SECRET_KEYS no longer holds"
            ) from exc

    def reseal(self, stored: str) -> str:
        """Sealed under the first key (a value stored before sealing is sealed now)."""
        if not stored.startswith(SEALED):
            return self.seal(stored)
        token = self._fernet.rotate(stored.removeprefix(SEALED).encode())
        return SEALED + token.decode()


def new_key() -> str:
    return Fernet.generate_key().decode()


@cache
def _box(keys: tuple[str, ...]) -> SecretBox:
    return SecretBox(keys)


def secret_box(keys: Sequence[SecretStr]) -> SecretBox:
    """The box of these keys (one per set of keys: building MultiFernet is not free)."""
    return _box(tuple(key.get_secret_value() for key in keys))
