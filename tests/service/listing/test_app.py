"""The listing app in process against a real PostgreSQL: health, errors, keys, limits."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from shared.settings import Settings
from support import assert_problem, bearer

ORG = {"name": "天津大学", "kind": "university", "region": "120104"}


async def sign_up(client: httpx.AsyncClient, **overrides: object) -> dict[str, object]:
    response = await client.post("/v1/organizations", json={**ORG, **overrides})
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


@pytest.fixture(scope="module")
async def org(listing: httpx.AsyncClient) -> AsyncIterator[dict[str, object]]:
    yield await sign_up(listing)


async def test_health_and_readiness(listing: httpx.AsyncClient) -> None:
    assert (await listing.get("/healthz")).json() == {"status": "ok", "service": "listing"}
    ready = await listing.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok"}


async def test_metrics_are_exposed_per_app(listing: httpx.AsyncClient) -> None:
    await listing.get("/v1/organizations/not-a-uuid")
    metrics = await listing.get("/metrics")
    assert metrics.status_code == 200
    assert "http_requests_total" in metrics.text


async def test_request_id_is_echoed_and_in_problems(listing: httpx.AsyncClient) -> None:
    response = await listing.get("/nowhere", headers={"X-Request-ID": "req-123"})
    body = assert_problem(response, 404)
    assert response.headers["x-request-id"] == "req-123"
    assert body["request_id"] == "req-123"
    generated = await listing.get("/healthz")
    assert len(generated.headers["x-request-id"]) == 32


async def test_sign_up_returns_a_working_key_shown_once(
    listing: httpx.AsyncClient, org: dict[str, object], settings: Settings
) -> None:
    organization = org["organization"]
    key = org["api_key"]
    assert isinstance(organization, dict) and isinstance(key, dict)
    assert organization["verified"] is False
    assert key["roles"] == ["admin"] and str(key["key"]).startswith("ipx_")
    read = await listing.get(f"/v1/organizations/{organization['id']}", headers=bearer(key["key"]))
    assert read.status_code == 200 and read.json()["name"] == "天津大学"
    listed = await listing.get(
        f"/v1/organizations/{organization['id']}/api-keys", headers=bearer(key["key"])
    )
    assert listed.status_code == 200
    assert all("key" not in item for item in listed.json())
    # Stored only as a hash: the plaintext appears nowhere in the table.
    engine = create_async_engine(settings.database_url)
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT * FROM listing.api_keys"))).all()
    await engine.dispose()
    assert rows and all(str(key["key"]) not in " ".join(map(str, row)) for row in rows)


async def test_missing_malformed_unknown_and_revoked_keys_are_401(
    listing: httpx.AsyncClient, org: dict[str, object]
) -> None:
    organization, admin = org["organization"], org["api_key"]
    assert isinstance(organization, dict) and isinstance(admin, dict)
    path = f"/v1/organizations/{organization['id']}"
    missing = await listing.get(path)
    assert_problem(missing, 401)
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert_problem(await listing.get(path, headers={"Authorization": "Basic abc"}), 401)
    assert_problem(await listing.get(path, headers=bearer("ipx_000000000000_nope")), 401)
    assert_problem(await listing.get(path, headers=bearer("garbage")), 401)

    issued = await listing.post(
        f"{path}/api-keys", json={"name": "temp", "roles": ["member"]}, headers=bearer(admin["key"])
    )
    assert issued.status_code == 201
    member = issued.json()
    assert (await listing.get(path, headers=bearer(member["key"]))).status_code == 200
    revoked = await listing.delete(f"{path}/api-keys/{member['id']}", headers=bearer(admin["key"]))
    assert revoked.status_code == 204
    assert_problem(await listing.get(path, headers=bearer(member["key"])), 401)


async def test_roles_and_organisations_are_enforced(
    listing: httpx.AsyncClient, org: dict[str, object], operator_key: str
) -> None:
    organization, admin = org["organization"], org["api_key"]
    assert isinstance(organization, dict) and isinstance(admin, dict)
    other = await sign_up(listing, name="河北工业大学", region="130000")
    other_key = other["api_key"]
    assert isinstance(other_key, dict)
    path = f"/v1/organizations/{organization['id']}"
    assert_problem(await listing.get(path, headers=bearer(other_key["key"])), 403)
    member = (
        await listing.post(f"{path}/api-keys", json={"name": "m"}, headers=bearer(admin["key"]))
    ).json()
    denied = await listing.post(
        f"{path}/api-keys", json={"name": "x"}, headers=bearer(member["key"])
    )
    assert_problem(denied, 403)
    # The bootstrap operator key from the environment reads any organisation.
    assert (await listing.get(path, headers=bearer(operator_key))).status_code == 200


async def test_introspection_is_for_services_only(
    listing: httpx.AsyncClient, org: dict[str, object], service_key: str
) -> None:
    admin = org["api_key"]
    assert isinstance(admin, dict)
    body = {"token": admin["key"]}
    assert_problem(await listing.post("/v1/auth/introspect", json=body), 401)
    forbidden = await listing.post("/v1/auth/introspect", json=body, headers=bearer(admin["key"]))
    assert_problem(forbidden, 403)
    answer = await listing.post("/v1/auth/introspect", json=body, headers=bearer(service_key))
    assert answer.status_code == 200
    assert answer.json()["active"] is True and answer.json()["roles"] == ["admin"]
    unknown = await listing.post(
        "/v1/auth/introspect", json={"token": "ipx_abcdefabcdef_x"}, headers=bearer(service_key)
    )
    assert unknown.json() == {"active": False, "key_id": None, "organization_id": None, "roles": []}


@pytest.mark.parametrize(
    ("payload", "field", "rule"),
    [
        ({**ORG, "kind": "pirate"}, "kind", "literal_error"),
        ({**ORG, "name": 42}, "name", "string_type"),
        ({**ORG, "name": ""}, "name", "string_too_short"),
        ({**ORG, "colour": "red"}, "colour", "extra_forbidden"),
        ({"kind": "university", "region": "120104"}, "name", "missing"),
        ({**ORG, "region": "12010"}, "region", "string_too_short"),
        ({**ORG, "region": "990000"}, "region", None),
        ({**ORG, "uscc": "9144030071526726XH"}, "uscc", None),
        ([1, 2], "body", "model_attributes_type"),
    ],
)
async def test_bad_sign_up_bodies_name_the_field_and_rule(
    listing: httpx.AsyncClient, payload: object, field: str, rule: str | None
) -> None:
    body = assert_problem(await listing.post("/v1/organizations", json=payload), 422)
    errors = body["errors"]
    assert isinstance(errors, list)
    assert any(e["field"] == field and (rule is None or e["rule"] == rule) for e in errors), errors
    assert all(e["message"] for e in errors)


async def test_malformed_json_is_400_and_other_media_types_415(
    listing: httpx.AsyncClient,
) -> None:
    response = await listing.post(
        "/v1/organizations", content=b'{"name": "x",', headers={"Content-Type": "application/json"}
    )
    body = assert_problem(response, 400)
    assert body["type"] == "/problems/bad-request"
    assert body["errors"] == [
        {"field": "body", "rule": "json_invalid", "message": "not valid JSON"}
    ]
    assert "not valid JSON" in body["detail"]

    json_text = b'{"name": "x", "kind": "university", "region": "110108"}'
    for content_type, content in [
        ("text/plain", json_text),
        ("application/xml", b"<organization><name>x</name></organization>"),
        ("application/x-www-form-urlencoded", b"name=x&kind=university"),
        (
            "multipart/form-data; boundary=b",
            b'--b\r\nContent-Disposition: form-data; name="name"\r\n\r\nx\r\n--b--\r\n',
        ),
        (None, json_text),
    ]:
        headers = {"Content-Type": content_type} if content_type else {}
        refused = await listing.post("/v1/organizations", content=content, headers=headers)
        problem = assert_problem(refused, 415)
        assert problem["type"] == "/problems/unsupported-media-type"
        assert problem["expected"] == "application/json"
        assert (content_type or "without a Content-Type").split(";")[0] in problem["detail"]
    # A JSON type with parameters or a +json suffix is JSON.
    for content_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
        accepted = await listing.post(
            "/v1/organizations", content=b"{}", headers={"Content-Type": content_type}
        )
        assert assert_problem(accepted, 422)["errors"][0]["rule"] == "missing"

    path = await listing.get("/v1/organizations/not-a-uuid", headers=bearer("x"))
    assert path.status_code in (401, 422)
    assert_problem(await listing.put("/v1/organizations"), 405)


async def test_unknown_query_parameters_are_named(
    listing: httpx.AsyncClient, operator_key: str
) -> None:
    # `limit` was silently ignored: the client asked for 100 and got a page of 50.
    refused = await listing.get(
        "/v1/listings", params={"limit": "100"}, headers=bearer(operator_key)
    )
    problem = assert_problem(refused, 422)
    assert problem["errors"][0]["field"] == "limit"
    assert problem["errors"][0]["rule"] == "unknown_parameter"
    assert "page_size" in problem["errors"][0]["message"]
    # Repeated and several unknown ones: each named once.
    twice = await listing.get("/healthz", params=[("a", "1"), ("a", "2"), ("b", "3")])
    assert [e["field"] for e in assert_problem(twice, 422)["errors"]] == ["a", "b"]


async def test_duplicate_credit_code_is_a_conflict(listing: httpx.AsyncClient) -> None:
    await sign_up(listing, name="A", uscc="91330100716105852F")
    again = await listing.post(
        "/v1/organizations", json={**ORG, "name": "B", "uscc": "91330100716105852F"}
    )
    assert_problem(again, 409)


async def test_oversized_bodies_are_refused_before_reading_them(
    listing: httpx.AsyncClient, settings: Settings
) -> None:
    big = b'{"name": "' + b"x" * settings.max_body_bytes + b'"}'
    declared = await listing.post(
        "/v1/organizations", content=big, headers={"Content-Type": "application/json"}
    )
    assert_problem(declared, 413)

    async def chunks() -> AsyncIterator[bytes]:  # chunked: no Content-Length to trust
        for _ in range(20):
            yield b" " * 65536
        yield b"{}"

    streamed = await listing.post(
        "/v1/organizations", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_problem(streamed, 413)


async def test_rotation_replaces_a_key_and_revokes_the_old_one(
    listing: httpx.AsyncClient, operator_key: str
) -> None:
    signed_up = await sign_up(listing, name="河北大学", region="130600")
    org, admin = signed_up["organization"], signed_up["api_key"]
    assert isinstance(org, dict) and isinstance(admin, dict)
    path = f"/v1/organizations/{org['id']}"
    rotated = await listing.post(
        f"{path}/api-keys/{admin['id']}/rotate", headers=bearer(admin["key"])
    )
    assert rotated.status_code == 201
    new = rotated.json()
    assert new["roles"] == ["admin"] and new["key"] != admin["key"]
    assert_problem(await listing.get(path, headers=bearer(admin["key"])), 401)
    assert (await listing.get(path, headers=bearer(new["key"]))).status_code == 200
    again = await listing.post(f"{path}/api-keys/{admin['id']}/rotate", headers=bearer(new["key"]))
    assert_problem(again, 404)


async def test_partner_and_operator_keys_come_from_operators(
    listing: httpx.AsyncClient, operator_key: str
) -> None:
    exchange = await sign_up(listing, name="天津知识产权交易中心", kind="exchange", region="120000")
    org, admin = exchange["organization"], exchange["api_key"]
    assert isinstance(org, dict) and isinstance(admin, dict)
    path = f"/v1/organizations/{org['id']}/api-keys"
    partner = {"name": "sync", "roles": ["partner"]}
    body = assert_problem(await listing.post(path, json=partner, headers=bearer(admin["key"])), 403)
    assert body["errors"][0]["rule"] == "operator_only"
    issued = await listing.post(path, json=partner, headers=bearer(operator_key))
    assert issued.status_code == 201 and issued.json()["roles"] == ["partner"]
    university = await sign_up(listing, name="南开大学", region="120104")
    uni = university["organization"]
    assert isinstance(uni, dict)
    wrong = await listing.post(
        f"/v1/organizations/{uni['id']}/api-keys", json=partner, headers=bearer(operator_key)
    )
    assert assert_problem(wrong, 422)["errors"][0]["rule"] == "partner_needs_exchange"
    operator = await listing.post(
        f"/v1/organizations/{uni['id']}/api-keys",
        json={"name": "ops", "roles": ["operator"]},
        headers=bearer(operator_key),
    )
    assert operator.status_code == 201
    queue = await listing.get(
        "/v1/listings", params={"status": "pending_review"}, headers=bearer(operator.json()["key"])
    )
    assert queue.status_code == 200


async def test_only_operators_verify(listing: httpx.AsyncClient, operator_key: str) -> None:
    signed_up = await sign_up(listing, name="唐山某公司", kind="enterprise", region="130200")
    org, admin = signed_up["organization"], signed_up["api_key"]
    assert isinstance(org, dict) and isinstance(admin, dict)
    path = f"/v1/organizations/{org['id']}"
    denied = await listing.patch(path, json={"verified": True}, headers=bearer(admin["key"]))
    assert assert_problem(denied, 403)["errors"][0]["rule"] == "operator_only"
    renamed = await listing.patch(
        path, json={"name": "唐山某科技有限公司"}, headers=bearer(admin["key"])
    )
    assert renamed.json()["name"] == "唐山某科技有限公司" and renamed.json()["verified"] is False
    verified = await listing.patch(path, json={"verified": True}, headers=bearer(operator_key))
    assert verified.json()["verified"] is True and verified.json()["version"] == 3
    bad = await listing.patch(path, json={"region": "999999"}, headers=bearer(admin["key"]))
    assert assert_problem(bad, 422)["errors"][0]["field"] == "region"
