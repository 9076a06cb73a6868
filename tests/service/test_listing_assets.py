"""Assets: registration with validated identifiers, dedupe by (kind, normalised identifier)."""

from __future__ import annotations

import csv
from pathlib import Path

import httpx
import pytest

from support import assert_problem, bearer, new_organization, patent

DATA = Path(__file__).resolve().parents[1] / "data" / "identifiers" / "cn_applications.csv"


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
                "北京理工大学", row["application_number"], kind=row["kind"], filed_on="2019-01-01"
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
