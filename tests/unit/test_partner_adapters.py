"""Partner payload adapters: pure mapping into the canonical catalogue document."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from services.gateway.partners.adapters import (
    AdapterError,
    adapt,
    adapt_event,
    canonical,
    tjipe_v1,
    wan_to_yuan,
)
from support import real_application_numbers

INVENTIONS = list(itertools.islice(real_application_numbers("invention_patent"), 3))
UTILITY = next(real_application_numbers("utility_model"))


def spaced(number: str) -> str:
    """How the partner types a number: ``ZL 2016 1 0039216.8``."""
    return f"ZL {number[:4]} {number[4]} {number[5:]}"


def tjipe(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "编号": "TJ-2026-0017",
        "链接": "https://tjipe.example/listings/TJ-2026-0017",
        "版本": "3",
        "更新时间": "2026-11-20 08:00:00",
        "状态": "挂牌中",
        "交易方式": "独占许可",
        "价格(万元)": "120.5",
        "专利号": spaced(INVENTIONS[0]),
        "专利类型": "发明",
        "名称": "一种神经网络处理器",
        "摘要": "本发明公开了一种处理器。",
        "申请日": "2016年1月21日",
        "权利人": "天津大学；天津某科技有限公司",
        "地区": "天津市",
        "分类号": "G06N 3/063；G06F15/78",
    }
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not ...}


def canonical_doc(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "schema": "ipx.catalogue/v1",
        "offer_id": "tipei:L-1",
        "source": {
            "exchange": "tipei",
            "listing_id": "L-1",
            "updated_at": "2026-11-20T08:00:00Z",
            "version": 1,
        },
        "asset": {
            "kind": "invention_patent",
            "identifier": "CN" + INVENTIONS[1].replace(".", ""),
            "title": {"zh": "一种运算装置"},
            "classifications": {"ipc": ["g06n3/063"]},
            "holders": [{"name": "中科寒武纪科技股份有限公司", "region": "110108"}],
            "filed_on": "2017-12-14",
            "legal_status": "granted",
        },
        "transaction": {"type": "assignment", "price": {"mode": "fixed", "amount": "500000"}},
    }
    document.update(overrides)
    return document


def fields(exc: pytest.ExceptionInfo[AdapterError]) -> dict[str, str]:
    return {e.field: e.rule for e in exc.value.errors}


# ------------------------------------------------------------------------------ amounts


@pytest.mark.parametrize(
    ("wan", "yuan"),
    [
        ("120.5", "1205000.00"),
        ("0.01", "100.00"),
        ("1,200", "12000000.00"),
        ("１２０.５", "1205000.00"),
        ("3.123456", "31234.56"),
        (Decimal("0.1"), "1000.00"),
        (120, "1200000.00"),
        (0.1, "1000.00"),  # a JSON float still converts exactly through its shortest repr
        ("88万元", "880000.00"),
    ],
)
def test_amounts_in_wan_become_exact_yuan(wan: object, yuan: str) -> None:
    converted = wan_to_yuan(wan)
    assert isinstance(converted, Decimal)
    assert converted == Decimal(yuan) and str(converted) == yuan


@pytest.mark.parametrize(
    ("wan", "rule"),
    [
        ("abc", "amount_format"),
        ("-1", "amount_negative"),
        ("1.1234567", "amount_precision"),
        ("NaN", "amount_format"),
        (True, "amount_format"),
        ([], "amount_format"),
    ],
)
def test_bad_amounts_are_refused(wan: object, rule: str) -> None:
    with pytest.raises(ValueError) as exc:
        wan_to_yuan(wan)
    assert getattr(exc.value, "rule", None) == rule


# ------------------------------------------------------------------------------ tjipe_v1


def test_a_tjipe_listing_maps_into_the_catalogue_document() -> None:
    document = tjipe_v1(tjipe(), exchange="tjipe")
    assert document.offer_id == "tjipe:TJ-2026-0017"
    assert document.source.exchange == "tjipe" and document.source.version == 3
    assert document.source.url == "https://tjipe.example/listings/TJ-2026-0017"
    # Beijing time 08:00 is midnight UTC.
    assert document.source.updated_at == datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
    assert document.status == "published"
    assert document.transaction.type == "exclusive_license"
    assert document.transaction.price.mode == "fixed"
    assert document.transaction.price.amount == Decimal("1205000.00")
    asset = document.asset
    assert asset.kind == "invention_patent" and asset.identifier == INVENTIONS[0]
    assert asset.filed_on == date(2016, 1, 21)
    assert asset.legal_status == "pending"  # no 授权日, no 法律状态
    assert [h.name for h in asset.holders] == ["天津大学", "天津某科技有限公司"]
    assert {h.region for h in asset.holders} == {"120000"}
    assert asset.classifications.ipc == ["G06N 3/063", "G06F 15/78"]
    assert asset.title.zh == "一种神经网络处理器"
    dumped = document.model_dump(mode="json", by_alias=True)
    assert dumped["transaction"]["price"]["amount"] == "1205000.00"
    assert dumped["schema"] == "ipx.catalogue/v1"


@pytest.mark.parametrize(
    ("status", "expected"),
    [("挂牌中", "published"), ("洽谈中", "under_negotiation"), ("已成交", "closed"),
     ("已撤回", "withdrawn"), ("已过期", "expired")],
)  # fmt: skip
def test_chinese_listing_statuses(status: str, expected: str) -> None:
    assert tjipe_v1(tjipe(状态=status), exchange="tjipe").status == expected


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("转让", "assignment"), ("独占许可", "exclusive_license"), ("排他许可", "sole_license"),
     ("普通许可", "nonexclusive_license"), ("开放许可", "open_license"),
     ("质押融资", "pledge_financing"), ("作价入股", "equity_contribution")],
)  # fmt: skip
def test_chinese_transaction_types(kind: str, expected: str) -> None:
    assert tjipe_v1(tjipe(交易方式=kind), exchange="tjipe").transaction.type == expected


@pytest.mark.parametrize(
    "filed",
    ["2016年1月21日", "2016-01-21", "2016/1/21", "20160121", "2016.01.21", "２０１６-０１-２１"],
)
def test_dates_in_every_usual_form(filed: str) -> None:
    assert tjipe_v1(tjipe(申请日=filed), exchange="tjipe").asset.filed_on == date(2016, 1, 21)


@pytest.mark.parametrize(
    ("written", "utc"),
    [
        ("2026-11-20 08:00:00", datetime(2026, 11, 20, 0, 0, tzinfo=UTC)),
        ("2026/11/20 08:30", datetime(2026, 11, 20, 0, 30, tzinfo=UTC)),
        ("2026年11月20日 08:00:00", datetime(2026, 11, 20, 0, 0, tzinfo=UTC)),
        ("2026-11-20", datetime(2026, 11, 19, 16, 0, tzinfo=UTC)),
        ("2026-11-20T08:00:00Z", datetime(2026, 11, 20, 8, 0, tzinfo=UTC)),
        ("2026-11-20T08:00:00+09:00", datetime(2026, 11, 19, 23, 0, tzinfo=UTC)),
    ],
)
def test_update_times_are_beijing_time_unless_told(written: str, utc: datetime) -> None:
    document = tjipe_v1(tjipe(更新时间=written), exchange="tjipe")
    assert document.source.updated_at == utc


def test_identifier_kind_and_region_forms() -> None:
    document = tjipe_v1(
        tjipe(专利号=UTILITY, 专利类型="实用新型", 地区="河北省保定市", 法律状态="有效"),
        exchange="tjipe",
    )
    assert document.asset.kind == "utility_model" and document.asset.identifier == UTILITY
    assert document.asset.holders[0].region == "130600"
    assert document.asset.legal_status == "granted"
    assert tjipe_v1(tjipe(地区="天津市南开区"), exchange="tjipe").asset.holders[0].region == (
        "120104"
    )
    assert tjipe_v1(tjipe(地区="120116"), exchange="tjipe").asset.holders[0].region == "120116"
    assert tjipe_v1(tjipe(地区="北京"), exchange="tjipe").asset.holders[0].region == "110000"


def test_negotiable_and_royalty_prices() -> None:
    negotiable = tjipe_v1(tjipe(**{"价格(万元)": "面议"}), exchange="tjipe").transaction
    assert negotiable.price.mode == "negotiable" and negotiable.price.amount is None
    royalty = tjipe_v1(
        tjipe(**{"价格(万元)": ..., "提成比例": "3.5%", "许可年限": 5}), exchange="tjipe"
    ).transaction
    assert royalty.price.mode == "royalty" and royalty.royalty_rate == Decimal("0.035")
    assert royalty.term_months == 60
    # Full-width parentheses in the field name, as Chinese input methods type them.
    full_width = tjipe_v1(
        {**tjipe(**{"价格(万元)": ...}), "价格（万元）": "8"}, exchange="tjipe"
    ).transaction
    assert full_width.price.amount == Decimal("80000.00")


def test_every_mapping_problem_is_reported_under_the_partners_own_field() -> None:
    bad = tjipe(
        **{
            "编号": ...,
            "版本": "three",
            "更新时间": "yesterday",
            "状态": "上架",
            "交易方式": "出租",
            "价格(万元)": "12.5万元整",
            "专利号": INVENTIONS[0][:-1] + ("0" if INVENTIONS[0][-1] != "0" else "1"),
            "申请日": "2016年13月1日",
            "地区": "火星",
            "分类号": "not-an-ipc",
            "颜色": "红",
        }
    )
    with pytest.raises(AdapterError) as exc:
        tjipe_v1(bad, exchange="tjipe")
    assert fields(exc) == {
        "编号": "missing",
        "版本": "int_format",
        "更新时间": "datetime_format",
        "状态": "enum",
        "交易方式": "enum",
        "价格(万元)": "amount_format",
        "专利号": "cn_patent_check_digit",
        "申请日": "date_invalid",
        "地区": "region_unknown",
        "分类号": "ipc_format",
        "颜色": "extra_forbidden",
    }
    assert all(e.message for e in exc.value.errors)


def test_a_patent_number_of_the_wrong_kind_names_the_number() -> None:
    with pytest.raises(AdapterError) as exc:
        tjipe_v1(tjipe(专利号=UTILITY, 专利类型="发明"), exchange="tjipe")
    assert fields(exc) == {"专利号": "cn_patent_kind_mismatch"}


def test_model_limits_are_named_by_the_partner_field() -> None:
    with pytest.raises(AdapterError) as exc:
        tjipe_v1(
            tjipe(名称="长" * 20_001, 链接="https://x.example/" + "a" * 2000), exchange="tjipe"
        )
    assert set(fields(exc)) == {"名称", "链接"}


def test_a_non_object_is_one_error() -> None:
    with pytest.raises(AdapterError) as exc:
        tjipe_v1(["not", "an", "object"], exchange="tjipe")
    assert fields(exc) == {"body": "model_type"}


# ------------------------------------------------------------------------------ canonical


def test_canonical_documents_are_normalised_with_the_shared_rules() -> None:
    document = canonical(canonical_doc(), exchange="tipei")
    assert document.asset.identifier == INVENTIONS[1]
    assert document.asset.classifications.ipc == ["G06N 3/063"]
    assert document.transaction.price.amount == Decimal("500000")


def test_canonical_errors_are_all_collected() -> None:
    document = canonical_doc(offer_id="tipei:other", status="sold")
    document["asset"] = {**document["asset"], "identifier": "201711343478.5"}
    document["transaction"] = {"type": "lease", "price": {"mode": "fixed", "amount": "-1"}}
    document["source"] = {**document["source"], "version": 0}
    with pytest.raises(AdapterError) as exc:
        canonical(document, exchange="tipei")
    assert fields(exc) == {
        "asset.identifier": "cn_patent_check_digit",
        "status": "literal_error",
        "transaction.type": "literal_error",
        "transaction.price.amount": "greater_than_equal",
        "source.version": "greater_than_equal",
    }


def test_a_document_of_another_exchange_is_refused() -> None:
    with pytest.raises(AdapterError) as exc:
        canonical(canonical_doc(), exchange="hbtp")
    assert fields(exc) == {"source.exchange": "exchange_mismatch"}
    with pytest.raises(AdapterError) as exc:
        canonical(canonical_doc(offer_id="tipei:L-2"), exchange="tipei")
    assert fields(exc) == {"offer_id": "offer_id_mismatch"}


@pytest.mark.parametrize("listing_id", ["L/1", "..", "L\n1"])
def test_listing_ids_are_one_path_segment(listing_id: str) -> None:
    with pytest.raises(AdapterError) as exc:
        tjipe_v1(tjipe(编号=listing_id), exchange="tjipe")
    assert fields(exc) == {"编号": "listing_id_charset"}


# ------------------------------------------------------------------------------ envelopes


def test_envelopes_and_bare_documents() -> None:
    bare = adapt_event("canonical", canonical_doc(), exchange="tipei")
    assert bare.event_type is None and bare.document.offer_id == "tipei:L-1"
    wrapped = adapt_event(
        "tjipe_v1",
        {
            "type": "listing.withdrawn",
            "timestamp": "2026-11-20T00:00:00Z",
            "data": tjipe(状态="已撤回"),
        },
        exchange="tjipe",
    )
    assert wrapped.event_type == "listing.withdrawn" and wrapped.document.status == "withdrawn"
    assert adapt("tjipe_v1", tjipe(), exchange="tjipe").offer_id == "tjipe:TJ-2026-0017"


def test_envelope_errors_are_named_inside_data() -> None:
    with pytest.raises(AdapterError) as exc:
        adapt_event(
            "tjipe_v1",
            {"type": "listing.sold", "timestamp": "noon", "data": tjipe(版本="x"), "extra": 1},
            exchange="tjipe",
        )
    assert fields(exc) == {
        "type": "enum",
        "timestamp": "datetime_format",
        "data.版本": "int_format",
        "extra": "extra_forbidden",
    }
    with pytest.raises(AdapterError) as exc:
        adapt_event(
            "tjipe_v1", {"type": "listing.updated", "data": tjipe(状态="已撤回")}, exchange="tjipe"
        )
    assert fields(exc) == {"type": "event_type_mismatch"}


@pytest.mark.parametrize("kind", [{}, [], 7, None])
def test_a_kind_of_the_wrong_type_is_a_field_error_not_a_crash(kind: object) -> None:
    # Found by the fuzzer: an object as asset.kind was hashed in a set lookup (a 500).
    document = canonical_doc()
    document["asset"] = {**document["asset"], "kind": kind}
    with pytest.raises(AdapterError) as exc:
        canonical(document, exchange="tipei")
    assert "asset.kind" in fields(exc)
