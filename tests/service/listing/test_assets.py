"""Assets: registration with validated identifiers, dedupe by (kind, normalised identifier)."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import (
    assert_problem,
    bearer,
    new_organization,
    partner_document,
    patent,
    publish_listing,
    real_application_numbers,
    terms,
    wait_indexed,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "identifiers" / "cn_applications.csv"


@pytest.fixture(scope="module")
async def holder(listing: httpx.AsyncClient, operator_key: str) -> tuple[str, str]:
    return await new_organization(listing, operator_key, name="北京理工大学")


async def test_registering_any_typed_form_returns_the_same_asset(
    listing: httpx.AsyncClient, holder: tuple[str, str]
) -> None:
    _, key = holder
    first = await listing.post("/v1/assets", json=patent("北京理工大学"), headers=bearer(key))
    assert first.status_code == 201, first.text
    asset = first.json()
    assert asset["identifier"] == "201710601862.3"
    assert asset["classifications"]["ipc"] == ["H01M 2/16", "H01M 10/0525"]
    assert asset["expires_on"] == "2037-07-21"
    for typed in ("ZL 2017 1 0601862.3", "CN2017106018623", "２０１７１０６０１８６２.３"):
        again = await listing.post(
            "/v1/assets", json=patent("北京理工大学", typed), headers=bearer(key)
        )
        assert again.status_code == 200, again.text
        assert again.json()["id"] == asset["id"]
    found = await listing.get(
        "/v1/assets", params={"kind": "invention_patent", "identifier": "ZL201710601862.3"}
    )
    assert [a["id"] for a in found.json()["items"]] == [asset["id"]]
    assert (await listing.get(f"/v1/assets/{asset['id']}")).json()["title"]["zh"]


async def test_the_same_right_for_another_holder_is_a_conflict(
    listing: httpx.AsyncClient, holder: tuple[str, str], operator_key: str
) -> None:
    _, key = holder
    await listing.post(
        "/v1/assets",
        json=patent("北京理工大学", "200710308494.X", filed_on="2007-12-29"),
        headers=bearer(key),
    )
    _, other = await new_organization(listing, operator_key, name="天津大学", region="120104")
    taken = await listing.post(
        "/v1/assets",
        json=patent("天津大学", "200710308494.X", filed_on="2007-12-29"),
        headers=bearer(other),
    )
    body = assert_problem(taken, 409)
    assert "another holder" in str(body["detail"])


async def test_real_application_numbers_register(
    listing: httpx.AsyncClient, holder: tuple[str, str]
) -> None:
    _, key = holder
    with DATA.open() as handle:
        rows = [r for r in csv.DictReader(handle) if len(r["application_number"]) > 12][:25]
    for row in rows:
        response = await listing.post(
            "/v1/assets",
            json=patent(
                "北京理工大学",
                row["application_number"],
                kind=row["kind"],
                filed_on=f"{row['application_number'].removeprefix('CN')[:4]}-01-02",
            ),
            headers=bearer(key),
        )
        assert response.status_code == 201, (row, response.text)


@pytest.mark.parametrize(
    ("change", "field", "rule"),
    [
        ({"identifier": "201710601862.4"}, "asset.identifier", "cn_patent_check_digit"),
        ({"identifier": "20171060186.3"}, "asset.identifier", None),
        ({"kind": "utility_model"}, "asset.identifier", "cn_patent_kind_mismatch"),
        ({"filed_on": "2099-01-01"}, "asset.filed_on", "not_in_future"),
        ({"granted_on": "2016-01-01"}, "asset.granted_on", "after_filing"),
        (
            {"classifications": {"ipc": ["H01M 10/0525", "nonsense"]}},
            "asset.classifications.ipc[1]",
            None,
        ),
        ({"holders": [{"name": "X", "uscc": "9144030071526726XH"}]}, "asset.holders[0].uscc", None),
        ({"holders": [{"name": "X", "region": "990000"}]}, "asset.holders[0].region", None),
        (
            {"kind": "trademark", "identifier": "12345678"},
            "asset.classifications.nice",
            "nice_required",
        ),
        ({"kind": "spaceship"}, "kind", "literal_error"),
        ({"holders": []}, "holders", "too_short"),
        ({"title": {}}, "asset.title", "title_required"),
    ],
)
async def test_bad_assets_name_the_field_and_rule(
    listing: httpx.AsyncClient,
    holder: tuple[str, str],
    change: dict[str, object],
    field: str,
    rule: str | None,
) -> None:
    _, key = holder
    response = await listing.post(
        "/v1/assets", json={**patent("北京理工大学"), **change}, headers=bearer(key)
    )
    body = assert_problem(response, 422)
    errors = body["errors"]
    assert isinstance(errors, list)
    assert any(e["field"] == field and (rule is None or e["rule"] == rule) for e in errors), errors


async def test_registering_needs_a_member_key(listing: httpx.AsyncClient) -> None:
    assert_problem(await listing.post("/v1/assets", json=patent("北京理工大学")), 401)


async def test_operators_may_override_a_pilot_credit_code(
    listing: httpx.AsyncClient, holder: tuple[str, str], operator_key: str
) -> None:
    _, key = holder
    doc = {
        **patent("某试点企业", "201710601862.3"),
        "holders": [{"name": "某试点企业", "uscc": "9144030071526726XH"}],
        "uscc_check_override": True,
    }
    assert_problem(await listing.post("/v1/assets", json=doc, headers=bearer(key)), 403)


# ------------------------------------------------------------------------------ corrections
# PATCH /v1/assets/{id} (issue 17, item 4): holders correct their rights; every listing on the
# right gets a new version, a history entry and a listing.updated event; the catalogue follows.

HOLDER = "北京理工大学"
# Real invention numbers this module has not registered yet (the test above takes the first 25).
NUMBERS = iter(list(real_application_numbers("invention_patent"))[60:])


def fresh(holder: str = HOLDER, **extra: Any) -> dict[str, object]:
    """A right of `holder` not registered yet, filed in its application number's year."""
    number = next(NUMBERS)
    return patent(holder, number, filed_on=f"{number[:4]}-03-01", **extra)


async def register(listing: httpx.AsyncClient, key: str, doc: dict[str, object]) -> dict[str, Any]:
    response = await listing.post("/v1/assets", json=doc, headers=bearer(key))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def correct(
    listing: httpx.AsyncClient,
    key: str | None,
    asset_id: str,
    body: Mapping[str, object],
    if_match: str | None = "1",
) -> httpx.Response:
    headers = bearer(key) if key else {}
    if if_match is not None:  # a version, or an ETag as read
        headers["If-Match"] = if_match if if_match.startswith('"') else f'"{if_match}"'
    return await listing.patch(f"/v1/assets/{asset_id}", json=body, headers=headers)


async def feed_after(listing: httpx.AsyncClient, key: str, cursor: str) -> list[dict[str, Any]]:
    response = await listing.get(
        "/v1/changes", params={"after": cursor, "limit": 1000}, headers=bearer(key)
    )
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["events"]
    return events


async def feed_head(listing: httpx.AsyncClient, key: str) -> str:
    return str((await listing.get("/v1/changes/head", headers=bearer(key))).json()["cursor"])


async def history_of(listing: httpx.AsyncClient, key: str, listing_id: str) -> list[dict[str, Any]]:
    response = await listing.get(f"/v1/listings/{listing_id}/history", headers=bearer(key))
    assert response.status_code == 200, response.text
    body = response.json()
    entries: list[dict[str, Any]] = body["items"] if isinstance(body, dict) else body
    return entries


async def test_a_holder_corrects_a_right_and_every_reader_sees_it(
    listing: httpx.AsyncClient,
    matching: httpx.AsyncClient,
    holder: tuple[str, str],
    operator_key: str,
    service_key: str,
) -> None:
    _, key = holder
    doc = fresh()
    number = str(doc["identifier"])
    listing_id = await publish_listing(
        listing, key, operator_key, {"asset": doc, "transaction": terms("nonexclusive_license")}
    )
    ours = (await listing.get(f"/v1/listings/{listing_id}", headers=bearer(key))).json()
    asset_id = ours["asset_id"]
    # A partner exchange offers the same right: its document carries our asset too.
    partner = partner_document("tjipe", "TJ-17-4", number, status="published")
    partner["asset"]["holders"] = [{"name": HOLDER, "region": "110108"}]
    put = await listing.put(
        "/v1/offers/tjipe/TJ-17-4",
        json=partner,
        params={"exchange_name": "天津知识产权交易中心", "exchange_region": "120000"},
        headers=bearer(service_key),
    )
    assert put.status_code in (200, 201), put.text
    assert put.json()["asset_id"] == asset_id
    partner_listing, partner_version = put.json()["listing_id"], put.json()["version"]

    read = await listing.get(f"/v1/assets/{asset_id}")
    assert read.headers["ETag"] == '"1"'
    cursor = await feed_head(listing, operator_key)
    title = "Quasar separator for lithium-ion cells"
    response = await correct(listing, key, asset_id, {"title": {"en": title}}, read.headers["ETag"])
    assert response.status_code == 200, response.text
    corrected = response.json()
    assert response.headers["ETag"] == '"2"' and corrected["version"] == 2
    assert corrected["title"] == {"zh": doc["title"]["zh"], "en": title}  # type: ignore[index]

    # GET shows it, on the asset and in each listing's document.
    assert (await listing.get(f"/v1/assets/{asset_id}")).json()["title"]["en"] == title
    after = (await listing.get(f"/v1/listings/{listing_id}", headers=bearer(key))).json()
    assert after["version"] == ours["version"] + 1 and after["asset"]["title"]["en"] == title
    # The history has it, with who and what.
    entry = (await history_of(listing, key, listing_id))[-1]
    assert entry["action"] == "asset_corrected" and entry["version"] == after["version"]
    assert entry["changes"] == {"asset.title.en": [None, title]}
    # The feed announces it for every listing on the right, the partner's included.
    events = {e["entity_id"]: e for e in await feed_after(listing, operator_key, cursor)}
    assert events[listing_id]["type"] == "listing.updated"
    assert events[listing_id]["version"] == after["version"]
    assert events[listing_id]["data"]["asset"]["title"]["en"] == title
    assert events[partner_listing]["type"] == "listing.updated"
    assert events[partner_listing]["version"] == partner_version + 1
    assert events[partner_listing]["data"]["asset"]["title"]["en"] == title
    # And the catalogue finds the right by its new title once indexed.
    await wait_indexed(matching, operator_key)
    found = (await matching.get("/v1/search", params={"q": "Quasar separator"})).json()
    hits = [i for i in found["items"] if i["identifier"] == number]
    assert hits and all(i["title"]["en"] == title for i in hits), found


async def test_a_correction_that_states_what_is_stored_changes_nothing(
    listing: httpx.AsyncClient, holder: tuple[str, str]
) -> None:
    _, key = holder
    asset = await register(listing, key, fresh())
    same = await correct(listing, key, asset["id"], {"title": asset["title"], "version": 1}, None)
    assert same.status_code == 200, same.text
    assert same.json()["version"] == 1 and same.headers["ETag"] == '"1"'


async def test_a_wrong_filing_date_is_refused_and_a_corrected_one_revives_the_right(
    listing: httpx.AsyncClient, holder: tuple[str, str]
) -> None:
    _, key = holder
    # 2021 number, filed on 0001-01-01: refused at registration (it used to expire the right).
    doc = fresh()
    number = str(doc["identifier"])
    refused = await listing.post(
        "/v1/assets", json={**doc, "filed_on": "0001-01-01"}, headers=bearer(key)
    )
    errors = assert_problem(refused, 422)["errors"]
    assert {"asset.filed_on": "filing_year_mismatch"}.items() <= {
        e["field"]: e["rule"] for e in errors
    }.items(), errors
    # Twenty years before the number's year is lawful (a divisional keeps its parent's date),
    # and a right filed then has expired.
    year = int(number[:4])
    old = await register(
        listing,
        key,
        {**doc, "filed_on": f"{year - 20}-03-01", "granted_on": f"{year}-06-01"},
    )
    assert (old["legal_status"], old["expires_on"]) == ("expired", f"{year}-03-01")
    # The holder corrects the filing date: the expiry is computed again, the right revives.
    response = await correct(listing, key, old["id"], {"filed_on": f"{year}-03-01"})
    assert response.status_code == 200, response.text
    revived = response.json()
    assert revived["expires_on"] == f"{year + 20}-03-01"
    assert revived["legal_status"] == "granted"
    bad = await correct(listing, key, old["id"], {"filed_on": "0001-01-01"}, "2")
    assert {"filed_on": "filing_year_mismatch"}.items() <= {
        e["field"]: e["rule"] for e in assert_problem(bad, 422)["errors"]
    }.items()


async def test_corrections_need_the_version_and_lose_no_update(
    listing: httpx.AsyncClient, holder: tuple[str, str]
) -> None:
    _, key = holder
    asset = await register(listing, key, fresh())
    body = {"abstract": {"zh": "一种隔膜。"}}
    missing = assert_problem(await correct(listing, key, asset["id"], body, None), 428)
    assert missing["type"] == "/problems/precondition-required"
    assert (await correct(listing, key, asset["id"], body, "1")).status_code == 200
    stale = assert_problem(await correct(listing, key, asset["id"], body, "1"), 409)
    assert stale["type"] == "/problems/version-conflict" and stale["current_version"] == 2
    malformed = await correct(listing, key, asset["id"], body, "v2")
    assert assert_problem(malformed, 422)["errors"][0]["field"] == "If-Match"


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({"identifier": "201710601862.3"}, "identifier", "not_editable"),
        ({"kind": "utility_model"}, "kind", "not_editable"),
        ({"expires_on": "2099-01-01"}, "expires_on", "not_editable"),
        ({"colour": "red"}, "colour", "extra_forbidden"),
        ({"filed_on": "0001-01-01"}, "filed_on", "filing_year_mismatch"),
        ({"filed_on": "2999-01-01"}, "filed_on", "not_in_future"),
        ({"filed_on": None}, "filed_on", "filing_date_required"),
        ({"granted_on": "1999-01-01"}, "granted_on", "after_filing"),
        ({"title": {"zh": "һ�ְ����ѿ�װ��"}}, "title.zh", "replacement_character"),
        ({"title": {"zh": None}}, "title", "title_required"),
        ({"classifications": {"ipc": ["nonsense"]}}, "classifications.ipc[0]", None),
        ({"holders": []}, "holders", "too_short"),
        ({"holders": [{"name": "天津某贸易有限公司"}]}, "holders", "not_a_holder"),
        ({"holders": [{"name": HOLDER, "uscc": "9144030071526726XH"}]}, "holders[0].uscc", None),
        ({"legal_status": "alive"}, "legal_status", "literal_error"),
        ({"publication_number": "CN-nonsense"}, "publication_number", None),
    ],
)
async def test_bad_corrections_name_the_field_and_rule_and_write_nothing(
    listing: httpx.AsyncClient,
    holder: tuple[str, str],
    body: dict[str, object],
    field: str,
    rule: str | None,
) -> None:
    _, key = holder
    doc = fresh()
    doc["title"] = {"zh": "一种隔膜"}  # Chinese only: erasing it leaves no title
    asset = await register(listing, key, doc)
    errors = assert_problem(await correct(listing, key, asset["id"], body), 422)["errors"]
    assert any(e["field"] == field and (rule is None or e["rule"] == rule) for e in errors), errors
    stored = await listing.get(f"/v1/assets/{asset['id']}")
    assert stored.json()["version"] == 1 and stored.json() == asset


async def test_who_may_correct_a_right(
    listing: httpx.AsyncClient, holder: tuple[str, str], operator_key: str
) -> None:
    _, key = holder
    asset = await register(listing, key, fresh())
    body = {"title": {"en": "Corrected"}}
    assert_problem(await correct(listing, None, asset["id"], body), 401)
    _, other = await new_organization(listing, operator_key, name="天津某贸易有限公司")
    assert_problem(await correct(listing, other, asset["id"], body), 403)
    override = {**body, "uscc_check_override": True}
    assert_problem(await correct(listing, key, asset["id"], override), 403)
    assert_problem(await correct(listing, key, "00000000-0000-0000-0000-000000000000", body), 404)
    # An operator corrects any right, its holders included.
    moved = {"holders": [{"name": "天津某贸易有限公司", "region": "120104"}]}
    by_operator = await correct(listing, operator_key, asset["id"], moved)
    assert by_operator.status_code == 200, by_operator.text
    assert by_operator.json()["holders"][0]["name"] == "天津某贸易有限公司"
    # The right is the other organisation's now, and no longer the first holder's.
    assert (await correct(listing, other, asset["id"], body, "2")).status_code == 200
    assert_problem(await correct(listing, key, asset["id"], body, "3"), 403)


async def test_partner_offers_are_checked_against_the_filing_year(
    listing: httpx.AsyncClient, service_key: str
) -> None:
    number = next(NUMBERS)
    doc = partner_document("tjipe", "TJ-17-0001", number)
    doc["asset"]["filed_on"] = "0001-01-01"
    response = await listing.put(
        "/v1/offers/tjipe/TJ-17-0001",
        json=doc,
        params={"exchange_name": "天津知识产权交易中心", "exchange_region": "120000"},
        headers=bearer(service_key),
    )
    errors = assert_problem(response, 422)["errors"]
    assert any(
        e["field"] == "asset.filed_on" and e["rule"] == "filing_year_mismatch" for e in errors
    ), errors
