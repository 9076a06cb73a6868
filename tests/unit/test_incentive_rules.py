"""The incentives policy's arithmetic (services/listing/incentives/rules.py)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from services.listing.incentives.rules import (
    HEBEI_CITIES,
    PROGRAMMES,
    Rates,
    eligible,
    programme_of,
    region_group,
    region_name,
    year_bounds,
)
from shared.contracts.catalogue import TransactionType
from shared.settings import Settings


@pytest.mark.parametrize(
    ("basis", "rate", "earned"),
    [
        ("1150000.00", "0.01", "11500.00"),
        ("0.50", "0.01", "0.01"),  # 0.005 rounds half up
        ("0.49", "0.01", "0.00"),
        ("2000000.05", "0.1", "200000.01"),  # 200000.005
        ("2000000.04", "0.1", "200000.00"),  # 200000.004
        ("12345.67", "0.5", "6172.84"),  # 6172.835
        ("99999999999999.99", "0.01", "1000000000000.00"),
        ("0.00", "0.1", "0.00"),
        ("1000.00", "0", "0.00"),
        ("1000.00", "1", "1000.00"),
        ("333.33", "0.015", "5.00"),  # 4.99995
    ],
)
def test_eligible_is_the_rate_of_the_basis_to_the_cent_half_up(
    basis: str, rate: str, earned: str
) -> None:
    result = eligible(Decimal(basis), Decimal(rate))
    assert str(result) == earned


def test_a_negative_basis_is_refused() -> None:
    with pytest.raises(ValueError, match="never negative"):
        eligible(Decimal("-1.00"), Decimal("0.01"))


@pytest.mark.parametrize(
    ("transaction_type", "programme"),
    [
        ("assignment", "licence_transfer"),
        ("exclusive_license", "licence_transfer"),
        ("sole_license", "licence_transfer"),
        ("nonexclusive_license", "licence_transfer"),
        ("open_license", "licence_transfer"),
        ("pledge_financing", "pledge_interest"),
        ("equity_contribution", "equity"),
        ("barter", None),
    ],
)
def test_each_transaction_type_has_its_programme(
    transaction_type: str, programme: str | None
) -> None:
    assert programme_of(transaction_type) == programme


def test_every_transaction_type_of_the_catalogue_falls_under_a_programme() -> None:
    from typing import get_args

    assert all(programme_of(t) is not None for t in get_args(TransactionType))


def test_rates_come_from_the_settings_and_stay_fractions() -> None:
    settings = Settings(incentive_licence_rate=Decimal("0.015"))
    rates = Rates(
        settings.incentive_licence_rate,
        settings.incentive_pledge_interest_rate,
        settings.incentive_equity_rate,
    )
    assert [rates.of(p) for p in PROGRAMMES] == [
        Decimal("0.015"),
        Decimal("0.5"),
        Decimal("0.1"),
    ]
    with pytest.raises(ValueError, match="between 0 and 1"):
        Rates(Decimal("1"), Decimal("50"), Decimal("0.1"))
    with pytest.raises(ValueError):
        Settings(incentive_equity_rate=Decimal("10"))  # 10 for 10 % is a typo caught early
    with pytest.raises(ValueError):
        Settings(incentive_licence_rate=Decimal("0.0000001"))


@pytest.mark.parametrize(
    ("code", "group", "name"),
    [
        ("110108", "110000", "北京市"),
        ("110000", "110000", "北京市"),
        ("120116", "120000", "天津市"),
        ("130102", "130100", "石家庄市"),
        ("130627", "130600", "保定市"),
        ("130682", "139001", "定州市"),  # Dingzhou, coded under Baoding
        ("139001", "139001", "定州市"),
        ("130181", "139002", "辛集市"),  # Xinji, coded under Shijiazhuang
        ("139002", "139002", "辛集市"),
        ("131082", "131000", "廊坊市"),  # Sanhe (Yanjiao)
        ("133100", "133100", "雄安新区"),
        ("131102", "131100", "衡水市"),
        ("130000", "130000", "河北省（未注明城市）"),
        ("320102", "320000", "江苏省"),
        ("440300", "440000", "广东省"),
    ],
)
def test_regions_group_into_beijing_tianjin_hebeis_cities_and_provinces(
    code: str, group: str, name: str
) -> None:
    assert region_group(code) == group
    assert region_name(group) == name


def test_hebei_has_its_thirteen_cities_and_xiongan() -> None:
    assert len(HEBEI_CITIES) == 14
    assert all(code.startswith("13") for code in HEBEI_CITIES)


def test_a_year_runs_from_the_first_of_january_to_the_last_of_december() -> None:
    assert year_bounds(2024) == (date(2024, 1, 1), date(2024, 12, 31))
