"""End to end with real processes: a partner exchange pushes a listing, it becomes searchable
in the open catalogue, a buyer's demand matches it, and the buyer's subscriber receives the
signed match webhook, which the standardwebhooks package verifies."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from receiver import Receiver, receiving
from standardwebhooks.webhooks import Webhook

from conftest import janitor
from infra.meili import MeiliHandle
from infra.postgres import PostgresHandle
from infra.processes import ServiceProcess, start_service, wait_ready
from shared.encryption import new_key
from shared.settings import SERVICE_NAMES
from shared.webhooks import signed_headers
from support import allowed_target, bearer, free_port, real_application_numbers

pytestmark = pytest.mark.e2e


class Stack:
    def __init__(self, services: dict[str, ServiceProcess], logs: list[Path]) -> None:
        self.services = services
        self.logs = logs

    def url(self, name: str) -> str:
        return self.services[name].url


@pytest.fixture(scope="module")
def stack(
    postgres: PostgresHandle,
    template_database: str,
    meili: MeiliHandle,
    meili_key: str,
    service_key: str,
    operator_key: str,
    test_root: Path,
) -> Iterator[Stack]:
    """listing, matching and gateway as processes, the way the launcher starts them."""
    name = f"ipx_e2e_{uuid.uuid4().hex[:8]}"
    database = janitor(postgres, name, template_dbname=template_database)
    database.init()
    ports = {service: free_port() for service in SERVICE_NAMES}
    env = {
        "IPX_DATABASE_URL": postgres.url(name),
        "IPX_MEILI_URL": meili.url,
        "IPX_MEILI_MASTER_KEY": meili_key,
        "IPX_MEILI_INDEX": f"catalogue_{uuid.uuid4().hex[:8]}",
        "IPX_SERVICE_KEY": service_key,
        "IPX_SECRET_KEYS": new_key(),
        "IPX_OPERATOR_KEY": operator_key,
        "IPX_LOG_LEVEL": "INFO",  # every line a service writes, so the secrets check means it
        **{f"IPX_{s.upper()}_URL": f"http://127.0.0.1:{p}" for s, p in ports.items()},
    }
    services: dict[str, ServiceProcess] = {}
    try:
        for service, port in ports.items():
            services[service] = start_service(
                service,
                port=port,
                env=env,
                log_path=test_root / f"e2e-{service}.log",
            )
        for process in services.values():
            wait_ready(process)
        yield Stack(services, [test_root / f"e2e-{service}.log" for service in ports])
    finally:
        for process in services.values():
            process.stop()
        database.drop()


def catalogue_document(identifier: str, listing_id: str, version: int) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {
        "schema": "ipx.catalogue/v1",
        "offer_id": f"tjipe:{listing_id}",
        "source": {
            "exchange": "tjipe",
            "listing_id": listing_id,
            "url": f"https://tj.example.cn/listings/{listing_id}",
            "updated_at": now,
            "version": version,
        },
        "asset": {
            "kind": "invention_patent",
            "identifier": identifier,
            "title": {"zh": "一种虚拟现实头戴显示装置", "en": None},
            "abstract": {"zh": "本发明公开了一种虚拟现实头戴显示装置，包括显示模组和光学透镜。"},
            "classifications": {"ipc": ["G02B 27/01"]},
            "holders": [{"name": "天津大学", "region": "120104"}],
            "filed_on": f"{identifier[:4]}-03-01",
            "legal_status": "granted",
        },
        "transaction": {
            "type": "exclusive_license",
            "price": {"mode": "fixed", "amount": "1500000.00"},
        },
        "status": "published",
        "published_at": now,
        "seller": "天津大学",
    }


async def eventually(check: Any, seconds: float = 30.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.1)


async def test_a_partner_push_reaches_a_buyer_as_a_signed_match_webhook(
    stack: Stack, operator_key: str, service_key: str
) -> None:
    operator = bearer(operator_key)
    async with httpx.AsyncClient(timeout=20) as http, receiving(Receiver()) as subscriber:
        gateway, listing, matching = (stack.url(s) for s in ("gateway", "listing", "matching"))
        partner = await http.post(
            f"{gateway}/v1/partners",
            headers=operator,
            json={
                "code": "tjipe",
                "name": "天津知识产权交易中心",
                "region": "120000",
                "adapter": "canonical",
            },
        )
        assert partner.status_code == 201, partner.text
        secret = partner.json()["inbound_secret"]

        buyer = (
            await http.post(
                f"{listing}/v1/organizations",
                json={"name": "北京某显示科技有限公司", "kind": "enterprise", "region": "110108"},
            )
        ).json()
        buyer_key = buyer["api_key"]["key"]
        allowed = await http.post(
            f"{gateway}/v1/webhook-targets",
            json=allowed_target(subscriber.url, organization_id=buyer["organization"]["id"]),
            headers=operator,
        )
        assert allowed.status_code == 201, allowed.text
        demand = await http.post(
            f"{matching}/v1/demands",
            headers=bearer(buyer_key),
            json={
                "title": "虚拟现实头戴显示技术",
                "text": "需要虚拟现实头戴显示装置的独占许可，预算200万元",
                "budget_max": "2000000.00",
                "transaction_types": ["exclusive_license"],
            },
        )
        assert demand.status_code == 201, demand.text
        subscription = await http.post(
            f"{gateway}/v1/subscriptions",
            headers=bearer(buyer_key),
            json={"url": subscriber.url, "event_types": ["match.created"]},
        )
        assert subscription.status_code == 201, subscription.text
        webhook_secret = subscription.json()["secret"]

        identifier = next(real_application_numbers("invention_patent"))
        body = json.dumps(
            catalogue_document(identifier, "TJ-2026-0001", 1), ensure_ascii=False
        ).encode()
        pushed = await http.post(
            f"{gateway}/v1/inbound/tjipe",
            content=body,
            headers=signed_headers(secret, "msg_tj_0001", body),
        )
        assert pushed.status_code == 202, pushed.text

        async def searchable() -> Any:
            found = await http.get(f"{gateway}/v1/catalogue/search", params={"q": identifier})
            items = found.json()["items"] if found.status_code == 200 else []
            return items[0] if items else None

        hit = await eventually(searchable)
        assert hit["offer_id"] == "tjipe:TJ-2026-0001" and hit["exchange"] == "tjipe"

        await subscriber.wait_for(
            lambda r: bool(r.delivered()), seconds=30, what="the match webhook"
        )
        request = subscriber.delivered()[0]
        payload = Webhook(webhook_secret).verify(request.body, request.headers)
        assert payload["type"] == "match.created"
        assert payload["data"]["demand_id"] == demand.json()["id"]
        assert payload["data"]["listing"]["offer_id"] == "tjipe:TJ-2026-0001"
        reasons = {r["factor"] for r in payload["data"]["reasons"]}
        assert {"text", "budget", "transaction_type"} <= reasons

    # No secret of the flow is in any service's log (keys, signing secrets, the signature).
    logs = "".join(path.read_text(errors="replace") for path in stack.logs)
    assert "GET /v1/catalogue/search" in logs  # the access log was on: the check reads lines
    secrets = [
        operator_key,
        service_key,
        buyer_key,
        secret,
        webhook_secret,
        request.headers["webhook-signature"],
    ]
    for value in secrets:
        assert value not in logs
        # Nor a part of one: the last 16 characters are inside each one's random part (the part
        # after the last "_" was the check, and a random part may hold a "_" itself: a 1-letter
        # tail then "was found" in any log).
        assert value[-16:] not in logs
