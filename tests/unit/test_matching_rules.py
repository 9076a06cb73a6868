"""Plain functions of matching: search filters, demand scoring, salient queries."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.matching.demands.matcher import salient_query
from services.matching.demands.scoring import DemandTerms, matched_terms, score, shared_terms
from shared.search import SearchParams, normalize_ipc_prefix, quote, search_body

LISTING = {
    "amount": 1_500_000.0,
    "price_mode": "fixed",
    "region": "130600",
    "kind": "invention_patent",
    "transaction_type": "exclusive_license",
}


def test_budget_region_kind_and_type_fit_are_scored_with_reasons() -> None:
    demand = DemandTerms(
        kinds=("invention_patent",),
        transaction_types=("exclusive_license",),
        regions=("13",),
        budget_max=Decimal("2000000"),
    )
    total, reasons = score(demand, LISTING, 0.8, ["锂离子电池", "隔膜"])
    assert total == pytest.approx(0.55 * 0.8 + 0.15 + 0.1 + 0.1 + 0.1)
    by = {r["factor"]: r for r in reasons}
    assert by["text"]["detail"] == "matched: 锂离子电池, 隔膜"
    assert "within the budget" in by["budget"]["detail"] and by["region"]["fit"] == 1.0
    over = DemandTerms(
        kinds=(), transaction_types=("assignment",), regions=("11",), budget_max=Decimal("1000000")
    )
    low, low_reasons = score(over, LISTING, 0.8, [])
    assert low == pytest.approx(0.55 * 0.8 + 0.1)  # no budget, region or type fit
    assert {r["factor"]: r["fit"] for r in low_reasons}["budget"] == 0.0


def test_open_preferences_count_as_fits_and_negotiable_prices_half() -> None:
    open_demand = DemandTerms(kinds=(), transaction_types=(), regions=(), budget_max=Decimal("100"))
    total, reasons = score(
        open_demand, {**LISTING, "amount": None, "price_mode": "negotiable"}, 1.0, []
    )
    assert total == pytest.approx(0.55 + 0.15 * 0.5 + 0.3)
    assert [r["factor"] for r in reasons] == ["text", "budget"]


def test_matched_terms_read_utf8_byte_offsets() -> None:
    title = "一种锂离子电池隔膜"
    start = len("一种".encode())
    doc = {
        "title_zh": title,
        "_matchesPosition": {"title_zh": [{"start": start, "length": len("锂离子".encode())}]},
    }
    assert matched_terms(doc) == ["锂离子"]


def test_salient_queries_lead_with_the_subject() -> None:
    assert salient_query("一种基于虚拟现实的显示装置及其控制方法") == "虚拟现实 显示 控制"
    assert salient_query("Method and system for rendering virtual reality scenes") == (
        "rendering virtual reality scenes"
    )


def test_filters_quote_values_and_read_patent_numbers_exactly() -> None:
    assert quote('a"b\\c') == '"a\\"b\\\\c"'
    body = search_body(SearchParams(q="ZL 2017 1 0601862.3", kinds=["invention_patent"]))
    assert body["q"] == ""
    assert (
        '(identifier = "201710601862.3" OR publication_number = "201710601862.3")'
        in (body["filter"])
    )
    assert body["distinct"] == "asset_id"
    zh = search_body(
        SearchParams(q="锂离子电池 隔膜", regions=["13", "110108"], price_max=Decimal("2000000"))
    )
    assert zh["locales"] == ["cmn"]
    assert '(province IN ["13"] OR region IN ["110108"])' in zh["filter"]
    assert "amount <= 2000000.0" in zh["filter"]


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [("h01m", "H01M"), ("H01M10/0525", "H01M 10/0525"), ("G", "G"), ("G06", "G06")],
)
def test_ipc_prefixes_normalise(raw: str, normalized: str) -> None:
    assert normalize_ipc_prefix(raw) == normalized


@pytest.mark.parametrize("raw", ["", "Z01", "H01M OR 1", "H0", 'H01M"'])
def test_bad_ipc_prefixes_are_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        normalize_ipc_prefix(raw)


def test_shared_terms_are_the_query_words_found_in_the_demand() -> None:
    query = salient_query("一种基于虚拟现实的头戴显示装置及交互方法")
    assert query == "虚拟现实 头戴显示 交互"
    demand = ["虚拟现实交互", "我公司需要虚拟现实头戴式显示及交互技术"]
    # "头戴显示" is not in the demand whole: its longest pieces that are.
    assert shared_terms(query, demand) == ["虚拟现实", "头戴", "显示", "交互"]
    assert shared_terms("Lithium separator-film", ["a lithium-ion film"]) == ["lithium", "film"]
    assert shared_terms("电池 隔膜", ["光伏组件"]) == []  # nothing shared: "related text"
    assert len(shared_terms(" ".join(f"词{i}语" for i in range(20)), ["词语"])) == 0
    many = " ".join(f"w{i}" for i in range(20))
    assert shared_terms(many, [many]) == [f"w{i}" for i in range(10)]
