"""Settings from the environment: service URLs follow their ports unless set, the public URL
follows the gateway's, the webhook User-Agent follows the public URL."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from shared.settings import SERVICE_NAMES, Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No IPX_ variable of the machine running the tests leaks into them."""
    for name in list(os.environ):
        if name.startswith("IPX_"):
            monkeypatch.delenv(name)


def test_defaults_are_the_local_stack() -> None:
    settings = Settings()
    assert settings.listing_url == "http://127.0.0.1:8001"
    assert settings.matching_url == "http://127.0.0.1:8002"
    assert settings.gateway_url == "http://127.0.0.1:8000"
    assert settings.public_url == "http://127.0.0.1:8000"
    assert settings.webhook_user_agent == "ipx-webhooks/1.0 (+http://127.0.0.1:8000/docs)"


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_a_port_alone_moves_its_url(monkeypatch: pytest.MonkeyPatch, service: str) -> None:
    monkeypatch.setenv(f"IPX_{service.upper()}_PORT", "9123")
    settings = Settings()
    assert getattr(settings, f"{service}_url") == "http://127.0.0.1:9123"
    others = {name: getattr(settings, f"{name}_url") for name in SERVICE_NAMES if name != service}
    assert "9123" not in str(others)
    # Derived values are not reported as set by the environment.
    assert settings.model_fields_set == {f"{service}_port"}


def test_every_port_moves_every_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IPX_LISTING_PORT", "18001")
    monkeypatch.setenv("IPX_MATCHING_PORT", "18002")
    monkeypatch.setenv("IPX_GATEWAY_PORT", "18000")
    settings = Settings()
    assert (settings.listing_url, settings.matching_url, settings.gateway_url) == (
        "http://127.0.0.1:18001",
        "http://127.0.0.1:18002",
        "http://127.0.0.1:18000",
    )
    assert settings.port_of("listing") == 18001
    assert settings.public_url == "http://127.0.0.1:18000"
    assert settings.webhook_user_agent == "ipx-webhooks/1.0 (+http://127.0.0.1:18000/docs)"


def test_an_explicit_url_wins_over_the_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IPX_LISTING_PORT", "9001")
    monkeypatch.setenv("IPX_LISTING_URL", "http://listing:8001")
    monkeypatch.setenv("IPX_GATEWAY_URL", "http://gateway:8000")
    settings = Settings()
    assert settings.listing_url == "http://listing:8001"
    assert settings.listing_port == 9001  # still where it listens
    assert settings.gateway_url == "http://gateway:8000"
    assert settings.public_url == "http://gateway:8000"


def test_an_empty_url_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IPX_MATCHING_PORT", "9002")
    monkeypatch.setenv("IPX_MATCHING_URL", "")
    assert Settings().matching_url == "http://127.0.0.1:9002"


def test_arguments_work_as_the_environment_does() -> None:
    assert Settings(gateway_port=9000).gateway_url == "http://127.0.0.1:9000"
    assert Settings(gateway_port=9000, gateway_url="http://gw").gateway_url == "http://gw"


def test_the_webhook_user_agent_follows_the_public_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IPX_GATEWAY_URL", "http://gateway:8000")
    monkeypatch.setenv("IPX_PUBLIC_URL", "https://api.jjj-ipx.cn/")
    settings = Settings()
    assert settings.public_url == "https://api.jjj-ipx.cn/"
    assert settings.webhook_user_agent == "ipx-webhooks/1.0 (+https://api.jjj-ipx.cn/docs)"
    monkeypatch.setenv("IPX_WEBHOOK_USER_AGENT", "JJJ-IPX-Webhooks/2 (+https://jjj-ipx.cn/hooks)")
    assert Settings().webhook_user_agent == "JJJ-IPX-Webhooks/2 (+https://jjj-ipx.cn/hooks)"


def test_a_user_agent_with_a_control_character_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IPX_WEBHOOK_USER_AGENT", "ipx\r\nX-Injected: 1")
    with pytest.raises(ValidationError, match="control characters"):
        Settings()


def test_replica_nodes_are_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().meili_replica_urls == []
    monkeypatch.setenv("IPX_MEILI_REPLICA_URLS", " http://meili-1:7700/ ,http://meili-2:7700,")
    assert Settings().meili_replica_urls == ["http://meili-1:7700", "http://meili-2:7700"]
