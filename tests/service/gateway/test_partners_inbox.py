"""The partner inbox's claim (one statement, services.gateway.partners.repository.claim_alone)
and its one-statement outcome (finish_alone), on the real gateway schema: which events are
handed out, which are marked stale, and that a claimed event is not handed out twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.gateway.models import InboundEvent, Partner
from services.gateway.partners.repository import InboxRepository, claim_alone, finish_alone
from shared.db import create_engine, create_sessionmaker
from shared.settings import Settings

LEASE = timedelta(seconds=60)


@pytest.fixture(scope="module")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings, application_name="test-inbox-claim")
    try:
        yield engine
    finally:
        await engine.dispose()


async def add_partner(engine: AsyncEngine, code: str) -> None:
    async with create_sessionmaker(engine)() as session, session.begin():
        session.add(
            Partner(code=code, name=f"{code} 交易所", region="120000", inbound_secret="whsec_x")
        )


async def add_event(
    engine: AsyncEngine, partner: str, offer: str, version: int, *, at: datetime
) -> None:
    async with create_sessionmaker(engine)() as session, session.begin():
        inserted = await InboxRepository(session).insert(
            partner_code=partner,
            event_id=f"{offer}:{version}",
            source="push",
            source_version=version,
            offer_key=f"{partner}:{offer}",
            document={"offer": offer, "version": version},
            now=at,
        )
        assert inserted


async def events(engine: AsyncEngine, partner: str) -> dict[str, InboundEvent]:
    async with create_sessionmaker(engine)() as session:
        rows = await InboxRepository(session).by_partner(partner)
    return {row.event_id: row for row in rows}


async def test_claim_hands_out_the_oldest_version_per_offer_and_leases_it(
    engine: AsyncEngine,
) -> None:
    await add_partner(engine, "claima")
    now = datetime.now(UTC)
    for offer, version in (("A", 1), ("A", 2), ("B", 5)):
        await add_event(engine, "claima", offer, version, at=now)

    claimed, stale = await claim_alone(engine, now, 10, LEASE)

    assert stale == 0
    # One per offer (A's version 2 waits for version 1), in inbox order, with the partner's
    # name and region and the stored document.
    assert [(c.offer_key, c.source_version) for c in claimed] == [("claima:A", 1), ("claima:B", 5)]
    first = claimed[0]
    assert (first.partner_name, first.partner_region) == ("claima 交易所", "120000")
    assert first.document == {"offer": "A", "version": 1}
    assert (first.event_id, first.source, first.attempts) == ("A:1", "push", 0)
    stored = await events(engine, "claima")
    assert stored["A:1"].lease_until is not None and stored["B:5"].lease_until is not None
    assert stored["A:2"].lease_until is None

    # Leased: neither is handed out again, and A's version 2 still waits for version 1.
    assert await claim_alone(engine, now, 10, LEASE) == ([], 0)

    # Version 1 applied: version 2 is next.
    await finish_alone(engine, first.id, "applied", None, now)
    claimed, stale = await claim_alone(engine, now, 10, LEASE)
    assert ([(c.offer_key, c.source_version) for c in claimed], stale) == ([("claima:A", 2)], 0)
    after = await events(engine, "claima")
    assert (after["A:1"].status, after["A:1"].error, after["A:1"].lease_until) == (
        "applied",
        None,
        None,
    )
    assert after["A:1"].processed_at == now


async def test_claim_marks_versions_not_newer_than_the_applied_one_stale(
    engine: AsyncEngine,
) -> None:
    await add_partner(engine, "claimb")
    now = datetime.now(UTC)
    await add_event(engine, "claimb", "C", 3, at=now)
    (v3,), _ = await claim_alone(engine, now, 10, LEASE)
    await finish_alone(engine, v3.id, "applied", None, now)
    # Arriving late: an older version of C; and a first one of D.
    await add_event(engine, "claimb", "C", 2, at=now)
    await add_event(engine, "claimb", "D", 1, at=now)

    claimed, stale = await claim_alone(engine, now, 10, LEASE)

    assert stale == 1
    assert [(c.offer_key, c.source_version) for c in claimed] == [("claimb:D", 1)]
    old = (await events(engine, "claimb"))["C:2"]
    assert (old.status, old.lease_until, old.processed_at) == ("stale", None, now)
    assert old.error == "version 2 is not newer than version 3, already applied"

    # Only stale ones: none handed out, the count still reported.
    await add_event(engine, "claimb", "C", 1, at=now)
    assert await claim_alone(engine, now, 10, LEASE) == ([], 1)


async def test_concurrent_claims_never_hand_out_one_event_twice(engine: AsyncEngine) -> None:
    await add_partner(engine, "claimc")
    now = datetime.now(UTC)
    for n in range(40):
        await add_event(engine, "claimc", f"E{n}", 1, at=now)

    async def claim() -> list[int]:
        claimed, _ = await claim_alone(engine, now, 7, LEASE)
        return [c.id for c in claimed]

    rounds = await asyncio.wait_for(asyncio.gather(*(claim() for _ in range(8))), timeout=30)
    ids = [i for r in rounds for i in r]
    assert len(ids) == len(set(ids))  # SKIP LOCKED: no event in two claims
    left, _ = await claim_alone(engine, now, 100, LEASE)
    stored = [e.id or 0 for e in (await events(engine, "claimc")).values()]
    assert sorted(ids + [c.id for c in left]) == sorted(stored)
