"""Helpers the tests share (importable as `support`: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import asyncio
import csv
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from shared.settings import Settings

if TYPE_CHECKING:
    from infra.seed.records import SeedRecord


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def serve_in_process(app: FastAPI, base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The real app with its lifespan, called through httpx's ASGI transport."""
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client


def worker_host(settings: Settings) -> FastAPI:
    """An app with what `shared.workers.run_workers` needs (its settings and its own metrics
    registry), to run a worker alone as a replica would."""
    app = FastAPI()
    app.state.settings = settings
    app.state.metrics_registry = CollectorRegistry()
    return app


async def eventually(check: Callable[[], Awaitable[Any]], what: str, seconds: float = 30.0) -> Any:
    """Until `await check()` returns something truthy (returned), failing after `seconds`."""
    deadline = time.monotonic() + seconds
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {seconds}s: {what} (last: {last!r})")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem with `status`; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["type"].startswith("/problems/")
    assert body["title"]
    return cast(dict[str, Any], body)


def allowed_target(
    url: str, *, organization_id: object = None, partner_code: str | None = None
) -> dict[str, Any]:
    """The operator's allow-list entry (POST /v1/webhook-targets) that lets one tenant (an
    organisation's webhooks, or a partner's pull feed) reach `url`'s private host and port."""
    parts = httpx.URL(url)
    body: dict[str, Any] = {
        "pattern": parts.host,
        "port": parts.port or (443 if parts.scheme == "https" else 80),
    }
    if organization_id is not None:
        body["organization_id"] = str(organization_id)
    if partner_code is not None:
        body["partner_code"] = partner_code
    return body


async def allow_local(
    gateway: httpx.AsyncClient, operator_key: str, organization_id: str, url: str
) -> None:
    """The operator allow-lists a test's receiver (its host and port) for one organisation."""
    added = await gateway.post(
        "/v1/webhook-targets",
        json=allowed_target(url, organization_id=organization_id),
        headers=bearer(operator_key),
    )
    assert added.status_code == 201, added.text


async def new_organization(
    listing: httpx.AsyncClient,
    operator_key: str,
    *,
    name: str,
    region: str = "110108",
    kind: str = "university",
    uscc: str | None = None,
    verified: bool = True,
) -> tuple[str, str]:
    """Sign an organisation up (verified by the operator unless told not to): (id, admin key)."""
    body: dict[str, object] = {"name": name, "kind": kind, "region": region}
    if uscc:
        body["uscc"] = uscc
    response = await listing.post("/v1/organizations", json=body)
    assert response.status_code == 201, response.text
    org_id, key = response.json()["organization"]["id"], response.json()["api_key"]["key"]
    if verified:
        verify = await listing.patch(
            f"/v1/organizations/{org_id}", json={"verified": True}, headers=bearer(operator_key)
        )
        assert verify.status_code == 200, verify.text
    return str(org_id), str(key)


async def new_exchange(
    listing: httpx.AsyncClient, operator_key: str, *, name: str, region: str = "120000"
) -> tuple[str, str, str]:
    """A partner exchange's organisation with a partner key the operator issued:
    (id, admin key, partner key)."""
    org_id, admin_key = await new_organization(
        listing, operator_key, name=name, region=region, kind="exchange"
    )
    issued = await listing.post(
        f"/v1/organizations/{org_id}/api-keys",
        json={"name": "sync", "roles": ["partner"]},
        headers=bearer(operator_key),
    )
    assert issued.status_code == 201, issued.text
    return org_id, admin_key, str(issued.json()["key"])


def patent(
    holder: str,
    identifier: str = "201710601862.3",
    *,
    kind: str = "invention_patent",
    filed_on: str | None = None,
    **extra: object,
) -> dict[str, object]:
    """An asset document for a real CN application number, filed (unless told) in the year
    its number gives: the filing year may not be after it."""
    if filed_on is None:
        year = identifier[:4]
        filed_on = f"{year}-07-21" if year.isdigit() and year[:2] in ("19", "20") else "2017-07-21"
    return {
        "kind": kind,
        "identifier": identifier,
        "title": {"zh": "一种锂离子电池隔膜及其制备方法"},
        "classifications": {"ipc": ["H01M  2/16", "H01M10/0525"]},
        "holders": [{"name": holder, "region": "110108"}],
        "filed_on": filed_on,
        "legal_status": "granted",
        **extra,
    }


def terms(
    type_: str = "exclusive_license",
    mode: str = "fixed",
    amount: str | None = "1200000.00",
    **extra: object,
) -> dict[str, object]:
    return {"type": type_, "price": {"mode": mode, "amount": amount}, **extra}


DATA = Path(__file__).resolve().parent / "data"


def real_application_numbers(kind: str) -> Iterator[str]:
    """Real CN application numbers of `kind` (12-digit form) from tests/data, in file order."""
    with (DATA / "identifiers" / "cn_applications.csv").open() as handle:
        for row in csv.DictReader(handle):
            number = row["application_number"].removeprefix("CN")
            if row["kind"] == kind and len(number) == 14:
                yield number


def seller_records(applicant: str, count: int) -> list[SeedRecord]:
    """The first `count` real seed records, granted or pending, whose first applicant is
    `applicant` (the data set must hold that many)."""
    from infra.seed.records import load_records

    lawful = [
        r
        for r in load_records()
        if r.asset.legal_status in ("granted", "pending") and r.applicants[0] == applicant
    ]
    assert len(lawful) >= count
    return lawful[:count]


async def listing_changes(listing: httpx.AsyncClient, key: str) -> list[dict[str, Any]]:
    """Every event in listing's change feed, in feed order."""
    events: list[dict[str, Any]] = []
    after = "0.0"
    while True:
        page = await listing.get(
            "/v1/changes", params={"after": after, "limit": 1000}, headers=bearer(key)
        )
        assert page.status_code == 200, page.text
        body = page.json()
        if not body["events"]:
            return events
        events += body["events"]
        after = body["next_cursor"]


async def listing_offers(listing: httpx.AsyncClient, service_key: str) -> list[dict[str, Any]]:
    """Every partner offer listing holds (every status), page by page, in its order."""
    items: list[dict[str, Any]] = []
    token = ""
    while True:
        response = await listing.get(
            "/v1/offers",
            params={"page_size": 1000, "page_token": token},
            headers=bearer(service_key),
        )
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        token = page["next_page_token"]
        if not token:
            return items


async def wait_indexed(
    matching: httpx.AsyncClient, key: str, seconds: float = 30.0
) -> dict[str, object]:
    """Until the indexer has caught up with the listing feed; returns the index status."""
    deadline = time.monotonic() + seconds
    status: dict[str, object] = {}
    while time.monotonic() < deadline:
        response = await matching.get("/v1/index/status", headers=bearer(key))
        if response.status_code == 200:
            status = response.json()
            if status["lag_events"] == 0 and status["cursor"] == status["feed_head"]:
                return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"the index did not catch up: {status}")


async def publish_records(
    listing: httpx.AsyncClient, operator_key: str, seller_id: str, records: list[Any]
) -> None:
    """Publish real seed records (infra.seed.records.SeedRecord) as the seller's listings,
    through the operator's publishing import (terms as the demo seed chooses them)."""
    from infra.seed.demo import demo_import_line

    lines = [demo_import_line(r) for r in records]
    report = await listing.post(
        "/v1/imports",
        params={"mode": "publish", "seller_id": seller_id},
        content="\n".join(lines).encode(),
        headers={**bearer(operator_key), "Content-Type": "application/x-ndjson"},
    )
    assert report.json()["created"] == len(records), report.text


async def publish_listing(
    listing: httpx.AsyncClient, seller_key: str, operator_key: str, body: dict[str, Any]
) -> str:
    """Create a listing as its seller, submit it and approve it as the operator: its id."""
    created = await listing.post("/v1/listings", json=body, headers=bearer(seller_key))
    assert created.status_code == 201, created.text
    listing_id = str(created.json()["id"])
    await submit_and_approve(listing, seller_key, operator_key, listing_id)
    return listing_id


async def submit_and_approve(
    listing: httpx.AsyncClient, seller_key: str, operator_key: str, listing_id: str
) -> dict[str, Any]:
    """Submit a draft as its seller and approve it as the operator: the published listing."""
    submitted = await listing.post(f"/v1/listings/{listing_id}/submit", headers=bearer(seller_key))
    assert submitted.status_code == 200, submitted.text
    approved = await listing.post(
        f"/v1/listings/{listing_id}/approve", headers=bearer(operator_key)
    )
    assert approved.status_code == 200, approved.text
    published: dict[str, Any] = approved.json()
    return published


def partner_document(
    exchange: str,
    listing_id: str,
    number: str,
    version: int = 1,
    *,
    status: str = "published",
    amount: str = "1200000.00",
    transaction_type: str = "exclusive_license",
    price_mode: str = "fixed",
    typed: str | None = None,
) -> dict[str, Any]:
    """A partner's canonical catalogue document for a real application number (`typed`: the
    number as the partner wrote it)."""
    return {
        "schema": "ipx.catalogue/v1",
        "offer_id": f"{exchange}:{listing_id}",
        "source": {
            "exchange": exchange,
            "listing_id": listing_id,
            "url": f"https://{exchange}.example/listings/{listing_id}",
            "updated_at": (datetime(2026, 11, 1, tzinfo=UTC) + timedelta(hours=version))
            .isoformat()
            .replace("+00:00", "Z"),
            "version": version,
        },
        "asset": {
            "kind": "invention_patent",
            "identifier": typed or number,
            "title": {"zh": "一种神经网络运算装置"},
            "classifications": {"ipc": ["G06N 3/063"]},
            "holders": [{"name": "中科寒武纪科技股份有限公司", "region": "110108"}],
            "filed_on": f"{number[:4]}-06-01",
            "legal_status": "granted",
        },
        "transaction": {
            "type": transaction_type,
            "price": {
                "mode": price_mode,
                "amount": amount if price_mode == "fixed" else None,
                "currency": "CNY",
            },
            "term_months": 60,
        },
        "status": status,
    }


def nonexclusive_offer(
    exchange: str, listing_id: str, number: str, version: int = 1
) -> dict[str, Any]:
    """A partner's non-exclusive licence offer: any number of them may share an asset."""
    return partner_document(
        exchange,
        listing_id,
        number,
        version,
        amount="800000.00",
        transaction_type="nonexclusive_license",
    )


async def wait_matched(
    matching: httpx.AsyncClient, key: str, seconds: float = 30.0
) -> dict[str, object]:
    """Until the indexer has caught up and the match worker has matched every listing it
    queued (their matches and match events are committed); returns the index status."""
    deadline = time.monotonic() + seconds
    status = await wait_indexed(matching, key, seconds)
    while time.monotonic() < deadline:
        response = await matching.get("/v1/index/status", headers=bearer(key))
        if response.status_code == 200:
            status = cast(dict[str, object], response.json())
            if status["matches_pending"] == 0:
                return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"the match queue did not drain: {status}")
