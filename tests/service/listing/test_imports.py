"""Bulk import: CSV and JSONL, each row whole or rejected with its line and reason,
idempotent on re-import, streamed through a temp file."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import httpx
import pytest

from infra.seed.records import SeedRecord, load_records
from services.listing.imports.parsing import CSV_COLUMNS
from support import assert_problem, bearer, new_organization

SELLER = "中科寒武纪科技股份有限公司"


@pytest.fixture(scope="module")
def records() -> list[SeedRecord]:
    """Real records whose first applicant is our seller."""
    found = [
        r
        for r in load_records()
        if r.applicants[0] == SELLER and r.asset.legal_status in ("granted", "pending")
    ]
    assert len(found) >= 60
    return found[:60]


@pytest.fixture(scope="module")
async def seller(listing: httpx.AsyncClient, operator_key: str) -> str:
    _, key = await new_organization(listing, operator_key, name=SELLER)
    return key


def csv_row(record: SeedRecord, amount: str = "500000.00", **overrides: str) -> dict[str, str]:
    asset = record.asset
    row = {
        "kind": asset.kind,
        "identifier": asset.identifier,
        "publication_number": asset.publication_number or "",
        "title_zh": asset.title.zh or "",
        "title_en": asset.title.en or "",
        "abstract_zh": "",
        "abstract_en": "",
        "ipc": ";".join(asset.classifications.ipc),
        "nice": "",
        "locarno": "",
        "holders": ";".join(h.name for h in asset.holders),
        "holder_uscc": "",
        "holder_region": "110108",
        "filed_on": asset.filed_on.isoformat() if asset.filed_on else "",
        "granted_on": asset.granted_on.isoformat() if asset.granted_on else "",
        "legal_status": asset.legal_status,
        "transaction_type": "nonexclusive_license",
        "price_mode": "fixed",
        "amount": amount,
        "royalty_rate": "",
        "term_months": "36",
        "territory": "CN",
        "field_of_use": "",
        "pledge_disclosed": "false",
    }
    row.update(overrides)
    return row


def to_csv(rows: list[dict[str, str]], columns: tuple[str, ...] = CSV_COLUMNS) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return ("\ufeff" + out.getvalue()).encode()  # with a BOM, as spreadsheets write it


async def upload(
    listing: httpx.AsyncClient, key: str, body: bytes, content_type: str = "text/csv", **params: str
) -> httpx.Response:
    return await listing.post(
        "/v1/imports",
        content=body,
        params=params,
        headers={**bearer(key), "Content-Type": content_type},
    )


async def count_listings(listing: httpx.AsyncClient, key: str) -> int:
    total, token = 0, ""
    while True:
        page = (
            await listing.get(
                "/v1/listings", params={"page_size": 200, "page_token": token}, headers=bearer(key)
            )
        ).json()
        total += len(page["items"])
        token = page["next_page_token"]
        if not token:
            return total


async def test_csv_import_then_reimport_updates_instead_of_duplicating(
    listing: httpx.AsyncClient, seller: str, records: list[SeedRecord]
) -> None:
    batch = records[:40]
    first = await upload(listing, seller, to_csv([csv_row(r) for r in batch]))
    assert first.status_code == 201, first.text
    report = first.json()
    assert (report["created"], report["updated"], report["rejected"]) == (40, 0, 0)
    assert report["status"] == "completed" and report["total_rows"] == 40
    assert await count_listings(listing, seller) == 40

    again = (await upload(listing, seller, to_csv([csv_row(r) for r in batch]))).json()
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 40)
    changed = [
        csv_row(r, amount="450000.00") if i < 10 else csv_row(r) for i, r in enumerate(batch)
    ]
    month_later = (await upload(listing, seller, to_csv(changed))).json()
    assert (month_later["created"], month_later["updated"], month_later["unchanged"]) == (0, 10, 30)
    assert await count_listings(listing, seller) == 40


async def test_bad_rows_are_rejected_with_line_and_rule_and_leave_nothing(
    listing: httpx.AsyncClient, seller: str, records: list[SeedRecord], operator_key: str
) -> None:
    good = records[40:45]
    bad_id = records[45].asset.identifier[:-1] + (
        "0" if records[45].asset.identifier[-1] != "0" else "1"
    )
    rows = [
        csv_row(good[0]),  # line 2
        csv_row(records[45], identifier=bad_id),  # line 3: check digit
        csv_row(good[1], amount="-1.00"),  # line 4: negative price
        csv_row(good[2], transaction_type="barter"),  # line 5: unknown type
        csv_row(good[3], filed_on="2999-01-01"),  # line 6: future date
        csv_row(records[46], holders="别人的公司"),  # line 7: not a holder
        csv_row(good[4]),  # line 8
    ]
    response = await upload(listing, seller, to_csv(rows))
    report = response.json()
    assert (report["created"], report["rejected"], report["total_rows"]) == (2, 5, 7)
    by_line = {r["line"]: (r["field"], r["rule"]) for r in report["rejections"]}
    assert by_line[3] == ("asset.identifier", "cn_patent_check_digit")
    assert by_line[4] == ("transaction.price.amount", "greater_than_equal")
    assert by_line[5] == ("transaction.type", "literal_error")
    assert by_line[6] == ("asset.filed_on", "not_in_future")
    assert by_line[7] == ("asset.holders", "not_a_holder")
    # Nothing of a rejected row is stored: not even its asset.
    for record in (good[1], good[2], good[3], records[46]):
        found = await listing.get(
            "/v1/assets", params={"kind": record.asset.kind, "identifier": record.asset.identifier}
        )
        assert found.json()["items"] == [], record.asset.identifier
    stored = await listing.get(
        f"/v1/imports/{report['id']}", params={"page_size": 2}, headers=bearer(seller)
    )
    assert len(stored.json()["rejections"]) == 2 and stored.json()["next_page_token"]
    assert_problem(
        await listing.get(
            f"/v1/imports/{report['id']}",
            headers=bearer((await new_organization(listing, operator_key, name="旁人"))[1]),
        ),
        404,
    )


async def test_jsonl_import_with_malformed_lines(
    listing: httpx.AsyncClient, seller: str, records: list[SeedRecord]
) -> None:
    def line(record: SeedRecord) -> str:
        asset: dict[str, Any] = record.asset.model_dump(mode="json")
        asset["holders"] = [{"name": SELLER, "region": "110108"}]
        return json.dumps(
            {
                "asset": asset,
                "transaction": {
                    "type": "open_license",
                    "price": {"mode": "royalty"},
                    "royalty_rate": "0.035",
                },
            },
            ensure_ascii=False,
        )

    body = "\n".join(
        [
            line(records[50]),
            "{not json",
            line(records[51]),
            json.dumps({"asset": {}, "transaction": {}}),
            "",
        ]
    ).encode()
    report = (await upload(listing, seller, body, "application/x-ndjson")).json()
    assert (report["created"], report["rejected"]) == (2, 2)
    rules = {(r["line"], r["rule"]) for r in report["rejections"]}
    assert (2, "json_invalid") in rules and (4, "missing") in rules


async def test_modes_and_who_may_use_them(
    listing: httpx.AsyncClient, seller: str, records: list[SeedRecord], operator_key: str
) -> None:
    body = to_csv([csv_row(records[55])])
    assert_problem(await upload(listing, seller, body, mode="publish"), 403)
    submitted = (await upload(listing, seller, body, mode="submit")).json()
    assert submitted["mode"] == "submit" and submitted["created"] == 1
    _, unverified = await new_organization(listing, operator_key, name="未认证", verified=False)
    assert_problem(await upload(listing, unverified, body, mode="submit"), 403)
    org_id, _ = await new_organization(listing, operator_key, name=records[56].applicants[0])
    published = await upload(
        listing,
        operator_key,
        to_csv([csv_row(records[56], holders=records[56].applicants[0])]),
        mode="publish",
        seller_id=org_id,
    )
    assert published.json()["created"] == 1, published.text
    events = (
        await listing.get("/v1/changes", params={"limit": 1000}, headers=bearer(operator_key))
    ).json()["events"]
    assert any(
        e["type"] == "listing.published"
        and e["data"]["asset"]["identifier"] == records[56].asset.identifier
        for e in events
    )


@pytest.mark.parametrize(
    ("body", "content_type", "field", "rule"),
    [
        (b"", "text/csv", "body", "empty"),
        (b"kind,identifier\n", "application/pdf", "Content-Type", "import_format"),
        (b"kind,identifier,colour\n", "text/csv", "holders", "missing_column"),
        (
            b"kind,identifier,holders,transaction_type,price_mode,colour\n",
            "text/csv",
            "colour",
            "unknown_column",
        ),
    ],
)
async def test_bad_files_are_422(
    listing: httpx.AsyncClient, seller: str, body: bytes, content_type: str, field: str, rule: str
) -> None:
    errors = assert_problem(await upload(listing, seller, body, content_type), 422)["errors"]
    assert any(e["field"] == field and e["rule"] == rule for e in errors), errors


async def test_import_needs_a_member_key(listing: httpx.AsyncClient) -> None:
    assert_problem(await listing.post("/v1/imports", content=b"x"), 401)


# ---------------------------------------------------------------- corrections (issue 17, item 4)


async def rows_of(
    listing: httpx.AsyncClient, key: str, import_id: str, **params: str
) -> dict[str, Any]:
    response = await listing.get(
        f"/v1/imports/{import_id}/rows", params=params, headers=bearer(key)
    )
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


async def asset_of(listing: httpx.AsyncClient, record: SeedRecord) -> dict[str, Any]:
    found = await listing.get(
        "/v1/assets", params={"kind": record.asset.kind, "identifier": record.asset.identifier}
    )
    items: list[dict[str, Any]] = found.json()["items"]
    assert len(items) == 1, found.text
    return items[0]


async def test_a_reimport_corrects_the_right_and_names_the_fields_it_changed(
    listing: httpx.AsyncClient, seller: str, records: list[SeedRecord], operator_key: str
) -> None:
    batch = records[57:60]
    first = (await upload(listing, seller, to_csv([csv_row(r) for r in batch]))).json()
    assert first["created"] == 3 and first["encoding"] == "utf-8"
    assert [(r["line"], r["outcome"]) for r in first["rows"]] == [
        (2, "created"),
        (3, "created"),
        (4, "created"),
    ]
    before = await asset_of(listing, batch[0])
    listing_before = (
        await listing.get("/v1/listings", params={"page_size": 200}, headers=bearer(seller))
    ).json()["items"]
    ours = next(item for item in listing_before if item["asset_id"] == before["id"])
    cursor = (await listing.get("/v1/changes/head", headers=bearer(operator_key))).json()["cursor"]

    title = "Neural network processor with a corrected English title"
    corrected = [
        csv_row(batch[0], title_en=title),
        csv_row(batch[1], amount="420000.00"),
        csv_row(batch[2]),
    ]
    again = await upload(listing, seller, to_csv(corrected))
    report = again.json()
    assert (report["created"], report["updated"], report["unchanged"]) == (0, 2, 1), report
    assert report["rows"] == [
        {"line": 2, "outcome": "updated", "changed": ["asset.title.en"]},
        {"line": 3, "outcome": "updated", "changed": ["transaction.price.amount"]},
        {"line": 4, "outcome": "unchanged", "changed": []},
    ]
    # The right is corrected, its listing has a new version, its history and the feed say so.
    after = await asset_of(listing, batch[0])
    assert after["title"]["en"] == title and after["version"] == before["version"] + 1
    assert after["title"]["zh"] == before["title"]["zh"]
    listing_after = (await listing.get(f"/v1/listings/{ours['id']}", headers=bearer(seller))).json()
    assert listing_after["version"] == ours["version"] + 1
    history = (
        await listing.get(f"/v1/listings/{ours['id']}/history", headers=bearer(seller))
    ).json()
    entries = history["items"] if isinstance(history, dict) else history
    assert entries[-1]["action"] == "imported_update"
    assert entries[-1]["changes"] == {"asset.title.en": [before["title"]["en"], title]}
    events = (
        await listing.get(
            "/v1/changes", params={"after": cursor, "limit": 1000}, headers=bearer(operator_key)
        )
    ).json()["events"]
    mine = [e for e in events if e["entity_id"] == ours["id"]]
    assert [(e["type"], e["version"]) for e in mine] == [
        ("listing.updated", listing_after["version"])
    ]
    assert mine[0]["data"]["asset"]["title"]["en"] == title

    # The same corrected file again changes nothing; a blank cell states nothing.
    same = (await upload(listing, seller, to_csv(corrected))).json()
    assert (same["updated"], same["unchanged"]) == (0, 3)
    assert {r["outcome"] for r in same["rows"]} == {"unchanged"}
    blank = (await upload(listing, seller, to_csv([csv_row(batch[0], title_en="")]))).json()
    assert blank["rows"] == [{"line": 2, "outcome": "unchanged", "changed": []}]
    assert (await asset_of(listing, batch[0]))["title"]["en"] == title

    # Every row's outcome, page by page, or only the updated ones.
    page = await rows_of(listing, seller, report["id"], outcome="updated", page_size="1")
    assert [r["line"] for r in page["items"]] == [2] and page["next_page_token"]
    rest = await rows_of(
        listing, seller, report["id"], outcome="updated", page_token=page["next_page_token"]
    )
    assert [r["line"] for r in rest["items"]] == [3] and not rest["next_page_token"]
    _, stranger = await new_organization(listing, operator_key, name="某不相干公司")
    assert_problem(
        await listing.get(f"/v1/imports/{report['id']}/rows", headers=bearer(stranger)), 404
    )


async def test_rows_that_break_a_rule_once_corrected_are_rejected_whole(
    listing: httpx.AsyncClient, seller: str, records: list[SeedRecord]
) -> None:
    mine = records[55]  # this seller's, imported by test_modes_and_who_may_use_them
    number_year = int(mine.asset.identifier[:4])
    response = await upload(
        listing,
        seller,
        to_csv(
            [
                csv_row(mine, filed_on=f"{number_year + 1}-01-02", title_en="never stored"),
                csv_row(mine, holders="别人的公司", title_en="never stored"),
            ]
        ),
    )
    report = response.json()
    rejections = {(r["line"], r["field"], r["rule"]) for r in report["rejections"]}
    assert (2, "asset.filed_on", "filing_year_mismatch") in rejections, report
    assert (3, "asset.holders", "not_a_holder") in rejections, report
    assert (await asset_of(listing, mine))["title"]["en"] != "never stored"


# -------------------------------------------------------------- encodings (issue 17, item 5)

GBK_SELLER = "京东方科技集团股份有限公司"


def _gbk(text: str | None) -> bool:
    try:
        (text or "").encode("gbk")
    except UnicodeEncodeError:
        return False
    return True


@pytest.fixture(scope="module")
def gbk_records() -> list[SeedRecord]:
    """Real records of one holder whose titles Chinese Excel could save in GBK."""
    found = [
        r
        for r in load_records()
        if r.applicants[0] == GBK_SELLER
        and r.asset.legal_status in ("granted", "pending")
        and r.asset.title.zh
        and _gbk(r.asset.title.zh)
        and _gbk(r.asset.title.en)
    ]
    assert len(found) >= 8
    return found[:8]


def gbk_row(record: SeedRecord) -> dict[str, str]:
    return csv_row(record, holders=GBK_SELLER, holder_region="110105")


async def test_a_gbk_file_from_chinese_excel_is_read_correctly(
    listing: httpx.AsyncClient, operator_key: str, gbk_records: list[SeedRecord]
) -> None:
    _, key = await new_organization(listing, operator_key, name=GBK_SELLER, region="110105")
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(CSV_COLUMNS))
    writer.writeheader()
    writer.writerows([gbk_row(r) for r in gbk_records[:4]])
    body = out.getvalue().encode("gbk")  # what Excel on a Chinese Windows saves: no BOM
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")
    response = await upload(listing, key, body)
    assert response.status_code == 201, response.text
    report = response.json()
    assert (report["created"], report["rejected"], report["encoding"]) == (4, 0, "gb18030")
    for record in gbk_records[:4]:
        stored = await asset_of(listing, record)
        assert stored["title"]["zh"] == record.asset.title.zh
        assert stored["holders"][0]["name"] == GBK_SELLER
    # GB18030 proper (GBK's superset) and UTF-8 with its BOM read the same.
    for encoded in (
        out.getvalue().encode("gb18030"),
        b"\xef\xbb\xbf" + out.getvalue().encode("utf-8"),
    ):
        again = (await upload(listing, key, encoded)).json()
        assert (again["unchanged"], again["rejected"]) == (4, 0), again


@pytest.mark.parametrize(
    ("encoding", "words"),
    [("utf-16", "UTF-16"), ("latin-1 mixed with gbk", "neither UTF-8 nor GB18030")],
)
async def test_a_file_in_neither_encoding_is_refused_naming_the_encoding(
    listing: httpx.AsyncClient,
    seller: str,
    records: list[SeedRecord],
    encoding: str,
    words: str,
) -> None:
    text = to_csv([csv_row(records[54])]).decode("utf-8").removeprefix("\ufeff")
    if encoding == "utf-16":
        body = text.encode("utf-16")
    else:  # a file pasted together from two sources: no single encoding reads it all
        body = text.encode("gbk") + "Société Générale\n".encode("latin-1") + b"\x80\x80\n"
    problem = assert_problem(await upload(listing, seller, body), 422)
    assert [(e["field"], e["rule"]) for e in problem["errors"]] == [("body", "encoding")]
    assert words in problem["detail"]
    found = await listing.get(
        "/v1/assets",
        params={"kind": records[54].asset.kind, "identifier": records[54].asset.identifier},
    )
    assert found.json()["items"] == []  # nothing of the file was read


async def test_garbled_text_is_never_stored(
    listing: httpx.AsyncClient, seller: str, records: list[SeedRecord]
) -> None:
    garbled = "һ�ְ����ѿ�װ��"  # a GBK title once read as UTF-8 with replacement
    response = await upload(
        listing,
        seller,
        to_csv([csv_row(records[53], title_zh=garbled), csv_row(records[52])]),
    )
    report = response.json()
    assert (report["created"], report["rejected"]) == (1, 1), report
    assert [(r["line"], r["field"], r["rule"]) for r in report["rejections"]] == [
        (2, "asset.title.zh", "replacement_character")
    ]
    found = await listing.get(
        "/v1/assets",
        params={"kind": records[53].asset.kind, "identifier": records[53].asset.identifier},
    )
    assert found.json()["items"] == []
