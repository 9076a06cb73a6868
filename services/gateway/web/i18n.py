"""The web catalogue's interface text in Chinese and English, and the choice between them.

The language is `?lang=zh|en` when given (links keep it), else the browser's Accept-Language
(the first of zh / en it prefers), else Chinese. Labels of the API's enumerations (kinds,
transaction types, legal and listing statuses, provinces) live here too: the API answers codes.
"""

from __future__ import annotations

from typing import Final, Literal

from shared.identifiers import PROVINCE_CODES

__all__ = ["LANGS", "Lang", "Translator", "choose_lang"]

Lang = Literal["zh", "en"]
LANGS: Final[tuple[Lang, ...]] = ("zh", "en")

TEXT: Final[dict[str, tuple[str, str]]] = {
    # key: (zh, en)
    "site": ("京津冀知识产权交易目录", "Jing-Jin-Ji IP exchange catalogue"),
    "skip": ("跳到主要内容", "Skip to main content"),
    "nav_search": ("检索", "Search"),
    "nav_stats": ("交易统计", "Deal statistics"),
    "nav_api": ("API 文档", "API docs"),
    "switch_lang": ("English", "中文"),
    "search_label": ("关键词、专利号或权利人", "Keywords, a patent number or a holder"),
    "search_button": ("检索", "Search"),
    "filters": ("筛选", "Filters"),
    "apply": ("应用筛选", "Apply filters"),
    "clear": ("清除全部", "Clear all"),
    "sort": ("排序", "Sort"),
    "sort_relevance": ("相关度", "Relevance"),
    "sort_price_asc": ("价格从低到高", "Price, low to high"),
    "sort_price_desc": ("价格从高到低", "Price, high to low"),
    "sort_newest": ("最新挂牌", "Newest listed"),
    "sort_oldest": ("最早挂牌", "Oldest listed"),
    "sort_filed": ("最新申请", "Latest filed"),
    "facet_kind": ("类型", "Kind"),
    "facet_transaction_type": ("交易方式", "Transaction"),
    "facet_province": ("地区", "Region"),
    "facet_legal_status": ("法律状态", "Legal status"),
    "facet_exchange": ("交易所", "Exchange"),
    "results_eq": ("共 {n} 项结果", "Results: {n}"),
    "results_about": ("约 {n} 项结果", "About {n} results"),
    "results_gte": ("{n} 项以上结果", "{n}+ results"),
    "no_results": ("没有找到结果。", "No results."),
    "page_of": ("第 {page} / {pages} 页", "Page {page} of {pages}"),
    "pages": ("分页", "Pages"),
    "previous": ("上一页", "Previous"),
    "next": ("下一页", "Next"),
    "offers": ("报价", "Offers"),
    "holders": ("权利人", "Holders"),
    "negotiable": ("面议", "Negotiable"),
    "royalty": ("提成", "Royalty"),
    "identifier": ("申请号/注册号", "Identifier"),
    "publication_number": ("公开号", "Publication number"),
    "kind": ("类型", "Kind"),
    "legal_status": ("法律状态", "Legal status"),
    "filed_on": ("申请日", "Filed on"),
    "granted_on": ("授权日", "Granted on"),
    "expires_on": ("届满日", "Expires on"),
    "classifications": ("分类", "Classifications"),
    "ipc": ("IPC 分类", "IPC"),
    "nice": ("尼斯分类", "Nice classes"),
    "locarno": ("洛迦诺分类", "Locarno classes"),
    "plant": ("植物分类", "Plant taxon"),
    "abstract": ("摘要", "Abstract"),
    "encumbrances": ("权利负担", "Encumbrances"),
    "no_encumbrances": ("无登记的权利负担。", "No recorded encumbrances."),
    "until": ("至", "until"),
    "offers_across": ("各交易所的报价", "Offers across exchanges"),
    "exchange": ("交易所", "Exchange"),
    "transaction": ("交易方式", "Transaction"),
    "price": ("价格", "Price"),
    "status": ("状态", "Status"),
    "seller": ("出让方", "Seller"),
    "source": ("来源", "Source"),
    "view_on_exchange": ("在 {exchange} 查看", "View on {exchange}"),
    "this_exchange": ("本所挂牌", "Listed here"),
    "no_offers": ("目前没有报价。", "No offers at the moment."),
    "deal_history": ("成交记录", "Deal history"),
    "no_deals": ("暂无成交记录。", "No deals recorded."),
    "deals_partial": (
        "仅显示最近 {n} 条成交。",
        "Only the latest {n} deals are shown.",
    ),
    "closed_on": ("成交日", "Closed on"),
    "amount": ("金额", "Amount"),
    "buyer": ("受让方", "Buyer"),
    "confidential": ("保密", "Confidential"),
    "needs_review": ("权利人信息待运营方核实", "Holder details await an operator's review"),
    "stats_title": ("公开交易统计", "Public deal statistics"),
    "stats_note": (
        "仅统计公开金额；少于三笔交易的分组不公布。",
        "Only disclosed amounts count; groups of fewer than three deals are not published.",
    ),
    "by_month": ("按月", "By month"),
    "by_region": ("按地区", "By region"),
    "by_kind": ("按类型", "By kind"),
    "deal_count": ("成交笔数", "Deals"),
    "disclosed_total": ("公开成交金额（元）", "Disclosed value (CNY)"),
    "disclosed_median": ("金额中位数（元）", "Median amount (CNY)"),
    "group": ("分组", "Group"),
    "no_stats": ("暂无可公布的统计。", "No statistics to publish yet."),
    "since": ("起始日期", "From"),
    "until_date": ("截止日期", "To"),
    "all": ("全部", "All"),
    "data_table": ("数据表", "Data table"),
    "error_title": ("请求有误", "Something is wrong with the request"),
    "error_unavailable": (
        "目录暂时不可用，请稍后再试。",
        "The catalogue is unavailable, retry shortly.",
    ),
    "error_not_found": ("没有找到该资产。", "No such asset."),
    "error_page_not_found": ("没有这个页面。", "No such page."),
    "back_to_search": ("返回检索", "Back to search"),
    "status_code": ("状态码", "Status"),
    "request_id": ("请求编号", "Request id"),
    "asset": ("资产", "Asset"),
}

LABELS: Final[dict[str, dict[str, tuple[str, str]]]] = {
    "kind": {
        "invention_patent": ("发明专利", "Invention patent"),
        "utility_model": ("实用新型", "Utility model"),
        "design_patent": ("外观设计", "Design patent"),
        "trademark": ("商标", "Trademark"),
        "software_copyright": ("软件著作权", "Software copyright"),
        "copyright_work": ("作品著作权", "Copyright work"),
        "ic_layout": ("集成电路布图设计", "IC layout design"),
        "plant_variety": ("植物新品种", "Plant variety"),
        "geographical_indication": ("地理标志", "Geographical indication"),
    },
    "transaction_type": {
        "assignment": ("转让", "Assignment"),
        "exclusive_license": ("独占许可", "Exclusive licence"),
        "sole_license": ("排他许可", "Sole licence"),
        "nonexclusive_license": ("普通许可", "Non-exclusive licence"),
        "open_license": ("开放许可", "Open licence"),
        "pledge_financing": ("质押融资", "Pledge financing"),
        "equity_contribution": ("作价入股", "Equity contribution"),
    },
    "legal_status": {
        "pending": ("审查中", "Pending"),
        "granted": ("有效", "Granted"),
        "lapsed": ("失效", "Lapsed"),
        "expired": ("期满终止", "Expired"),
        "invalidated": ("被宣告无效", "Invalidated"),
        "rejected": ("驳回", "Rejected"),
        "withdrawn": ("撤回", "Withdrawn"),
    },
    "status": {
        "draft": ("草稿", "Draft"),
        "pending_review": ("待审核", "Pending review"),
        "published": ("挂牌中", "On the market"),
        "under_negotiation": ("洽谈中", "Under negotiation"),
        "closed": ("已成交", "Closed"),
        "withdrawn": ("已撤回", "Withdrawn"),
        "expired": ("已到期", "Expired"),
    },
    "encumbrance": {
        "pledge": ("质押", "Pledge"),
        "exclusive_license": ("独占许可", "Exclusive licence"),
    },
    "exchange": {
        "jjj": ("京津冀知识产权交易所", "Jing-Jin-Ji IP Exchange"),
    },
}

PROVINCES_EN: Final[dict[str, str]] = {
    "11": "Beijing",
    "12": "Tianjin",
    "13": "Hebei",
    "14": "Shanxi",
    "15": "Inner Mongolia",
    "21": "Liaoning",
    "22": "Jilin",
    "23": "Heilongjiang",
    "31": "Shanghai",
    "32": "Jiangsu",
    "33": "Zhejiang",
    "34": "Anhui",
    "35": "Fujian",
    "36": "Jiangxi",
    "37": "Shandong",
    "41": "Henan",
    "42": "Hubei",
    "43": "Hunan",
    "44": "Guangdong",
    "45": "Guangxi",
    "46": "Hainan",
    "50": "Chongqing",
    "51": "Sichuan",
    "52": "Guizhou",
    "53": "Yunnan",
    "54": "Tibet",
    "61": "Shaanxi",
    "62": "Gansu",
    "63": "Qinghai",
    "64": "Ningxia",
    "65": "Xinjiang",
    "71": "Taiwan",
    "81": "Hong Kong",
    "82": "Macao",
}


def choose_lang(asked: str | None, accept_language: str) -> Lang:
    """`asked` (?lang=) when it is zh or en, else the first of zh / en the Accept-Language
    header ranks highest, else zh."""
    if asked in LANGS:
        return "en" if asked == "en" else "zh"
    ranked: list[tuple[float, int, Lang]] = []
    for position, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        if primary not in LANGS:
            continue
        weight = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if weight > 0:
            ranked.append((-weight, position, "en" if primary == "en" else "zh"))
    return min(ranked)[2] if ranked else "zh"


class Translator:
    """The text of one language, for the templates: `t("key", n=3)`, `label("kind", code)`."""

    def __init__(self, lang: Lang) -> None:
        self.lang = lang
        self._at = 0 if lang == "zh" else 1

    def __call__(self, key: str, **values: object) -> str:
        text = TEXT[key][self._at]
        return text.format(**values) if values else text

    def label(self, group: str, code: object) -> str:
        """The name of an API code; the code itself when it has none (a new exchange)."""
        if code is None:
            return ""
        if group == "province":
            return self.province(str(code))
        found = LABELS.get(group, {}).get(str(code))
        return found[self._at] if found else str(code)

    def province(self, code: str) -> str:
        prefix = code[:2]
        if self.lang == "en":
            return PROVINCES_EN.get(prefix, code)
        return PROVINCE_CODES.get(prefix, code)
