"""Asset rules added with corrections (issue 17, items 4 and 5): the filing year against the
application number, garbled text (U+FFFD), what a correction changes, and the text encoding of an
import file. Plain functions, no I/O; the real seed records check the filing-year rule."""

from __future__ import annotations

import io
from datetime import date
from typing import Any

import httpx
import pytest

from infra.seed.records import load_records
from services.listing.assets.rules import (
    application_year,
    changed_fields,
    check_filing_year,
    differs,
    merge_stated,
    normalize_asset_values,
    replacement_character_errors,
    status_before_expiry,
)
from services.listing.assets.service import corrected_values
from services.listing.imports.cli import _problem
from services.listing.imports.encoding import GB18030, UTF8, Utf8Check, detect_encoding
from services.listing.imports.parsing import CSV_COLUMNS, RejectedRow, ValidRow, iter_rows
from shared.errors import UnprocessableEntity

TODAY = date(2026, 12, 8)
TITLE = "一种锂离子电池隔膜及其制备方法"


# ---------------------------------------------------------------------------- filing year


@pytest.mark.parametrize(
    ("number", "year"),
    [
        ("202111476668.X", 2021),
        ("201710601862.3", 2017),
        ("97101765.4", 1997),
        ("03100001.X", 2003),
    ],
)
def test_the_application_year_is_read_from_the_number(number: str, year: int) -> None:
    assert application_year(number) == year


@pytest.mark.parametrize(
    ("kind", "number", "filed_on"),
    [
        ("invention_patent", "201710601862.3", date(2017, 7, 21)),  # the common case
        ("invention_patent", "ZL 2017 1 0601862.3", date(2017, 1, 1)),  # any typed form
        ("invention_patent", "202111411729.4", date(2018, 12, 18)),  # a real divisional
        ("invention_patent", "202111476668.X", date(2001, 1, 1)),  # the term's first year
        ("utility_model", "201720288179.4", date(2007, 5, 1)),  # 10 years: a utility model
        ("invention_patent", "97101765.4", date(1997, 2, 10)),  # the 8-digit form
        ("trademark", "12345678", date(1990, 1, 1)),  # no application year to check
    ],
)
def test_lawful_filing_dates_pass(kind: str, number: str, filed_on: date) -> None:
    assert check_filing_year(kind, number, filed_on) is None


@pytest.mark.parametrize(
    ("kind", "number", "filed_on"),
    [
        ("invention_patent", "202111476668.X", date(1, 1, 1)),  # the bug of issue 17
        ("invention_patent", "202111476668.X", date(2022, 1, 3)),  # after the number was given
        ("invention_patent", "202111476668.X", date(2000, 12, 31)),  # before the term's start
        ("utility_model", "201720288179.4", date(2006, 12, 31)),  # a utility model: 10 years
        ("design_patent", "201830516306.1", date(2002, 6, 1)),  # a design: 15 years
        ("invention_patent", "97101765.4", date(1998, 1, 1)),
    ],
)
def test_impossible_filing_years_name_the_field_and_rule(
    kind: str, number: str, filed_on: date
) -> None:
    error = check_filing_year(kind, number, filed_on)
    assert error is not None
    assert (error.field, error.rule) == ("asset.filed_on", "filing_year_mismatch")
    assert filed_on.isoformat() in error.message


def test_every_real_record_passes_divisionals_included() -> None:
    """The real records (the seed skips the four the source dates after their number, see
    test_seed_records) pass, among them divisionals filed years before their number."""
    records = [r for r in load_records() if r.asset.filed_on]
    refused = [
        r.asset.identifier
        for r in records
        if r.asset.filed_on
        and check_filing_year(r.asset.kind, r.asset.identifier, r.asset.filed_on)
    ]
    assert refused == []
    older = [
        r
        for r in records
        if r.asset.filed_on
        and len(r.asset.identifier) == 14  # the 12-digit numbers of 2003 on, year first
        and r.asset.filed_on.year < int(r.asset.identifier[:4])
    ]
    assert len(older) >= 100  # 144 divisionals and national phases, years older


def _values(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "kind": "invention_patent",
        "identifier": "202111476668.X",
        "publication_number": None,
        "has_title": True,
        "ipc": [],
        "nice": [],
        "locarno": [],
        "has_plant": False,
        "woody": False,
        "holders": [("北京理工大学", None, "110108")],
        "filed_on": date(2021, 12, 6),
        "granted_on": None,
        "expires_on": None,
        "legal_status": "pending",
        "today": TODAY,
    }
    return values | overrides


def test_registration_rules_apply_the_filing_year() -> None:
    with pytest.raises(UnprocessableEntity) as info:
        normalize_asset_values(**_values(filed_on=date(1, 1, 1)))
    assert [(e.field, e.rule) for e in info.value.errors or []] == [
        ("asset.filed_on", "filing_year_mismatch")
    ]
    # A date in the future is that rule's error alone.
    with pytest.raises(UnprocessableEntity) as info:
        normalize_asset_values(**_values(filed_on=date(2999, 1, 1)))
    assert [e.rule for e in info.value.errors or []] == ["not_in_future"]
    assert normalize_asset_values(**_values()).expires_on == date(2041, 12, 6)


# ---------------------------------------------------------------------------- garbled text


def test_replacement_characters_are_found_with_their_path() -> None:
    row = {"asset": {"title": {"zh": "һ�ְ����ѿ�װ��"}, "holders": [{"name": "ok"}, {"name": "�"}]}}
    errors = replacement_character_errors(row)
    assert [(e.field, e.rule) for e in errors] == [
        ("asset.title.zh", "replacement_character"),
        ("asset.holders[1].name", "replacement_character"),
    ]
    assert replacement_character_errors({"asset": {"title": {"zh": TITLE}}}) == []


# ---------------------------------------------------------------------------- corrections


def _stored(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "kind": "invention_patent",
        "identifier": "202111476668.X",
        "publication_number": None,
        "title_zh": TITLE,
        "title_en": "Battery separator",
        "abstract_zh": "摘要",
        "abstract_en": None,
        "classifications": {"ipc": ["H01M 2/16"], "nice": [], "locarno": [], "plant": None},
        "holders": [{"name": "北京理工大学", "uscc": "91330100716105852F", "region": "110108"}],
        "region": "110108",
        "filed_on": date(2021, 12, 6),
        "granted_on": date(2023, 5, 9),
        "expires_on": date(2041, 12, 6),
        "legal_status": "granted",
        "encumbrances": [],
    }
    return row | overrides


def test_an_import_row_states_only_what_it_gives() -> None:
    stored = _stored()
    row = _stored(
        title_en="Lithium-ion battery separator",
        abstract_zh=None,  # a blank cell: kept
        classifications={"ipc": [], "nice": [], "locarno": [], "plant": None},  # kept
        holders=[{"name": "北京理工大学", "uscc": None, "region": None}],  # code kept
        legal_status="pending",
    )
    merged = merge_stated(stored, row, legal_status_stated=False)
    assert differs(stored, merged)
    assert changed_fields(stored, merged) == {
        "title.en": ["Battery separator", "Lithium-ion battery separator"]
    }
    assert merged["holders"] == stored["holders"] and merged["legal_status"] == "granted"
    assert not differs(stored, merge_stated(stored, stored, legal_status_stated=True))


def test_a_corrected_filing_date_recomputes_expiry_and_lifts_a_computed_expiry() -> None:
    wrong = _stored(filed_on=date(2001, 3, 1), expires_on=date(2021, 3, 1), legal_status="expired")
    merged = {**wrong, "filed_on": date(2021, 3, 1)}
    corrected = corrected_values(wrong, merged, legal_status_stated=False, today=TODAY)
    assert corrected["expires_on"] == date(2041, 3, 1)
    assert corrected["legal_status"] == "granted"  # it has a grant date
    assert changed_fields(wrong, {**wrong, **corrected}) == {
        "filed_on": ["2001-03-01", "2021-03-01"],
        "expires_on": ["2021-03-01", "2041-03-01"],
        "legal_status": ["expired", "granted"],
    }
    # A title alone leaves a stated status as it is.
    untouched = corrected_values(
        wrong, {**wrong, "title_en": "x"}, legal_status_stated=False, today=TODAY
    )
    assert untouched["legal_status"] == "expired"
    # A kind whose dates give no expiry keeps its stated status.
    kept = status_before_expiry("software_copyright", "expired", None, None, dates_corrected=True)
    assert kept == "expired"


def test_a_correction_is_validated_like_a_registration() -> None:
    stored = _stored()
    with pytest.raises(UnprocessableEntity) as info:
        corrected_values(
            stored, {**stored, "filed_on": date(1, 1, 1)}, legal_status_stated=False, today=TODAY
        )
    assert [(e.field, e.rule) for e in info.value.errors or []] == [
        ("asset.filed_on", "filing_year_mismatch")
    ]


# ---------------------------------------------------------------------------- encodings


def _detect(data: bytes, chunk: int = 7) -> str:
    check = Utf8Check()
    for i in range(0, len(data), chunk):  # split inside multi-byte characters
        check.feed(data[i : i + chunk])
    return detect_encoding(io.BytesIO(data), check)


def _csv(text_rows: list[str]) -> str:
    return ",".join(CSV_COLUMNS) + "\n" + "\n".join(text_rows) + "\n"


ROW = (
    "invention_patent,201710601862.3,,一种锂离子电池隔膜及其制备方法,,,,H01M 2/16,,,"
    "北京理工大学,,110108,2017-07-21,,granted,nonexclusive_license,negotiable,,,,,,"
)


def test_utf8_with_or_without_bom_and_gbk_are_read() -> None:
    text = _csv([ROW])
    assert _detect(text.encode()) == UTF8
    assert _detect(b"\xef\xbb\xbf" + text.encode()) == UTF8
    assert _detect(text.encode("gbk")) == GB18030
    assert _detect(text.encode("gb18030")) == GB18030
    rows = list(iter_rows(io.StringIO(text.encode("gbk").decode(GB18030)), "csv", TODAY))
    assert isinstance(rows[0], ValidRow) and rows[0].asset["title_zh"] == TITLE


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (_csv([ROW]).encode("utf-16"), "UTF-16"),
        (b"kind,identifier\n\x80\xff\x80 broken\n", "neither UTF-8 nor GB18030"),
    ],
)
def test_files_in_neither_encoding_are_refused_naming_it(data: bytes, words: str) -> None:
    with pytest.raises(UnprocessableEntity) as info:
        _detect(data)
    assert [(e.field, e.rule) for e in info.value.errors or []] == [("body", "encoding")]
    assert words in str(info.value.detail)


def test_rows_holding_replacement_characters_are_rejected() -> None:
    garbled = ROW.replace("一种锂离子电池隔膜及其制备方法", "һ�ְ����ѿ�װ��")
    rows = list(iter_rows(io.StringIO(_csv([garbled])), "csv", TODAY))
    assert isinstance(rows[0], RejectedRow)
    assert [(e.field, e.rule) for e in rows[0].errors] == [
        ("asset.title.zh", "replacement_character")
    ]
    jsonl = '{"asset": {"title": {"zh": "\\ufffd"}}, "transaction": {}}\n'
    rejected = next(iter(iter_rows(io.StringIO(jsonl), "jsonl", TODAY)))
    assert isinstance(rejected, RejectedRow)
    assert [(e.field, e.rule) for e in rejected.errors] == [
        ("asset.title.zh", "replacement_character")
    ]


def test_the_cli_prints_a_problem_one_rule_a_line() -> None:
    problem = {
        "type": "/problems/validation-error",
        "title": "The request is invalid",
        "status": 422,
        "detail": "the file is UTF-16",
        "errors": [{"field": "body", "rule": "encoding", "message": "save it as CSV UTF-8"}],
    }
    printed = _problem(httpx.Response(422, json=problem))
    assert printed.splitlines() == [
        "the file is UTF-16",
        "  body [encoding]: save it as CSV UTF-8",
    ]
    assert _problem(httpx.Response(502, text="bad gateway")) == "bad gateway"
