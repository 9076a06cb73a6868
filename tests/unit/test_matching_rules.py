"""Plain functions of matching: search filters, demand scoring, salient queries."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.matching.demands.reading import read_demand
from services.matching.demands.scoring import (
    DemandTerms,
    TermMatch,
    TextFit,
    compile_reading,
    listing_text,
    salient_query,
    score,
    text_fit,
)
from services.matching.vocabulary import Vocabulary
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
    text = TextFit(
        0.8,
        0.8,
        0.8,
        (
            TermMatch("锂电池", "锂离子电池", "title", 1.0),
            TermMatch("隔膜", "隔膜", "abstract", 1.0),
        ),
    )
    total, reasons = score(demand, LISTING, text)
    assert total == pytest.approx(0.8)  # every constraint holds: the text fit in full
    by = {r["factor"]: r for r in reasons}
    assert by["text"]["detail"] == "matched: 锂电池 (锂离子电池), 隔膜"
    assert [t["field"] for t in by["text"]["terms"]] == ["title", "abstract"]
    assert "within the budget" in by["budget"]["detail"] and by["region"]["fit"] == 1.0
    over = DemandTerms(
        kinds=(), transaction_types=("assignment",), regions=("11",), budget_max=Decimal("1000000")
    )
    low, low_reasons = score(over, LISTING, TextFit(0.8, 0.8, 0.8, ()))
    # no budget, region or type fit: only the kind (open) holds
    assert low == pytest.approx(0.8 * (0.7 + 0.3 * 0.1 / 0.45), abs=1e-4)
    assert {r["factor"]: r["fit"] for r in low_reasons}["budget"] == 0.0


def test_open_preferences_count_as_fits_and_negotiable_prices_half() -> None:
    open_demand = DemandTerms(kinds=(), transaction_types=(), regions=(), budget_max=Decimal("100"))
    total, reasons = score(
        open_demand, {**LISTING, "amount": None, "price_mode": "negotiable"}, TextFit(1, 1, 1, ())
    )
    assert total == pytest.approx(0.7 + 0.3 * (0.15 * 0.5 + 0.3) / 0.45, abs=1e-4)
    assert [r["factor"] for r in reasons] == ["text", "budget"]


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


CATALOGUE = [
    {"title_zh": "温室大棚智能灌溉控制方法", "abstract_zh": "根据土壤湿度控制电磁阀滴灌"},
    {"title_zh": "一种虚拟现实头戴显示设备", "abstract_zh": "包括光学透镜和显示屏"},
    {"title_zh": "一种增强现实眼镜的光波导结构", "abstract_zh": "光波导镜片"},
    {"title_zh": "语音识别方法及装置", "abstract_zh": "声学模型和语言模型解码"},
]
VOCABULARY = Vocabulary.of(f"{d['title_zh']} {d['abstract_zh']}" for d in CATALOGUE)


def fit_of(title: str, text: str, listing: dict[str, str]) -> float:
    demand = compile_reading(read_demand(title, text), VOCABULARY)
    return text_fit(demand, listing_text(listing, VOCABULARY)).fit


def test_a_demand_in_prose_fits_the_listing_it_describes_best() -> None:
    fits = [fit_of("温室智能灌溉技术", "需要温室大棚智能灌溉控制技术", d) for d in CATALOGUE]
    assert fits[0] > 0.8 and max(fits[1:]) < 0.2


def test_abbreviations_and_other_names_fit_as_the_full_name() -> None:
    ar = [fit_of("AR眼镜光波导", "寻求轻薄的AR眼镜光学方案，预算100万元", d) for d in CATALOGUE]
    assert ar.index(max(ar)) == 2 and ar[2] > 0.6
    headset = [fit_of("VR头显", "我公司需要VR头显技术", d) for d in CATALOGUE]
    assert headset.index(max(headset)) == 1 and headset[1] > 0.6


def test_the_terms_found_say_where_they_were_found() -> None:
    demand = compile_reading(read_demand("滴灌控制", "根据土壤湿度自动滴灌"), VOCABULARY)
    found = text_fit(demand, listing_text(CATALOGUE[0], VOCABULARY))
    assert {(m.term, m.field) for m in found.matched} >= {("根据土壤湿度自动滴灌", "abstract")}
