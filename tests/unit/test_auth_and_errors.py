"""Plain functions of shared.auth and shared.errors, no database."""

from __future__ import annotations

import asyncpg
from sqlalchemy import exc as sa_exc

from shared.auth import environment_principal, generate_api_key, hash_api_key, key_prefix
from shared.errors import field_errors_from_validation, is_database_unavailable, raised_from
from shared.settings import Settings


def test_generated_keys_are_unique_prefixed_and_hashed() -> None:
    first, second = generate_api_key(), generate_api_key()
    assert first.plaintext != second.plaintext and first.prefix != second.prefix
    assert key_prefix(first.plaintext) == first.prefix
    assert first.hash == hash_api_key(first.plaintext) and first.plaintext not in first.hash
    assert len(first.plaintext) > 40


def test_key_prefix_rejects_foreign_shapes() -> None:
    for bad in ("", "ipx", "ipx_short_x", "abc_123456789012_x", "ipx_123456789012"):
        assert key_prefix(bad) is None


def test_environment_keys_map_to_service_and_operator() -> None:
    settings = Settings(service_key="s" * 20, operator_key="o" * 20)
    service = environment_principal(settings, "s" * 20)
    operator = environment_principal(settings, "o" * 20)
    assert service is not None and service.is_service and not service.is_operator
    assert operator is not None and operator.is_operator
    assert environment_principal(settings, "s" * 19) is None
    # Unset keys never match, not even the empty string.
    assert environment_principal(Settings(), "") is None


def test_validation_errors_name_nested_fields() -> None:
    errors = field_errors_from_validation(
        [
            {
                "loc": ("body", "transaction", "price", "amount"),
                "type": "greater_than_equal",
                "msg": "Input should be >= 0",
            },
            {"loc": ("query", "page_size"), "type": "int_parsing", "msg": "not an int"},
            {"loc": ("body", "holders", 2, "name"), "type": "missing", "msg": "required"},
            {"loc": ("body", 17), "type": "json_invalid", "msg": "JSON decode error"},
        ]
    )
    assert [(e.field, e.rule) for e in errors] == [
        ("transaction.price.amount", "greater_than_equal"),
        ("page_size", "int_parsing"),
        ("holders[2].name", "missing"),
        ("body", "json_invalid"),
    ]


def test_database_unavailable_is_told_apart_from_query_errors() -> None:
    assert is_database_unavailable(ConnectionRefusedError(111, "refused"))
    assert is_database_unavailable(asyncpg.exceptions.CannotConnectNowError("starting"))
    wrapped = sa_exc.DBAPIError("SELECT 1", {}, ConnectionResetError(104, "reset"))
    assert is_database_unavailable(wrapped)
    assert not is_database_unavailable(asyncpg.exceptions.UniqueViolationError("dup"))
    assert not is_database_unavailable(ValueError("bad"))


def test_raised_from_finds_the_driver_error_however_it_was_wrapped() -> None:
    timeout = asyncpg.exceptions.LockNotAvailableError("canceling statement due to lock timeout")
    wrapped = sa_exc.OperationalError("COPY ...", {}, timeout)
    assert raised_from(timeout, asyncpg.exceptions.LockNotAvailableError)
    assert raised_from(wrapped, asyncpg.exceptions.LockNotAvailableError)
    try:
        try:
            raise wrapped
        except sa_exc.OperationalError as exc:
            raise RuntimeError("the batch failed") from exc
    except RuntimeError as outer:
        assert raised_from(outer, asyncpg.exceptions.LockNotAvailableError)
    other = sa_exc.OperationalError("SELECT 1", {}, asyncpg.exceptions.DeadlockDetectedError("x"))
    assert not raised_from(other, asyncpg.exceptions.LockNotAvailableError)
    assert not raised_from(ValueError("x"), asyncpg.exceptions.LockNotAvailableError)
