"""Inferring a holder's region (GB/T 2260 code) from the holder's name.

The public patent records we seed from carry no address: only applicant names. Chinese
organisation names usually say where they are registered, so the region is read from the name.
:func:`infer_region` applies these rules in order and stops at the first that matches:

1. **A place in brackets.** ``乐视致新电子科技（天津）有限公司`` → Tianjin,
   ``华北电力大学（保定）`` → Baoding, ``中国矿业大学（北京）`` → Beijing,
   ``科大讯飞(苏州)科技有限公司`` → Suzhou. Full- and half-width brackets; a bracket that is not
   a known place (``（中国）``, ``（华东）``) is ignored, and one that names a foreign country
   (``百度（美国）有限责任公司``) ends the search with None.
2. **A branch named after its parent.** A university, the Chinese Academy of Sciences, State
   Grid (国网), an institute, a group or a company followed by a place is a branch campus,
   institute, subsidiary or office there: ``北京理工大学珠海学院`` → Zhuhai,
   ``东北大学秦皇岛分校`` → Qinhuangdao, ``中国科学院深圳先进技术研究院`` → Shenzhen,
   ``国网天津市电力公司`` → Tianjin, ``中国移动通信集团广东有限公司`` → Guangdong,
   ``安徽讯飞医疗股份有限公司武汉分公司`` → Wuhan.
3. **Known institutions whose name has no place in it, or a misleading one**, matched at the start
   of the name: ``清华大学``, ``北京航空航天大学``, ``首都…``, the Chinese Academy of Sciences
   institutes known to be in Beijing (only those: many 中国科学院 institutes are elsewhere, and an
   unknown one gives None), ``燕山大学`` → Qinhuangdao, ``华北电力大学`` → Beijing (its Baoding
   campus is caught by rule 1), ``河北工业大学`` → Tianjin (it is in Tianjin despite its name),
   ``中国民航大学`` / ``南开大学`` → Tianjin, ``华北理工大学`` → Tangshan, the head offices of a few
   central state-owned companies (``国家电网``, ``中国移动通信集团``…) → Beijing, and a few
   universities of other provinces whose names do not start with their city.
4. **A place at the start of the name**, longest match first: a province-level name (``北京``,
   ``天津市``, ``河北省``, ``广东``…) or a major city (``石家庄``, ``保定``, ``深圳市``, ``合肥``…).
   After a province, a city of that province that follows it is taken
   (``河北省保定市…`` → 130600).
5. **Beijing, Tianjin or a Hebei place anywhere in the name**: ``亚树科技河北有限公司``,
   ``中国医学科学院北京协和医院``, ``科大讯飞河北科技有限公司``. For the region we serve, a place
   named anywhere is a strong enough sign; for other provinces only rules 1, 2 and 4 apply,
   because two-character city names occur inside brand names.
6. **Known brands without a place**, matched anywhere: ``京东方`` (BOE), ``小米``, ``百度``,
   ``寒武纪`` (Cambricon) → Beijing; ``科大讯飞`` / ``讯飞`` → Hefei; and a few other large
   companies of other provinces (``腾讯``, ``华为``, ``歌尔``…). They come after the place rules, so
   ``合肥京东方…``, ``上海寒武纪…`` and ``小米科技（武汉）…`` get their own city.

Anything else (people, foreign companies, names without a known place) gives None. The result is
a six-digit code: a province (``110000``, ``120000``, ``130000``…), a prefecture-level city
(``130600`` Baoding, ``440300`` Shenzhen) or a few county-level cities (``131082`` Sanhe, with
Yanjiao; ``130682`` Dingzhou; ``130181`` Xinji). Districts are not inferred: company names rarely
name them, and district names collide with brand words (朝阳, 和平, and 河北 and 南开 are also
districts of Tianjin). Xiong'an New Area (雄安) has no code of its own and maps to Baoding,
whose counties it covers. The region filter groups by province (:func:`province_of`).
"""

from __future__ import annotations

import re
from typing import Final

from shared.identifiers import validate_region_code

__all__ = [
    "JJJ_PROVINCES",
    "REGION_NAMES",
    "infer_region",
    "province_of",
]

REGION_NAMES: Final[dict[str, str]] = {"110000": "北京", "120000": "天津", "130000": "河北"}
"""The three province-level regions of the Jing-Jin-Ji exchange."""

JJJ_PROVINCES: Final[frozenset[str]] = frozenset({"11", "12", "13"})
"""First two digits of Beijing, Tianjin and Hebei codes."""

# Province-level names, with the suffixes they are written with.
_PROVINCES: Final[dict[str, str]] = {
    "北京": "110000",
    "天津": "120000",
    "河北": "130000",
    "山西": "140000",
    "内蒙古": "150000",
    "辽宁": "210000",
    "吉林": "220000",
    "黑龙江": "230000",
    "上海": "310000",
    "江苏": "320000",
    "浙江": "330000",
    "安徽": "340000",
    "福建": "350000",
    "江西": "360000",
    "山东": "370000",
    "河南": "410000",
    "湖北": "420000",
    "湖南": "430000",
    "广东": "440000",
    "广西": "450000",
    "海南": "460000",
    "重庆": "500000",
    "四川": "510000",
    "贵州": "520000",
    "云南": "530000",
    "西藏": "540000",
    "陕西": "610000",
    "甘肃": "620000",
    "青海": "630000",
    "宁夏": "640000",
    "新疆": "650000",
    "台湾": "710000",
    "香港": "810000",
    "澳门": "820000",
}

# Prefecture-level (and a few county-level) cities: all of Hebei's, and the major cities of
# other provinces. Names that are also common words inside brand names are left out.
_HEBEI_CITIES: Final[dict[str, str]] = {
    "石家庄": "130100",
    "唐山": "130200",
    "秦皇岛": "130300",
    "邯郸": "130400",
    "邢台": "130500",
    "保定": "130600",
    "雄安": "130600",  # Xiong'an New Area: its counties sit under Baoding (no code of its own)
    "张家口": "130700",
    "承德": "130800",
    "沧州": "130900",
    "廊坊": "131000",
    "衡水": "131100",
    "三河市": "131082",  # Sanhe (Yanjiao), under Langfang
    "燕郊": "131082",
    "定州": "130682",
    "辛集": "130181",
}
_OTHER_CITIES: Final[dict[str, str]] = {
    "太原": "140100",
    "呼和浩特": "150100",
    "包头": "150200",
    "沈阳": "210100",
    "大连": "210200",
    "长春": "220100",
    "哈尔滨": "230100",
    "南京": "320100",
    "无锡": "320200",
    "徐州": "320300",
    "常州": "320400",
    "苏州": "320500",
    "昆山": "320583",
    "南通": "320600",
    "扬州": "321000",
    "杭州": "330100",
    "宁波": "330200",
    "温州": "330300",
    "嘉兴": "330400",
    "绍兴": "330600",
    "合肥": "340100",
    "芜湖": "340200",
    "黄山": "341000",
    "福州": "350100",
    "厦门": "350200",
    "泉州": "350500",
    "南昌": "360100",
    "济南": "370100",
    "青岛": "370200",
    "烟台": "370600",
    "潍坊": "370700",
    "威海": "371000",
    "郑州": "410100",
    "洛阳": "410300",
    "焦作": "410800",
    "南阳": "411300",
    "武汉": "420100",
    "长沙": "430100",
    "广州": "440100",
    "深圳": "440300",
    "珠海": "440400",
    "汕头": "440500",
    "佛山": "440600",
    "惠州": "441300",
    "东莞": "441900",
    "南宁": "450100",
    "桂林": "450300",
    "海口": "460100",
    "成都": "510100",
    "绵阳": "510700",
    "贵阳": "520100",
    "铜仁": "520600",
    "昆明": "530100",
    "西安": "610100",
    "兰州": "620100",
    "西宁": "630100",
    "银川": "640100",
    "乌鲁木齐": "650100",
}
_CITIES: Final[dict[str, str]] = {**_HEBEI_CITIES, **_OTHER_CITIES}
_PLACES: Final[dict[str, str]] = {**_PROVINCES, **_CITIES}

# Rule 3: institutions matched at the start of the name (longest first).
_INSTITUTIONS: Final[dict[str, str]] = {
    # Beijing
    "清华大学": "110000",
    "北京大学": "110000",
    "北京航空航天大学": "110000",
    "首都": "110000",  # 首都师范大学, 首都医科大学…, 首都机场集团
    "华北电力大学": "110000",  # the Baoding campus writes （保定）: rule 1
    "中国人民大学": "110000",
    "中国农业大学": "110000",
    "中国传媒大学": "110000",
    "中央民族大学": "110000",
    "中央美术学院": "110000",
    "中国人民公安大学": "110000",
    "中国科学院大学": "110000",
    "中国科学院自动化研究所": "110000",
    "中国科学院计算技术研究所": "110000",
    "中国科学院软件研究所": "110000",
    "中国科学院微电子研究所": "110000",
    "中国科学院半导体研究所": "110000",
    "中国科学院心理研究所": "110000",
    "中国科学院信息工程研究所": "110000",
    "中国科学院电子学研究所": "110000",
    "中国科学院空天信息创新研究院": "110000",
    "中国科学院遥感与数字地球研究所": "110000",
    "中国科学院理化技术研究所": "110000",
    "中国科学院物理研究所": "110000",
    "中国科学院化学研究所": "110000",
    "中国科学院力学研究所": "110000",
    "中国科学院声学研究所": "110000",
    "中国科学院生物物理研究所": "110000",
    "中科寒武纪": "110000",
    "北方工业大学": "110000",
    "国家电网": "110000",  # State Grid's head office; provincial companies write 国网<province>
    "中国电力科学研究院": "110000",
    "中国移动通信集团": "110000",
    "中国移动通信有限公司研究院": "110000",
    "中国电信股份有限公司": "110000",  # head office; branches write …公司<city>分公司
    "中国工商银行股份有限公司": "110000",
    "中国石油化工股份有限公司": "110000",
    "中国神华能源股份有限公司": "110000",
    "中国大唐集团": "110000",
    "中国普天信息产业": "110000",
    "中国安全生产科学研究院": "110000",
    "中国人民解放军军事科学院": "110000",
    "京东方科技集团": "110000",
    # Tianjin
    "河北工业大学": "120000",  # in Tianjin despite its name
    "中国民航大学": "120000",
    "南开大学": "120000",
    "天津大学": "120000",
    # Hebei
    "燕山大学": "130300",  # Qinhuangdao
    "华北理工大学": "130200",  # Tangshan
    "华北科技学院": "131000",  # Yanjiao, Sanhe, Langfang
    "河北大学": "130600",  # Baoding
    "河北农业大学": "130600",
    "河北科技大学": "130100",
    "河北师范大学": "130100",
    "河北医科大学": "130100",
    "河北工程大学": "130400",  # Handan
    "河北经贸大学": "130100",
    "河北北方学院": "130700",  # Zhangjiakou
    "中国电子科技集团公司第十三研究所": "130100",
    "中国电子科技集团公司第五十四研究所": "130100",
    # Other provinces: universities whose names do not start with their city
    "中山大学": "440100",
    "华南理工大学": "440100",
    "暨南大学": "440100",
    "东北大学": "210100",
    "东南大学": "320100",
    "同济大学": "310000",
    "复旦大学": "310000",
    "华北水利水电大学": "410100",
    "中国科学技术大学": "340100",
    "中国矿业大学": "320300",  # Xuzhou; 中国矿业大学（北京） is caught by rule 1
    "中国计量大学": "330100",
    "电子科技大学": "510100",
    "华中科技大学": "420100",
    "河海大学": "320100",
    "东华大学": "310000",
    "西南大学": "500000",
    "华南师范大学": "440100",
    "华南农业大学": "440100",
}

# Rule 6: brands matched anywhere in the name, after the place rules.
_BRANDS: Final[dict[str, str]] = {
    "京东方": "110000",
    "小米": "110000",
    "百度": "110000",
    "寒武纪": "110000",
    "科大讯飞": "340100",
    "讯飞": "340100",
    "腾讯": "440300",
    "华为": "440300",
    "中兴通讯": "440300",
    "阿里巴巴": "330100",
    "网易": "330100",
    "歌尔": "370700",
}

# A bracketed foreign country (百度（美国）有限责任公司) ends the search with None.
_ABROAD: Final[frozenset[str]] = frozenset(
    {
        "美国",
        "日本",
        "韩国",
        "新加坡",
        "英国",
        "德国",
        "法国",
        "加拿大",
        "澳大利亚",
        "以色列",
        "荷兰",
    }
)
_BRACKETED = re.compile(r"[（(]\s*([^（()）]+?)\s*[）)]")
_BRANCH_MARK = re.compile(r"(?:中国科学院|国网|大学|学院|研究所|研究院|集团|公司)")
_LEADING_MARKS: Final[frozenset[str]] = frozenset({"中国科学院", "国网"})
_SUFFIXES: Final[tuple[str, ...]] = ("特别行政区", "自治区", "省", "市")
# JJJ places searched anywhere (rule 5): longest first so 石家庄 is not read as something shorter.
_JJJ_ANYWHERE: Final[tuple[tuple[str, str], ...]] = tuple(
    sorted(
        [("北京", "110000"), ("天津", "120000"), ("河北", "130000"), *_HEBEI_CITIES.items()],
        key=lambda item: -len(item[0]),
    )
)


def _by_length(table: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(table.items(), key=lambda item: -len(item[0])))


_PLACES_BY_LENGTH: Final = _by_length(_PLACES)
_CITIES_BY_LENGTH: Final = _by_length(_CITIES)
_INSTITUTIONS_BY_LENGTH: Final = _by_length(_INSTITUTIONS)
_BRANDS_BY_LENGTH: Final = _by_length(_BRANDS)


def _strip_suffix(text: str) -> str:
    for suffix in _SUFFIXES:
        if text.startswith(suffix):
            return text[len(suffix) :]
    return text


def _place_at_start(text: str) -> tuple[str, str] | None:
    """The place name ``text`` starts with and its code, longest name first."""
    for name, code in _PLACES_BY_LENGTH:
        if text.startswith(name):
            return name, code
    return None


def _whole_place(text: str) -> str | None:
    """The code of ``text`` if it is exactly a place name (with an optional 省/市 suffix)."""
    found = _place_at_start(text)
    if found is None:
        return None
    name, code = found
    rest = _strip_suffix(text[len(name) :])
    if rest == "":
        return code
    if code.endswith("0000"):  # "广东深圳" / "河北省保定市": a city of that province
        city = _city_at_start(rest, province=code)
        if city is not None and _strip_suffix(rest[len(city[0]) :]) == "":
            return city[1]
    return None


def _city_at_start(text: str, *, province: str) -> tuple[str, str] | None:
    for name, code in _CITIES_BY_LENGTH:
        if code[:2] == province[:2] and text.startswith(name):
            return name, code
    return None


class _Abroad(Exception):
    """A bracket names a foreign country: the name gives no Chinese region."""


def _bracketed(name: str) -> str | None:
    for match in _BRACKETED.finditer(name):
        inside = match.group(1)
        if inside in _ABROAD:
            raise _Abroad
        code = _whole_place(inside)
        if code is not None:
            return code
    return None


def _branch(name: str) -> str | None:
    for mark in _BRANCH_MARK.finditer(name):
        if mark.start() == 0 and mark.group() not in _LEADING_MARKS:
            continue
        found = _place_at_start(name[mark.end() :])
        if found is not None:
            return found[1]
    return None


def _institution(name: str) -> str | None:
    for prefix, code in _INSTITUTIONS_BY_LENGTH:
        if name.startswith(prefix):
            return code
    return None


def _prefix(name: str) -> str | None:
    found = _place_at_start(name)
    if found is None:
        return None
    place, code = found
    if code.endswith("0000"):
        city = _city_at_start(_strip_suffix(name[len(place) :]), province=code)
        if city is not None:
            return city[1]
    return code


def _jjj_anywhere(name: str) -> str | None:
    best: tuple[int, str] | None = None
    for place, code in _JJJ_ANYWHERE:
        at = name.find(place)
        if at >= 0 and (best is None or at < best[0]):
            best = (at, code)
    if best is None:
        return None
    code = best[1]
    if code == "130000":  # 河北省… then a Hebei city anywhere after it
        for place, city_code in _HEBEI_CITIES.items():
            if place in name:
                return city_code
    return code


def _brand(name: str) -> str | None:
    for brand, code in _BRANDS_BY_LENGTH:
        if brand in name:
            return code
    return None


_RULES: Final = (_bracketed, _branch, _institution, _prefix, _jjj_anywhere, _brand)


def infer_region(name: str) -> str | None:
    """The GB/T 2260 code of where an organisation named ``name`` is, or None if unknown.

    Best effort from the name alone (see the module docstring for the rules, in order). Beijing,
    Tianjin and Hebei are covered as well as the rules allow; other provinces only when the
    name makes them obvious.
    """
    text = re.sub(r"\s+", "", name)
    if not text:
        return None
    try:
        for rule in _RULES:
            code = rule(text)
            if code is not None:
                return validate_region_code(code)
    except _Abroad:
        return None
    return None


def province_of(code: str) -> str:
    """The province-level code of a region code: ``"130600"`` → ``"130000"``."""
    return f"{code[:2]}0000"
