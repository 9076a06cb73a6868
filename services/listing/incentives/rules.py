"""The incentives policy as plain arithmetic (Hebei's opinions, sections 3(4) and 3(7)).

Three programmes, each a rate (a setting) of a basis:

- `licence_transfer`: licences and assignments earn `incentive_licence_rate` (1 %) of the value;
- `pledge_interest`: pledge loans earn `incentive_pledge_interest_rate` (50 %) of the interest
  paid. A deal of type `pledge_financing` records the loan, not its interest: it is counted and
  listed but earns nothing; a pledge loan repaid through the exchange's financing (issue 22)
  earns the rate of the interest its pledgee entered, in the year of repayment;
- `equity`: equity contributions earn `incentive_equity_rate` (10 %) of their valuation.

Each deal's amount is rounded to the cent (half up) on its own, so that every total (an
organisation's, a region's, a kind's, a month's) is the sum of the amounts of its deals, in the
JSON, the CSV and the XLSX alike. The repository computes the same in SQL (`round(numeric, 2)`
rounds half away from zero, which is half up for the non-negative amounts deals carry).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Final, Literal, get_args

from shared.identifiers import PROVINCE_CODES

__all__ = [
    "CENT",
    "EQUITY_TYPES",
    "LICENCE_TRANSFER_TYPES",
    "PLEDGE_TYPES",
    "PROGRAMMES",
    "REGION_NAMES",
    "Programme",
    "Rates",
    "eligible",
    "programme_of",
    "rate_applies",
    "region_group",
    "region_name",
    "year_bounds",
]

Programme = Literal["licence_transfer", "pledge_interest", "equity"]
PROGRAMMES: Final[tuple[Programme, ...]] = get_args(Programme)

LICENCE_TRANSFER_TYPES: Final = (
    "assignment",
    "exclusive_license",
    "sole_license",
    "nonexclusive_license",
    "open_license",
)
PLEDGE_TYPES: Final = ("pledge_financing",)
EQUITY_TYPES: Final = ("equity_contribution",)

CENT: Final = Decimal("0.01")


def programme_of(transaction_type: str) -> Programme | None:
    """The programme a deal of this transaction type falls under (None: none)."""
    if transaction_type in LICENCE_TRANSFER_TYPES:
        return "licence_transfer"
    if transaction_type in PLEDGE_TYPES:
        return "pledge_interest"
    if transaction_type in EQUITY_TYPES:
        return "equity"
    return None


def rate_applies(programme: Programme | None, source: str) -> bool:
    """Whether a line's programme rate gives what it earns: every programme's deals but pledge
    loans recorded as deals (their amount is the loan, not the interest); a repaid pledge loan
    of the exchange's financing (`source` "pledge") earns on its interest."""
    if programme is None:
        return False
    return programme != "pledge_interest" or source == "pledge"


@dataclass(frozen=True)
class Rates:
    """The policy's rates, fractions between 0 and 1 (`Decimal("0.01")` is 1 %)."""

    licence_transfer: Decimal
    pledge_interest: Decimal
    equity: Decimal

    def __post_init__(self) -> None:
        for programme in PROGRAMMES:
            rate = self.of(programme)
            if not Decimal(0) <= rate <= Decimal(1):
                raise ValueError(f"the {programme} rate {rate} is not between 0 and 1")

    def of(self, programme: Programme) -> Decimal:
        rate: Decimal = getattr(self, programme)
        return rate


def eligible(basis: Decimal, rate: Decimal) -> Decimal:
    """The amount a basis earns at a rate, to the cent, half up."""
    if basis < 0:
        raise ValueError(f"a basis is never negative: {basis}")
    return (basis * rate).quantize(CENT, rounding=ROUND_HALF_UP)


def year_bounds(year: int) -> tuple[date, date]:
    """The first and last day of a calendar year (deals close on Chinese dates)."""
    return date(year, 1, 1), date(year, 12, 31)


# Regions ------------------------------------------------------------------------------------

# The groups the report totals by: Beijing and Tianjin whole, Hebei by its 11 prefecture-level
# cities plus Dingzhou and Xinji (administered by the province directly: the "13 cities" of its
# statistics) and the Xiong'an New Area where a record names it; elsewhere by province.
HEBEI_CITIES: Final[dict[str, str]] = {
    "130100": "石家庄市",
    "130200": "唐山市",
    "130300": "秦皇岛市",
    "130400": "邯郸市",
    "130500": "邢台市",
    "130600": "保定市",
    "130700": "张家口市",
    "130800": "承德市",
    "130900": "沧州市",
    "131000": "廊坊市",
    "131100": "衡水市",
    "139001": "定州市",
    "139002": "辛集市",
    "133100": "雄安新区",
}
# Dingzhou and Xinji under their other coding (county-level cities of Baoding and Shijiazhuang).
_SAME_PLACE: Final[dict[str, str]] = {"130682": "139001", "130181": "139002"}
REGION_NAMES: Final[dict[str, str]] = {
    **{f"{prefix}0000": name for prefix, name in PROVINCE_CODES.items()},
    **HEBEI_CITIES,
    "130000": "河北省（未注明城市）",
}


def region_group(code: str) -> str:
    """The report's region group of a six-digit GB/T 2260 code: `110108` -> `110000`
    (Beijing), `130682` -> `139001` (Dingzhou), `130627` -> `130600` (Baoding), `320102` ->
    `320000` (Jiangsu). The repository groups with the same rule in SQL (`region_group_sql`)."""
    if code in _SAME_PLACE:
        return _SAME_PLACE[code]
    if code.startswith("13"):
        if code in HEBEI_CITIES:
            return code
        return f"{code[:4]}00"
    return f"{code[:2]}0000"


def region_name(group: str) -> str:
    return REGION_NAMES.get(group, group)
