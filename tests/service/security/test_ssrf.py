"""The SSRF guard of webhooks, at subscription and at delivery time, on the in-process
gateway."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import httpx
from receiver import Receiver, receiving

from service.security.helpers import World, disallow_local, publish
from services.gateway.webhooks.ssrf import forbidden_reason
from support import allow_local, allowed_target, assert_problem, bearer, eventually


def own_host_name() -> tuple[str, bool]:
    """This machine's name, and whether it resolves to an address webhooks must not reach
    (names in /etc/hosts resolve to loopback on most machines: a real resolution, no DNS)."""
    name = socket.gethostname()
    try:
        infos = socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)
    except OSError:
        return name, False
    addresses = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}
    return name, any(forbidden_reason(a) is not None for a in addresses)


async def test_names_and_forms_of_private_addresses_are_refused_at_subscription(
    gateway: httpx.AsyncClient, world: World, operator_key: str
) -> None:
    await disallow_local(gateway, operator_key, world.buyer_id)
    refused = [
        "http://0x7f000001/hook",  # hex 127.0.0.1
        "http://017700000001/hook",  # octal 127.0.0.1
        "http://127.1:8080/",
        "http://127.0.0.1./",
        "http://2852039166/latest/meta-data/",  # decimal 169.254.169.254
        "http://0251.0376.0251.0376/",  # octal 169.254.169.254
        "http://0xa9.0xfe.0xa9.0xfe/",  # hex 169.254.169.254
        "http://[::ffff:a9fe:a9fe]/",  # IPv4-mapped 169.254.169.254
        "http://[::ffff:10.0.0.1]/",
        "http://[::ffff:a00:1]/",
        "http://[0:0:0:0:0:ffff:7f00:1]/",
        "http://167772161/",  # decimal 10.0.0.1
        "http://10.1/",
        "http://0/",
        "http://１２７.０.０.１/",  # full-width digits
        "http://LOCALHOST./",
        "http://metadata/",
        "http://instance-data/latest/",
        "http://[fd00:ec2::254]/",
    ]
    name, private = own_host_name()
    if private:
        refused.append(f"http://{name}:9/hook")  # a name that resolves to a private address
    for url in refused:
        body = assert_problem(
            await gateway.post(
                "/v1/subscriptions",
                json={"url": url, "event_types": ["listing.published"]},
                headers=bearer(world.buyer),
            ),
            422,
        )
        assert [(e["field"], e["rule"]) for e in body["errors"]] == [
            ("url", "ssrf_forbidden_target")
        ], url
    # Allowing the loopback address does not let metadata or other private forms in.
    await allow_local(gateway, operator_key, world.buyer_id, "http://127.0.0.1/")
    try:
        for url in ("http://2852039166/", "http://[::ffff:10.0.0.1]/", "http://127.0.0.2/"):
            body = assert_problem(
                await gateway.post(
                    "/v1/subscriptions",
                    json={"url": url, "event_types": ["deal.closed"]},
                    headers=bearer(world.buyer),
                ),
                422,
            )
            assert body["errors"][0]["rule"] == "ssrf_forbidden_target", url
    finally:
        await disallow_local(gateway, operator_key, world.buyer_id)


async def test_a_target_no_longer_allowed_is_refused_at_delivery(
    gateway: httpx.AsyncClient,
    listing: httpx.AsyncClient,
    world: World,
    operator_key: str,
    numbers: Iterator[str],
) -> None:
    """Every attempt resolves and checks the URL again: subscriptions made while their private
    target was allow-listed (the address; and this machine's name, when it resolves to a
    private address) get nothing once the operator removes it."""
    name, private = own_host_name()
    async with receiving(Receiver()) as receiver:
        urls = [receiver.url]
        if private:
            urls.append(f"http://{name}:{receiver.port}/hooks/ipx")
        subscriptions: list[str] = []
        entries: list[str] = []
        try:
            for url in urls:
                added = await gateway.post(
                    "/v1/webhook-targets",
                    json=allowed_target(url, organization_id=world.buyer_id),
                    headers=bearer(operator_key),
                )
                assert added.status_code == 201, added.text
                entries.append(f"/v1/webhook-targets/{added.json()['id']}")
            for url in urls:
                created = await gateway.post(
                    "/v1/subscriptions",
                    json={
                        "url": url,
                        "event_types": ["listing.published"],
                        "filter": {"region": "130600"},
                    },
                    headers=bearer(world.buyer),
                )
                assert created.status_code == 201, created.text
                subscriptions.append(f"/v1/subscriptions/{created.json()['id']}")
            for entry in entries:
                removed = await gateway.delete(entry, headers=bearer(operator_key))
                assert removed.status_code == 204  # it was listed: the subscription was made
            await publish(listing, world.seller, operator_key, next(numbers), region="130600")
            for subscription in subscriptions:

                async def attempted(path: str = subscription) -> list[dict[str, Any]]:
                    found = await gateway.get(f"{path}/deliveries", headers=bearer(world.buyer))
                    return [d for d in found.json()["items"] if d["attempt_log"]]

                (delivery,) = await eventually(attempted, f"a delivery attempt of {subscription}")
                assert delivery["status"] in ("pending", "failed")
                error = delivery["attempt_log"][0]["error"]
                assert error.startswith("ssrf_forbidden_target"), delivery
                assert delivery["last_status_code"] is None
            assert receiver.received == []  # no connection was made
        finally:
            for subscription in subscriptions:
                await gateway.delete(subscription, headers=bearer(world.buyer))
