"""infra.seed: the shipped public patent records become valid catalogue assets, no database.

The counts below were measured on the shipped files (infra/seed/data/README.md) and are asserted
exactly: a change in the mapping that gains or loses records must show up here.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from infra.seed.records import (
    CAMBRICON_FILE,
    DATA_DIR,
    IFLYTEK_FILE,
    SOURCE_FILES,
    VR_FILE,
    SeedRecord,
    SeedStats,
    excel_serial_date,
    iter_records,
    legal_status,
    load_records,
    parse_source_date,
)
from infra.seed.regions import JJJ_PROVINCES, REGION_NAMES, infer_region, province_of
from services.listing.assets.rules import check_filing_year
from shared.contracts.catalogue import AssetDocument
from shared.identifiers import (
    normalize_cn_publication_number,
    normalize_identifier,
    normalize_ipc,
    validate_region_code,
)

TODAY = date(2025, 1, 1)  # fixed, so that "expired" does not move with the calendar


@pytest.fixture(scope="module")
def loaded() -> tuple[list[SeedRecord], SeedStats]:
    stats = SeedStats()
    return list(iter_records(stats=stats, today=TODAY)), stats


@pytest.fixture(scope="module")
def records(loaded: tuple[list[SeedRecord], SeedStats]) -> list[SeedRecord]:
    return loaded[0]


@pytest.fixture(scope="module")
def stats(loaded: tuple[list[SeedRecord], SeedStats]) -> SeedStats:
    return loaded[1]


def by_identifier(records: list[SeedRecord], identifier: str) -> SeedRecord:
    (found,) = [r for r in records if r.asset.identifier == identifier]
    return found


# --------------------------------------------------------------------------------------------
# The shipped files
# --------------------------------------------------------------------------------------------


def test_data_ships_inside_the_package() -> None:
    package = Path(__file__).resolve().parents[2] / "infra" / "seed"
    assert package / "data" == DATA_DIR
    for name in (*SOURCE_FILES, "README.md"):
        assert (DATA_DIR / name).is_file(), name
    readme = (DATA_DIR / "README.md").read_text(encoding="utf-8")
    assert "yangdongbjcn/patent-container" in readme and "061a840d" in readme


def test_all_three_files_load(stats: SeedStats) -> None:
    assert stats.read == {VR_FILE: 7805, CAMBRICON_FILE: 357, IFLYTEK_FILE: 3816}
    assert stats.yielded == {VR_FILE: 7801, CAMBRICON_FILE: 328, IFLYTEK_FILE: 3813}


def test_records_per_file_and_kind(records: list[SeedRecord]) -> None:
    assert len(records) == 11_942
    assert Counter((r.source_file, r.asset.kind) for r in records) == {
        (VR_FILE, "invention_patent"): 5293,
        (VR_FILE, "utility_model"): 2508,  # 2,499 U + 9 old Y documents
        (CAMBRICON_FILE, "invention_patent"): 321,
        (CAMBRICON_FILE, "utility_model"): 7,
        (IFLYTEK_FILE, "invention_patent"): 2509,
        (IFLYTEK_FILE, "utility_model"): 652,
        (IFLYTEK_FILE, "design_patent"): 652,
    }


def test_skipped_records_and_dropped_codes(stats: SeedStats) -> None:
    # 3 WO records in the iFlytek file; 29 Cambricon applications listed as A and again as B.
    # Four rows the source dates after their application number's year.
    assert stats.skipped == {"wo_record": 3, "duplicate": 29, "filed_after_number": 4}
    # The only invalid classification: a CPC-only Y section code in the VR file.
    assert stats.ipc_dropped == {"Y02P 90/02": 2}


def test_legal_status_per_file(records: list[SeedRecord]) -> None:
    assert Counter((r.source_file, r.asset.legal_status) for r in records) == {
        (VR_FILE, "granted"): 2972,
        (VR_FILE, "pending"): 2214,
        (VR_FILE, "rejected"): 960,
        (VR_FILE, "withdrawn"): 801,
        (VR_FILE, "lapsed"): 774,
        (VR_FILE, "expired"): 80,
        (CAMBRICON_FILE, "granted"): 175,
        (CAMBRICON_FILE, "pending"): 153,
        (IFLYTEK_FILE, "granted"): 2054,
        (IFLYTEK_FILE, "pending"): 1475,
        (IFLYTEK_FILE, "lapsed"): 188,
        (IFLYTEK_FILE, "expired"): 96,
    }


# --------------------------------------------------------------------------------------------
# Every record is a valid contract object
# --------------------------------------------------------------------------------------------


def test_every_record_validates(records: list[SeedRecord]) -> None:
    for record in records:
        asset = record.asset
        assert AssetDocument.model_validate(asset.model_dump(mode="json")) == asset
        assert normalize_identifier(asset.kind, asset.identifier) == asset.identifier
        number = asset.publication_number
        assert number is not None and normalize_cn_publication_number(number) == number
        ipc = asset.classifications.ipc
        assert [normalize_ipc(code) for code in ipc] == ipc and len(set(ipc)) == len(ipc)
        assert [h.name for h in asset.holders] == record.applicants
        for holder in asset.holders:
            assert holder.uscc is None
            assert holder.region is None or validate_region_code(holder.region) == holder.region
        assert asset.title.zh is not None
        assert asset.filed_on is not None
        assert check_filing_year(asset.kind, asset.identifier, asset.filed_on) is None
        if asset.granted_on is not None:
            assert asset.granted_on >= asset.filed_on
        assert asset.expires_on is not None and asset.expires_on > asset.filed_on


def test_identifiers_are_unique(records: list[SeedRecord]) -> None:
    identifiers = [r.asset.identifier for r in records]
    assert len(set(identifiers)) == len(identifiers)


def test_text_fields(records: list[SeedRecord]) -> None:
    iflytek = [r for r in records if r.source_file == IFLYTEK_FILE]
    assert sum(r.asset.title.en is not None for r in iflytek) == 3782
    assert sum(r.asset.abstract.en is not None for r in iflytek) == 3776
    assert all(r.asset.title.en is None for r in records if r.source_file != IFLYTEK_FILE)
    cambricon = [r for r in records if r.source_file == CAMBRICON_FILE]
    assert all(r.asset.abstract.zh for r in cambricon)
    assert all(r.asset.abstract.zh is None for r in records if r.source_file == VR_FILE)
    # Designs carry no IPC (Locarno is not in the export); everything else has one.
    assert {r.asset.kind for r in records if not r.asset.classifications.ipc} == {"design_patent"}


# --------------------------------------------------------------------------------------------
# Source quirks
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("45072.0", date(2023, 5, 26)),  # a Friday, a CNIPA publication day
        ("42954.0", date(2017, 8, 7)),
        ("1", date(1899, 12, 31)),
    ],
)
def test_excel_serial_dates(text: str, expected: date) -> None:
    assert excel_serial_date(text) == expected
    assert parse_source_date(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20220107", date(2022, 1, 7)),
        ("2018/05/25", date(2018, 5, 25)),
        ("43550.0", date(2019, 3, 26)),
        ("", None),
        (None, None),
        ("20221399", None),
        ("not a date", None),
    ],
)
def test_source_dates(text: str | None, expected: date | None) -> None:
    assert parse_source_date(text) == expected


def test_iflytek_record_with_excel_dates_and_co_applicant(records: list[SeedRecord]) -> None:
    record = by_identifier(records, "201710667329.7")
    asset = record.asset
    assert record.source_file == IFLYTEK_FILE
    assert asset.publication_number == "CN107295441B"
    assert asset.filed_on == date(2017, 8, 7)
    assert asset.granted_on == date(2023, 5, 26)  # a B document: its publication is the grant
    assert asset.expires_on == date(2037, 8, 7)
    assert asset.legal_status == "granted" and record.legal_status_raw == "有效"
    assert record.applicants == ["北京京东尚科信息技术有限公司", "科大讯飞股份有限公司"]
    assert [h.region for h in asset.holders] == ["110000", "340100"]
    assert asset.classifications.ipc == ["H04R 1/28"]


def test_vr_record_from_the_csv(records: list[SeedRecord]) -> None:
    asset = by_identifier(records, "202123402459.9").asset
    assert asset.kind == "utility_model"
    assert asset.publication_number == "CN216391212U"
    assert asset.title.zh == "一种基于虚拟现实的全景摄像装置"
    assert asset.filed_on == date(2021, 12, 30) and asset.granted_on == date(2022, 4, 26)
    assert asset.expires_on == date(2031, 12, 30)
    assert asset.classifications.ipc == ["H04N 5/225", "H04N 5/232", "F16M 11/04", "G03B 17/08"]
    assert [h.name for h in asset.holders] == ["郑州科技学院"]


def test_vr_old_form_application_numbers(records: list[SeedRecord]) -> None:
    old = Counter(r.source_file for r in records if len(r.asset.identifier) == 10)
    assert old == {VR_FILE: 24, IFLYTEK_FILE: 10}  # YYTNNNNN.C, filed before 2003-10
    asset = by_identifier(records, "03826012.3").asset
    assert asset.publication_number == "CN1745360A" and asset.filed_on == date(2003, 4, 17)


def test_cambricon_grant_document_wins_over_its_application(records: list[SeedRecord]) -> None:
    asset = by_identifier(records, "201811222555.5").asset
    assert asset.publication_number == "CN111078285B"
    assert asset.granted_on == date(2021, 1, 26)
    assert asset.legal_status == "granted"
    cambricon = [r for r in records if r.source_file == CAMBRICON_FILE]
    assert (
        sum(
            r.asset.publication_number is not None and r.asset.publication_number.endswith("B")
            for r in cambricon
        )
        == 157
    )


def test_multi_valued_applicants_are_split(records: list[SeedRecord]) -> None:
    pairs = [r for r in records if r.source_file == CAMBRICON_FILE and len(r.applicants) > 1]
    assert len(pairs) == 4  # written "A |\nB" in the Cambricon export
    assert all(
        r.applicants == ["中科寒武纪科技股份有限公司", "上海寒武纪信息科技有限公司"] for r in pairs
    )
    assert max(len(r.applicants) for r in records if r.source_file == VR_FILE) == 11
    assert max(len(r.applicants) for r in records if r.source_file == IFLYTEK_FILE) == 4
    assert all("|" not in a and ";" not in a for r in records for a in r.applicants)


@pytest.mark.parametrize(
    ("raw", "expires_on", "expected"),
    [
        ("有效", date(2030, 1, 1), "granted"),
        ("有效", date(2024, 12, 31), "expired"),
        ("公开", None, "pending"),
        ("实质审查", None, "pending"),
        ("审中", None, "pending"),
        ("驳回", date(2020, 1, 1), "rejected"),  # never in force: not "expired"
        ("撤回", date(2020, 1, 1), "withdrawn"),
        ("无效", date(2030, 1, 1), "lapsed"),
        ("无效", date(2020, 1, 1), "expired"),
        ("失效", date(2030, 1, 1), "lapsed"),
        ("其他", None, "pending"),
        (None, None, "pending"),
    ],
)
def test_legal_status_mapping(raw: str | None, expires_on: date | None, expected: str) -> None:
    assert legal_status(raw, expires_on, TODAY) == expected


def test_granted_without_grant_date_is_an_in_force_application(records: list[SeedRecord]) -> None:
    # 有效 on an A document: the application was granted; the export lacks the grant date.
    undated = [r for r in records if r.asset.legal_status == "granted" and not r.asset.granted_on]
    assert {r.source_file for r in undated} == {CAMBRICON_FILE, IFLYTEK_FILE}
    assert all(r.legal_status_raw == "有效" for r in undated)
    assert all(r.asset.kind == "invention_patent" for r in undated)


def write_gz(path: Path, text: str) -> None:
    with gzip.open(path, "wt", encoding="utf-8", newline="") as handle:
        handle.write(text)


def test_quirks_of_a_hand_made_data_dir(tmp_path: Path) -> None:
    header = [
        *("公开号", "申请号", "标题", "申请日", "公开日", "授权公告日"),
        *("国际分类", "国际主分类", "申请人", "法律状态"),
    ]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    good = [
        *("CN216391212U", "CN202123402459.9", "一种装置", "20211230", "20220426", "20220426"),
        *("H04N  5/225 | Y02P 90/02", "H04N", "燕山大学 | 天津大学", "有效"),
    ]
    writer.writerow([*good, ""])  # the trailing comma
    writer.writerow(["CN1", "CN2"])  # malformed
    bad_check = [*good[:1], "CN202123402459.8", *good[2:]]
    writer.writerow([*bad_check, ""])
    wrong_kind = ["CN114399933U", "CN202210016632.1", *good[2:]]  # invention number, U code
    writer.writerow([*wrong_kind, ""])
    write_gz(tmp_path / VR_FILE, "\ufeff" + out.getvalue())
    cambricon = {
        "公开号": "CN112597341A",
        "申请号": "CN202011567126.9",
        "标题": "视频检索方法",
        "摘要": "摘要",
        "申请人": "中科寒武纪科技股份有限公司 |\n上海寒武纪信息科技有限公司",
        "申请日": "2018/05/25",
        "公开日": "2021/04/02",
        "国际分类": "G06F 16/783",
        "国际主分类": "G06F 16/783",
        "专利类型": "发明公布",
        "法律状态": "公开",
    }
    write_gz(tmp_path / CAMBRICON_FILE, json.dumps(cambricon, ensure_ascii=False) + "\n")
    iflytek = {
        "标题 (中文)": "音箱",
        "标题 (英文)": "Speaker",
        "摘要 (中文)": "",
        "摘要 (英文)": "",
        "申请人": "科大讯飞股份有限公司; 河北省讯飞人工智能研究院",
        "公开（公告）号": "CN107295441B",
        "公开（公告）日": "45072.0",
        "申请号": "CN201710667329.7",
        "申请日": "42954.0",
        "公开类型": "发明授权",
        "专利类型": "发明授权",
        "公开国别": "中国",
        "链接到incoPat": "到incoPat中查看\r\nCN1",
        "IPC主分类": "H04R1/28",
        "专利有效性": "有效",
    }
    wo = {
        **iflytek,
        "申请号": "WOCN19082039",
        "公开（公告）号": "WO2019218809A1",
        "公开国别": "世界知识产权组织",
    }
    # The same application's A publication, after its B grant: the grant document wins.
    published = {**iflytek, "公开（公告）号": "CN107295441A", "公开类型": "发明申请"}
    lines = [json.dumps(row, ensure_ascii=False) for row in (iflytek, wo, published)]
    write_gz(tmp_path / IFLYTEK_FILE, "\n".join(lines) + "\n")

    stats = SeedStats()
    found = list(iter_records(tmp_path, stats=stats, today=TODAY))

    assert [r.asset.identifier for r in found] == [
        "202123402459.9",
        "202011567126.9",
        "201710667329.7",
    ]
    assert stats.skipped == {
        "malformed_row": 1,
        "application_number:cn_patent_check_digit": 1,
        "application_number:cn_patent_kind_mismatch": 1,
        "wo_record": 1,
        "duplicate": 1,
    }
    vr, camb, ifly = (r.asset for r in found)
    assert vr.classifications.ipc == ["H04N 5/225"]
    assert [(h.name, h.region) for h in vr.holders] == [
        ("燕山大学", "130300"),
        ("天津大学", "120000"),
    ]
    assert camb.kind == "invention_patent" and camb.legal_status == "pending"
    assert [h.region for h in camb.holders] == ["110000", "310000"]
    assert camb.abstract.zh == "摘要"
    assert ifly.title.en == "Speaker" and ifly.abstract.zh is None
    assert ifly.granted_on == date(2023, 5, 26)
    assert [h.region for h in ifly.holders] == ["340100", "130000"]


# --------------------------------------------------------------------------------------------
# Regions
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # Beijing
        ("北京航空航天大学", "110000"),
        ("北京小鸟看看科技有限公司", "110000"),
        ("清华大学", "110000"),
        ("北京大学", "110000"),
        ("首都师范大学", "110000"),
        ("中国科学院自动化研究所", "110000"),
        ("中国科学院计算技术研究所", "110000"),
        ("中国科学院软件研究所", "110000"),
        ("华北电力大学", "110000"),
        ("京东方科技集团股份有限公司", "110000"),
        ("北京小米移动软件有限公司", "110000"),
        ("小米科技有限责任公司", "110000"),
        ("百度在线网络技术（北京）有限公司", "110000"),
        ("中科寒武纪科技股份有限公司", "110000"),
        ("乐视控股（北京）有限公司", "110000"),
        ("中国矿业大学(北京)", "110000"),
        ("中国医学科学院北京协和医院", "110000"),
        ("国家电网有限公司", "110000"),
        # Tianjin
        ("天津大学", "120000"),
        ("南开大学", "120000"),
        ("中国民航大学", "120000"),
        ("河北工业大学", "120000"),  # in Tianjin despite its name
        ("乐视致新电子科技 （天津） 有限公司", "120000"),
        ("国网天津市电力公司", "120000"),
        ("天津市河北区某科技有限公司", "120000"),  # 河北区 is a district of Tianjin
        # Hebei
        ("燕山大学", "130300"),
        ("华北电力大学（保定）", "130600"),
        ("东北大学秦皇岛分校", "130300"),
        ("华北理工大学", "130200"),
        ("石家庄微泽科技有限公司", "130100"),
        ("唐山师范学院", "130200"),
        ("保定电力职业技术学院", "130600"),
        ("承德石油高等专科学校", "130800"),
        ("河北省讯飞人工智能研究院", "130000"),
        ("科大讯飞河北科技有限公司", "130000"),
        ("河北雄安万网科技有限公司", "130600"),
        ("三河市如月科技有限公司", "131082"),
        ("亚树科技河北有限公司", "130000"),
        # Elsewhere
        ("科大讯飞股份有限公司", "340100"),
        ("合肥智能语音创新发展有限公司", "340100"),
        ("安徽科大讯飞医疗信息技术有限公司", "340000"),
        ("科大讯飞(苏州)科技有限公司", "320500"),
        ("深圳市虚拟现实科技有限公司", "440300"),
        ("腾讯科技（深圳）有限公司", "440300"),
        ("上海寒武纪信息科技有限公司", "310000"),
        ("合肥京东方光电科技有限公司", "340100"),
        ("北京理工大学珠海学院", "440400"),
        ("北京航空航天大学青岛研究院", "370200"),
        ("中国科学院沈阳自动化研究所", "210100"),  # not the Beijing 自动化研究所
        ("中国科学院深圳先进技术研究院", "440300"),
        ("安徽讯飞医疗股份有限公司武汉分公司", "420100"),
        ("中国移动通信集团广东有限公司", "440000"),
        ("华北水利水电大学", "410100"),
        ("东北大学", "210100"),
        # Unknown
        ("国网冀北电力有限公司技能培训中心", None),
        ("谷歌有限责任公司", None),
        ("三星电子株式会社", None),
        ("百度（美国）有限责任公司", None),
        ("何书傲", None),
        ("", None),
    ],
)
def test_infer_region(name: str, expected: str | None) -> None:
    assert infer_region(name) == expected


def test_region_names_and_provinces() -> None:
    assert REGION_NAMES == {"110000": "北京", "120000": "天津", "130000": "河北"}
    assert province_of("130600") == "130000"
    assert province_of("110108") == "110000"
    assert province_of("131082") == "130000"
    assert {province_of(code) for code in REGION_NAMES} == set(REGION_NAMES)
    assert {code[:2] for code in REGION_NAMES} == JJJ_PROVINCES


def test_first_holders_per_province(records: list[SeedRecord]) -> None:
    regions = [r.asset.holders[0].region for r in records]
    jjj = Counter(province_of(c) for c in regions if c is not None and c[:2] in JJJ_PROVINCES)
    assert jjj == {"110000": 1424, "120000": 163, "130000": 64}
    assert sum(c is None for c in regions) == 1814


def test_load_records_region_only() -> None:
    regional = load_records(region_only=True, today=TODAY)
    assert len(regional) == 1651
    assert len(regional) >= 1000
    for record in regional:
        region = record.asset.holders[0].region
        assert region is not None and region[:2] in {"11", "12", "13"}
        assert infer_region(record.applicants[0]) == region


def test_load_records_limit() -> None:
    assert len(load_records(5)) == 5
    assert load_records(0) == []
    few = load_records(3, region_only=True)
    assert len(few) == 3 and {r.source_file for r in few} == {VR_FILE}
