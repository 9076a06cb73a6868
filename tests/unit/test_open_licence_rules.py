"""Open licence rules as plain functions: each rule with an input it refuses and one it takes."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from services.listing.listings.rules import check_publishable
from services.listing.open_licences.rules import (
    Guidance,
    add_months,
    check_consents,
    check_declarable,
    check_exclusive_offer,
    check_kind,
    check_terms,
    deadline_state,
    guidance_flags,
    recordal_due_on,
    reminder_to_send,
    transaction_terms,
)
from shared.contracts.catalogue import OpenLicenseTerms, TransactionTerms
from shared.settings import Settings

TODAY = date(2026, 12, 8)
GUIDANCE = Guidance.of(Settings())


def terms(**values: Any) -> OpenLicenseTerms:
    body: dict[str, Any] = {
        "fee_type": "royalty",
        "royalty_rate": "0.05",
        "royalty_basis": "net_sales",
        "starts_on": "2027-01-01",
        "ends_on": "2029-12-31",
    }
    body.update(values)
    return OpenLicenseTerms.model_validate({k: v for k, v in body.items() if v is not None})


def rules(errors: list[Any]) -> set[tuple[str, str]]:
    return {(e.field, e.rule) for e in errors}


def test_guidance_is_read_from_the_settings() -> None:
    guidance = Guidance.of(
        Settings(open_licence_max_fixed_fee=Decimal("1000"), open_licence_min_term_months=24)
    )
    assert guidance.max_fixed_fee == Decimal("1000")
    assert guidance.min_term_months == 24
    assert GUIDANCE.max_fixed_fee == Decimal("20000000")
    assert GUIDANCE.max_royalty_net_sales == Decimal("0.20")
    assert GUIDANCE.max_royalty_profit == Decimal("0.40")


def test_only_patents_are_declared() -> None:
    assert check_kind("invention_patent") == []
    assert rules(check_kind("trademark")) == {("asset.kind", "not_a_patent")}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            {"fee_type": "lump_sum"},
            {
                ("terms.lump_sum", "required_for_fee_type"),
                ("terms.royalty_rate", "not_for_fee_type"),
                ("terms.royalty_basis", "not_for_fee_type"),
            },
        ),
        ({"royalty_rate": None}, {("terms.royalty_rate", "required_for_fee_type")}),
        ({"royalty_basis": None}, {("terms.royalty_basis", "required_for_fee_type")}),
        ({"lump_sum": "100.00"}, {("terms.lump_sum", "not_for_fee_type")}),
        ({"fee_type": "entry_fee_plus_royalty"}, {("terms.entry_fee", "required_for_fee_type")}),
    ],
)
def test_fees_fit_their_type(values: dict[str, Any], expected: set[tuple[str, str]]) -> None:
    found = check_terms(
        terms(**values), kind="invention_patent", expires_on=None, guidance=GUIDANCE
    )
    assert rules(found) == expected


@pytest.mark.parametrize(
    "values",
    [
        {"fee_type": "lump_sum", "lump_sum": "300000", "royalty_rate": None, "royalty_basis": None},
        {},
        {"royalty_basis": "profit"},
        {"fee_type": "entry_fee_plus_royalty", "entry_fee": "50000"},
    ],
)
def test_each_fee_type_is_accepted_with_its_fields(values: dict[str, Any]) -> None:
    assert (
        check_terms(terms(**values), kind="invention_patent", expires_on=None, guidance=GUIDANCE)
        == []
    )


def test_the_term_is_at_least_a_year_and_ends_before_the_patent() -> None:
    year = terms(starts_on="2027-01-01", ends_on="2027-12-31")
    assert check_terms(year, kind="invention_patent", expires_on=None, guidance=GUIDANCE) == []
    short = terms(starts_on="2027-01-01", ends_on="2027-12-30")
    assert rules(
        check_terms(short, kind="invention_patent", expires_on=None, guidance=GUIDANCE)
    ) == {("terms.ends_on", "term_too_short")}
    past = check_terms(
        terms(), kind="invention_patent", expires_on=date(2029, 6, 30), guidance=GUIDANCE
    )
    assert rules(past) == {("terms.ends_on", "term_past_expiry")}
    two_years = Guidance.of(Settings(open_licence_min_term_months=24))
    assert rules(
        check_terms(year, kind="invention_patent", expires_on=None, guidance=two_years)
    ) == {("terms.ends_on", "term_too_short")}


@pytest.mark.parametrize("kind", ["utility_model", "design_patent"])
def test_utility_models_and_designs_name_their_evaluation_report(kind: str) -> None:
    assert rules(check_terms(terms(), kind=kind, expires_on=None, guidance=GUIDANCE)) == {
        ("terms.evaluation_report", "evaluation_report_required")
    }
    named = terms(evaluation_report="PJ2026110000123")
    assert check_terms(named, kind=kind, expires_on=None, guidance=GUIDANCE) == []


HOLDERS = [
    {"name": "北京理工大学", "uscc": "12100000400000624D"},
    {"name": "北京某某科技有限公司"},
]


def test_every_co_holder_consents() -> None:
    missing = check_consents(HOLDERS, "北京理工大学", "12100000400000624D", [])
    assert rules(missing) == {("consents", "co_holder_consent")}
    assert "北京某某科技有限公司" in missing[0].message
    assert check_consents(HOLDERS, "北京理工大学", None, [{"name": "北京某某科技有限公司"}]) == []
    # The declarant is recognised by its credit code, whatever name it signs with.
    assert (
        check_consents(HOLDERS, "北理工", "12100000400000624D", [{"name": "北京某某科技有限公司"}])
        == []
    )
    stranger = check_consents(
        HOLDERS, "北京理工大学", None, [{"name": "北京某某科技有限公司"}, {"name": "别人"}]
    )
    assert rules(stranger) == {("consents[1].name", "consent_not_a_holder")}


def declarable(**overrides: Any) -> set[tuple[str, str]]:
    values: dict[str, Any] = {
        "legal_status": "granted",
        "expires_on": date(2040, 1, 1),
        "encumbrances": [],
        "offered_types": set(),
        "licences_in_force": set(),
        "today": TODAY,
    }
    values.update(overrides)
    return rules(check_declarable(**values))


def test_a_granted_patent_in_force_without_exclusive_licences_is_declarable() -> None:
    assert declarable() == set()
    assert declarable(offered_types={"nonexclusive_license", "assignment"}) == set()
    assert declarable(legal_status="pending") == {("asset.legal_status", "patent_not_granted")}
    assert declarable(legal_status="lapsed") == {("asset.legal_status", "right_not_in_force")}
    assert declarable(expires_on=date(2026, 12, 7)) == {
        ("asset.legal_status", "right_not_in_force")
    }


def test_no_declaration_while_an_exclusive_or_sole_licence_is_in_force_or_offered() -> None:
    exclusive = [{"type": "exclusive_license", "holder": "X", "until": "2027-01-01"}]
    assert declarable(encumbrances=exclusive) == {
        ("asset.encumbrances", "exclusive_license_in_force")
    }
    ended = [{"type": "exclusive_license", "holder": "X", "until": "2026-12-07"}]
    assert declarable(encumbrances=ended) == set()
    assert declarable(licences_in_force={"sole_license"}) == {
        ("asset.encumbrances", "exclusive_license_in_force")
    }
    assert declarable(offered_types={"exclusive_license"}) == {
        ("asset_id", "exclusive_license_offered")
    }


def test_no_new_exclusive_or_sole_licence_while_declared() -> None:
    for kind in ("exclusive_license", "sole_license"):
        assert rules(check_exclusive_offer(kind, {"open_license"})) == {
            ("transaction.type", "open_license_declared")
        }
    assert check_exclusive_offer("nonexclusive_license", {"open_license"}) == []
    assert check_exclusive_offer("exclusive_license", {"assignment"}) == []
    published = check_publishable(
        legal_status="granted",
        expires_on=None,
        encumbrances=[],
        terms=TransactionTerms.model_validate(
            {"type": "sole_license", "price": {"mode": "negotiable"}}
        ),
        pledge_disclosed=False,
        other_exclusive_listing=False,
        today=TODAY,
        offered_types={"open_license"},
    )
    assert rules(published) == {("transaction.type", "open_license_declared")}


def test_terms_outside_the_guidance_are_flagged_not_refused() -> None:
    assert guidance_flags(terms(), GUIDANCE) == []
    assert guidance_flags(terms(royalty_rate="0.20"), GUIDANCE) == []
    assert rules(guidance_flags(terms(royalty_rate="0.21"), GUIDANCE)) == {
        ("terms.royalty_rate", "royalty_above_guidance")
    }
    assert guidance_flags(terms(royalty_rate="0.40", royalty_basis="profit"), GUIDANCE) == []
    assert rules(guidance_flags(terms(royalty_rate="0.41", royalty_basis="profit"), GUIDANCE)) == {
        ("terms.royalty_rate", "royalty_above_guidance")
    }
    lump = terms(fee_type="lump_sum", lump_sum="20000000.01", royalty_rate=None, royalty_basis=None)
    assert rules(guidance_flags(lump, GUIDANCE)) == {("terms.lump_sum", "fixed_fee_above_guidance")}
    entry = terms(fee_type="entry_fee_plus_royalty", entry_fee="25000000")
    assert rules(guidance_flags(entry, GUIDANCE)) == {
        ("terms.entry_fee", "fixed_fee_above_guidance")
    }
    lenient = Guidance.of(Settings(open_licence_max_royalty_net_sales=Decimal("0.30")))
    assert guidance_flags(terms(royalty_rate="0.21"), lenient) == []


def test_the_catalogue_terms_of_a_declaration() -> None:
    royalty = transaction_terms(terms(), territory="CN", field_of_use=None)
    assert royalty.type == "open_license"
    assert royalty.price.mode == "royalty" and royalty.price.amount is None
    assert royalty.royalty_rate == Decimal("0.050000")
    assert royalty.term_months == 35
    assert royalty.open_license == terms()
    lump = transaction_terms(
        terms(fee_type="lump_sum", lump_sum="300000", royalty_rate=None, royalty_basis=None),
        territory="CN",
        field_of_use=None,
    )
    assert (lump.price.mode, lump.price.amount) == ("fixed", Decimal("300000.00"))
    entry = transaction_terms(
        terms(fee_type="entry_fee_plus_royalty", entry_fee="50000"),
        territory=None,
        field_of_use=None,
    )
    assert (entry.price.mode, entry.price.amount) == ("royalty", Decimal("50000.00"))


def test_recordal_is_due_three_months_after_the_notice() -> None:
    assert recordal_due_on(date(2026, 12, 8), 3) == date(2027, 3, 8)
    assert recordal_due_on(date(2026, 11, 30), 3) == date(2027, 2, 28)
    assert add_months(date(2027, 12, 31), 2) == date(2028, 2, 29)


def test_reminders_at_30_and_7_days_each_once() -> None:
    due = date(2027, 3, 8)
    assert reminder_to_send(due, date(2027, 2, 5), (30, 7), []) is None  # 31 days left
    assert reminder_to_send(due, date(2027, 2, 6), (30, 7), []) == 30
    assert reminder_to_send(due, date(2027, 2, 6), (30, 7), [30]) is None
    assert reminder_to_send(due, date(2027, 3, 1), (30, 7), [30]) == 7
    assert reminder_to_send(due, date(2027, 3, 1), (30, 7), [30, 7]) is None
    # A worker that was down over both sends the most urgent one only.
    assert reminder_to_send(due, date(2027, 3, 2), (30, 7), []) == 7


def test_the_deadline_state() -> None:
    due = date(2027, 3, 8)
    assert deadline_state("awaiting_recordal", due, date(2026, 12, 8), (30, 7)) == (
        "awaiting_recordal"
    )
    assert deadline_state("awaiting_recordal", due, date(2027, 2, 6), (30, 7)) == "due_soon"
    assert deadline_state("awaiting_recordal", due, date(2027, 3, 9), (30, 7)) == "overdue"
    assert deadline_state("recorded", due, date(2027, 3, 9), (30, 7)) == "recorded"
