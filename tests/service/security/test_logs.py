"""Secrets kept out of logs: keys, signing secrets and signatures of a whole flow never
reach the services' logs at DEBUG."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from receiver import Receiver, receiving
from sqlalchemy import text

from service.security.helpers import (
    World,
    disallow_local,
    offer_of,
    publish,
    push,
    register_partner,
    secret_part,
)
from shared.logging import configure_logging
from shared.settings import Settings
from support import (
    allow_local,
    assert_problem,
    bearer,
    eventually,
    new_organization,
    nonexclusive_offer,
)


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.formatter = logging.Formatter("%(levelname)s %(name)s %(message)s")

    def emit(self, record: logging.LogRecord) -> None:
        # The formatted line with any traceback, and the raw fields, so nothing escapes.
        self.lines.append(self.format(record))
        self.lines.append(repr({k: v for k, v in record.__dict__.items() if k != "exc_info"}))


@pytest.fixture
def debug_logs() -> Iterator[Capture]:
    """The services' own logging set up at DEBUG (as `ipx serve` does), plus a capture."""
    root = logging.getLogger()
    saved = (root.level, root.handlers[:], logging.getLogger("httpx").level)
    configure_logging("DEBUG", "text")
    capture = Capture()
    root.addHandler(capture)
    try:
        yield capture
    finally:
        root.handlers[:] = saved[1]
        root.setLevel(saved[0])
        logging.getLogger("httpx").setLevel(saved[2])


async def test_no_secret_reaches_the_logs_at_debug(
    debug_logs: Capture,
    listing_app: FastAPI,
    listing: httpx.AsyncClient,
    matching: httpx.AsyncClient,
    gateway: httpx.AsyncClient,
    world: World,
    operator_key: str,
    service_key: str,
    settings: Settings,
    numbers: Iterator[str],
) -> None:
    secrets: list[str] = [operator_key, service_key, settings.meili_master_key.get_secret_value()]
    # Keys: a sign-up, an issued key, a rotation; used on all three services.
    org_id, admin = await new_organization(listing, operator_key, name="燕山大学", region="130300")
    issued = await listing.post(
        f"/v1/organizations/{org_id}/api-keys",
        json={"name": "m", "roles": ["member"]},
        headers=bearer(admin),
    )
    member = issued.json()["key"]
    rotated = await listing.post(
        f"/v1/organizations/{org_id}/api-keys/{issued.json()['id']}/rotate", headers=bearer(admin)
    )
    member_new = rotated.json()["key"]
    secrets += [admin, member, member_new]
    assert (await matching.get("/v1/demands", headers=bearer(member_new))).status_code == 200
    assert (await gateway.get("/v1/subscriptions", headers=bearer(admin))).status_code == 200
    # Failing requests: a revoked key, a forged one, introspection by a non-service caller.
    assert_problem(await matching.get("/v1/demands", headers=bearer(member)), 401)
    assert_problem(await gateway.get("/v1/subscriptions", headers=bearer(member + "x")), 401)
    assert_problem(
        await listing.post("/v1/auth/introspect", json={"token": admin}, headers=bearer(admin)), 403
    )

    # A partner: its signing secret, a signed push, a push signed with the wrong secret.
    code = "p" + uuid.uuid4().hex[:8]
    inbound_secret = await register_partner(gateway, operator_key, code)
    rotated_partner = await gateway.patch(
        f"/v1/partners/{code}", json={"rotate_secret": True}, headers=bearer(operator_key)
    )
    new_inbound = rotated_partner.json()["inbound_secret"]
    secrets += [inbound_secret, new_inbound]
    document = nonexclusive_offer(code, "L-1", next(numbers))
    accepted, push_headers = await push(gateway, code, new_inbound, document)
    assert accepted.status_code == 202, accepted.text
    refused, bad_headers = await push(gateway, code, inbound_secret, document)
    assert_problem(refused, 401)
    secrets += [push_headers["webhook-signature"], bad_headers["webhook-signature"]]

    # Failing requests with a secret in flight: four registrations of one code at once (each
    # made its own secret; the losers' INSERTs fail on the key) are one 201 and three 409s.
    racing = "p" + uuid.uuid4().hex[:8]
    answers = await asyncio.gather(
        *(
            gateway.post(
                "/v1/partners",
                json={"code": racing, "name": "并发", "region": "120000"},
                headers=bearer(operator_key),
            )
            for _ in range(4)
        )
    )
    assert sorted(a.status_code for a in answers) == [201, 409, 409, 409], answers
    secrets += [a.json()["inbound_secret"] for a in answers if a.status_code == 201]
    # A database error's own text, as the error handler would log it, has no values in it
    # (every service's engine comes from shared.db.create_engine; here listing's).
    engine = listing_app.state.engine
    with pytest.raises(Exception) as failed:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO gateway.partners (code, name, region, status, inbound_secret, "
                    "adapter, pull_interval_seconds, pull_failures, created_at, updated_at) "
                    "VALUES (:code, 'x', '120000', 'active', :secret, 'canonical', 60, 0, "
                    "now(), now())"
                ),
                {"code": racing, "secret": secrets[-1]},
            )
    assert "duplicate key" in str(failed.value)
    assert secrets[-1] not in str(failed.value)

    # A subscription: its secret, and the signature of what it receives.
    async with receiving(Receiver()) as receiver:
        await allow_local(gateway, operator_key, org_id, receiver.url)
        subscription = await gateway.post(
            "/v1/subscriptions",
            json={
                "url": receiver.url,
                "event_types": ["listing.published"],
                "filter": {"region": "130300"},
            },
            headers=bearer(admin),
        )
        assert subscription.status_code == 201, subscription.text
        secrets.append(subscription.json()["secret"])
        await publish(listing, world.seller, operator_key, next(numbers), region="130300")
        await receiver.wait_for(lambda r: len(r.delivered()) >= 1, what="a delivery")
        secrets.append(receiver.received[0].headers["webhook-signature"])
        await gateway.delete(
            f"/v1/subscriptions/{subscription.json()['id']}", headers=bearer(admin)
        )
    await disallow_local(gateway, operator_key, org_id)
    await eventually(
        lambda: offer_of(listing, service_key, f"{code}:L-1"), "the push reached listing"
    )

    logs = "\n".join(debug_logs.lines)
    assert len(debug_logs.lines) > 10  # the capture did see the flow's records
    for value in filter(None, secrets):
        for part in {value, secret_part(value)}:
            assert len(part) >= 16 and part not in logs, f"a secret is in the logs: {part[:8]}…"
        # The signature header's base64 value without its version prefix too.
        for signature in value.split(" "):
            if signature.startswith("v1,"):
                assert signature[3:] not in logs
