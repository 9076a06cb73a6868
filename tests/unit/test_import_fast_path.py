"""The bulk import's fast path for CSV rows gives exactly what the models and normalize_asset give.

`fast_csv_row` skips the pydantic models for rows it is sure they accept; every row it takes must
come out identical (same normalised identifier, asset column values and their types, terms) to
`validate_row`, and every row it declines is left to `validate_row`, which reports the errors.
Checked on the real records and on generated rows around each rule's edges.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.seed.demo import demo_terms
from infra.seed.records import load_records
from services.listing.imports.parsing import (
    CSV_COLUMNS,
    RejectedRow,
    ValidRow,
    csv_record_to_row,
    fast_csv_row,
    iter_rows,
    validate_row,
)

TODAY = date(2026, 11, 30)
HOLDER = "北京航空航天大学"


def _typed(value: Any) -> Any:
    """A value with the type of every part spelled out (Decimal("1") != "1", 1 != True)."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value).__name__, value)


def assert_same(fast: ValidRow, slow: ValidRow | RejectedRow) -> None:
    assert isinstance(slow, ValidRow), slow
    assert fast.line == slow.line
    assert fast.key == slow.key
    assert _typed(fast.asset) == _typed(slow.asset)
    assert _typed(fast.terms.model_dump()) == _typed(slow.terms.model_dump())
    assert fast.pledge_disclosed is slow.pledge_disclosed
    assert _typed(fast.listing) == _typed(slow.listing)


def record(**values: str) -> dict[str, str | None]:
    base: dict[str, str | None] = {name: "" for name in CSV_COLUMNS}
    base |= {
        "kind": "invention_patent",
        "identifier": "201710601862.3",
        "title_zh": "一种测试方法",
        "ipc": "G06F 3/01",
        "holders": HOLDER,
        "holder_region": "110108",
        "filed_on": "2017-07-21",
        "transaction_type": "exclusive_license",
        "price_mode": "fixed",
        "amount": "1200000.00",
    }
    return base | values


def check(values: dict[str, str | None], line: int = 2) -> ValidRow | None:
    fast = fast_csv_row(line, values, TODAY)
    slow = validate_row(line, csv_record_to_row(values), TODAY)
    if fast is not None:
        assert_same(fast, slow)
    return fast


def test_every_real_record_takes_the_fast_path_with_the_same_result() -> None:
    taken = 0
    for i, seed in enumerate(load_records()[:400]):
        a, t = seed.asset, demo_terms(seed.asset.identifier)
        values = record(
            kind=a.kind,
            identifier=a.identifier,
            title_zh=a.title.zh or "",
            title_en=a.title.en or "",
            abstract_zh=(a.abstract.zh or "")[:500],
            ipc=";".join(a.classifications.ipc),
            filed_on=a.filed_on.isoformat() if a.filed_on else "",
            granted_on=a.granted_on.isoformat() if a.granted_on else "",
            legal_status=a.legal_status,
            transaction_type=t["type"],
            price_mode=t["price"]["mode"],
            amount=t["price"].get("amount") or "",
            royalty_rate=t.get("royalty_rate") or "",
            term_months=str(t.get("term_months") or ""),
        )
        slow = validate_row(i, csv_record_to_row(values), TODAY)
        fast = check(values, i)
        if isinstance(slow, ValidRow):
            assert fast is not None, values  # the common case must not fall back
            taken += 1
    assert taken >= 300


def test_rows_the_models_would_change_or_refuse_leave_the_fast_path() -> None:
    declined = [
        {"amount": "01.5"},  # leading zero: left to the Decimal model
        {"amount": "1.005"},
        {"amount": "-1"},
        {"royalty_rate": "1.5", "price_mode": "royalty"},
        {"term_months": "0"},
        {"term_months": "1201"},
        {"filed_on": "2017-7-21"},
        {"filed_on": "2017-02-30"},
        {"filed_on": "2099-01-01"},
        {"kind": "trademark", "identifier": "12345678", "nice": "9"},
        {"kind": "patent"},
        {"legal_status": "alive"},
        {"identifier": "201710601862.4"},  # wrong check digit
        {"holder_region": "1101080"},
        {"holder_uscc": "91330100716105852X"},
        {"title_zh": ""},
        {"price_mode": "fixed", "amount": ""},
        {"transaction_type": "open_license", "price_mode": "negotiable"},
        {"holders": ""},
        {"ipc": "G06F"},
    ]
    for values in declined:
        assert check(record(**values)) is None, values


def test_rows_the_fast_path_takes_match_the_models() -> None:
    taken = [
        {},
        {"amount": "0"},
        {"amount": "12.5", "price_mode": "fixed"},
        {"price_mode": "royalty", "amount": "", "royalty_rate": "0.035"},
        {"price_mode": "royalty", "amount": "", "royalty_rate": "1.000000"},
        {"term_months": "1200", "territory": "CN", "field_of_use": "医疗器械"},
        {"ipc": "g06f3/01;G06F 3/01;Ｇ06Ｆ 3/01 (2006.01)", "locarno": "08-05;8.5"},
        {"holders": f"{HOLDER};清华大学", "holder_region": "110108;110000"},
        {"holder_uscc": "91330100716105852F", "pledge_disclosed": "是"},
        {"identifier": "CN 2017 1 0601862.3", "publication_number": "CN107330000A"},
        {"kind": "software_copyright", "identifier": "2019sr0123456", "filed_on": ""},
        {"granted_on": "2019-01-02", "legal_status": "granted"},
        {"filed_on": "1998-01-01", "identifier": "98100001.0", "legal_status": "granted"},
    ]
    for values in taken:
        assert check(record(**values)) is not None, values


TEXT = st.text(st.sampled_from("0123456789.-;ABCGHSRXx ０１/　"), max_size=14)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.fixed_dictionaries(
        {
            "identifier": st.one_of(st.just("201710601862.3"), TEXT),
            "publication_number": st.one_of(st.just(""), TEXT),
            "ipc": st.one_of(st.just("H01M 10/0525"), TEXT),
            "locarno": st.one_of(st.just(""), TEXT),
            "holder_region": st.one_of(st.just("110108"), TEXT),
            "filed_on": st.one_of(st.just("2017-07-21"), TEXT),
            "granted_on": st.one_of(st.just(""), TEXT),
            "legal_status": st.sampled_from(["", "pending", "granted", "expired", "x"]),
            "price_mode": st.sampled_from(["fixed", "negotiable", "royalty", "auction"]),
            "amount": st.one_of(st.just(""), TEXT),
            "royalty_rate": st.one_of(st.just(""), TEXT),
            "term_months": st.one_of(st.just(""), TEXT),
        }
    )
)
def test_generated_rows_fast_equals_models(values: dict[str, str]) -> None:
    check(record(**values))


def test_iter_rows_mixes_fast_and_checked_rows_in_file_order() -> None:
    rows = [record(), record(identifier="201710601862.4"), record(title_zh="a\x00b")]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    results = list(iter_rows(io.StringIO(out.getvalue()), "csv", TODAY))
    assert [r.line for r in results] == [2, 3, 4]
    assert isinstance(results[0], ValidRow)
    assert isinstance(results[1], RejectedRow)
    assert [e.rule for e in results[1].errors] == ["cn_patent_check_digit"]
    assert isinstance(results[2], RejectedRow)
    assert [e.rule for e in results[2].errors] == ["nul_character"]
