"""Reading a demand: its terms, the constraints its prose states, what is boilerplate; the
synonyms table and the catalogue vocabulary the terms are weighed by."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.matching.demands.reading import Reading, read_demand, stored_reading
from services.matching.synonyms import alternatives, segments
from services.matching.vocabulary import Vocabulary, units


def terms(title: str, text: str) -> list[str]:
    return [t.text for t in read_demand(title, text).terms]


def test_the_technique_is_read_and_the_boilerplate_left_out() -> None:
    assert terms("温室智能灌溉技术", "需要温室大棚智能灌溉控制技术") == [
        "温室智能灌溉",
        "温室大棚智能灌溉控制",
    ]
    reading = read_demand(
        "锂离子电池隔膜技术",
        "我公司需要锂电池隔膜的生产技术，预算200万元以内，独占许可，河北优先",
    )
    assert [t.text for t in reading.terms][:2] == ["锂离子电池隔膜", "锂电池隔膜"]
    assert [t.source for t in reading.terms][:2] == ["title", "text"]
    assert all("预算" not in t.text and "河北" not in t.text for t in reading.terms)


def test_background_clauses_are_not_what_the_buyer_wants() -> None:
    found = terms(
        "AR光波导",
        "我公司成立于2015年，主营智能家居产品，年产值5000万元。现需要轻薄的AR光波导显示模组",
    )
    assert "智能家居" not in " ".join(found)
    assert "ar光波导显示模组" in found


@pytest.mark.parametrize(
    "text",
    ["我公司需要技术合作", "希望以许可或转让方式合作，预算100万元以内，北京优先", "寻求相关技术"],
)
def test_boilerplate_alone_has_no_term(text: str) -> None:
    assert terms("技术需求", text) == []


@pytest.mark.parametrize(
    ("text", "budget"),
    [
        ("预算200万元以内", Decimal("2000000.00")),
        ("经费50-80万元", Decimal("800000.00")),
        ("费用不超过1.5亿元", Decimal("150000000.00")),
        ("公司年产值5000万元", None),  # not a budget: no budget word
        ("预算" + "9" * 30 + "亿元", None),  # no budget anyone means, and no error
    ],
)
def test_the_budget_stated_in_prose(text: str, budget: Decimal | None) -> None:
    assert read_demand("隔膜", text).constraints.budget_max == budget


def test_regions_and_transaction_types_stated_in_prose() -> None:
    stated = read_demand("隔膜", "独占许可，河北优先").constraints
    assert stated.regions == ("13",) and stated.transaction_types == ("exclusive_license",)
    assert read_demand("隔膜", "京津冀地区的单位").constraints.regions == ("11", "12", "13")
    # Where the buyer is, is not a preference.
    assert read_demand("隔膜", "我公司位于北京市海淀区").constraints.regions == ()
    either = read_demand("隔膜", "希望以许可或转让方式合作").constraints.transaction_types
    assert "assignment" in either and "nonexclusive_license" in either
    assert read_demand("隔膜", "需要购买发明专利").constraints.kinds == ("invention_patent",)


def test_technical_words_holding_boilerplate_stay_whole() -> None:
    assert terms("服务器散热", "需要数据中心服务器液冷散热") == [
        "服务器散热",
        "数据中心服务器液冷散热",
    ]
    assert terms("虚拟现实", "需要虚拟现实模拟训练") == ["虚拟现实", "虚拟现实模拟训练"]
    assert "普通话测评" in terms("普通话测评", "需要普通话测评")


def test_a_reading_survives_storage_and_an_old_demand_is_read_again() -> None:
    reading = read_demand("AR眼镜", "需要AR眼镜，预算80万元，北京优先")
    assert Reading.from_json(reading.to_json()) == reading
    assert stored_reading("AR眼镜", "需要AR眼镜，预算80万元，北京优先", {}) == reading


def test_synonyms_name_each_word_of_a_term_in_its_other_names() -> None:
    assert segments("ar眼镜光学模组") == [
        ("ar", "增强现实", "augmented reality"),
        ("眼镜",),
        ("光学模组", "光学模块", "光学组件"),
    ]
    assert "锂离子电池隔膜" in alternatives(segments("锂电隔膜"))
    assert segments("radar测距") == [("radar测距",)]  # ar is no word inside radar
    assert segments("vr头显")[1][:2] == ("头显", "头戴显示")


def test_rare_pieces_weigh_more_than_common_ones() -> None:
    vocabulary = Vocabulary.of(["一种显示方法", "显示装置的方法", "光波导显示方法", "一种方法"])
    assert vocabulary.documents == 4
    assert vocabulary.document_frequency("方法") == 4
    assert vocabulary.idf("光波") > vocabulary.idf("显示") > vocabulary.idf("方法") > 0
    assert list(units("ar眼镜")) == ["眼", "镜", "眼镜", "ar"]
    assert list(units("光")) == ["光"]
