"""The SSRF guard of outbound webhook URLs: address classification, tricks the resolver
normalises, allow-lists, and connecting to the checked address (DNS rebinding)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket

import httpx
import pytest

from services.gateway.webhooks.ssrf import (
    AllowList,
    TargetRefused,
    forbidden_reason,
    normalize_pattern,
    pinned_request,
    resolve_public,
    send_pinned,
)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "0.0.0.0",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "169.254.1.1",
        "100.64.0.1",
        "100.100.100.200",
        "192.0.0.8",
        "198.18.0.1",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "fe80::1",
        "fc00::1",
        "fd00:ec2::254",
        "ff02::1",
        "2001:db8::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::127.0.0.1",
        "64:ff9b::a00:1",
        "2002:7f00:1::1",
        "2002:a00:1::1",
    ],
)
def test_private_and_special_addresses_are_refused(address: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8"],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) is None


def test_metadata_and_mapped_addresses_say_why() -> None:
    assert forbidden_reason(ipaddress.ip_address("169.254.169.254")) == "a cloud metadata address"
    reason = forbidden_reason(ipaddress.ip_address("::ffff:127.0.0.1"))
    assert reason is not None and "loopback" in reason


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://2130706433/",  # decimal 127.0.0.1
        "http://0177.0.0.1/",  # octal
        "http://0x7f.0.0.1/",  # hex
        "http://127.1/",  # short form
        "http://localhost:8080/hook",
        "http://sub.localhost/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:a00:1]/",
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://100.100.100.200/latest/meta-data/",
        "https://0.0.0.0:8443/",
    ],
)
async def test_the_resolver_normalises_tricks_and_they_are_refused(url: str) -> None:
    with pytest.raises(TargetRefused) as refused:
        await resolve_public(url, [])
    assert refused.value.rule == "ssrf_forbidden_target", refused.value.message


class FakeResolver:
    """A resolver answering from a table (unknown names do not resolve); records the calls."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.table[host]


fake_resolver = FakeResolver


async def test_a_name_resolving_to_a_private_address_is_refused() -> None:
    resolver = fake_resolver(
        {
            "intranet.example.com": ["10.1.2.3"],
            "mixed.example.com": ["93.184.216.34", "192.168.0.10"],
            "v6.example.com": ["2606:4700:4700::1111", "fe80::1"],
        }
    )
    for url in (
        "https://intranet.example.com/hook",
        "https://mixed.example.com/hook",
        "https://v6.example.com/hook",
    ):
        with pytest.raises(TargetRefused) as refused:
            await resolve_public(url, [], resolver=resolver)
        assert refused.value.rule == "ssrf_forbidden_target"
        assert "resolves to" in refused.value.message


async def test_a_public_name_resolves_to_its_checked_addresses() -> None:
    resolver = fake_resolver({"hooks.example.com": ["93.184.216.34", "93.184.216.34"]})
    target = await resolve_public("HTTPS://Hooks.Example.COM./in?x=1", [], resolver=resolver)
    assert target.scheme == "https" and target.host == "hooks.example.com"
    assert target.port == 443 and target.target == "/in?x=1"
    assert target.addresses == (ipaddress.ip_address("93.184.216.34"),)


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("ftp://example.com/", "url_scheme"),
        ("file:///etc/passwd", "url_scheme"),
        ("gopher://127.0.0.1:6379/", "url_scheme"),
        ("https://user:secret@example.com/", "url_credentials"),
        ("https://user@example.com/", "url_credentials"),
        ("http:///path-only", "url_format"),
        ("http://example.com:99999/", "url_format"),
        ("http://exa mple.com/", "url_format"),
        ("https://nowhere.invalid/", "url_unresolvable"),
    ],
)
async def test_urls_that_cannot_be_webhook_targets(url: str, rule: str) -> None:
    with pytest.raises(TargetRefused) as refused:
        await resolve_public(url, [], resolver=fake_resolver({}))
    assert refused.value.rule == rule


async def test_operators_allow_list_hosts_addresses_and_networks() -> None:
    resolver = fake_resolver(
        {
            "intranet.example.com": ["10.1.2.3"],
            "api.corp.example": ["10.9.0.7"],
            "meta.corp.example": ["169.254.169.254"],
        }
    )
    assert (await resolve_public("http://127.0.0.1:9000/", [("127.0.0.1", 9000)])).addresses
    # The decimal form resolves to the allow-listed address.
    assert (await resolve_public("http://2130706433:9000/", [("127.0.0.1", 9000)])).addresses
    for pattern in ("intranet.example.com", "10.0.0.0/8", "10.1.2.3"):
        await resolve_public("https://intranet.example.com/", [(pattern, 443)], resolver=resolver)
    await resolve_public("https://api.corp.example/", [("*.corp.example", 443)], resolver=resolver)
    with pytest.raises(TargetRefused):
        await resolve_public(
            "https://api.corp.example/", [("*.other.example", 443)], resolver=resolver
        )
    # A metadata address needs an exact entry: neither a network nor a host name lets it in.
    for pattern in ("169.254.0.0/16", "meta.corp.example", "*.corp.example"):
        with pytest.raises(TargetRefused):
            await resolve_public("http://meta.corp.example/", [(pattern, 80)], resolver=resolver)
    await resolve_public("http://meta.corp.example/", [("169.254.169.254", 80)], resolver=resolver)
    # Allowing 127.0.0.1 does not allow other loopback addresses.
    with pytest.raises(TargetRefused):
        await resolve_public("http://[::1]/", [("127.0.0.1", 80)])


async def test_an_allow_list_entry_opens_one_port_only() -> None:
    allowed = [("127.0.0.1", 8080), ("10.0.0.0/8", 8443), ("hooks.corp.example", 9000)]
    resolver = fake_resolver(
        {"hooks.corp.example": ["10.1.2.3"], "127.0.0.1": ["127.0.0.1"], "10.2.3.4": ["10.2.3.4"]}
    )
    assert await resolve_public("http://127.0.0.1:8080/hook", allowed)
    assert await resolve_public("https://10.2.3.4:8443/", allowed)
    assert await resolve_public("http://hooks.corp.example:9000/", allowed, resolver=resolver)
    for url in (
        "http://127.0.0.1:5432/",  # the database next door
        "http://127.0.0.1/",
        "https://10.2.3.4/",
        "http://hooks.corp.example:9001/",
    ):
        with pytest.raises(TargetRefused) as refused:
            await resolve_public(url, allowed, resolver=resolver)
        assert refused.value.rule == "ssrf_forbidden_target", url
    # A public address needs no entry, on any port.
    assert await resolve_public(
        "http://hooks.example.com:5432/",
        [],
        resolver=fake_resolver({"hooks.example.com": ["93.184.216.34"]}),
    )


def test_allow_list_patterns_are_normalised_and_checked() -> None:
    assert normalize_pattern(" Hooks.Example.COM. ") == "hooks.example.com"
    assert normalize_pattern("10.1.2.3/8") == "10.0.0.0/8"
    assert normalize_pattern("[::1]") == "::1"
    assert normalize_pattern("*.Corp.Example") == "*.corp.example"
    assert normalize_pattern("１２７.０.０.１") == "127.0.0.1"
    for bad in ("", "not a host", "10.0.0.0/33", "-bad-.example", "*.", "a..b"):
        with pytest.raises(ValueError):
            normalize_pattern(bad)
    allow = AllowList.of([("127.0.0.1", 80), ("garbage pattern!", 80), ("10.0.0.0/8", 80)])
    assert allow.allows_address(ipaddress.ip_address("::ffff:10.2.3.4"), 80)
    assert not allow.allows_address(ipaddress.ip_address("::ffff:10.2.3.4"), 81)
    assert not allow.allows_address(ipaddress.ip_address("11.0.0.1"), 80)


async def test_requests_go_to_the_checked_address_with_the_original_host() -> None:
    resolver = fake_resolver({"hooks.example.com": ["93.184.216.34"]})
    target = await resolve_public("https://hooks.example.com:8443/in?a=1", [], resolver=resolver)
    async with httpx.AsyncClient() as client:
        request = pinned_request(
            client, target, target.addresses[0], content=b"{}", headers={"x-test": "1"}
        )
    assert str(request.url) == "https://93.184.216.34:8443/in?a=1"
    assert request.headers["host"] == "hooks.example.com:8443"
    assert request.headers["connection"] == "close"
    assert request.extensions["sni_hostname"] == "hooks.example.com"
    v6 = await resolve_public(
        "http://v6.example.com/", [], resolver=fake_resolver({"v6.example.com": ["2001:4860::1"]})
    )
    async with httpx.AsyncClient() as client:
        request = pinned_request(client, v6, v6.addresses[0])
    assert str(request.url) == "http://[2001:4860::1]/"
    assert request.headers["host"] == "v6.example.com"
    assert "sni_hostname" not in request.extensions


async def test_dns_rebinding_cannot_move_the_connection() -> None:
    """The name is resolved once, checked, and the connection goes to that address: a second
    answer (here: the system resolver, which does not know the name at all) is never asked."""
    seen: list[dict[str, str]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in head[1:] if line)
        await reader.readexactly(int(headers.get("content-length", "0")))
        seen.append({"request": head[0], **{k.lower(): v for k, v in headers.items()}})
        writer.write(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    resolver = fake_resolver({"rebind.example.test": ["127.0.0.1"]})
    try:
        target = await resolve_public(
            f"http://rebind.example.test:{port}/hook",
            [("rebind.example.test", port)],
            resolver=resolver,
        )
        async with httpx.AsyncClient(trust_env=False) as client:
            status = await send_pinned(
                client, target, content=b'{"ok":true}', headers={"content-type": "application/json"}
            )
        assert status == 204
        assert seen[0]["request"] == "POST /hook HTTP/1.1"
        assert seen[0]["host"] == f"rebind.example.test:{port}"
        assert resolver.calls == ["rebind.example.test"]
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()


async def test_a_refused_connection_tries_the_next_checked_address() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        resolver = fake_resolver({"two.example.test": ["127.0.0.2", "127.0.0.1"]})
        target = await resolve_public(
            f"http://two.example.test:{port}/", [("127.0.0.0/8", port)], resolver=resolver
        )
        async with httpx.AsyncClient(trust_env=False) as client:
            assert await send_pinned(client, target, content=b"{}", headers={}) == 200
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()
