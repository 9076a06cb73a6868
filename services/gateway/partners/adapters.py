"""Partner payload formats mapped into the canonical catalogue document. Pure functions.

A partner exchange sends either the canonical `CatalogueDocument` (adapter ``canonical``) or its
own shape, which a per-partner adapter maps into one. Every problem found on the way is a
:class:`~shared.errors.FieldError` naming the field as the *partner* wrote it, and every problem
is reported at once (:class:`AdapterError`), never only the first.

Adapters:

``canonical``
    The catalogue document of API.md itself. Identifiers may come in any typed form; they are
    normalised with the shared rules (``shared.identifiers``), check digits included.

``tjipe_v1``
    A Tianjin IP exchange's patent listings, with Chinese field names and values::

        {"编号": "TJ-2026-0017", "链接": "https://…", "版本": 3,
         "更新时间": "2026-11-20 08:00:00",          # Beijing time unless an offset is given
         "状态": "挂牌中",                            # 挂牌中 | 洽谈中 | 已成交 | 已撤回 | 已过期
         "交易方式": "独占许可",                      # 转让 | 独占许可 | 排他许可 | 普通许可 | …
         "价格(万元)": "120.5",                       # 万元 = 10,000 CNY; "面议" = negotiable
         "提成比例": "3.5%", "许可年限": 5,
         "专利号": "ZL 2017 1 0601862.3", "专利类型": "发明",  # 发明 | 实用新型 | 外观设计
         "公开号": "CN107331784A", "名称": "…", "摘要": "…",
         "申请日": "2017年7月21日",                   # also 2017-07-21, 2017/7/21, 20170721
         "授权日": null, "法律状态": "有效",
         "权利人": "天津大学；天津某公司", "地区": "天津市", "分类号": "H01M 2/16；H01M 10/0525",
         "卖方": "天津大学", "发布时间": "2026-11-01 09:00:00",
         "应用领域": "储能", "许可地域": "中国大陆"}

Event envelopes (API.md "Webhook events") wrap either: ``{"type": "listing.updated",
"timestamp": "...", "data": {...}}``; :func:`adapt_event` accepts an envelope or a bare document.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.contracts.catalogue import SCHEMA_V1, CatalogueDocument, offer_id
from shared.errors import FieldError, field_errors_from_validation
from shared.identifiers import (
    ASSET_KINDS,
    PROVINCE_CODES,
    IdentifierError,
    normalize_cn_publication_number,
    normalize_full_width,
    normalize_identifier,
    normalize_ipc,
    validate_region_code,
)

__all__ = [
    "ADAPTERS",
    "EVENT_TYPES",
    "AdaptedEvent",
    "AdapterError",
    "AdapterName",
    "TjipeListingV1",
    "adapt",
    "adapt_event",
    "canonical",
    "tjipe_v1",
    "wan_to_yuan",
]

AdapterName = Literal["canonical", "tjipe_v1"]
EVENT_TYPES: Final[tuple[str, ...]] = ("listing.published", "listing.updated", "listing.withdrawn")
BEIJING: Final = timezone(timedelta(hours=8), "Asia/Shanghai")


class AdapterError(Exception):
    """A partner payload that cannot become a valid catalogue document: every reason."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors[:5]))
        self.errors = errors


def _error(field: str, rule: str, message: str) -> FieldError:
    return FieldError(field=field, rule=rule, message=message)


# --------------------------------------------------------------------------------------------
# The canonical format
# --------------------------------------------------------------------------------------------

_PATENT_KINDS: Final = frozenset({"invention_patent", "utility_model", "design_patent"})


def _normalise_identifiers(data: dict[str, Any]) -> list[FieldError]:
    """Normalise (in place) the identifiers of a raw canonical document; the errors found.

    Only values of the right type are looked at: a wrong type is reported by the model."""
    errors: list[FieldError] = []
    asset = data.get("asset")
    if not isinstance(asset, dict):
        return errors
    # A kind of the wrong type (e.g. an object) is the model's to report; hashing it in the
    # set lookups below would raise.
    kind = asset.get("kind") if isinstance(asset.get("kind"), str) else None
    identifier = asset.get("identifier")
    if kind in ASSET_KINDS and isinstance(identifier, str) and identifier.strip():
        try:
            asset["identifier"] = normalize_identifier(kind, identifier)
        except IdentifierError as exc:
            errors.append(_error("asset.identifier", exc.rule, exc.message))
    publication = asset.get("publication_number")
    if kind in _PATENT_KINDS and isinstance(publication, str) and publication.strip():
        try:
            asset["publication_number"] = normalize_cn_publication_number(publication)
        except IdentifierError as exc:
            errors.append(_error("asset.publication_number", exc.rule, exc.message))
    classifications = asset.get("classifications")
    if isinstance(classifications, dict) and isinstance(classifications.get("ipc"), list):
        codes = classifications["ipc"]
        for i, code in enumerate(codes):
            if isinstance(code, str):
                try:
                    codes[i] = normalize_ipc(code)
                except IdentifierError as exc:
                    errors.append(_error(f"asset.classifications.ipc[{i}]", exc.rule, exc.message))
    holders = asset.get("holders")
    if isinstance(holders, list):
        for i, holder in enumerate(holders):
            if isinstance(holder, dict) and isinstance(holder.get("region"), str):
                try:
                    holder["region"] = validate_region_code(holder["region"])
                except IdentifierError as exc:
                    errors.append(_error(f"asset.holders[{i}].region", exc.rule, exc.message))
    return errors


def _validate(
    data: dict[str, Any], *, exchange: str
) -> tuple[CatalogueDocument | None, list[FieldError]]:
    """Identifiers normalised, the model validated, offer id and exchange checked."""
    errors = _normalise_identifiers(data)
    document: CatalogueDocument | None = None
    try:
        document = CatalogueDocument.model_validate(data)
    except ValidationError as exc:
        seen = {e.field for e in errors}
        errors.extend(e for e in field_errors_from_validation(exc.errors()) if e.field not in seen)
    if document is not None:
        if document.source.exchange != exchange:
            errors.append(
                _error(
                    "source.exchange",
                    "exchange_mismatch",
                    f"source.exchange is {document.source.exchange!r}, but this endpoint is "
                    f"the partner {exchange!r}",
                )
            )
        listing_id = document.source.listing_id
        if "/" in listing_id or listing_id in (".", "..") or not listing_id.isprintable():
            errors.append(
                _error(
                    "source.listing_id",
                    "listing_id_charset",
                    "a listing id is one URL path segment: no '/', no control characters, "
                    "not '.' or '..'",
                )
            )
        expected = offer_id(document.source.exchange, listing_id)
        if document.offer_id != expected:
            errors.append(
                _error(
                    "offer_id",
                    "offer_id_mismatch",
                    f"offer_id must be '<source.exchange>:<source.listing_id>' = {expected!r}",
                )
            )
    return (document if not errors else None), errors


def canonical(payload: object, *, exchange: str) -> CatalogueDocument:
    """The catalogue document as sent, identifiers normalised. Raises AdapterError."""
    if not isinstance(payload, dict):
        raise AdapterError([_error("body", "model_type", "the document must be a JSON object")])
    document, errors = _validate(copy.deepcopy(payload), exchange=exchange)
    if document is None:
        raise AdapterError(errors)
    return document


# --------------------------------------------------------------------------------------------
# Value parsers of partner formats (each raises _Bad with a rule and a message)
# --------------------------------------------------------------------------------------------


class _Bad(ValueError):
    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


_WAN: Final = Decimal(10_000)
_CENT: Final = Decimal("0.01")


def _decimal(value: object, *, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise _Bad(f"{what}_format", f"expected a decimal number as a string, got {value!r}")
    text = normalize_full_width(str(value)).replace(",", "").replace("，", "")
    try:
        number = Decimal(text)
    except InvalidOperation as exc:
        raise _Bad(f"{what}_format", f"{value!r} is not a decimal number") from exc
    if not number.is_finite():
        raise _Bad(f"{what}_format", f"{value!r} is not a finite number")
    return number


def wan_to_yuan(value: object) -> Decimal:
    """An amount in 万元 (10,000 CNY) as CNY with two decimals: ``"120.5"`` -> ``1205000.00``.

    Exact decimal arithmetic; at most six decimals in 万元 (one fen); never negative."""
    text = (
        value.strip().removesuffix("万元").removesuffix("万") if isinstance(value, str) else value
    )
    number = _decimal(text, what="amount")
    if number < 0:
        raise _Bad("amount_negative", f"{value!r} is negative; an amount is 0 or more")
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -6:
        raise _Bad(
            "amount_precision",
            f"{value!r} has more than 6 decimals: in 万元 the 6th decimal is one fen",
        )
    return (number * _WAN).quantize(_CENT)


def _percent(value: object) -> Decimal:
    """``"3.5%"``, ``"3.5"`` or ``3.5`` (percent) -> ``Decimal("0.035")``."""
    text = value.strip().removesuffix("%").removesuffix("％") if isinstance(value, str) else value
    number = _decimal(text, what="percent")
    if not 0 <= number <= 100:
        raise _Bad("percent_range", f"{value!r} is not a percentage between 0 and 100")
    return number / 100


def _integer(value: object, *, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise _Bad("int_format", f"expected a whole number, got {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and normalize_full_width(value).isdigit():
        number = int(normalize_full_width(value))
    else:
        raise _Bad("int_format", f"expected a whole number, got {value!r}")
    if not low <= number <= high:
        raise _Bad("int_range", f"{number} is not between {low} and {high}")
    return number


_DATE = re.compile(r"(\d{4})\s*[年\-/.]\s*(\d{1,2})\s*[月\-/.]\s*(\d{1,2})(?:\s*日)?")
_COMPACT_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})")
_TIME = re.compile(r"\s*T?\s*(\d{1,2})[:：](\d{2})(?:[:：](\d{2})(?:[.,]\d{1,6})?)?")
_OFFSET = re.compile(r"\s*(Z|[+-]\d{2}:?\d{2})")


def _date_parts(text: str) -> tuple[date, str]:
    match = _DATE.match(text) or _COMPACT_DATE.match(text)
    if match is None:
        raise _Bad(
            "date_format",
            f"{text!r} is not a date: write 2017-07-21, 2017/7/21, 2017年7月21日 or 20170721",
        )
    year, month, day = (int(g) for g in match.groups())
    try:
        return date(year, month, day), text[match.end() :]
    except ValueError as exc:
        raise _Bad("date_invalid", f"{text!r} is not a calendar date ({exc})") from exc


def _date(value: object) -> date:
    if not isinstance(value, str):
        raise _Bad("date_format", f"expected a date as a string, got {value!r}")
    text = normalize_full_width(value)
    day, rest = _date_parts(text)
    if rest.strip():
        raise _Bad("date_format", f"{value!r} has trailing text after the date")
    return day


def _beijing_datetime(value: object) -> datetime:
    """``"2026-11-20 08:00:00"`` in Beijing time (or with an explicit offset) -> aware UTC."""
    if not isinstance(value, str):
        raise _Bad("datetime_format", f"expected a date and time as a string, got {value!r}")
    text = normalize_full_width(value)
    try:
        day, rest = _date_parts(text)
    except _Bad as exc:
        rule = "datetime_invalid" if exc.rule == "date_invalid" else "datetime_format"
        raise _Bad(rule, exc.message) from exc
    hour = minute = second = 0
    time_match = _TIME.match(rest)
    if time_match is not None:
        hour, minute = int(time_match.group(1)), int(time_match.group(2))
        second = int(time_match.group(3) or 0)
        rest = rest[time_match.end() :]
    tz: timezone = BEIJING
    offset_match = _OFFSET.match(rest)
    if offset_match is not None:
        raw = offset_match.group(1)
        if raw == "Z":
            tz = UTC
        else:
            digits = raw[1:].replace(":", "")
            delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
            tz = timezone(delta if raw[0] == "+" else -delta)
        rest = rest[offset_match.end() :]
    if rest.strip():
        raise _Bad(
            "datetime_format",
            f"{value!r} is not a date and time: write 2026-11-20 08:00:00 (Beijing time)",
        )
    try:
        local = datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=tz)
    except ValueError as exc:
        raise _Bad("datetime_invalid", f"{value!r} is not a valid time ({exc})") from exc
    return local.astimezone(UTC)


def _text(value: object, *, max_length: int = 20_000) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _Bad("string_type", f"expected text, got {value!r}")
    text = str(value).strip()
    if not text:
        raise _Bad("string_too_short", "must not be empty")
    if len(text) > max_length:
        raise _Bad("string_too_long", f"at most {max_length} characters")
    return text


def _enum(mapping: Mapping[str, str]) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if isinstance(value, str) and value.strip() in mapping:
            return mapping[value.strip()]
        choices = "、".join(mapping)
        raise _Bad("enum", f"{value!r} is not one of {choices}")

    return parse


_SEPARATORS: Final = re.compile(r"[；;、，,\n]+")


def _text_list(value: object) -> list[str]:
    if isinstance(value, str):
        items = [part.strip() for part in _SEPARATORS.split(value)]
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        items = [item.strip() for item in value]
    else:
        raise _Bad("list_type", f"expected text separated by '；' or a list of text, got {value!r}")
    found = [item for item in items if item]
    if not found:
        raise _Bad("string_too_short", "must name at least one")
    return found


_SUFFIXES: Final = (
    "特别行政区",
    "维吾尔自治区",
    "壮族自治区",
    "回族自治区",
    "自治区",
    "省",
    "市",
)
# Prefecture cities of Hebei and the districts of Beijing and Tianjin (GB/T 2260): the regions a
# Jing-Jin-Ji exchange names most; anything else is sent as a province or a six-digit code.
_LOCAL_REGIONS: Final[dict[str, dict[str, str]]] = {
    "110000": {
        "东城区": "110101", "西城区": "110102", "朝阳区": "110105", "丰台区": "110106",
        "石景山区": "110107", "海淀区": "110108", "门头沟区": "110109", "房山区": "110111",
        "通州区": "110112", "顺义区": "110113", "昌平区": "110114", "大兴区": "110115",
        "怀柔区": "110116", "平谷区": "110117", "密云区": "110118", "延庆区": "110119",
    },
    "120000": {
        "和平区": "120101", "河东区": "120102", "河西区": "120103", "南开区": "120104",
        "河北区": "120105", "红桥区": "120106", "东丽区": "120110", "西青区": "120111",
        "津南区": "120112", "北辰区": "120113", "武清区": "120114", "宝坻区": "120115",
        "滨海新区": "120116", "宁河区": "120117", "静海区": "120118", "蓟州区": "120119",
    },
    "130000": {
        "石家庄市": "130100", "唐山市": "130200", "秦皇岛市": "130300", "邯郸市": "130400",
        "邢台市": "130500", "保定市": "130600", "张家口市": "130700", "承德市": "130800",
        "沧州市": "130900", "廊坊市": "131000", "衡水市": "131100", "雄安新区": "133100",
    },
}  # fmt: skip


def _province_names() -> dict[str, str]:
    names: dict[str, str] = {}
    for prefix, full in PROVINCE_CODES.items():
        code = f"{prefix}0000"
        names[full] = code
        short = full
        for suffix in _SUFFIXES:
            if short.endswith(suffix):
                short = short.removesuffix(suffix)
                break
        names[short] = code
    names["内蒙古"] = "150000"
    return names


_PROVINCES: Final = _province_names()
_UNAMBIGUOUS_LOCAL: Final = {
    name: code
    for locals_ in _LOCAL_REGIONS.values()
    for name, code in locals_.items()
    if name not in ("河北区", "朝阳区", "和平区", "河东区", "河西区", "南开区", "红桥区")
}


def _region(value: object) -> str:
    """``"天津市"``, ``"天津"``, ``"天津市南开区"``, ``"河北省保定市"``, ``"120104"`` -> a code."""
    if not isinstance(value, str) or not value.strip():
        raise _Bad("string_type", f"expected a region name or code, got {value!r}")
    text = "".join(normalize_full_width(value).split())
    if text.isdigit():
        try:
            return validate_region_code(text)
        except IdentifierError as exc:
            raise _Bad(exc.rule, exc.message) from exc
    if text in _PROVINCES:
        return _PROVINCES[text]
    if text in _UNAMBIGUOUS_LOCAL:
        return _UNAMBIGUOUS_LOCAL[text]
    for province_name, province_code in _PROVINCES.items():
        if text.startswith(province_name):
            local = text.removeprefix(province_name)
            found = _LOCAL_REGIONS.get(province_code, {})
            if local in found:
                return found[local]
            if f"{local}市" in found:
                return found[f"{local}市"]
    raise _Bad(
        "region_unknown",
        f"{value!r} is not a region we know: send a province (天津市), a district of Beijing or "
        "Tianjin, a city of Hebei, or the six-digit GB/T 2260 code",
    )


# --------------------------------------------------------------------------------------------
# The tjipe_v1 format (a Tianjin IP exchange)
# --------------------------------------------------------------------------------------------

_TJIPE_STATUS: Final = {
    "挂牌中": "published",
    "洽谈中": "under_negotiation",
    "已成交": "closed",
    "已撤回": "withdrawn",
    "已下架": "withdrawn",
    "已过期": "expired",
}
_TJIPE_TRANSACTION: Final = {
    "转让": "assignment",
    "独占许可": "exclusive_license",
    "排他许可": "sole_license",
    "普通许可": "nonexclusive_license",
    "开放许可": "open_license",
    "质押融资": "pledge_financing",
    "作价入股": "equity_contribution",
}
_TJIPE_KIND: Final = {
    "发明": "invention_patent",
    "发明专利": "invention_patent",
    "实用新型": "utility_model",
    "外观设计": "design_patent",
}
_TJIPE_LEGAL_STATUS: Final = {
    "有效": "granted",
    "授权": "granted",
    "已授权": "granted",
    "审中": "pending",
    "实审": "pending",
    "公开": "pending",
    "失效": "lapsed",
    "届满": "expired",
    "期限届满": "expired",
    "无效": "invalidated",
    "被宣告无效": "invalidated",
    "驳回": "rejected",
    "撤回": "withdrawn",
    "视为撤回": "withdrawn",
}
NEGOTIABLE: Final = ("面议", "")

_TJIPE_FIELDS: Final = (
    "编号",
    "链接",
    "版本",
    "更新时间",
    "状态",
    "交易方式",
    "价格(万元)",
    "提成比例",
    "许可年限",
    "专利号",
    "专利类型",
    "公开号",
    "名称",
    "摘要",
    "申请日",
    "授权日",
    "法律状态",
    "权利人",
    "地区",
    "分类号",
    "卖方",
    "发布时间",
    "应用领域",
    "许可地域",
)
_TJIPE_REQUIRED: Final = (
    "编号",
    "版本",
    "更新时间",
    "交易方式",
    "专利号",
    "专利类型",
    "名称",
    "权利人",
)

# Canonical paths back to the partner's own field names (first match wins).
_TJIPE_PATHS: Final[tuple[tuple[re.Pattern[str], str], ...]] = tuple(
    (re.compile(pattern), name)
    for pattern, name in (
        (r"offer_id|source\.listing_id", "编号"),
        (r"source\.url", "链接"),
        (r"source\.version", "版本"),
        (r"source\.updated_at", "更新时间"),
        (r"status", "状态"),
        (r"transaction\.type", "交易方式"),
        (r"transaction\.price", "价格(万元)"),
        (r"transaction\.royalty_rate", "提成比例"),
        (r"transaction\.term_months", "许可年限"),
        (r"transaction\.territory", "许可地域"),
        (r"transaction\.field_of_use", "应用领域"),
        (r"asset\.kind", "专利类型"),
        (r"asset\.identifier", "专利号"),
        (r"asset\.publication_number", "公开号"),
        (r"asset\.title", "名称"),
        (r"asset\.abstract", "摘要"),
        (r"asset\.filed_on", "申请日"),
        (r"asset\.granted_on", "授权日"),
        (r"asset\.legal_status", "法律状态"),
        (r"asset\.holders\[\d+\]\.region", "地区"),
        (r"asset\.holders", "权利人"),
        (r"asset\.classifications", "分类号"),
        (r"seller", "卖方"),
        (r"published_at", "发布时间"),
    )
)


def _tjipe_field(path: str) -> str:
    for pattern, name in _TJIPE_PATHS:
        if pattern.match(path):
            return name
    return path


class TjipeListingV1(BaseModel):
    """The ``tjipe_v1`` partner format (documentation: the adapter parses it leniently and
    reports every problem under these names)."""

    model_config = ConfigDict(title="TjipeListingV1", extra="forbid")

    编号: str = Field(description="the partner's listing id", examples=["TJ-2026-0017"])
    链接: str | None = Field(default=None, description="the listing's page on the partner's site")
    版本: int | str = Field(description="the listing's version, increasing", examples=[3])
    更新时间: str = Field(
        description="Beijing time unless an offset is given", examples=["2026-11-20 08:00:00"]
    )
    状态: Literal["挂牌中", "洽谈中", "已成交", "已撤回", "已下架", "已过期"] = "挂牌中"
    交易方式: Literal[
        "转让", "独占许可", "排他许可", "普通许可", "开放许可", "质押融资", "作价入股"
    ]
    价格_万元: str | None = Field(
        default=None,
        alias="价格(万元)",
        description="in 万元 (10,000 CNY), a decimal string; 面议 or absent = negotiable",
        examples=["120.5"],
    )
    提成比例: str | None = Field(default=None, examples=["3.5%"])
    许可年限: int | None = Field(default=None, description="years", examples=[5])
    专利号: str = Field(examples=["ZL 2017 1 0601862.3"])
    专利类型: Literal["发明", "发明专利", "实用新型", "外观设计"]
    公开号: str | None = Field(default=None, examples=["CN107331784A"])
    名称: str
    摘要: str | None = None
    申请日: str | None = Field(
        default=None, description="2017-07-21, 2017/7/21, 2017年7月21日 or 20170721"
    )
    授权日: str | None = None
    法律状态: str | None = Field(
        default=None, description="有效, 审中, 失效, 届满, 无效, 驳回, 撤回 (default from 授权日)"
    )
    权利人: str | list[str] = Field(
        description="separated by ；", examples=["天津大学；天津某公司"]
    )
    地区: str | None = Field(default=None, examples=["天津市"])
    分类号: str | list[str] | None = Field(default=None, examples=["H01M 2/16；H01M 10/0525"])
    卖方: str | None = None
    发布时间: str | None = None
    应用领域: str | None = None
    许可地域: str | None = None


def tjipe_v1(payload: object, *, exchange: str) -> CatalogueDocument:
    """A Tianjin IP exchange listing mapped into a catalogue document. Raises AdapterError
    naming the partner's own fields."""
    if not isinstance(payload, dict):
        raise AdapterError([_error("body", "model_type", "the listing must be a JSON object")])
    errors: list[FieldError] = []
    raw: dict[str, Any] = {}
    for key, value in payload.items():
        name = normalize_full_width(str(key))
        if name not in _TJIPE_FIELDS:
            errors.append(_error(str(key), "extra_forbidden", "not a field of tjipe_v1"))
        else:
            raw[name] = value
    present = {k: v for k, v in raw.items() if v is not None and v != ""}
    for name in _TJIPE_REQUIRED:
        if name not in present:
            errors.append(_error(name, "missing", "Field required"))

    def get(name: str, parse: Callable[[object], Any]) -> Any:
        if name not in present:
            return None
        try:
            return parse(present[name])
        except _Bad as exc:
            errors.append(_error(name, exc.rule, exc.message))
            return None

    listing_id = get("编号", lambda v: _text(v, max_length=200))
    kind = get("专利类型", _enum(_TJIPE_KIND))
    identifier = None
    if "专利号" in present and kind is not None:
        number = present["专利号"]
        if not isinstance(number, str):
            errors.append(_error("专利号", "string_type", f"expected text, got {number!r}"))
        else:
            try:
                identifier = normalize_identifier(kind, number)
            except IdentifierError as exc:
                errors.append(_error("专利号", exc.rule, exc.message))
    price_mode, amount = "negotiable", None
    if "价格(万元)" in raw and not (
        isinstance(raw["价格(万元)"], str) and raw["价格(万元)"].strip() in NEGOTIABLE
    ):
        amount = get("价格(万元)", wan_to_yuan) if raw["价格(万元)"] is not None else None
        price_mode = "fixed" if amount is not None else "negotiable"
    royalty = get("提成比例", _percent)
    if royalty is not None and amount is None:
        price_mode = "royalty"
    years = get("许可年限", lambda v: _integer(v, low=1, high=100))
    filed_on = get("申请日", _date)
    granted_on = get("授权日", _date)
    legal_status = get("法律状态", _enum(_TJIPE_LEGAL_STATUS))
    if legal_status is None and "法律状态" not in present:
        legal_status = "granted" if granted_on is not None else "pending"
    region = get("地区", _region)
    holders = get("权利人", _text_list) or []
    ipc = get("分类号", _text_list) or []
    document: dict[str, Any] = {
        "schema": SCHEMA_V1,
        "offer_id": offer_id(exchange, listing_id) if listing_id else None,
        "source": {
            "exchange": exchange,
            "listing_id": listing_id,
            "url": get("链接", _text),
            "updated_at": get("更新时间", _beijing_datetime),
            "version": get("版本", lambda v: _integer(v, low=1, high=2**31 - 1)),
        },
        "asset": {
            "kind": kind,
            "identifier": identifier,
            "publication_number": get("公开号", _text),
            "title": {"zh": get("名称", _text)},
            "abstract": {"zh": get("摘要", _text)},
            "classifications": {"ipc": ipc},
            "holders": [{"name": name, "region": region} for name in holders],
            "filed_on": filed_on,
            "granted_on": granted_on,
            "legal_status": legal_status,
        },
        "transaction": {
            "type": get("交易方式", _enum(_TJIPE_TRANSACTION)),
            "price": {"mode": price_mode, "amount": amount, "currency": "CNY"},
            "royalty_rate": royalty,
            "term_months": years * 12 if years else None,
            "territory": get("许可地域", lambda v: _text(v, max_length=100)),
            "field_of_use": get("应用领域", lambda v: _text(v, max_length=500)),
        },
        "status": get("状态", _enum(_TJIPE_STATUS)) if "状态" in present else "published",
        "published_at": get("发布时间", _beijing_datetime),
        "seller": get("卖方", lambda v: _text(v, max_length=200)),
    }
    checked, model_errors = _validate(document, exchange=exchange)
    reported = {e.field for e in errors}
    for error in model_errors:
        field = _tjipe_field(error.field)
        if field not in reported:
            errors.append(_error(field, error.rule, error.message))
            reported.add(field)
    if errors or checked is None:
        raise AdapterError(errors)
    return checked


# --------------------------------------------------------------------------------------------
# Registry and event envelopes
# --------------------------------------------------------------------------------------------

Adapter = Callable[..., CatalogueDocument]
ADAPTERS: Final[dict[str, Adapter]] = {"canonical": canonical, "tjipe_v1": tjipe_v1}


def adapt(adapter: str, payload: object, *, exchange: str) -> CatalogueDocument:
    """Run the named adapter: a valid catalogue document of `exchange`, or AdapterError."""
    return ADAPTERS[adapter](payload, exchange=exchange)


@dataclass(frozen=True)
class AdaptedEvent:
    document: CatalogueDocument
    event_type: str | None  # None for a bare document


_ENVELOPE_KEYS: Final = frozenset({"type", "timestamp", "data"})


def _prefixed(errors: list[FieldError], prefix: str) -> list[FieldError]:
    return [
        _error(prefix if e.field == "body" else f"{prefix}.{e.field}", e.rule, e.message)
        for e in errors
    ]


def adapt_event(adapter: str, payload: object, *, exchange: str) -> AdaptedEvent:
    """An event envelope ``{"type", "timestamp", "data"}`` (API.md "Webhook events") or a bare
    document, in the partner's format. In an envelope, errors in the document are named
    ``data.<field>``; ``listing.withdrawn`` must carry a withdrawn document and the other types
    must not."""
    if not (isinstance(payload, dict) and "type" in payload and "data" in payload):
        return AdaptedEvent(adapt(adapter, payload, exchange=exchange), None)
    errors = [
        _error(str(key), "extra_forbidden", "an event has only type, timestamp and data")
        for key in payload
        if key not in _ENVELOPE_KEYS
    ]
    event_type = payload["type"]
    if event_type not in EVENT_TYPES:
        errors.append(_error("type", "enum", f"type must be one of {', '.join(EVENT_TYPES)}"))
    timestamp = payload.get("timestamp")
    if timestamp is not None:
        try:
            parsed = datetime.fromisoformat(str(timestamp))
            if parsed.tzinfo is None:
                raise ValueError("no time zone")
        except ValueError:
            errors.append(
                _error(
                    "timestamp",
                    "datetime_format",
                    "timestamp must be an ISO 8601 time with a zone, e.g. 2026-11-20T08:00:00Z",
                )
            )
    document: CatalogueDocument | None = None
    try:
        document = adapt(adapter, payload["data"], exchange=exchange)
    except AdapterError as exc:
        errors.extend(_prefixed(exc.errors, "data"))
    if document is not None and event_type in EVENT_TYPES:
        withdrawn = document.status == "withdrawn"
        if withdrawn != (event_type == "listing.withdrawn"):
            errors.append(
                _error(
                    "type",
                    "event_type_mismatch",
                    f"a {event_type} event cannot carry a document whose status is "
                    f"{document.status!r}"
                    if not withdrawn
                    else f"the document is withdrawn: send it as listing.withdrawn, "
                    f"not {event_type}",
                )
            )
    if errors or document is None:
        raise AdapterError(errors)
    return AdaptedEvent(document, str(event_type))
