"""The SSRF guard for every URL the gateway calls out to (webhook subscribers, partners' pull
feeds), DNS rebinding included.

A subscription URL is parsed (http or https, no credentials), its host resolved with the system
resolver (`getaddrinfo`, which also normalises tricks such as ``2130706433`` or ``0177.0.0.1``
to ``127.0.0.1``), and every address it resolves to is checked: loopback, private, link-local,
shared (CGNAT), multicast, reserved, unspecified and cloud metadata addresses are refused, also
when embedded in an IPv6 address (IPv4-mapped, 6to4, Teredo, NAT64). An operator may
allow-list, for one tenant and one port, a host name (``hooks.example.internal``,
``*.example.internal``), an IP or a CIDR.

The checked address is the one we connect to: :func:`send_pinned` sends the request to the IP
itself, with the original ``Host`` header and, for https, the original name as SNI (so the
certificate is still verified against the name). A second resolution that could answer
differently (DNS rebinding) never happens.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from shared.identifiers import normalize_full_width

__all__ = [
    "METADATA_ADDRESSES",
    "METADATA_HOSTS",
    "AllowList",
    "IPAddress",
    "ResolvedTarget",
    "Resolver",
    "TargetRefused",
    "forbidden_reason",
    "normalize_pattern",
    "open_pinned",
    "parse_target",
    "resolve_public",
    "send_pinned",
    "system_resolver",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# (host, port) -> the addresses it resolves to, as strings.
Resolver = Callable[[str, int], Awaitable[list[str]]]

RESOLVE_TIMEOUT_SECONDS = 5.0
# How much of a subscriber's response body is read (the rest is discarded with the connection).
MAX_RESPONSE_BYTES = 64 * 1024

METADATA_HOSTS = frozenset(
    {
        "metadata.google.internal",
        "metadata.goog",
        "metadata",
        "metadata.tencentyun.com",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, Huawei Cloud
        "fd00:ec2::254",  # AWS over IPv6
        "169.254.170.2",  # AWS ECS task metadata
        "100.100.100.200",  # Alibaba Cloud
        "169.254.0.23",  # Tencent Cloud
    )
)
_SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Special-purpose blocks this Python's `is_global` misses (IETF protocol assignments, the
# deprecated 6to4 relay anycast).
_SPECIAL_IPV4 = (ipaddress.ip_network("192.0.0.0/24"), ipaddress.ip_network("192.88.99.0/24"))
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class TargetRefused(Exception):
    """Why a URL may not receive webhooks; `rule` is the stable name, `message` says why."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, Teredo client, NAT64)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def forbidden_reason(ip: IPAddress) -> str | None:
    """Why `ip` is not a public unicast address (None when it is one)."""
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return "a scoped (link-local) address"
        inner = _embedded_ipv4(ip)
        if inner is not None:
            reason = forbidden_reason(inner)
            if reason is not None:
                return f"{reason} (embedded in {ip})"
            if ip.ipv4_mapped is not None:
                return None  # ::ffff:a.b.c.d is a.b.c.d itself
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED_ADDRESS_SPACE:
        return "a shared (carrier-grade NAT) address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "a site-local address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved or (
        isinstance(ip, ipaddress.IPv4Address) and any(ip in n for n in _SPECIAL_IPV4)
    ):
        return "a reserved address"
    if not ip.is_global:
        return "not a public address"
    return None


def _ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def normalize_pattern(raw: str) -> str:
    """An allow-list pattern in canonical form: an IP, a CIDR network, a host name or a
    ``*.`` wildcard over a domain's sub-names. Raises ValueError for anything else."""
    text = normalize_full_width(raw).strip().lower().rstrip(".")
    if not text:
        raise ValueError("an empty pattern")
    if "/" in text:
        return str(ipaddress.ip_network(text, strict=False))
    ip = _ip(text.strip("[]"))
    if ip is not None:
        return str(ip)
    wildcard = text.startswith("*.")
    name = text[2:] if wildcard else text
    try:
        name = name.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError(f"{raw!r} is not a host name") from exc
    labels = name.split(".")
    if len(name) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise ValueError(f"{raw!r} is not a host name, IP address or CIDR network")
    return f"*.{name}" if wildcard else name


@dataclass(frozen=True)
class _Patterns:
    """The private hosts and networks allowed on one port."""

    hosts: frozenset[str] = frozenset()
    domains: tuple[str, ...] = ()
    addresses: frozenset[IPAddress] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def of(cls, patterns: Iterable[str]) -> _Patterns:
        hosts: set[str] = set()
        domains: list[str] = []
        addresses: set[IPAddress] = set()
        networks: list[IPNetwork] = []
        for raw in patterns:
            try:
                pattern = normalize_pattern(raw)
            except ValueError:
                continue
            if "/" in pattern:
                networks.append(ipaddress.ip_network(pattern))
            elif (ip := _ip(pattern)) is not None:
                addresses.add(ip)
            elif pattern.startswith("*."):
                domains.append(pattern[1:])  # ".example.internal"
            else:
                hosts.add(pattern)
        return cls(frozenset(hosts), tuple(domains), frozenset(addresses), tuple(networks))

    def allows_host(self, host: str) -> bool:
        return host in self.hosts or any(host.endswith(domain) for domain in self.domains)

    def allows_address(self, ip: IPAddress) -> bool:
        candidates: list[IPAddress] = [ip]
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            candidates.append(ip.ipv4_mapped)
        for candidate in candidates:
            if candidate in self.addresses:
                return True
            if candidate in METADATA_ADDRESSES:
                continue
            if any(candidate.version == n.version and candidate in n for n in self.networks):
                return True
        return False


_NOTHING = _Patterns()


@dataclass(frozen=True)
class AllowList:
    """One tenant's operator-approved private targets, each a pattern on one port (allowing
    127.0.0.1:8080 does not open 127.0.0.1:5432). Invalid stored patterns are ignored."""

    by_port: Mapping[int, _Patterns] = field(default_factory=dict)

    @classmethod
    def of(cls, entries: Iterable[tuple[str, int]]) -> AllowList:
        grouped: dict[int, list[str]] = {}
        for pattern, port in entries:
            grouped.setdefault(port, []).append(pattern)
        return cls({port: _Patterns.of(patterns) for port, patterns in grouped.items()})

    def allows_host(self, host: str, port: int) -> bool:
        return self.by_port.get(port, _NOTHING).allows_host(host)

    def allows_address(self, ip: IPAddress, port: int) -> bool:
        """An address listed itself, or inside a listed network, on this port. A cloud metadata
        address is allowed only when listed exactly, never through a network or a host name."""
        return self.by_port.get(port, _NOTHING).allows_address(ip)


@dataclass(frozen=True)
class ResolvedTarget:
    """A checked URL: where it points, and the addresses it is safe to connect to."""

    url: str
    scheme: str
    host: str  # lower case, ASCII (IDNA), no brackets, no trailing dot
    port: int
    target: str  # path and query, as sent
    addresses: tuple[IPAddress, ...] = field(default=())

    @property
    def host_is_ip(self) -> bool:
        return _ip(self.host) is not None

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    def url_for(self, address: IPAddress) -> httpx.URL:
        """The URL with the checked address in place of the host name."""
        host = f"[{address}]" if address.version == 6 else str(address)
        return httpx.URL(f"{self.scheme}://{host}:{self.port}{self.target}")


def parse_target(url: str) -> ResolvedTarget:
    """The parts of a webhook URL (not resolved yet); TargetRefused when it cannot be one."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise TargetRefused("url_format", f"not a valid URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise TargetRefused("url_scheme", "a webhook URL must start with http:// or https://")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise TargetRefused(
            "url_credentials",
            "a webhook URL must not carry credentials; requests are signed instead",
        )
    raw_host = parts.hostname
    if not raw_host:
        raise TargetRefused("url_format", "the URL has no host")
    if "%" in raw_host:
        raise TargetRefused("ssrf_forbidden_target", "a scoped IPv6 address is not allowed")
    host = raw_host.rstrip(".")
    if _ip(host) is None:
        try:
            host = normalize_full_width(host).encode("idna").decode("ascii").lower()
        except UnicodeError as exc:
            raise TargetRefused("url_format", f"{raw_host!r} is not a valid host name") from exc
        if not all(_HOST_LABEL.match(label) for label in host.split(".")):
            raise TargetRefused("url_format", f"{raw_host!r} is not a valid host name")
    if port == 0:
        raise TargetRefused("url_format", "port 0 is not a valid port")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if any(ch in target for ch in "\r\n\t ") or any(ord(ch) < 32 for ch in target):
        raise TargetRefused("url_format", "the URL path contains whitespace or control characters")
    return ResolvedTarget(
        url=url.strip(),
        scheme=scheme,
        host=host,
        port=port if port is not None else (443 if scheme == "https" else 80),
        target=target,
    )


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return [str(info[4][0]) for info in infos]


def _is_special_name(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost") or host in METADATA_HOSTS


async def resolve_public(
    url: str,
    allowed: Sequence[tuple[str, int]] | AllowList,
    *,
    resolver: Resolver | None = None,
) -> ResolvedTarget:
    """Parse, resolve and check a webhook URL; the result lists the addresses to connect to.

    Every resolved address must be public, or allow-listed on the URL's port (itself, or its
    network), or belong to a host name allow-listed on that port (cloud metadata addresses
    excepted: they must be listed exactly). Raises TargetRefused (rules url_scheme,
    url_credentials, url_format, url_unresolvable, ssrf_forbidden_target)."""
    allow = allowed if isinstance(allowed, AllowList) else AllowList.of(allowed)
    parsed = parse_target(url)
    host_allowed = allow.allows_host(parsed.host, parsed.port)
    if _is_special_name(parsed.host) and not host_allowed:
        raise TargetRefused(
            "ssrf_forbidden_target",
            f"{parsed.host} is a loopback or cloud metadata name: webhook targets must be "
            "public (an operator can allow-list a target)",
        )
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
            found = await (resolver or system_resolver)(parsed.host, parsed.port)
    except TimeoutError as exc:
        raise TargetRefused("url_unresolvable", f"resolving {parsed.host} timed out") from exc
    except (OSError, UnicodeError) as exc:
        raise TargetRefused("url_unresolvable", f"{parsed.host} does not resolve") from exc
    addresses: list[IPAddress] = []
    for text in found:
        ip = _ip(text)
        if ip is not None and ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise TargetRefused("url_unresolvable", f"{parsed.host} does not resolve")
    for ip in addresses:
        reason = forbidden_reason(ip)
        if reason is None or allow.allows_address(ip, parsed.port):
            continue
        if host_allowed and ip not in METADATA_ADDRESSES:
            continue
        shown = parsed.host if parsed.host == str(ip) else f"{parsed.host} resolves to {ip}:"
        raise TargetRefused(
            "ssrf_forbidden_target",
            f"{shown} {reason}; webhook targets must be public addresses "
            "(an operator can allow-list a target)",
        )
    return ResolvedTarget(
        url=parsed.url,
        scheme=parsed.scheme,
        host=parsed.host,
        port=parsed.port,
        target=parsed.target,
        addresses=tuple(addresses),
    )


def pinned_request(
    client: httpx.AsyncClient,
    target: ResolvedTarget,
    address: IPAddress,
    *,
    method: str = "POST",
    content: bytes = b"",
    headers: Mapping[str, str] | None = None,
) -> httpx.Request:
    """A request to `address` that says it is for `target.host` (Host header, TLS SNI and
    certificate name). Over https the connection is not kept: the pool is keyed by address,
    and a connection verified for one name must not carry requests for another."""
    sent = {**(headers or {}), "Host": target.host_header}
    extensions: dict[str, str] = {}
    if target.scheme == "https":
        sent["Connection"] = "close"
        if not target.host_is_ip:
            extensions["sni_hostname"] = target.host
    return client.build_request(
        method,
        target.url_for(address),
        content=content,
        headers=sent,
        extensions=extensions,
    )


@asynccontextmanager
async def open_pinned(
    client: httpx.AsyncClient,
    target: ResolvedTarget,
    *,
    method: str = "POST",
    content: bytes = b"",
    headers: Mapping[str, str] | None = None,
) -> AsyncIterator[httpx.Response]:
    """The response (streamed, closed on exit) from the first checked address that accepts a
    connection. Redirects are never followed: a caller that follows one checks its URL again."""
    if not target.addresses:
        raise TargetRefused("url_unresolvable", "the target was not resolved")
    last: httpx.TransportError | None = None
    for address in target.addresses:
        request = pinned_request(
            client, target, address, method=method, content=content, headers=headers
        )
        try:
            response = await client.send(request, stream=True, follow_redirects=False)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            last = exc
            continue
        try:
            yield response
        finally:
            await response.aclose()
        return
    assert last is not None
    raise last


async def send_pinned(
    client: httpx.AsyncClient,
    target: ResolvedTarget,
    *,
    content: bytes,
    headers: Mapping[str, str],
    method: str = "POST",
) -> int:
    """Send to the checked addresses in turn (the next only when connecting fails); returns
    the response's status code. Redirects are never followed; at most MAX_RESPONSE_BYTES of
    the body is read."""
    async with open_pinned(
        client, target, method=method, content=content, headers=headers
    ) as response:
        received = 0
        async for chunk in response.aiter_raw():
            received += len(chunk)
            if received >= MAX_RESPONSE_BYTES:
                break
        return response.status_code
