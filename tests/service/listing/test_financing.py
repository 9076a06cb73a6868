"""IP-backed financing on the real stack (PostgreSQL, the three apps, real webhook
receivers): banks and agencies as organisations, requests checked against every pledge
registration refusal ground (nothing stored), offers from verified banks with their figures
kept to the parties, one accept winning a race, and the pledge through the registry's states as
an encumbrance on its rights, on the change feed and to its parties' webhooks."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from receiver import Receiver, receiving
from sqlalchemy import text

from services.listing.dependencies import today_in_china
from services.listing.financing.rules import pledge_ends_on
from services.listing.open_licences.rules import add_months
from support import (
    allow_local,
    assert_problem,
    bearer,
    eventually,
    listing_changes,
    new_organization,
    patent,
    real_application_numbers,
    submit_and_approve,
    terms,
)

HOLDER = "北京航空航天大学"
CO_HOLDER = "北京航天测控技术有限公司"
BANK = "中国银行股份有限公司河北省分行"
OTHER_BANK = "河北银行股份有限公司"
Org = tuple[str, str]
TABLES = (
    "financing_requests",
    "financing_request_assets",
    "valuation_reports",
    "financing_offers",
    "pledges",
)


def numbers(first_year: str = "2014", last_year: str = "2022") -> Iterator[str]:
    return (
        n for n in real_application_numbers("invention_patent") if first_year <= n[:4] <= last_year
    )


NUMBERS = numbers()


@pytest.fixture(scope="module")
async def holder(listing: httpx.AsyncClient, operator_key: str) -> Org:
    return await new_organization(listing, operator_key, name=HOLDER, region="110108")


@pytest.fixture(scope="module")
async def bank(listing: httpx.AsyncClient, operator_key: str) -> Org:
    return await new_organization(listing, operator_key, name=BANK, kind="bank", region="130102")


@pytest.fixture(scope="module")
async def other_bank(listing: httpx.AsyncClient, operator_key: str) -> Org:
    return await new_organization(
        listing, operator_key, name=OTHER_BANK, kind="bank", region="130104"
    )


@pytest.fixture(scope="module")
async def outsider(listing: httpx.AsyncClient, operator_key: str) -> Org:
    return await new_organization(
        listing, operator_key, name="天津某贸易有限公司", kind="enterprise", region="120000"
    )


async def register(
    listing: httpx.AsyncClient, key: str, number: str | None = None, **extra: Any
) -> dict[str, Any]:
    holders = extra.pop("holders", [{"name": HOLDER, "region": "110108"}])
    asset = patent(HOLDER, number or next(NUMBERS), holders=holders, **extra)
    if "granted_on" not in asset and asset["legal_status"] == "granted":
        asset["granted_on"] = f"{int(str(asset['filed_on'])[:4]) + 2}-05-05"
    response = await listing.post("/v1/assets", json=asset, headers=bearer(key))
    assert response.status_code in (200, 201), response.text
    created: dict[str, Any] = response.json()
    return created


def valuation(asset_id: str, **overrides: Any) -> dict[str, Any]:
    body = {
        "asset_id": asset_id,
        "agency": "中联资产评估集团有限公司",
        "method": "income",
        "value": "3200000.00",
        "valued_on": (today_in_china() - timedelta(days=20)).isoformat(),
        "document_sha256": hashlib.sha256(asset_id.encode()).hexdigest(),
    }
    body.update(overrides)
    return body


def request_body(*asset_ids: str, **overrides: Any) -> dict[str, Any]:
    fee_due = add_months(today_in_china(), 5).isoformat()
    body: dict[str, Any] = {
        "assets": [{"asset_id": a, "annual_fee_due_on": fee_due} for a in asset_ids],
        "amount": "2000000.00",
        "term_months": 12,
        "purpose": "研发投入与生产线改造",
        "valuations": [valuation(a) for a in asset_ids],
    }
    body.update(overrides)
    return body


def offer_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "amount": "1800000.00",
        "rate": "0.0365",
        "term_months": 12,
        "conditions": "按季付息，到期还本",
    }
    body.update(overrides)
    return body


async def counts(app: FastAPI) -> dict[str, int]:
    async with app.state.engine.connect() as conn:
        return {
            table: int(
                (await conn.execute(text(f"SELECT count(*) FROM listing.{table}"))).scalar_one()
            )
            for table in TABLES
        }


async def ask(listing: httpx.AsyncClient, key: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await listing.post("/v1/financing/requests", json=body, headers=bearer(key))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def offer(
    listing: httpx.AsyncClient, key: str, request_id: str, **overrides: Any
) -> dict[str, Any]:
    response = await listing.post(
        f"/v1/financing/requests/{request_id}/offers",
        json=offer_body(**overrides),
        headers=bearer(key),
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def refused(
    listing: httpx.AsyncClient,
    app: FastAPI,
    key: str,
    body: dict[str, Any],
    status: int,
    rule: str,
    field: str,
) -> None:
    """The request is refused naming the rule and the field, and nothing is stored."""
    before = await counts(app)
    response = await listing.post("/v1/financing/requests", json=body, headers=bearer(key))
    problem = assert_problem(response, status)
    assert (rule, field) in [(e["rule"], e["field"]) for e in problem["errors"]], problem
    assert await counts(app) == before


async def feed_until(
    listing: httpx.AsyncClient, key: str, seen: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """The whole change feed once it holds what `seen` looks for: the feed hands out a
    transaction's events once every transaction older than it has ended."""

    async def read() -> list[dict[str, Any]] | None:
        events = await listing_changes(listing, key)
        return events if seen(events) else None

    found: list[dict[str, Any]] = await eventually(read, "the events reach the change feed")
    return found


# --------------------------------------------------------------------------- organisations


async def test_banks_guarantors_and_valuation_agencies_are_verified_by_operators(
    listing: httpx.AsyncClient, operator_key: str
) -> None:
    for name, kind in (
        ("中国建设银行股份有限公司天津市分行", "bank"),
        ("河北省融资担保集团有限公司", "guarantor"),
        ("北京中企华资产评估有限责任公司", "valuation_agency"),
    ):
        signed = await listing.post(
            "/v1/organizations", json={"name": name, "kind": kind, "region": "120000"}
        )
        assert signed.status_code == 201, signed.text
        organization = signed.json()["organization"]
        assert (organization["kind"], organization["verified"]) == (kind, False)
        queue = await listing.get(
            "/v1/organizations",
            params={"verified": "false", "kind": kind},
            headers=bearer(operator_key),
        )
        assert organization["id"] in [o["id"] for o in queue.json()["items"]]
        own_key = signed.json()["api_key"]["key"]
        assert_problem(
            await listing.patch(
                f"/v1/organizations/{organization['id']}",
                json={"verified": True},
                headers=bearer(own_key),
            ),
            403,
        )
        verified = await listing.patch(
            f"/v1/organizations/{organization['id']}",
            json={"verified": True},
            headers=bearer(operator_key),
        )
        assert verified.status_code == 200, verified.text
        assert verified.json()["verified"] is True


# --------------------------------------------------------------------------- the loan


async def test_request_offers_accept_register_change_repay(
    listing: httpx.AsyncClient,
    gateway: httpx.AsyncClient,
    listing_app: FastAPI,
    operator_key: str,
    service_key: str,
    holder: Org,
    bank: Org,
    other_bank: Org,
    outsider: Org,
) -> None:
    today = today_in_china()
    async with (
        receiving(Receiver()) as holder_hook,
        receiving(Receiver()) as bank_hook,
        receiving(Receiver()) as outsider_hook,
    ):
        for org, hook in ((holder, holder_hook), (bank, bank_hook), (outsider, outsider_hook)):
            await allow_local(gateway, operator_key, org[0], hook.url)
            subscribed = await gateway.post(
                "/v1/subscriptions",
                json={
                    "url": hook.url,
                    "event_types": ["pledge.filed", "pledge.registered", "pledge.cancelled"],
                },
                headers=bearer(org[1]),
            )
            assert subscribed.status_code == 201, subscribed.text

        # A portfolio of two rights, one held with a co-holder who joins as pledgor; one of
        # them on the market (a non-exclusive licence) before the pledge.
        solo = await register(listing, holder[1])
        joint = await register(
            listing,
            holder[1],
            holders=[{"name": HOLDER, "region": "110108"}, {"name": CO_HOLDER}],
        )
        draft = await listing.post(
            "/v1/listings",
            json={"asset_id": solo["id"], "transaction": terms("nonexclusive_license")},
            headers=bearer(holder[1]),
        )
        assert draft.status_code == 201, draft.text
        body = request_body(solo["id"], joint["id"], pledgors=[{"name": CO_HOLDER}])
        request = await ask(listing, holder[1], body)
        assert request["status"] == "open"
        assert [a["asset_id"] for a in request["assets"]] == [solo["id"], joint["id"]]
        assert request["ends_on"] == (add_months(today, 12) - timedelta(days=1)).isoformat()
        assert len(request["valuations"]) == 2

        # Verified banks find it (by kind); an outsider and an unverified bank do not.
        found = await listing.get(
            "/v1/financing/requests",
            params={"kind": "invention_patent"},
            headers=bearer(bank[1]),
        )
        assert request["id"] in [r["id"] for r in found.json()["items"]]
        none = await listing.get(
            "/v1/financing/requests", params={"kind": "trademark"}, headers=bearer(bank[1])
        )
        assert request["id"] not in [r["id"] for r in none.json()["items"]]
        for region, listed in (("11", True), ("110108", True), ("13", False)):
            by_region = await listing.get(
                "/v1/financing/requests", params={"region": region}, headers=bearer(bank[1])
            )
            assert (request["id"] in [r["id"] for r in by_region.json()["items"]]) is listed
        mine = await listing.get("/v1/financing/requests", headers=bearer(outsider[1]))
        assert request["id"] not in [r["id"] for r in mine.json()["items"]]
        url = f"/v1/financing/requests/{request['id']}"
        assert_problem(await listing.get(url, headers=bearer(outsider[1])), 404)
        unverified = await new_organization(
            listing, operator_key, name="某未核验银行", kind="bank", verified=False
        )
        assert_problem(await listing.get(url, headers=bearer(unverified[1])), 404)
        problem = assert_problem(
            await listing.post(f"{url}/offers", json=offer_body(), headers=bearer(outsider[1])),
            403,
        )
        assert problem["errors"][0]["rule"] == "not_a_verified_bank"

        # Two banks offer; each sees its own offer only, the holder sees both.
        first = await offer(listing, bank[1], request["id"])
        second = await offer(
            listing, other_bank[1], request["id"], amount="2000000.00", rate="0.0420"
        )
        assert (first["amount"], first["rate"]) == ("1800000.00", "0.036500")
        again = await listing.post(f"{url}/offers", json=offer_body(), headers=bearer(bank[1]))
        assert assert_problem(again, 409)["errors"][0]["rule"] == "offer_already_made"
        seen = await listing.get(f"{url}/offers", headers=bearer(bank[1]))
        assert [o["id"] for o in seen.json()["items"]] == [first["id"]]
        all_offers = await listing.get(f"{url}/offers", headers=bearer(holder[1]))
        assert [o["id"] for o in all_offers.json()["items"]] == [first["id"], second["id"]]
        assert_problem(
            await listing.get(f"/v1/financing/offers/{second['id']}", headers=bearer(bank[1])),
            404,
        )

        # The holder accepts the first: the pledge is filed, the second offer closed.
        accepted = await listing.post(
            f"/v1/financing/offers/{first['id']}/accept", headers=bearer(holder[1])
        )
        assert accepted.status_code == 201, accepted.text
        pledge = accepted.json()
        assert pledge["status"] == "filed"
        assert (pledge["amount"], pledge["rate"]) == ("1800000.00", "0.036500")
        assert pledge["co_pledgors"] == [{"name": CO_HOLDER, "uscc": None}]
        closed = await listing.get(
            f"/v1/financing/offers/{second['id']}", headers=bearer(other_bank[1])
        )
        assert closed.json()["status"] == "closed"
        late = await listing.post(
            f"/v1/financing/offers/{second['id']}/accept", headers=bearer(holder[1])
        )
        assert assert_problem(late, 409)["errors"][0]["rule"] == "request_not_open"
        again_request = await listing.post(
            "/v1/financing/requests", json=request_body(solo["id"]), headers=bearer(holder[1])
        )
        rules = [e["rule"] for e in assert_problem(again_request, 409)["errors"]]
        assert rules == ["already_pledged"]

        # The figures are the parties' and the operators'.
        pledge_url = f"/v1/pledges/{pledge['id']}"
        for key in (holder[1], bank[1], operator_key):
            assert (await listing.get(pledge_url, headers=bearer(key))).status_code == 200
        for key in (other_bank[1], outsider[1]):
            assert_problem(await listing.get(pledge_url, headers=bearer(key)), 404)

        # Registered: the rights carry the pledge, and the listing on one announces it.
        registered = await listing.post(
            f"{pledge_url}/registration",
            json={"registration_number": "Y2026110000123", "registered_on": today.isoformat()},
            headers=bearer(bank[1]),
        )
        assert registered.status_code == 200, registered.text
        assert registered.json()["status"] == "registered"
        until = (add_months(today, 12) - timedelta(days=1)).isoformat()
        encumbrance = {"type": "pledge", "holder": BANK, "until": until}
        for asset in (solo, joint):
            read = await listing.get(f"/v1/assets/{asset['id']}")
            assert read.json()["encumbrances"] == [encumbrance]
        listing_view = await listing.get(
            f"/v1/listings/{draft.json()['id']}", headers=bearer(holder[1])
        )
        assert listing_view.json()["asset"]["encumbrances"] == [encumbrance]
        assert_problem(
            await listing.post(
                f"{pledge_url}/registration",
                json={"registration_number": "Y2", "registered_on": today.isoformat()},
                headers=bearer(bank[1]),
            ),
            409,
        )

        # No assignment or exclusive licence without the pledgee's recorded consent.
        sale = await listing.post(
            "/v1/listings",
            json={
                "asset_id": joint["id"],
                "transaction": terms("assignment"),
                "pledge_disclosed": True,
            },
            headers=bearer(holder[1]),
        )
        assert sale.status_code == 201, sale.text
        submit = f"/v1/listings/{sale.json()['id']}/submit"
        blocked = assert_problem(await listing.post(submit, headers=bearer(holder[1])), 409)
        assert [e["rule"] for e in blocked["errors"]] == ["pledgee_consent_required"]
        assert_problem(
            await listing.post(
                f"{pledge_url}/consents",
                json={"transaction_type": "assignment"},
                headers=bearer(holder[1]),
            ),
            403,
        )
        consented = await listing.post(
            f"{pledge_url}/consents",
            json={"transaction_type": "assignment", "note": "同意转让，价款优先清偿"},
            headers=bearer(bank[1]),
        )
        assert consented.status_code == 201, consented.text
        assert consented.json()["consents"] == ["assignment"]
        assert (await listing.post(submit, headers=bearer(holder[1]))).status_code == 200

        # Changed (extended): the encumbrance runs to the new end.
        changed = await listing.post(
            f"{pledge_url}/changes",
            json={"term_months": 18, "reason": "展期六个月"},
            headers=bearer(holder[1]),
        )
        assert changed.status_code == 200, changed.text
        new_until = (add_months(today, 18) - timedelta(days=1)).isoformat()
        assert changed.json()["status"] == "changed"
        assert changed.json()["ends_on"] == new_until
        read = await listing.get(f"/v1/assets/{solo['id']}")
        assert read.json()["encumbrances"] == [{**encumbrance, "until": new_until}]

        # Repaid: the pledgee (not the pledgor) enters the cancellation; the rights are free.
        cancellation = {
            "reason": "repaid",
            "cancelled_on": today.isoformat(),
            "interest_paid": "65700.00",
        }
        assert_problem(
            await listing.post(
                f"{pledge_url}/cancellation", json=cancellation, headers=bearer(holder[1])
            ),
            403,
        )
        repaid = await listing.post(
            f"{pledge_url}/cancellation", json=cancellation, headers=bearer(bank[1])
        )
        assert repaid.status_code == 200, repaid.text
        assert (repaid.json()["status"], repaid.json()["cancellation_reason"]) == (
            "cancelled",
            "repaid",
        )
        assert repaid.json()["interest_paid"] == "65700.00"
        for asset in (solo, joint):
            read = await listing.get(f"/v1/assets/{asset['id']}")
            assert read.json()["encumbrances"] == []

        # Audited (read a page at a time), and on the feed without figures.
        history: list[tuple[str, int]] = []
        token = ""
        while True:
            page = await listing.get(
                f"{pledge_url}/history",
                params={"page_size": 2, "page_token": token},
                headers=bearer(holder[1]),
            )
            assert page.status_code == 200, page.text
            history += [(e["action"], e["version"]) for e in page.json()["items"]]
            token = page.json()["next_page_token"]
            if not token:
                break
        assert_problem(await listing.get(f"{pledge_url}/history", headers=bearer(outsider[1])), 404)
        by_bank = await listing.get(f"{pledge_url}/history", headers=bearer(bank[1]))
        assert by_bank.json()["items"][1]["actor_organization_id"] == bank[0]
        assert history == [
            ("file", 1),
            ("register", 2),
            ("consent", 3),
            ("change", 4),
            ("cancel", 5),
        ]
        changes = await feed_until(
            listing,
            service_key,
            lambda events: any(
                e["entity_id"] == pledge["id"] and e["type"] == "pledge.cancelled" for e in events
            ),
        )
        pledge_events = [e for e in changes if e["entity_id"] == pledge["id"]]
        assert [e["type"] for e in pledge_events] == [
            "pledge.filed",
            "pledge.registered",
            "pledge.changed",
            "pledge.cancelled",
        ]
        for event in pledge_events:
            assert event["entity"] == "pledge"
            assert "amount" not in event["data"] and "rate" not in event["data"]
            assert event["data"]["parties"] == [holder[0], bank[0]]
        assert pledge_events[1]["data"]["registration_number"] == "Y2026110000123"
        updates = [
            e
            for e in changes
            if e["entity_id"] == draft.json()["id"] and e["type"] == "listing.updated"
        ]
        assert [e["data"]["asset"]["encumbrances"] for e in updates] == [
            [encumbrance],
            [{**encumbrance, "until": new_until}],
            [],
        ]

        # The parties' webhooks, and nobody else's.
        expected = ["pledge.filed", "pledge.registered", "pledge.cancelled"]

        async def delivered() -> bool:
            return all(
                [r.json()["type"] for r in hook.received] == expected
                for hook in (holder_hook, bank_hook)
            )

        await eventually(delivered, "the pledge webhooks reach both parties")
        assert outsider_hook.received == []


async def test_concurrent_accepts_cannot_both_win(
    listing: httpx.AsyncClient,
    listing_app: FastAPI,
    holder: Org,
    bank: Org,
    other_bank: Org,
) -> None:
    asset = await register(listing, holder[1])
    request = await ask(listing, holder[1], request_body(asset["id"]))
    offers = [
        await offer(listing, bank[1], request["id"]),
        await offer(listing, other_bank[1], request["id"], rate="0.0350"),
    ]
    # Each offer twice, all four at once.
    answers = await asyncio.gather(
        *(
            listing.post(f"/v1/financing/offers/{o['id']}/accept", headers=bearer(holder[1]))
            for o in offers * 2
        )
    )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201, 409, 409, 409], [a.text for a in answers]
    for answer in answers:
        if answer.status_code == 409:
            assert answer.json()["errors"][0]["rule"] == "request_not_open"
    async with listing_app.state.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT status, count(*) FROM listing.financing_offers"
                    " WHERE request_id = :id GROUP BY status ORDER BY status"
                ),
                {"id": request["id"]},
            )
        ).all()
        pledges = (
            await conn.execute(
                text("SELECT count(*) FROM listing.pledges WHERE request_id = :id"),
                {"id": request["id"]},
            )
        ).scalar_one()
    assert [tuple(r) for r in rows] == [("accepted", 1), ("closed", 1)]
    assert pledges == 1


# --------------------------------------------------------------------------- refusals


async def test_each_registry_refusal_ground_stores_nothing(
    listing: httpx.AsyncClient,
    listing_app: FastAPI,
    operator_key: str,
    holder: Org,
) -> None:
    today = today_in_china()
    key = holder[1]

    async def right(**extra: Any) -> str:
        return str((await register(listing, key, **extra))["id"])

    # Every co-holder is a party.
    joint = await right(holders=[{"name": HOLDER}, {"name": CO_HOLDER}])
    await refused(
        listing, listing_app, key, request_body(joint), 422, "co_holder_not_party", "assets[0]"
    )
    stranger = request_body(await right(), pledgors=[{"name": "天津某贸易有限公司"}])
    await refused(
        listing, listing_app, key, stranger, 422, "pledgor_not_a_holder", "pledgors[0].name"
    )
    # The pledge term within the right's term: a patent filed in 2014 ends in 2034.
    old = await register(listing, key, next(numbers("2010", "2015")))
    expires = date.fromisoformat(old["expires_on"])
    months = (expires.year - today.year) * 12 + expires.month - today.month + 1
    await refused(
        listing,
        listing_app,
        key,
        request_body(old["id"], term_months=months),
        422,
        "term_past_expiry",
        "assets[0].asset_id",
    )
    # No forfeiture clause.
    await refused(
        listing,
        listing_app,
        key,
        request_body(await right(), forfeiture_clause=True),
        422,
        "forfeiture_clause",
        "forfeiture_clause",
    )
    # A patent states its annual fee's due day; a valuation report is recent.
    unstated = request_body(await right())
    unstated["assets"][0]["annual_fee_due_on"] = None
    await refused(
        listing,
        listing_app,
        key,
        unstated,
        422,
        "annual_fee_due_on_required",
        "assets[0].annual_fee_due_on",
    )
    stale_right = await right()
    stale = request_body(
        stale_right,
        valuations=[valuation(stale_right, valued_on=(today - timedelta(days=400)).isoformat())],
    )
    await refused(
        listing, listing_app, key, stale, 422, "valuation_stale", "valuations[0].valued_on"
    )
    # Granted and in force; the annual fee not in its grace period.
    await refused(
        listing,
        listing_app,
        key,
        request_body(await right(legal_status="pending")),
        409,
        "right_not_granted",
        "assets[0].legal_status",
    )
    await refused(
        listing,
        listing_app,
        key,
        request_body(await right(legal_status="lapsed")),
        409,
        "right_not_in_force",
        "assets[0].legal_status",
    )
    in_grace = request_body(await right())
    in_grace["assets"][0]["annual_fee_due_on"] = (today - timedelta(days=30)).isoformat()
    await refused(
        listing,
        listing_app,
        key,
        in_grace,
        409,
        "annual_fee_in_grace",
        "assets[0].annual_fee_due_on",
    )
    # Not pledged already (the right's record says so), not asked for twice.
    recorded = await right(encumbrances=[{"type": "pledge", "holder": "某银行", "until": None}])
    await refused(
        listing, listing_app, key, request_body(recorded), 409, "already_pledged", "assets[0]"
    )
    asked = await right()
    await ask(listing, key, request_body(asked))
    await refused(
        listing, listing_app, key, request_body(asked), 409, "financing_requested", "assets[0]"
    )
    # Not under preservation or suspension; a lifted hold no longer bars it.
    for kind, rule in (("preservation", "under_preservation"), ("suspension", "under_suspension")):
        held = await right()
        hold = await listing.post(
            "/v1/financing/holds",
            json={
                "asset_id": held,
                "type": kind,
                "reference": "(2026)京0108执保1234号",
                "since": today.isoformat(),
            },
            headers=bearer(operator_key),
        )
        assert hold.status_code == 201, hold.text
        await refused(listing, listing_app, key, request_body(held), 409, rule, "assets[0]")
        lifted = await listing.post(
            f"/v1/financing/holds/{hold.json()['id']}/lift",
            json={"lifted_on": today.isoformat()},
            headers=bearer(operator_key),
        )
        assert lifted.status_code == 200, lifted.text
        await ask(listing, key, request_body(held))
    # Only a holder asks.
    other = await new_organization(
        listing, operator_key, name="河北某新能源科技有限公司", kind="enterprise"
    )
    before = await counts(listing_app)
    problem = assert_problem(
        await listing.post(
            "/v1/financing/requests", json=request_body(await right()), headers=bearer(other[1])
        ),
        403,
    )
    assert problem["errors"][0]["rule"] == "not_a_holder"
    assert await counts(listing_app) == before


async def test_offer_refusals(
    listing: httpx.AsyncClient, listing_app: FastAPI, holder: Org, bank: Org
) -> None:
    asset = await register(listing, holder[1], next(numbers("2010", "2015")))
    request = await ask(listing, holder[1], request_body(asset["id"]))
    url = f"/v1/financing/requests/{request['id']}/offers"
    expires = date.fromisoformat(asset["expires_on"])
    today = today_in_china()
    months = (expires.year - today.year) * 12 + expires.month - today.month + 1
    before = await counts(listing_app)
    for body, rule in (
        (offer_body(forfeiture_clause=True), "forfeiture_clause"),
        (offer_body(term_months=months), "term_past_expiry"),
    ):
        answer = await listing.post(url, json=body, headers=bearer(bank[1]))
        assert assert_problem(answer, 422)["errors"][0]["rule"] == rule
    assert await counts(listing_app) == before
    withdrawn = await listing.post(
        f"/v1/financing/requests/{request['id']}/withdraw", headers=bearer(holder[1])
    )
    assert withdrawn.json()["status"] == "withdrawn"
    closed = await listing.post(url, json=offer_body(), headers=bearer(bank[1]))
    assert assert_problem(closed, 404)


async def test_a_filed_pledge_is_only_void_or_released(
    listing: httpx.AsyncClient, holder: Org, bank: Org
) -> None:
    asset = await register(listing, holder[1])
    request = await ask(listing, holder[1], request_body(asset["id"]))
    made = await offer(listing, bank[1], request["id"])
    pledge = (
        await listing.post(f"/v1/financing/offers/{made['id']}/accept", headers=bearer(holder[1]))
    ).json()
    url = f"/v1/pledges/{pledge['id']}/cancellation"
    today = today_in_china().isoformat()
    repaid = await listing.post(
        url, json={"reason": "repaid", "cancelled_on": today}, headers=bearer(bank[1])
    )
    assert assert_problem(repaid, 422)["errors"][0]["rule"] == "reason_not_allowed"
    change = await listing.post(
        f"/v1/pledges/{pledge['id']}/changes",
        json={"term_months": 6, "reason": "x"},
        headers=bearer(bank[1]),
    )
    assert assert_problem(change, 409)["current_status"] == "filed"
    void = await listing.post(
        url, json={"reason": "void", "cancelled_on": today}, headers=bearer(bank[1])
    )
    assert void.status_code == 200, void.text
    assert (await listing.get(f"/v1/assets/{asset['id']}")).json()["encumbrances"] == []
    # The right is free again.
    await ask(listing, holder[1], request_body(asset["id"]))


async def test_a_pledged_right_invalidated_raises_a_risk_event_to_the_bank(
    listing: httpx.AsyncClient,
    gateway: httpx.AsyncClient,
    operator_key: str,
    service_key: str,
    holder: Org,
    other_bank: Org,
) -> None:
    async with receiving(Receiver()) as bank_hook, receiving(Receiver()) as holder_hook:
        for org, hook in ((other_bank, bank_hook), (holder, holder_hook)):
            await allow_local(gateway, operator_key, org[0], hook.url)
            subscribed = await gateway.post(
                "/v1/subscriptions",
                json={"url": hook.url, "event_types": ["pledge.at_risk"]},
                headers=bearer(org[1]),
            )
            assert subscribed.status_code == 201, subscribed.text
        asset = await register(listing, holder[1])
        request = await ask(listing, holder[1], request_body(asset["id"]))
        made = await offer(listing, other_bank[1], request["id"])
        accepted = await listing.post(
            f"/v1/financing/offers/{made['id']}/accept", headers=bearer(holder[1])
        )
        pledge = accepted.json()
        registered = await listing.post(
            f"/v1/pledges/{pledge['id']}/registration",
            json={"registration_number": "Y2026110000200", "registered_on": pledge["filed_on"]},
            headers=bearer(other_bank[1]),
        )
        assert registered.status_code == 200, registered.text
        # A correction that changes no status or term raises nothing.
        current = (await listing.get(f"/v1/assets/{asset['id']}")).json()
        retitled = await listing.patch(
            f"/v1/assets/{asset['id']}",
            json={"title": {"en": "A separator"}},
            headers={**bearer(holder[1]), "If-Match": f'"{current["version"]}"'},
        )
        assert retitled.status_code == 200, retitled.text
        invalidated = await listing.patch(
            f"/v1/assets/{asset['id']}",
            json={"legal_status": "invalidated"},
            headers={**bearer(holder[1]), "If-Match": f'"{retitled.json()["version"]}"'},
        )
        assert invalidated.status_code == 200, invalidated.text
        changes = await feed_until(
            listing,
            service_key,
            lambda events: any(
                e["entity_id"] == pledge["id"] and e["type"] == "pledge.at_risk" for e in events
            ),
        )
        risks = [
            e for e in changes if e["entity_id"] == pledge["id"] and e["type"] == "pledge.at_risk"
        ]
        assert len(risks) == 1
        risk = risks[0]["data"]
        assert risk["parties"] == [other_bank[0]]
        assert risk["risk"]["changes"] == {"legal_status": ["granted", "invalidated"]}
        assert "amount" not in risk

        async def delivered() -> bool:
            return [r.json()["type"] for r in bank_hook.received] == ["pledge.at_risk"]

        await eventually(delivered, "the risk event reaches the bank")
        assert holder_hook.received == []


async def test_a_repaid_pledge_earns_the_interest_subsidy(
    listing: httpx.AsyncClient, operator_key: str, bank: Org
) -> None:
    """The incentives report's pledge-interest programme reads the repaid loans: a line of the
    year of repayment, the interest paid as its amount, the policy's rate of it, half up."""
    name = "石家庄某新材料有限公司"
    org = await new_organization(
        listing, operator_key, name=name, kind="enterprise", region="130102"
    )
    today = today_in_china()
    pledges = []
    for reason in ("repaid", "released"):
        asset = await register(listing, org[1], holders=[{"name": name, "region": "130102"}])
        request = await ask(listing, org[1], request_body(asset["id"]))
        made = await offer(listing, bank[1], request["id"])
        pledge = (
            await listing.post(f"/v1/financing/offers/{made['id']}/accept", headers=bearer(org[1]))
        ).json()
        registered = await listing.post(
            f"/v1/pledges/{pledge['id']}/registration",
            json={"registration_number": f"Y-{reason}", "registered_on": today.isoformat()},
            headers=bearer(bank[1]),
        )
        assert registered.status_code == 200, registered.text
        body: dict[str, Any] = {"reason": reason, "cancelled_on": today.isoformat()}
        if reason == "repaid":
            body["interest_paid"] = "65700.01"
        cancelled = await listing.post(
            f"/v1/pledges/{pledge['id']}/cancellation", json=body, headers=bearer(bank[1])
        )
        assert cancelled.status_code == 200, cancelled.text
        pledges.append(pledge)
    operator = bearer(operator_key)
    year = {"year": str(today.year)}

    deals = await listing.get(
        "/v1/incentives/deals", params={**year, "organization_id": org[0]}, headers=operator
    )
    [line] = deals.json()["items"]  # the released pledge earns nothing and is not a line
    assert line["deal_id"] == pledges[0]["id"] and line["listing_id"] is None
    assert (line["programme"], line["transaction_type"]) == ("pledge_interest", "pledge_financing")
    # 50 % of 65,700.01 is 32,850.005: half up to the cent.
    assert (line["amount"], line["rate"], line["eligible"]) == ("65700.01", "0.500000", "32850.01")
    assert (line["buyer_name"], line["confidential"]) == (BANK, True)
    assert (line["region"], line["region_group"]) == ("130102", "130100")

    page = await listing.get("/v1/incentives/organizations", params=year, headers=operator)
    [mine] = [o for o in page.json()["items"] if o["organization_id"] == org[0]]
    assert mine["programmes"]["pledge_interest"] == {
        "deal_count": 1,
        "value": "65700.01",
        "eligible": "32850.01",
    }
    report = (await listing.get("/v1/incentives", params=year, headers=operator)).json()
    rates = {r["programme"]: r["computed"] for r in report["rates"]}
    assert rates["pledge_interest"] is True

    exported = await listing.get(
        "/v1/incentives/export",
        params={**year, "format": "csv", "table": "deals"},
        headers=operator,
    )
    assert exported.status_code == 200, exported.text
    rows = list(csv.DictReader(io.StringIO(exported.content.decode("utf-8-sig"))))
    [row] = [r for r in rows if r["deal_id"] == pledges[0]["id"]]
    assert (row["listing_id"], row["eligible"]) == ("", "32850.01")
    assert Decimal(row["rate"]) == Decimal("0.5")


async def test_an_offer_on_the_market_before_the_pledge_closes_only_with_consent(
    listing: httpx.AsyncClient, operator_key: str, holder: Org, bank: Org
) -> None:
    """An exclusive licence published before the right was pledged: its deal waits for the
    pledgee's consent (the publication check alone would miss it)."""
    asset = await register(listing, holder[1])
    draft = await listing.post(
        "/v1/listings",
        json={"asset_id": asset["id"], "transaction": terms("exclusive_license")},
        headers=bearer(holder[1]),
    )
    assert draft.status_code == 201, draft.text
    published = await submit_and_approve(listing, holder[1], operator_key, draft.json()["id"])
    request = await ask(listing, holder[1], request_body(asset["id"]))
    made = await offer(listing, bank[1], request["id"])
    pledge = (
        await listing.post(f"/v1/financing/offers/{made['id']}/accept", headers=bearer(holder[1]))
    ).json()
    today = today_in_china().isoformat()
    registered = await listing.post(
        f"/v1/pledges/{pledge['id']}/registration",
        json={"registration_number": "Y2026110000300", "registered_on": today},
        headers=bearer(bank[1]),
    )
    assert registered.status_code == 200, registered.text
    deal = {
        "listing_id": published["id"],
        "buyer_name": "天津中环半导体股份有限公司",
        "amount": "1200000.00",
        "closed_on": today,
    }
    blocked = await listing.post("/v1/deals", json=deal, headers=bearer(holder[1]))
    assert [e["rule"] for e in assert_problem(blocked, 409)["errors"]] == [
        "pledgee_consent_required"
    ]
    # Consent to an assignment is not consent to an exclusive licence.
    for kind in ("assignment", "exclusive_license"):
        consented = await listing.post(
            f"/v1/pledges/{pledge['id']}/consents",
            json={"transaction_type": kind},
            headers=bearer(bank[1]),
        )
        assert consented.status_code == 201, consented.text
        answer = await listing.post("/v1/deals", json=deal, headers=bearer(holder[1]))
        assert answer.status_code == (409 if kind == "assignment" else 201), answer.text


async def test_an_accept_days_later_still_ends_within_the_right(
    listing: httpx.AsyncClient, listing_app: FastAPI, holder: Org, bank: Org
) -> None:
    """A loan accepted after its asked start runs from the acceptance: if it would then end
    after a right expires, the acceptance is refused (409 `term_past_expiry`), nothing written."""
    asset = await register(listing, holder[1], next(numbers("2010", "2015")))
    expires = date.fromisoformat(asset["expires_on"])
    today = today_in_china()
    asked = today - timedelta(days=90)  # the request was made three months ago
    months = max(m for m in range(1, 121) if pledge_ends_on(asked, m) <= expires)
    assert pledge_ends_on(today, months) > expires
    request = await ask(listing, holder[1], request_body(asset["id"]))
    async with listing_app.state.engine.begin() as conn:
        await conn.execute(
            text("UPDATE listing.financing_requests SET starts_on = :day WHERE id = :id"),
            {"day": asked, "id": request["id"]},
        )
    made = await offer(listing, bank[1], request["id"], term_months=months)
    before = await counts(listing_app)
    refused_accept = await listing.post(
        f"/v1/financing/offers/{made['id']}/accept", headers=bearer(holder[1])
    )
    problem = assert_problem(refused_accept, 409)
    assert [(e["rule"], e["field"]) for e in problem["errors"]] == [
        ("term_past_expiry", "assets[0].asset_id")
    ]
    assert await counts(listing_app) == before


async def test_a_reimport_that_lapses_a_pledged_right_warns_the_bank(
    listing: httpx.AsyncClient, service_key: str, holder: Org, bank: Org
) -> None:
    number = next(NUMBERS)
    right = patent(
        HOLDER,
        number,
        holders=[{"name": HOLDER, "region": "110108"}],
        granted_on=f"{int(number[:4]) + 2}-05-05",
    )
    created = await listing.post("/v1/assets", json=right, headers=bearer(holder[1]))
    assert created.status_code == 201, created.text
    asset = created.json()
    request = await ask(listing, holder[1], request_body(asset["id"]))
    made = await offer(listing, bank[1], request["id"])
    pledge = (
        await listing.post(f"/v1/financing/offers/{made['id']}/accept", headers=bearer(holder[1]))
    ).json()
    row = {
        "asset": {**right, "legal_status": "lapsed"},
        "transaction": terms("nonexclusive_license"),
    }
    imported = await listing.post(
        "/v1/imports",
        content=json.dumps(row, ensure_ascii=False).encode(),
        headers={**bearer(holder[1]), "Content-Type": "application/x-ndjson"},
    )
    assert imported.status_code == 201, imported.text
    assert imported.json()["rejected"] == 0, imported.text
    changes = await feed_until(
        listing,
        service_key,
        lambda events: any(
            e["entity_id"] == pledge["id"] and e["type"] == "pledge.at_risk" for e in events
        ),
    )
    [risk] = [
        e for e in changes if e["entity_id"] == pledge["id"] and e["type"] == "pledge.at_risk"
    ]
    assert risk["data"]["parties"] == [bank[0]]
    assert risk["data"]["risk"]["changes"] == {"legal_status": ["granted", "lapsed"]}
    history = await listing.get(f"/v1/pledges/{pledge['id']}/history", headers=bearer(bank[1]))
    assert [e["action"] for e in history.json()["items"]] == ["file", "at_risk"]
