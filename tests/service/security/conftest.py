"""The world the security tests run in: a seller with a published listing, a buyer, an
unrelated organisation and a partner exchange, on in-process apps over one database.

The tests were one module and still share one world and one set of apps across their files:
tests/conftest.py's module-scoped database, settings and apps are taken again here at package
scope (the three apps take about 3 s to stop, which each file would otherwise pay)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import httpx
import pytest

import conftest as suite
from service.security.helpers import SELLER, World, publish
from support import new_exchange, new_organization, real_application_numbers


def per_package(name: str) -> object:
    """The fixture `name` of tests/conftest.py, as it is there but once for this package."""
    return pytest.fixture(scope="package", name=name)(inspect.unwrap(getattr(suite, name)))


database_url = per_package("database_url")
settings = per_package("settings")
listing_app = per_package("listing_app")
listing = per_package("listing")
matching_settings = per_package("matching_settings")
matching_app = per_package("matching_app")
matching = per_package("matching")
gateway_app = per_package("gateway_app")
gateway = per_package("gateway")


@pytest.fixture(scope="package")
def numbers() -> Iterator[str]:
    """Real CN invention application numbers, each used once in this package."""
    return iter(list(real_application_numbers("invention_patent")))


@pytest.fixture(scope="package")
async def world(listing: httpx.AsyncClient, operator_key: str, numbers: Iterator[str]) -> World:
    seller_id, seller = await new_organization(listing, operator_key, name=SELLER)
    buyer_id, buyer = await new_organization(
        listing, operator_key, name="河北某新能源科技有限公司", kind="enterprise", region="130100"
    )
    third_id, third = await new_organization(
        listing, operator_key, name="天津某贸易有限公司", kind="enterprise", region="120000"
    )
    exchange_id, _, partner_key = await new_exchange(
        listing, operator_key, name="天津知识产权交易中心"
    )
    published = await publish(listing, seller, operator_key, next(numbers))
    return World(
        seller_id=seller_id,
        seller=seller,
        buyer_id=buyer_id,
        buyer=buyer,
        third_id=third_id,
        third=third,
        exchange_id=exchange_id,
        partner_key=partner_key,
        listing_id=published["id"],
        asset_id=published["asset"]["id"],
    )
