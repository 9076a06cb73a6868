"""Reading a demand as a buyer means it: plain functions, no I/O.

Buyers write prose: who they are, the problem they have, what they want, a budget, a region, a
way to deal. A demand is read clause by clause: background clauses (who the company is) are set
aside, the hard constraints stated in prose (budget, region, transaction type, kind of right)
are taken out, boilerplate (我公司, 需要, 希望合作, 技术…) is cut, and what is left are the
technical terms, each with the other names of its words (synonyms.py). The title's terms weigh
more than the text's. How much each term's pieces weigh is the catalogue's business (rare
pieces over common ones: vocabulary.py), decided when a listing is scored, not here.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, Literal

from services.matching.synonyms import alternatives, segments
from services.matching.vocabulary import CJK_RUN, LATIN_WORD

Source = Literal["title", "text"]

# Clauses end at sentence and clause punctuation; 、 joins items of one list and stays.
CLAUSE_END: Final = re.compile(r"[。！？!?；;，,：:\n\r\t]|\\n")
WANT: Final = re.compile(
    r"需要|需求|寻求|寻找|希望|求购|征集|急需|亟需|亟待|(?<![虚模])拟|(?<![理思构])想|引进|引入|"
    r"购买|受让|解决|难题|"
    r"问题|瓶颈|提高|提升|降低|改善|实现|要求|目标|开发|研发|研制"
)
# A clause about who the buyer is, not what it wants (unless it also says what it wants).
BACKGROUND: Final = re.compile(
    r"成立于|成立以来|注册资本|员工|职工|占地|年产值|年销售|销售额|营业收入|产值|主营|主要从事|"
    r"专业从事|从事|致力于|是一家|是国内|是我国|位于|坐落|地处|现有|拥有|资质|高新技术企业|厂房|"
    r"下设|简介|概况|工作基础|发展迅速|多年|经验|客户|市场占有|行业领先|龙头"
)
# What every demand says and no listing is about. Cut as whole words (longest first); the
# pieces left between them are the terms.
BOILERPLATE: Final[dict[str, str]] = {
    "who": "我公司 本公司 我单位 本单位 我司 我们 我方 贵方 公司 企业 单位 厂家 团队 高校 院所 "
    "科研院所",
    "wanting": "现在 目前 当前 急需 亟需 亟待 需要 需求 寻求 寻找 求购 征集 希望 想要 打算 计划 "
    "引进 引入 购买 采购 受让 获得 获取 得到 拥有 具备 具有 掌握 有意 愿意",
    "dealing": "合作 洽谈 对接 联系 咨询 欢迎 尽快 方式 形式 模式 许可 转让 独占 排他 普通 开放 "
    "实施 授权 入股 作价 买断 共同 联合 委托 合同 即可 均可 面议 可接受 接受 找到 最好 尽量 "
    "能否 是否",
    "money and place": "预算 经费 费用 资金 价格 报价 万元 以内 以下 左右 不超过 控制在 优先 "
    "考虑 地区 本地 周边 京津冀 北京市 天津市 河北省 北京 天津 河北",
    "what kind of thing": "技术 方案 工艺 相关 方面 领域 项目 成果 专利 知识产权 发明 实用新型 "
    "产品 研发 开发 研制 研究 攻关 服务 支持 指导 能力 水平 问题 难题 瓶颈 困难 方法 装置 系统 "
    "设备 应用 使用 利用 采用 通过 情况 过程",
    "connectives": "一种 一套 一项 一批 一些 一个 有关 关于 用于 基于 针对 能够 可以 进行 实现 "
    "解决 提高 提升 改善 降低 改进 优化 满足 要求 目标 成熟 先进 可靠 稳定 高效 新型 现有 已有 "
    "已经 主要 以及 或者 并且 而且 其中 比如 例如 包括 如何 怎样 具体 尤其 特别 非常 十分 较高 "
    "较低 更好 更加 存在 出现 导致 造成 影响",
    # single characters that are hardly ever part of a technical word (not 在, 能, 可, 有, 并,
    # 贵, 拟: 在线, 能量, 可穿戴, 有机, 并行, 贵金属, 模拟)
    "function characters": "请 欲 的 了 和 与 及 或 把 被 让 您",
}
BOILERPLATE_WORDS: Final = tuple(w for words in BOILERPLATE.values() for w in words.split())
# Technical words that contain boilerplate (服务器 holds 服务, 普通话 holds 普通): kept whole.
PROTECTED_WORDS: Final[tuple[str, ...]] = (
    "服务器",
    "普通话",
    "开放式",
    "应用程序",
    "操作系统",
    "片上系统",
    "系统级",
    "能源",
    "能量",
    "可穿戴",
    "研究院",
    "实施例",
    "等离子",
    "对象",
)
_PROTECTED: Final = frozenset(PROTECTED_WORDS)
_BOILERPLATE: Final = re.compile(
    "|".join(
        re.escape(w) for w in sorted(BOILERPLATE_WORDS + PROTECTED_WORDS, key=len, reverse=True)
    )
)
_ENGLISH_BOILERPLATE = (
    "a an and any apparatus are as assignment at based be beijing budget by can cny company "
    "contact cooperation corporation device devices exclusive for from have hebei in "
    "interested into is it its licence license licensing looking method methods million need "
    "needed needs non nonexclusive of on or our please prefer preferred provide region "
    "require required rmb seek seeking solution solutions system systems technique techniques "
    "technologies technology the thereof this tianjin to transfer us using want wanted we "
    "with within yuan "
)
ENGLISH_STOPWORDS: Final = frozenset(_ENGLISH_BOILERPLATE.split())

MONEY: Final = re.compile(
    r"(\d+(?:\.\d+)?)\s*(?:[-~～至到]\s*(\d+(?:\.\d+)?))?\s*(亿|万|千)?\s*(?:人民币|元|rmb|cny)"
)
BUDGET_WORDS: Final = re.compile(
    r"预算|经费|费用|资金|价格|报价|出资|投入|不超过|以内|以下|左右|控制在|价位"
)
UNITS: Final[dict[str, Decimal]] = {
    "亿": Decimal(100_000_000),
    "万": Decimal(10_000),
    "千": Decimal(1_000),
    "": Decimal(1),
}
REGIONS: Final = (("北京", "11"), ("天津", "12"), ("河北", "13"))
PREFERENCE: Final = re.compile(r"优先|限于|仅限|只限|最好|倾向|首选|地区的|本地")
TRANSACTION_WORDS: Final[tuple[tuple[re.Pattern[str], tuple[str, ...]], ...]] = (
    (re.compile(r"独占"), ("exclusive_license",)),
    (re.compile(r"排他"), ("sole_license",)),
    (re.compile(r"普通许可|一般许可|非独占|分许可"), ("nonexclusive_license",)),
    (re.compile(r"开放许可"), ("open_license",)),
    (re.compile(r"转让|买断|受让|购买专利|专利购买"), ("assignment",)),
    (re.compile(r"入股|作价投资"), ("equity_contribution",)),
)
ANY_LICENCE: Final = ("exclusive_license", "sole_license", "nonexclusive_license", "open_license")
KIND_WORDS: Final = (
    ("发明专利", "invention_patent"),
    ("实用新型", "utility_model"),
    ("外观设计", "design_patent"),
    ("商标", "trademark"),
    ("软件著作权", "software_copyright"),
    ("植物新品种", "plant_variety"),
    ("集成电路布图", "ic_layout"),
)

MAX_BUDGET: Final = Decimal(10) ** 14
CENTS: Final = Decimal("0.01")
TITLE_WEIGHT: Final = 2.0
TEXT_WEIGHT: Final = 1.0
MAX_TERMS: Final = 24
MIN_CJK_TERM: Final = 2


@dataclass(frozen=True)
class Term:
    """A technical term as the buyer wrote it (lower case), where, and its other names."""

    text: str
    source: Source
    alternatives: tuple[str, ...] = ()
    # The term cut at the words the synonyms table knows, each with its names (synonyms.py).
    pieces: tuple[tuple[str, ...], ...] = ()

    @property
    def weight(self) -> float:
        return TITLE_WEIGHT if self.source == "title" else TEXT_WEIGHT


@dataclass(frozen=True)
class Constraints:
    """Hard constraints stated in prose; empty when the demand says nothing of them."""

    budget_max: Decimal | None = None
    regions: tuple[str, ...] = ()
    transaction_types: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()


@dataclass(frozen=True)
class Reading:
    terms: tuple[Term, ...]
    constraints: Constraints = field(default_factory=Constraints)

    def to_json(self) -> dict[str, Any]:
        return {
            "terms": [
                {
                    "text": t.text,
                    "source": t.source,
                    "alternatives": list(t.alternatives),
                    "pieces": [list(names) for names in t.pieces],
                }
                for t in self.terms
            ],
            "constraints": {
                "budget_max": str(self.constraints.budget_max)
                if self.constraints.budget_max is not None
                else None,
                "regions": list(self.constraints.regions),
                "transaction_types": list(self.constraints.transaction_types),
                "kinds": list(self.constraints.kinds),
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reading:
        c = data.get("constraints") or {}
        budget = c.get("budget_max")
        return cls(
            terms=tuple(
                Term(
                    t["text"],
                    t["source"],
                    tuple(t.get("alternatives") or ()),
                    tuple(tuple(names) for names in t.get("pieces") or [[t["text"]]]),
                )
                for t in data.get("terms") or ()
            ),
            constraints=Constraints(
                budget_max=Decimal(budget) if budget is not None else None,
                regions=tuple(c.get("regions") or ()),
                transaction_types=tuple(c.get("transaction_types") or ()),
                kinds=tuple(c.get("kinds") or ()),
            ),
        )


def normalize(text: str) -> str:
    """Full-width forms folded (ＡＲ -> ar, ，-> ,), lower case."""
    return unicodedata.normalize("NFKC", text).lower()


def clauses(text: str) -> list[str]:
    return [c.strip() for c in CLAUSE_END.split(normalize(text)) if c.strip()]


def is_background(clause: str) -> bool:
    return bool(BACKGROUND.search(clause)) and not WANT.search(clause)


def budget_of(clause: str) -> Decimal | None:
    """The largest amount of a clause that speaks of a budget (预算200万元以内, 50-80万元)."""
    if not BUDGET_WORDS.search(clause):
        return None
    amounts = [Decimal(high or low) * UNITS[unit] for low, high, unit in MONEY.findall(clause)]
    # An amount a budget field could not hold (16 digits) is no budget anyone means.
    amounts = [a for a in amounts if a < MAX_BUDGET]
    return max(amounts).quantize(CENTS) if amounts else None


def regions_of(clause: str) -> list[str]:
    if "京津冀" in clause:
        return [code for _, code in REGIONS]
    if not PREFERENCE.search(clause):
        return []
    return [code for name, code in REGIONS if name in clause]


def transaction_types_of(clause: str) -> list[str]:
    found: list[str] = []
    for pattern, types in TRANSACTION_WORDS:
        if pattern.search(clause):
            found += types
    if "许可" in clause and not any(t in found for t in ANY_LICENCE):
        found += ANY_LICENCE
    return found


def kinds_of(clause: str) -> list[str]:
    if not WANT.search(clause):
        return []
    return [kind for word, kind in KIND_WORDS if word in clause]


def constraints_of(clauses_: list[str]) -> Constraints:
    budgets = [b for b in (budget_of(c) for c in clauses_) if b is not None]
    regions: list[str] = []
    types: list[str] = []
    kinds: list[str] = []
    for clause in clauses_:
        regions += [r for r in regions_of(clause) if r not in regions]
        types += [t for t in transaction_types_of(clause) if t not in types]
        kinds += [k for k in kinds_of(clause) if k not in kinds]
    return Constraints(
        budget_max=max(budgets) if budgets else None,
        regions=tuple(regions),
        transaction_types=tuple(types),
        kinds=tuple(kinds),
    )


def terms_of_clause(clause: str) -> list[str]:
    """The pieces of a clause that boilerplate, amounts and punctuation leave."""
    cleaned = MONEY.sub(" ", clause)
    cleaned = re.sub(r"\d+(?:\.\d+)?\s*(?:%|年|月|天|个|项|家|人|次|万|亿)", " ", cleaned)
    cleaned = _BOILERPLATE.sub(lambda m: m[0] if m[0] in _PROTECTED else " ", cleaned)
    terms: list[str] = []
    # A piece is a run of CJK characters and Latin words without a gap (ar眼镜, 5g基站).
    for piece in re.findall(r"[\u3400-\u9fffa-z0-9.+-]+", cleaned):
        piece = piece.strip(".+-")
        cjk = "".join(CJK_RUN.findall(piece))
        latin = [w for w in LATIN_WORD.findall(piece) if w not in ENGLISH_STOPWORDS]
        if len(cjk) >= MIN_CJK_TERM or (latin and any(not w.isdigit() for w in latin)):
            if not cjk and len(piece) < 2:
                continue
            terms.append(piece)
    return terms


def read_demand(title: str, text: str) -> Reading:
    """What a demand asks for: its terms (title first) and the constraints its prose states."""
    title_clauses = clauses(title)
    text_clauses = clauses(text)
    wanted: list[tuple[str, Source]] = []
    sources: tuple[tuple[Source, list[str]], ...] = (
        ("title", title_clauses),
        ("text", text_clauses),
    )
    for source, parts in sources:
        for clause in parts:
            if source == "text" and is_background(clause):
                continue
            wanted += [(t, source) for t in terms_of_clause(clause)]
    terms: list[Term] = []
    seen: set[str] = set()
    for term, source in wanted:
        if term in seen:
            continue
        seen.add(term)
        pieces = segments(term)
        terms.append(Term(term, source, tuple(alternatives(pieces)), tuple(pieces)))
    return Reading(tuple(terms[:MAX_TERMS]), constraints_of(title_clauses + text_clauses))


def stored_reading(title: str, text: str, stored: dict[str, Any] | None) -> Reading:
    """A demand's stored reading; one stored before demands were read ({}) is read now."""
    return Reading.from_json(stored) if stored else read_demand(title, text)
