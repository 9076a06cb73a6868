"""Open licences end to end on the real stack (PostgreSQL, Meilisearch, the three apps, a real
webhook subscriber): declaration -> review -> catalogue -> licence -> reminders -> recordal ->
withdrawal; every rule refused with nothing stored; the gazette's and partners' declarations
on the same asset."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from receiver import Receiver, receiving
from sqlalchemy import text

from services.listing.dependencies import today_in_china
from services.listing.open_licences.rules import add_months
from services.listing.open_licences.service import Policy
from services.listing.open_licences.workers import expire_ended, remind
from support import (
    allow_local,
    assert_problem,
    bearer,
    eventually,
    listing_changes,
    new_organization,
    partner_document,
    patent,
    real_application_numbers,
    submit_and_approve,
    terms,
    wait_indexed,
)

PATENTEE = "北京理工大学"
CO_HOLDER = "北京理工雷科电子信息技术有限公司"
LICENSEE = "天津七一二通信广播股份有限公司"
NUMBERS = real_application_numbers("invention_patent")
UTILITY_MODELS = real_application_numbers("utility_model")
Org = tuple[str, str]


@pytest.fixture(scope="module")
async def patentee(listing: httpx.AsyncClient, operator_key: str) -> Org:
    return await new_organization(listing, operator_key, name=PATENTEE, region="110108")


@pytest.fixture(scope="module")
async def licensee(listing: httpx.AsyncClient, operator_key: str) -> Org:
    return await new_organization(
        listing, operator_key, name=LICENSEE, region="120116", kind="enterprise"
    )


def royalty_terms(**values: Any) -> dict[str, Any]:
    today = today_in_china()
    body = {
        "fee_type": "royalty",
        "royalty_rate": "0.05",
        "royalty_basis": "net_sales",
        "starts_on": today.isoformat(),
        "ends_on": add_months(today, 36).isoformat(),
    }
    body.update(values)
    return {k: v for k, v in body.items() if v is not None}


def declaration(number: str | None = None, **overrides: Any) -> dict[str, Any]:
    """A declaration of a granted patent held by PATENTEE alone, registered in the call."""
    asset = patent(PATENTEE, number or next(NUMBERS), granted_on="2020-05-05")
    asset.update(overrides.pop("asset", {}))
    return {"asset": asset, "terms": royalty_terms(**overrides.pop("terms", {})), **overrides}


async def declare(listing: httpx.AsyncClient, key: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await listing.post("/v1/open-licences", json=body, headers=bearer(key))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def stored(app: FastAPI, identifier: str) -> tuple[int, int, int]:
    """(assets, listings, declarations) stored for this right."""
    async with app.state.engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM listing.assets WHERE identifier = :id),"
                    " (SELECT count(*) FROM listing.listings l JOIN listing.assets a"
                    "  ON a.id = l.asset_id WHERE a.identifier = :id),"
                    " (SELECT count(*) FROM listing.open_licence_declarations d"
                    "  JOIN listing.assets a ON a.id = d.asset_id WHERE a.identifier = :id)"
                ),
                {"id": identifier},
            )
        ).one()
    return int(row[0]), int(row[1]), int(row[2])


async def subscribe(
    gateway: httpx.AsyncClient, operator_key: str, org: Org, receiver: Receiver
) -> None:
    await allow_local(gateway, operator_key, org[0], receiver.url)
    created = await gateway.post(
        "/v1/subscriptions",
        json={
            "url": receiver.url,
            "event_types": ["licence.taken", "licence.recordal_due", "licence.recorded"],
        },
        headers=bearer(org[1]),
    )
    assert created.status_code == 201, created.text


async def test_declaration_review_catalogue_licence_reminders_recordal_withdrawal(
    listing: httpx.AsyncClient,
    matching: httpx.AsyncClient,
    gateway: httpx.AsyncClient,
    listing_app: FastAPI,
    operator_key: str,
    service_key: str,
    patentee: Org,
    licensee: Org,
) -> None:
    outsider = await new_organization(listing, operator_key, name="河北工业大学", region="130100")
    async with (
        receiving(Receiver()) as licensor_hook,
        receiving(Receiver()) as licensee_hook,
        receiving(Receiver()) as outsider_hook,
    ):
        await subscribe(gateway, operator_key, patentee, licensor_hook)
        await subscribe(gateway, operator_key, licensee, licensee_hook)
        await subscribe(gateway, operator_key, outsider, outsider_hook)

        # The declaration, as a draft, reviewed like every listing.
        declared = await declare(
            listing,
            patentee[1],
            declaration(terms={"fee_type": "entry_fee_plus_royalty", "entry_fee": "50000"}),
        )
        assert declared["status"] == "draft" and declared["flags"] == []
        assert declared["transaction"]["type"] == "open_license"
        assert declared["terms"]["entry_fee"] == "50000.00"
        declaration_id = declared["id"]
        submitted = await listing.post(
            f"/v1/listings/{declaration_id}/submit", headers=bearer(patentee[1])
        )
        assert submitted.status_code == 200, submitted.text
        queue = await listing.get(
            "/v1/open-licences", params={"status": "pending_review"}, headers=bearer(operator_key)
        )
        assert declaration_id in [d["id"] for d in queue.json()["items"]]
        approved = await listing.post(
            f"/v1/listings/{declaration_id}/approve", headers=bearer(operator_key)
        )
        assert approved.status_code == 200, approved.text

        # In the catalogue, as an offer of type open_license with its terms.
        await wait_indexed(matching, service_key)
        found = await gateway.get(
            "/v1/catalogue/search",
            params={"transaction_type": "open_license", "page_size": 50},
        )
        assert found.status_code == 200, found.text
        assert declaration_id in [h["listing_id"] for h in found.json()["items"]]
        page = await gateway.get(f"/v1/catalogue/listings/{declaration_id}")
        assert page.status_code == 200, page.text
        offered = page.json()["transaction"]
        assert offered["type"] == "open_license"
        assert offered["open_license"]["fee_type"] == "entry_fee_plus_royalty"
        assert offered["open_license"]["royalty_rate"] == "0.050000"

        # One request: the licence exists at once and the recordal package comes back.
        notice = "本公司按贵方公布的开放许可条件实施该专利。"
        taken = await listing.post(
            f"/v1/open-licences/{declaration_id}/licences",
            json={"notice": notice},
            headers={**bearer(licensee[1]), "Idempotency-Key": "take-1"},
        )
        assert taken.status_code == 201, taken.text
        licence = taken.json()
        today = today_in_china()
        due = add_months(today, 3)
        package = licence["package"]
        assert licence["status"] == "awaiting_recordal"
        assert package["licensor"]["id"] == patentee[0]
        assert package["licensee"]["id"] == licensee[0]
        assert package["patent"]["identifier"] == declared["asset"]["identifier"]
        assert package["terms"] == declared["terms"]
        assert package["notice"] == notice and package["noticed_at"]
        assert package["recordal_due_on"] == due.isoformat()
        assert licence["recordal"]["state"] == "awaiting_recordal"
        again = await listing.post(
            f"/v1/open-licences/{declaration_id}/licences",
            json={"notice": notice},
            headers={**bearer(licensee[1]), "Idempotency-Key": "take-1"},
        )
        assert again.json()["id"] == licence["id"]
        assert again.headers["Idempotent-Replayed"] == "true"

        # Reminders at 30 and 7 days before the deadline, each once, to both parties.
        policy = Policy.of(listing_app.state.settings)
        maker = listing_app.state.sessionmaker
        assert await remind(maker, today=due - timedelta(days=31), policy=policy) == 0
        assert await remind(maker, today=due - timedelta(days=30), policy=policy) == 1
        assert await remind(maker, today=due - timedelta(days=29), policy=policy) == 0
        assert await remind(maker, today=due - timedelta(days=7), policy=policy) == 1
        read = await listing.get(f"/v1/licences/{licence['id']}", headers=bearer(patentee[1]))
        assert read.json()["recordal"]["reminders_sent"] == [30, 7]

        # The recordal entered: `recorded`.
        recorded = await listing.post(
            f"/v1/licences/{licence['id']}/recordal",
            json={"recordal_number": "2027110000123", "recorded_on": today.isoformat()},
            headers=bearer(licensee[1]),
        )
        assert recorded.status_code == 200, recorded.text
        assert recorded.json()["status"] == "recorded"
        assert recorded.json()["recordal"]["state"] == "recorded"
        assert_problem(
            await listing.post(
                f"/v1/licences/{licence['id']}/recordal",
                json={"recordal_number": "2027110000123", "recorded_on": today.isoformat()},
                headers=bearer(licensee[1]),
            ),
            409,
        )
        assert await remind(maker, today=due, policy=policy) == 0

        def types(hook: Receiver) -> list[tuple[str, Any]]:
            return [
                (r.json()["type"], r.json()["data"].get("reminder_days")) for r in hook.received
            ]

        expected = [
            ("licence.taken", None),
            ("licence.recordal_due", 30),
            ("licence.recordal_due", 7),
            ("licence.recorded", None),
        ]

        async def delivered() -> bool:
            return types(licensor_hook) == expected and types(licensee_hook) == expected

        await eventually(delivered, "the licence webhooks reach both parties")
        reminder = licensee_hook.received[1].json()["data"]
        assert reminder["package"]["recordal_due_on"] == due.isoformat()
        assert reminder["recordal"]["days_left"] == 30
        assert outsider_hook.received == []
        # The public catalogue feed announces the declaration, never the licences.
        public_feed = await gateway.get("/v1/catalogue/changes", params={"limit": 1000})
        assert public_feed.status_code == 200, public_feed.text
        public_types = {e["type"] for e in public_feed.json()["events"]}
        assert "listing.published" in public_types
        assert not {t for t in public_types if t.startswith("licence.")}

    # Withdrawal is announced and leaves the licence in force; no licence after it.
    withdrawn = await listing.post(
        f"/v1/listings/{declaration_id}/withdraw", headers=bearer(patentee[1])
    )
    assert withdrawn.status_code == 200, withdrawn.text
    feed = await listing_changes(listing, service_key)
    assert ("listing.withdrawn", declaration_id) in [(e["type"], e["entity_id"]) for e in feed]
    still = await listing.get(f"/v1/licences/{licence['id']}", headers=bearer(licensee[1]))
    assert still.json()["status"] == "recorded"
    assert still.json()["package"]["ends_on"] == declared["terms"]["ends_on"]
    problem = assert_problem(
        await listing.post(
            f"/v1/open-licences/{declaration_id}/licences",
            json={"notice": notice},
            headers=bearer(outsider[1]),
        ),
        409,
    )
    assert [(e["field"], e["rule"]) for e in problem["errors"]] == [
        ("declaration_id", "declaration_not_published")
    ]
    public = await listing.get(f"/v1/open-licences/{declaration_id}")
    assert public.json()["status"] == "withdrawn" and public.json()["licences_taken"] == 1
    mine = await listing.get("/v1/licences", headers=bearer(licensee[1]))
    assert [item["id"] for item in mine.json()["items"]] == [licence["id"]]
    assert (await listing.get("/v1/licences", headers=bearer(outsider[1]))).json()["items"] == []
    assert_problem(
        await listing.get(f"/v1/licences/{licence['id']}", headers=bearer(outsider[1])), 404
    )


def _with_co_holder(body: dict[str, Any]) -> dict[str, Any]:
    body["asset"]["holders"] = [{"name": PATENTEE}, {"name": CO_HOLDER}]
    return body


def _trademark() -> dict[str, Any]:
    return {
        "asset": {
            "kind": "trademark",
            "identifier": "31234567",
            "title": {"zh": "理工"},
            "classifications": {"nice": [9]},
            "holders": [{"name": PATENTEE}],
            "filed_on": "2019-03-01",
            "granted_on": "2020-03-01",
            "legal_status": "granted",
        },
        "terms": royalty_terms(),
    }


def _old_patent() -> dict[str, Any]:
    """A utility model filed before 2016: its ten years are over."""
    number = next(n for n in real_application_numbers("utility_model") if n[:4] < "2016")
    return {
        "asset": patent(
            PATENTEE, number, kind="utility_model", granted_on=f"{int(number[:4]) + 1}-01-05"
        ),
        "terms": royalty_terms(
            evaluation_report="PJ2015110000001",
            starts_on=f"{int(number[:4]) + 2}-01-01",
            ends_on=f"{int(number[:4]) + 3}-12-31",
        ),
    }


REFUSALS: list[tuple[str, Any, int, str, str]] = [
    ("trademark", _trademark, 422, "asset.kind", "not_a_patent"),
    (
        "stranger_consents",
        lambda: declaration(consents=[{"name": "别人"}]),
        422,
        "consents[0].name",
        "consent_not_a_holder",
    ),
    ("expired", _old_patent, 409, "asset.legal_status", "right_not_in_force"),
    ("co_holder", lambda: _with_co_holder(declaration()), 422, "consents", "co_holder_consent"),
    (
        "lump_sum_missing",
        lambda: declaration(
            terms={"fee_type": "lump_sum", "royalty_rate": None, "royalty_basis": None}
        ),
        422,
        "terms.lump_sum",
        "required_for_fee_type",
    ),
    (
        "basis_missing",
        lambda: declaration(terms={"royalty_basis": None}),
        422,
        "terms.royalty_basis",
        "required_for_fee_type",
    ),
    (
        "lump_sum_with_royalty",
        lambda: declaration(terms={"lump_sum": "1000"}),
        422,
        "terms.lump_sum",
        "not_for_fee_type",
    ),
    (
        "short_term",
        lambda: declaration(
            terms={"ends_on": (add_months(today_in_china(), 12) - timedelta(days=2)).isoformat()}
        ),
        422,
        "terms.ends_on",
        "term_too_short",
    ),
    (
        "past_expiry",
        lambda: declaration(terms={"ends_on": "2099-12-31"}),
        422,
        "terms.ends_on",
        "term_past_expiry",
    ),
    (
        "no_evaluation_report",
        lambda: {
            "asset": patent(PATENTEE, next(UTILITY_MODELS), kind="utility_model"),
            "terms": royalty_terms(),
        },
        422,
        "terms.evaluation_report",
        "evaluation_report_required",
    ),
    (
        "not_granted",
        lambda: declaration(asset={"legal_status": "pending", "granted_on": None}),
        409,
        "asset.legal_status",
        "patent_not_granted",
    ),
    (
        "exclusive_in_force",
        lambda: declaration(
            asset={
                "encumbrances": [
                    {"type": "exclusive_license", "holder": "某公司", "until": "2030-01-01"}
                ]
            }
        ),
        409,
        "asset.encumbrances",
        "exclusive_license_in_force",
    ),
]


@pytest.mark.parametrize(
    ("body", "status", "field", "rule"),
    [pytest.param(*case[1:], id=case[0]) for case in REFUSALS],
)
async def test_each_rule_is_refused_naming_it_and_nothing_is_stored(
    listing: httpx.AsyncClient,
    listing_app: FastAPI,
    patentee: Org,
    body: Any,
    status: int,
    field: str,
    rule: str,
) -> None:
    request = body()
    problem = assert_problem(
        await listing.post("/v1/open-licences", json=request, headers=bearer(patentee[1])), status
    )
    assert (field, rule) in [(e["field"], e["rule"]) for e in problem["errors"]], problem
    assert await stored(listing_app, request["asset"]["identifier"]) == (0, 0, 0)


async def test_no_declaration_while_exclusive_offered_nor_exclusive_while_declared(
    listing: httpx.AsyncClient,
    listing_app: FastAPI,
    operator_key: str,
    patentee: Org,
) -> None:
    # An exclusive licence on the market: no declaration.
    number = next(NUMBERS)
    exclusive = await listing.post(
        "/v1/listings",
        json={"asset": patent(PATENTEE, number, granted_on="2020-05-05"), "transaction": terms()},
        headers=bearer(patentee[1]),
    )
    assert exclusive.status_code == 201, exclusive.text
    await submit_and_approve(listing, patentee[1], operator_key, exclusive.json()["id"])
    problem = assert_problem(
        await listing.post(
            "/v1/open-licences",
            json={"asset_id": exclusive.json()["asset_id"], "terms": royalty_terms()},
            headers=bearer(patentee[1]),
        ),
        409,
    )
    assert [(e["field"], e["rule"]) for e in problem["errors"]] == [
        ("asset_id", "exclusive_license_offered")
    ]
    assert await stored(listing_app, exclusive.json()["asset"]["identifier"]) == (1, 1, 0)

    # Declared: no new exclusive or sole licence goes to review.
    declared = await declare(listing, patentee[1], declaration())
    await submit_and_approve(listing, patentee[1], operator_key, declared["id"])
    for kind in ("exclusive_license", "sole_license"):
        draft = await listing.post(
            "/v1/listings",
            json={"asset_id": declared["asset"]["id"], "transaction": terms(kind)},
            headers=bearer(patentee[1]),
        )
        assert draft.status_code == 201, draft.text
        refused = assert_problem(
            await listing.post(
                f"/v1/listings/{draft.json()['id']}/submit", headers=bearer(patentee[1])
            ),
            409,
        )
        assert [(e["field"], e["rule"]) for e in refused["errors"]] == [
            ("transaction.type", "open_license_declared")
        ]
    # The declared terms are not edited; typed terms are declared only here.
    edit = assert_problem(
        await listing.patch(
            f"/v1/listings/{declared['id']}",
            json={
                "transaction": terms("open_license", "royalty", None, royalty_rate="0.1"),
                "version": 3,
            },
            headers=bearer(patentee[1]),
        ),
        409,
    )
    assert edit["errors"][0]["rule"] == "open_license_terms_fixed"
    sneaked = assert_problem(
        await listing.post(
            "/v1/listings",
            json={
                "asset_id": declared["asset"]["id"],
                "transaction": {
                    **terms("open_license", "royalty", None, royalty_rate="0.1"),
                    "open_license": royalty_terms(),
                },
            },
            headers=bearer(patentee[1]),
        ),
        422,
    )
    assert sneaked["errors"][0]["rule"] == "declared_through_open_licences"


async def test_terms_outside_the_guidance_are_flagged_and_co_holders_consent(
    listing: httpx.AsyncClient,
    listing_app: FastAPI,
    operator_key: str,
    patentee: Org,
    licensee: Org,
) -> None:
    body = _with_co_holder(declaration(terms={"royalty_rate": "0.25"}))
    body["consents"] = [{"name": CO_HOLDER}]
    declared = await declare(listing, patentee[1], body)
    assert [(f["field"], f["rule"]) for f in declared["flags"]] == [
        ("terms.royalty_rate", "royalty_above_guidance")
    ]
    assert declared["consents"] == [{"name": CO_HOLDER, "uscc": None}]
    # Drafts are private; the flags are the reviewer's.
    assert_problem(
        await listing.get(f"/v1/open-licences/{declared['id']}", headers=bearer(licensee[1])), 404
    )
    listed = await listing.get("/v1/open-licences", headers=bearer(operator_key))
    flagged = {d["id"]: d["flags"] for d in listed.json()["items"]}
    assert flagged[declared["id"]][0]["rule"] == "royalty_above_guidance"
    # Not a holder: 403, nothing stored.
    other = assert_problem(
        await listing.post(
            "/v1/open-licences",
            json={"asset_id": declared["asset"]["id"], "terms": royalty_terms()},
            headers=bearer(licensee[1]),
        ),
        403,
    )
    assert other["errors"][0]["rule"] == "not_a_holder"
    # The patentee takes no licence on its own declaration.
    await submit_and_approve(listing, patentee[1], operator_key, declared["id"])
    own = assert_problem(
        await listing.post(
            f"/v1/open-licences/{declared['id']}/licences",
            json={"notice": "x"},
            headers=bearer(patentee[1]),
        ),
        409,
    )
    assert own["errors"][0]["rule"] == "own_declaration"
    # One licence per licensee; a recordal is not entered ahead of its day.
    url = f"/v1/open-licences/{declared['id']}/licences"
    taken = await listing.post(url, json={"notice": "实施"}, headers=bearer(licensee[1]))
    assert taken.status_code == 201, taken.text
    twice = assert_problem(
        await listing.post(url, json={"notice": "实施"}, headers=bearer(licensee[1])), 409
    )
    assert [(e["field"], e["rule"]) for e in twice["errors"]] == [
        ("licensee", "licence_already_taken")
    ]
    mine = await listing.get(
        "/v1/licences", params={"declaration_id": declared["id"]}, headers=bearer(licensee[1])
    )
    assert len(mine.json()["items"]) == 1
    early = assert_problem(
        await listing.post(
            f"/v1/licences/{taken.json()['id']}/recordal",
            json={
                "recordal_number": "1",
                "recorded_on": (today_in_china() + timedelta(days=1)).isoformat(),
            },
            headers=bearer(licensee[1]),
        ),
        422,
    )
    assert early["errors"][0]["rule"] == "recorded_in_future"
    after = await listing.get(f"/v1/licences/{taken.json()['id']}", headers=bearer(patentee[1]))
    assert after.json()["status"] == "awaiting_recordal"
    # One declaration of a patent at a time; withdrawn, it may be declared again.
    again = {
        "asset_id": declared["asset"]["id"],
        "terms": royalty_terms(royalty_rate="0.10"),
        "consents": [{"name": CO_HOLDER}],
    }
    second = assert_problem(
        await listing.post("/v1/open-licences", json=again, headers=bearer(patentee[1])), 409
    )
    assert [(e["field"], e["rule"]) for e in second["errors"]] == [("asset_id", "already_declared")]
    assert await stored(listing_app, declared["asset"]["identifier"]) == (1, 1, 1)
    withdrawn = await listing.post(
        f"/v1/listings/{declared['id']}/withdraw", headers=bearer(patentee[1])
    )
    assert withdrawn.status_code == 200, withdrawn.text
    redeclared = await declare(listing, patentee[1], again)
    assert redeclared["flags"] == [] and redeclared["terms"]["royalty_rate"] == "0.100000"
    # Past its declared term, a declaration expires; the licence keeps its own dates.
    ends_on = date.fromisoformat(redeclared["terms"]["ends_on"])
    maker, url = listing_app.state.sessionmaker, listing_app.state.settings.gateway_url
    read = f"/v1/open-licences/{redeclared['id']}"
    await expire_ended(maker, today=ends_on, catalogue_url=url)
    assert (await listing.get(read, headers=bearer(patentee[1]))).json()["status"] == "draft"
    assert await expire_ended(maker, today=ends_on + timedelta(days=1), catalogue_url=url) >= 1
    assert (await listing.get(read, headers=bearer(patentee[1]))).json()["status"] == "expired"
    kept = await listing.get(f"/v1/licences/{taken.json()['id']}", headers=bearer(licensee[1]))
    assert kept.json()["status"] == "awaiting_recordal"


GAZETTE_HEADER = (
    "announcement_number,announced_on,kind,patent_number,title,patentees,filed_on,granted_on,"
    "fee_type,lump_sum,entry_fee,royalty_rate,royalty_basis,starts_on,ends_on,evaluation_report,"
    "status\n"
)


def gazette_row(number: str, announced_on: str, *, status: str = "published", **cells: str) -> str:
    values = {
        "announcement_number": f"KF{number[:8]}",
        "announced_on": announced_on,
        "kind": "invention_patent",
        "patent_number": f"ZL{number}",
        "title": "一种锂离子电池隔膜及其制备方法",
        "patentees": PATENTEE,
        "filed_on": f"{number[:4]}-07-21",
        "granted_on": "2020-05-05",
        "fee_type": "lump_sum",
        "lump_sum": "300000",
        "entry_fee": "",
        "royalty_rate": "",
        "royalty_basis": "",
        "starts_on": "2026-01-01",
        "ends_on": "2028-12-31",
        "evaluation_report": "",
        "status": status,
    }
    values.update(cells)
    return ",".join(values.values()) + "\n"


async def test_gazette_and_partner_declarations_land_on_the_same_asset(
    listing: httpx.AsyncClient,
    listing_app: FastAPI,
    operator_key: str,
    service_key: str,
    patentee: Org,
) -> None:
    ours = await declare(listing, patentee[1], declaration())
    number = ours["asset"]["identifier"]
    digits = number.replace(".", "")
    bad_number = next(NUMBERS)
    csv_text = (
        GAZETTE_HEADER
        + gazette_row(digits, "2026-01-05")
        + gazette_row(bad_number, "2026-01-05", ends_on="2026-06-30")
    )
    post = {"Content-Type": "text/csv", **bearer(operator_key)}
    report = await listing.post(
        "/v1/open-licences/gazette", content=csv_text.encode(), headers=post
    )
    assert report.status_code == 200, report.text
    body = report.json()
    assert (body["total_rows"], body["created"], body["rejected"]) == (2, 1, 1)
    assert [(r["line"], r["field"], r["rule"]) for r in body["rejections"]] == [
        (3, "ends_on", "term_too_short")
    ]
    assert await stored(listing_app, bad_number[:12] + "." + bad_number[12:]) == (0, 0, 0)
    again = await listing.post("/v1/open-licences/gazette", content=csv_text.encode(), headers=post)
    assert again.json()["unchanged"] == 1 and again.json()["created"] == 0
    # GB18030, as Chinese Excel saves it: a withdrawal announced later replaces the offer.
    withdrawal = GAZETTE_HEADER + gazette_row(digits, "2026-06-01", status="withdrawn")
    later = await listing.post(
        "/v1/open-licences/gazette", content=withdrawal.encode("gb18030"), headers=post
    )
    assert later.json()["updated"] == 1, later.text
    members = assert_problem(
        await listing.post(
            "/v1/open-licences/gazette",
            content=csv_text.encode(),
            headers={"Content-Type": "text/csv", **bearer(patentee[1])},
        ),
        403,
    )
    assert members["status"] == 403

    # A partner exchange's declaration of the same right, with its typed terms.
    doc = partner_document(
        "tjipx", "OL-1", digits, transaction_type="open_license", price_mode="royalty"
    )
    doc["asset"]["holders"] = [{"name": PATENTEE, "region": "110108"}]
    doc["transaction"].update(
        {"royalty_rate": "0.030000", "open_license": royalty_terms(royalty_rate="0.03")}
    )
    put = await listing.put(
        "/v1/offers/tjipx/OL-1",
        json=doc,
        params={"exchange_name": "天津知识产权交易中心", "exchange_region": "120000"},
        headers=bearer(service_key),
    )
    assert put.status_code in (200, 201), put.text
    offers = await listing.get(
        f"/v1/assets/{ours['asset']['id']}/offers", params={"include_closed": "true"}
    )
    assert offers.status_code == 200, offers.text
    by_exchange = {o["document"]["source"]["exchange"]: o for o in offers.json()["items"]}
    assert set(by_exchange) == {"cnipa", "tjipx"}
    assert by_exchange["cnipa"]["status"] == "withdrawn"
    partner_terms = by_exchange["tjipx"]["document"]["transaction"]["open_license"]
    assert partner_terms["royalty_rate"] == "0.030000"
    assert await stored(listing_app, number) == (1, 3, 1)
