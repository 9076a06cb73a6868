"""Which routes read from the replica (docs/DECISIONS.md, "Reads from replicas"): the table
below is the decision; a route that changes its session dependency fails here until the table
(and the decision's text) changes with it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from uuid import uuid4

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from shared.auth import Principal
from shared.db import get_session
from shared.encryption import new_key
from shared.reads import get_catalogue_session, get_read_session, reads_from_replica
from shared.settings import Settings

# The public catalogue: the replica for anonymous callers, the primary for callers with a key.
CATALOGUE_READS = {
    ("listing", "GET", "/v1/assets"),
    ("listing", "GET", "/v1/assets/{asset_id}"),
    ("listing", "GET", "/v1/assets/{asset_id}/offers"),
    ("listing", "GET", "/v1/listings/{listing_id}"),
    ("listing", "GET", "/v1/deals"),
    ("listing", "GET", "/v1/deals/stats"),
}
# Always the replica: the operators' report over past deals.
REPORT_READS = {
    ("listing", "GET", "/v1/incentives"),
    ("listing", "GET", "/v1/incentives/organizations"),
    ("listing", "GET", "/v1/incentives/deals"),
    ("listing", "GET", "/v1/incentives/export"),
    ("listing", "GET", "/v1/incentives/charts/{chart}"),
}


def apps() -> Iterator[tuple[str, FastAPI]]:
    from services.gateway.app import create_app as gateway
    from services.listing.app import create_app as listing
    from services.matching.app import create_app as matching

    settings = Settings(secret_keys=[new_key()])
    yield "listing", listing(settings)
    yield "matching", matching(settings)
    yield "gateway", gateway(settings)


def uses(dependant: Dependant, call: Callable[..., Any]) -> bool:
    return dependant.call is call or any(uses(sub, call) for sub in dependant.dependencies)


def routes_using(call: Callable[..., Any]) -> set[tuple[str, str, str]]:
    found = set()
    for service, app in apps():
        # Routers are included lazily (FastAPI's route contexts), each with its full path.
        for context in iter_route_contexts(app.routes):
            route = context.original_route
            if isinstance(route, APIRoute) and uses(route.dependant, call):
                methods = set(context.methods or ()) - {"HEAD"}
                found |= {(service, method, str(context.path_format)) for method in methods}
    return found


def test_the_routes_that_read_from_the_replica_are_the_documented_ones() -> None:
    assert routes_using(get_catalogue_session) == CATALOGUE_READS
    assert routes_using(get_read_session) == REPORT_READS


def test_a_route_reads_from_one_server() -> None:
    """No replica read beside the request's primary session: one request would read two
    states (and a write beside a lagging read is the lost update the split avoids)."""
    on_primary = routes_using(get_session)
    assert ("listing", "PATCH", "/v1/listings/{listing_id}") in on_primary
    assert on_primary & (CATALOGUE_READS | REPORT_READS) == set()


@pytest.mark.parametrize(
    ("principal", "replica"),
    [
        (None, True),
        (Principal(roles=frozenset({"member"}), organization_id=uuid4()), False),
        (Principal(roles=frozenset({"operator"})), False),
        (Principal(roles=frozenset({"service"})), False),
    ],
)
def test_only_anonymous_catalogue_reads_may_lag(principal: Principal | None, replica: bool) -> None:
    assert reads_from_replica(principal) is replica
