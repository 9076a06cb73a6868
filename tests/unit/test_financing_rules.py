"""The financing rules (CNIPA's pledge registration grounds, the pledge's states) as plain
functions."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from services.listing.financing.rules import (
    FinancingPolicy,
    PledgeAction,
    active_pledge_encumbrance,
    check_cancellation,
    check_fee_stated,
    check_forfeiture,
    check_parties,
    check_pledgeable,
    check_pledgee_consent,
    check_pledgors_are_holders,
    check_registration,
    check_term,
    check_valuations,
    next_pledge_status,
    pledge_ends_on,
)
from services.listing.incentives.rules import rate_applies
from shared.errors import Conflict
from shared.settings import Settings

TODAY = date(2026, 12, 7)
HOLDERS: list[dict[str, object]] = [
    {"name": "北京理工大学", "uscc": "12100000400000624D"},
    {"name": "北京理工雷科电子信息技术有限公司", "uscc": None},
]


def rules(errors: list[Any]) -> list[str]:
    return [e.rule for e in errors]


def pledgeable(**overrides: Any) -> list[str]:
    values: dict[str, Any] = {
        "kind": "invention_patent",
        "legal_status": "granted",
        "expires_on": date(2040, 1, 1),
        "annual_fee_due_on": date(2027, 7, 21),
        "encumbrances": [],
        "pledged": False,
        "requested": False,
        "holds": set(),
        "today": TODAY,
        "grace_months": 6,
        "field": "assets[0]",
    }
    values.update(overrides)
    return rules(check_pledgeable(**values))


def test_policy_comes_from_the_settings() -> None:
    settings = Settings(
        financing_max_assets=3,
        financing_valuation_max_age_days=90,
        financing_annual_fee_grace_months=4,
        financing_max_term_months=36,
    )
    assert FinancingPolicy.of(settings) == FinancingPolicy(3, 90, 4, 36)


def test_every_co_holder_is_a_party() -> None:
    missing = check_parties(HOLDERS, "北京理工大学", "12100000400000624D", [], "assets[0]")
    assert rules(missing) == ["co_holder_not_party"]
    assert missing[0].field == "assets[0]"
    assert "北京理工雷科电子信息技术有限公司" in missing[0].message
    joined = [{"name": "北京理工雷科电子信息技术有限公司", "uscc": None}]
    assert check_parties(HOLDERS, "北京理工大学", "12100000400000624D", joined, "a") == []
    # By credit code when both have one: another name with the same code is the same holder.
    assert check_parties(HOLDERS[:1], "北理工", "12100000400000624D", [], "a") == []


def test_a_pledgor_holds_one_of_the_rights() -> None:
    stranger = [{"name": "天津某贸易有限公司", "uscc": None}]
    errors = check_pledgors_are_holders([HOLDERS], stranger)
    assert rules(errors) == ["pledgor_not_a_holder"]
    assert errors[0].field == "pledgors[0].name"
    assert check_pledgors_are_holders([HOLDERS], [HOLDERS[1]]) == []


def test_the_term_ends_within_the_right_and_the_longest_term() -> None:
    assert pledge_ends_on(date(2026, 12, 7), 12) == date(2027, 12, 6)
    assert pledge_ends_on(date(2027, 1, 31), 1) == date(2027, 2, 27)
    ok = check_term(date(2026, 12, 7), 12, date(2027, 12, 6), max_term_months=120, field="f")
    assert ok == []
    late = check_term(date(2026, 12, 7), 13, date(2027, 12, 6), max_term_months=120, field="f")
    assert rules(late) == ["term_past_expiry"]
    assert late[0].field == "f"
    long = check_term(date(2026, 12, 7), 121, None, max_term_months=120, field="f")
    assert rules(long) == ["term_too_long"]
    beyond = check_term(date(9999, 6, 1), 12, None, max_term_months=120, field="f")
    assert rules(beyond) == ["term_out_of_range"]
    assert beyond[0].field == "term_months"


def test_no_forfeiture_clause() -> None:
    assert check_forfeiture(False) == []
    refused = check_forfeiture(True)
    assert rules(refused) == ["forfeiture_clause"]
    assert refused[0].field == "forfeiture_clause"


def test_a_patent_states_its_annual_fee_day() -> None:
    assert rules(check_fee_stated("invention_patent", None, "x")) == ["annual_fee_due_on_required"]
    assert check_fee_stated("invention_patent", date(2027, 1, 1), "x") == []
    assert check_fee_stated("trademark", None, "x") == []


def test_valuations_cover_every_right_and_are_recent() -> None:
    a, b = "a" * 8, "b" * 8

    def report(asset: str, valued_on: date) -> dict[str, Any]:
        return {"asset_id": asset, "valued_on": valued_on}

    assert check_valuations([report(a, date(2026, 6, 1))], [a], today=TODAY, max_age_days=365) == []
    missing = check_valuations([report(a, TODAY)], [a, b], today=TODAY, max_age_days=365)
    assert rules(missing) == ["valuation_required"]
    assert missing[0].field == "assets[1].asset_id"
    stale = check_valuations([report(a, date(2025, 12, 6))], [a], today=TODAY, max_age_days=365)
    assert rules(stale) == ["valuation_stale"]
    future = check_valuations([report(a, date(2026, 12, 8))], [a], today=TODAY, max_age_days=365)
    assert rules(future) == ["valued_in_future"]
    other = check_valuations(
        [report(a, TODAY), report(b, TODAY)], [a], today=TODAY, max_age_days=365
    )
    assert rules(other) == ["valuation_not_pledged"]
    assert other[0].field == "valuations[1].asset_id"


def test_a_granted_right_in_force_is_pledgeable() -> None:
    assert pledgeable() == []
    assert pledgeable(kind="trademark", annual_fee_due_on=None) == []


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"legal_status": "pending"}, ["right_not_granted"]),
        ({"legal_status": "lapsed"}, ["right_not_in_force"]),
        ({"legal_status": "invalidated"}, ["right_not_in_force"]),
        ({"expires_on": date(2026, 12, 6)}, ["right_not_in_force"]),
        ({"annual_fee_due_on": date(2026, 11, 1)}, ["annual_fee_in_grace"]),
        ({"annual_fee_due_on": date(2026, 6, 6)}, ["right_not_in_force"]),
        ({"pledged": True}, ["already_pledged"]),
        (
            {"encumbrances": [{"type": "pledge", "holder": "某银行", "until": "2027-01-01"}]},
            ["already_pledged"],
        ),
        ({"requested": True}, ["financing_requested"]),
        ({"holds": {"preservation"}}, ["under_preservation"]),
        ({"holds": {"suspension"}}, ["under_suspension"]),
    ],
)
def test_each_registry_refusal(overrides: dict[str, Any], expected: list[str]) -> None:
    assert pledgeable(**overrides) == expected


def test_the_grace_period_is_a_setting() -> None:
    due = date(2026, 6, 6)
    assert pledgeable(annual_fee_due_on=due, grace_months=6) == ["right_not_in_force"]
    assert pledgeable(annual_fee_due_on=due, grace_months=7) == ["annual_fee_in_grace"]


def test_an_ended_pledge_encumbrance_does_not_count() -> None:
    ended = [{"type": "pledge", "holder": "某银行", "until": "2026-12-06"}]
    assert not active_pledge_encumbrance(ended, TODAY)
    assert active_pledge_encumbrance([{"type": "pledge", "holder": "x", "until": None}], TODAY)
    assert pledgeable(encumbrances=ended) == []
    licence = [{"type": "exclusive_license", "holder": "x", "until": None}]
    assert pledgeable(encumbrances=licence) == []


def test_the_registry_states() -> None:
    assert next_pledge_status("register", "filed") == "registered"
    assert next_pledge_status("change", "registered") == "changed"
    assert next_pledge_status("change", "changed") == "changed"
    for status in ("filed", "registered", "changed"):
        assert next_pledge_status("cancel", status) == "cancelled"
    with pytest.raises(Conflict) as refused:
        next_pledge_status("change", "filed")
    assert refused.value.extra == {"current_status": "filed"}
    actions: tuple[PledgeAction, ...] = ("register", "change", "cancel")
    for action in actions:
        with pytest.raises(Conflict):
            next_pledge_status(action, "cancelled")


def test_registration_day() -> None:
    assert check_registration(TODAY, date(2026, 12, 1), TODAY) == []
    assert rules(check_registration(date(2026, 12, 8), date(2026, 12, 1), TODAY)) == [
        "registered_in_future"
    ]
    assert rules(check_registration(date(2026, 11, 30), date(2026, 12, 1), TODAY)) == [
        "registered_before_filing"
    ]


def test_cancellation_reasons_follow_the_state() -> None:
    start = date(2026, 1, 1)
    assert check_cancellation("registered", "repaid", TODAY, start, TODAY) == []
    assert check_cancellation("filed", "void", TODAY, start, TODAY) == []
    assert rules(check_cancellation("filed", "repaid", TODAY, start, TODAY)) == [
        "reason_not_allowed"
    ]
    assert rules(check_cancellation("filed", "enforced", TODAY, start, TODAY)) == [
        "reason_not_allowed"
    ]
    assert rules(check_cancellation("changed", "enforced", date(2027, 1, 1), start, TODAY)) == [
        "cancelled_in_future"
    ]
    assert rules(check_cancellation("changed", "released", date(2025, 1, 1), start, TODAY)) == [
        "cancelled_before_start"
    ]


def test_pledgee_consent_for_assignment_and_exclusive_licence_only() -> None:
    assert rules(check_pledgee_consent("assignment", ["某银行"])) == ["pledgee_consent_required"]
    assert rules(check_pledgee_consent("exclusive_license", ["某银行"])) == [
        "pledgee_consent_required"
    ]
    assert check_pledgee_consent("assignment", []) == []
    assert check_pledgee_consent("nonexclusive_license", ["某银行"]) == []


def test_the_interest_subsidy_rate_applies_to_repaid_pledges_not_to_loan_deals() -> None:
    assert rate_applies("pledge_interest", "pledge")
    assert not rate_applies("pledge_interest", "deal")
    assert rate_applies("licence_transfer", "deal")
    assert rate_applies("equity", "deal")
    assert not rate_applies(None, "deal")
