"""Sealing stored secrets (shared/encryption.py): Fernet under the settings' keys, rotation."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from shared.encryption import SEALED, SecretBox, SecretsNotConfigured, new_key, secret_box
from shared.settings import Settings

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_a_sealed_secret_opens_and_does_not_show() -> None:
    box = SecretBox([new_key()])
    sealed = box.seal(SECRET)
    assert sealed.startswith(SEALED) and SECRET not in sealed
    assert len(sealed) <= 400  # the columns' width
    assert box.open(sealed) == SECRET
    assert box.seal(SECRET) != sealed  # a fresh IV each time


def test_rotation_keeps_old_secrets_readable_and_reseals_them() -> None:
    old, new = new_key(), new_key()
    sealed_before = SecretBox([old]).seal(SECRET)
    rotated = SecretBox([new, old])
    assert rotated.open(sealed_before) == SECRET  # the old key still opens
    resealed = rotated.reseal(sealed_before)
    assert SecretBox([new]).open(resealed) == SECRET  # the new key alone opens it now
    with pytest.raises(SecretsNotConfigured, match="no longer holds"):
        SecretBox([new_key()]).open(resealed)


def test_secrets_stored_in_clear_are_read_then_sealed() -> None:
    box = SecretBox([new_key()])
    assert box.open(SECRET) == SECRET
    assert box.open(box.reseal(SECRET)) == SECRET


def test_keys_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = new_key(), new_key()
    monkeypatch.setenv("IPX_SECRET_KEYS", f"{first}, {second}")
    keys = Settings().secret_keys
    assert [key.get_secret_value() for key in keys] == [first, second]
    assert secret_box(keys).open(SecretBox([second]).seal(SECRET)) == SECRET
    assert first not in repr(Settings())
    with pytest.raises(SecretsNotConfigured, match="IPX_SECRET_KEYS is not set"):
        secret_box([])
    with pytest.raises(ValueError):
        secret_box([SecretStr("not a fernet key")])
    monkeypatch.setenv("IPX_SECRET_KEYS", "not-a-key")
    with pytest.raises(ValueError, match="key 1 is not a Fernet key"):
        Settings()
